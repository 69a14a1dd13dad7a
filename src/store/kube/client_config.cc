#include "store/kube/client_config.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/base64.h"
#include "core/file.h"
#include "core/strings.h"
#include "store/kube/yaml_doc.h"

namespace flannel::store::kube {

namespace {

namespace fs = std::filesystem;

// One kubeconfig being read: names the file and the field in every error.
class KubeconfigReader {
 public:
  explicit KubeconfigReader(const std::string& path) : path_(path) {
    dir_ = fs::path(path).parent_path();
  }

  Error bad(std::string_view what) const {
    return invalidInput(fmt::format("kubeconfig {}: {}", path_, what));
  }

  // A scalar string field; "" when absent. Error when present but not a scalar.
  Result<std::string> str(const YamlDoc::Node& parent, const char* key,
                          std::string_view where) const {
    auto v = parent[key];
    if (v.isNull()) {
      return std::string();
    }
    if (!v.isScalar()) {
      return bad(fmt::format("{}.{} must be a string", where, key));
    }
    return v.scalar();
  }

  Result<bool> boolean(const YamlDoc::Node& parent, const char* key, std::string_view where) const {
    auto v = parent[key];
    if (v.isNull()) {
      return false;
    }
    auto out = v.boolean();
    if (!out) {
      return bad(fmt::format("{}.{} must be true or false", where, key));
    }
    return *out;
  }

  // The `<inner>` map of the entry named `name` in the list `list` ({name: x, <inner>: {...}});
  // an absent node (every lookup in it absent) when the entry has no or a null `<inner>`.
  Result<YamlDoc::Node> named(const YamlDoc::Node& root, const char* list, const char* inner,
                              const std::string& name) const {
    auto entries = root[list];
    if (!entries.isNull() && !entries.isSequence()) {
      return bad(fmt::format("{} must be a list", list));
    }
    for (const auto& e : entries.items()) {
      auto entry_name = e["name"];
      if (!e.isMap() || !entry_name.isScalar() || entry_name.scalar() != name) {
        continue;
      }
      auto body = e[inner];
      if (body.isNull()) {
        return YamlDoc::Node();
      }
      if (!body.isMap()) {
        return bad(
            fmt::format("{} entry {}: {} must be a map", list, quoteForMessage(name), inner));
      }
      return body;
    }
    return bad(fmt::format("{} {} is not defined under {}", inner, quoteForMessage(name), list));
  }

  std::string resolve(const std::string& file) const {
    fs::path p(file);
    return p.is_absolute() || dir_.empty() ? p.string() : (dir_ / p).string();
  }

  // PEM from `<field>-data` (base64) or from the file named by `<field>`.
  Result<std::string> pem(const YamlDoc::Node& parent, const std::string& field,
                          std::string_view where, std::string_view role) const {
    auto data = str(parent, (field + "-data").c_str(), where);
    if (!data) {
      return data.error();
    }
    auto file = str(parent, field.c_str(), where);
    if (!file) {
      return file.error();
    }
    std::string text;
    if (!data->empty()) {
      // client-go decodes these like Go's encoding/json decodes []byte: standard base64, line
      // breaks ignored.
      std::string compact;
      for (char c : *data) {
        if (c != '\n' && c != '\r') {
          compact += c;
        }
      }
      auto decoded = base64Decode(compact);
      if (!decoded || decoded->empty()) {
        return bad(fmt::format("{}.{}-data is not valid base64", where, field));
      }
      text = std::move(*decoded);
    } else if (!file->empty()) {
      auto read = readTextFile(resolve(*file), role);
      if (!read) {
        return bad(fmt::format("{}.{}: {}", where, field, read.error().message));
      }
      text = std::move(*read);
    } else {
      return std::string();
    }
    if (text.find("-----BEGIN") == std::string::npos) {
      return bad(fmt::format("{}.{}{}: the {} is not PEM (no -----BEGIN line)", where, field,
                             data->empty() ? "" : "-data", role));
    }
    return text;
  }

 private:
  std::string path_;
  fs::path dir_;
};

std::string hostPort(const std::string& host, const std::string& port) {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                             : fmt::format("{}:{}", host, port);
}

}  // namespace

EnvLookup processEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr || *v == '\0') {
      return std::nullopt;
    }
    return std::string(v);
  };
}

std::string KubeClientConfig::credentialsDescription() const {
  if (!client_cert_pem.empty()) {
    return "client certificate";
  }
  if (!token_file.empty()) {
    return fmt::format("bearer token from file {}", token_file);
  }
  if (!token.empty()) {
    return "bearer token";
  }
  return "no credentials";
}

Result<std::string> readTextFile(const std::string& path, std::string_view role) noexcept {
  constexpr size_t kMaxSize = 16u << 20;  // kubeconfigs, certificates and tokens are a few kB
  auto text = readSmallFile(path, kMaxSize);
  if (!text) {
    // "reading <role> <path>: <reason>", with the role ("kubeconfig", "token file") named.
    const Error& e = text.error();
    std::string reason = e.sys_errno != 0 ? std::strerror(e.sys_errno) : e.message;
    if (e.code == Errc::InvalidInput) {
      reason = fmt::format("larger than {} bytes", kMaxSize);
    }
    return makeError(Errc::InvalidInput, fmt::format("reading {} {}: {}", role, path, reason),
                     e.sys_errno);
  }
  return text;
}

Result<KubeClientConfig> parseKubeconfig(std::string_view yaml, const std::string& path) noexcept {
  KubeconfigReader r(path);
  try {
    auto doc = YamlDoc::parse(yaml);
    if (!doc) {
      return r.bad(fmt::format("not valid YAML: {}", doc.error().message));
    }
    auto root = doc->root();
    if (!root.isMap()) {
      return r.bad("not a kubeconfig (expected a map with clusters, contexts, users)");
    }
    auto context_name = r.str(root, "current-context", "");
    if (!context_name) {
      return context_name.error();
    }
    if (context_name->empty()) {
      return r.bad("current-context is not set");
    }
    auto context = r.named(root, "contexts", "context", *context_name);
    if (!context) {
      return context.error();
    }
    std::string cwhere = fmt::format("context {}", quoteForMessage(*context_name));
    auto cluster_name = r.str(*context, "cluster", cwhere);
    auto user_name = r.str(*context, "user", cwhere);
    auto ns = r.str(*context, "namespace", cwhere);
    if (!cluster_name || !user_name || !ns) {
      return !cluster_name ? cluster_name.error() : !user_name ? user_name.error() : ns.error();
    }
    if (cluster_name->empty()) {
      return r.bad(fmt::format("{} names no cluster", cwhere));
    }
    auto cluster = r.named(root, "clusters", "cluster", *cluster_name);
    if (!cluster) {
      return cluster.error();
    }
    std::string where = fmt::format("cluster {}", quoteForMessage(*cluster_name));
    KubeClientConfig out;
    out.namespace_name = *ns;
    out.source = fmt::format("kubeconfig {} (context {})", path, *context_name);
    auto server = r.str(*cluster, "server", where);
    if (!server) {
      return server.error();
    }
    if (server->empty()) {
      return r.bad(fmt::format("{} has no server", where));
    }
    auto url = http::parseUrl(*server);
    if (!url) {
      return r.bad(fmt::format("{}.server: {}", where, url.error().message));
    }
    out.server = std::move(*url);
    auto insecure = r.boolean(*cluster, "insecure-skip-tls-verify", where);
    if (!insecure) {
      return insecure.error();
    }
    out.insecure_skip_tls_verify = *insecure;
    auto ca = r.pem(*cluster, "certificate-authority", where, "CA certificate");
    if (!ca) {
      return ca.error();
    }
    out.ca_pem = std::move(*ca);
    if (out.insecure_skip_tls_verify && !out.ca_pem.empty()) {
      return r.bad(fmt::format(
          "{}: insecure-skip-tls-verify cannot be combined with a certificate authority", where));
    }
    if (!user_name->empty()) {
      auto user_entry = r.named(root, "users", "user", *user_name);
      if (!user_entry) {
        return user_entry.error();
      }
      const YamlDoc::Node* user = &*user_entry;
      std::string uwhere = fmt::format("user {}", quoteForMessage(*user_name));
      for (const char* unsupported : {"exec", "auth-provider"}) {
        if ((*user)[unsupported]) {
          return r.bad(fmt::format(
              "{} uses {}, which flannel-cpp does not support; use a token, tokenFile or a "
              "client certificate",
              uwhere, unsupported));
        }
      }
      if ((*user)["username"] || (*user)["password"]) {
        return r.bad(fmt::format(
            "{} uses basic authentication (username/password), which the Kubernetes API no "
            "longer supports; use a token, tokenFile or a client certificate",
            uwhere));
      }
      auto cert = r.pem(*user, "client-certificate", uwhere, "client certificate");
      auto key = r.pem(*user, "client-key", uwhere, "client key");
      auto token = r.str(*user, "token", uwhere);
      auto token_file = r.str(*user, "tokenFile", uwhere);
      if (!cert || !key || !token || !token_file) {
        return !cert    ? cert.error()
               : !key   ? key.error()
               : !token ? token.error()
                        : token_file.error();
      }
      if (cert->empty() != key->empty()) {
        return r.bad(fmt::format("{} has a client {} but no client {}", uwhere,
                                 cert->empty() ? "key" : "certificate",
                                 cert->empty() ? "certificate" : "key"));
      }
      out.client_cert_pem = std::move(*cert);
      out.client_key_pem = std::move(*key);
      out.token = std::move(*token);
      if (!token_file->empty()) {
        out.token_file = r.resolve(*token_file);
        auto t = readTextFile(out.token_file, "token file");
        if (!t) {
          return r.bad(fmt::format("{}.tokenFile: {}", uwhere, t.error().message));
        }
      }
    }
    return out;
  } catch (const std::exception& e) {
    return r.bad(e.what());
  }
}

Result<KubeClientConfig> inClusterConfig(const InClusterPaths& paths,
                                         const EnvLookup& env) noexcept {
  try {
    auto host = env("KUBERNETES_SERVICE_HOST");
    auto port = env("KUBERNETES_SERVICE_PORT");
    if (!host || !port) {
      return invalidInput(
          "no Kubernetes API configuration: neither --kube-api-url nor --kubeconfig-file was "
          "given, and this is not a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
          "are not set)");
    }
    auto url = http::parseUrl("https://" + hostPort(*host, *port));
    if (!url) {
      return url.error().context("in-cluster config (KUBERNETES_SERVICE_HOST/_PORT)");
    }
    KubeClientConfig out;
    out.server = std::move(*url);
    out.source = "in-cluster config";
    auto token = readTextFile(paths.token_file, "service-account token");
    if (!token) {
      return token.error().context("in-cluster config");
    }
    if (trimSpace(*token).empty()) {
      return invalidInput(
          fmt::format("in-cluster config: service-account token {} is empty", paths.token_file));
    }
    out.token_file = paths.token_file;
    auto ca = readTextFile(paths.ca_file, "service-account CA certificate");
    if (!ca) {
      return ca.error().context("in-cluster config");
    }
    out.ca_pem = std::move(*ca);
    if (auto ns = readTextFile(paths.namespace_file, "namespace")) {
      out.namespace_name = std::string(trimSpace(*ns));
    }
    return out;
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, fmt::format("in-cluster config: {}", e.what()));
  }
}

Result<KubeClientConfig> loadClientConfig(const ClientConfigInputs& inputs) noexcept {
  try {
    EnvLookup env = inputs.env ? inputs.env : processEnvironment();
    if (!inputs.kubeconfig_file.empty()) {
      auto text = readTextFile(inputs.kubeconfig_file, "kubeconfig");
      if (!text) {
        return text.error().context("--kubeconfig-file");
      }
      auto config = parseKubeconfig(*text, inputs.kubeconfig_file);
      if (!config) {
        return config.error();
      }
      if (!inputs.kube_api_url.empty()) {
        auto url = http::parseUrl(inputs.kube_api_url);
        if (!url) {
          return url.error().context("--kube-api-url");
        }
        config->server = std::move(*url);
        config->source += fmt::format(", server from --kube-api-url {}", inputs.kube_api_url);
      }
      return config;
    }
    if (!inputs.kube_api_url.empty()) {
      auto url = http::parseUrl(inputs.kube_api_url);
      if (!url) {
        return url.error().context("--kube-api-url");
      }
      KubeClientConfig out;
      out.server = std::move(*url);
      out.source = fmt::format("--kube-api-url {}", inputs.kube_api_url);
      return out;
    }
    return inClusterConfig(inputs.in_cluster, env);
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, fmt::format("Kubernetes client config: {}", e.what()));
  }
}

}  // namespace flannel::store::kube
