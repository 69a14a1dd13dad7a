// Kubernetes client configuration: kubeconfig files (good and bad), in-cluster config, the
// choice between sources, API error messages and token-file rotation. Files only; no network.
#include "store/kube/client_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/base64.h"
#include "store/kube/kube_client.h"

namespace flannel::store::kube {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr const char* kPem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

std::string b64(const std::string& s) {
  return base64Encode(s);
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kube-unit-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    auto p = (dir_ / name).string();
    std::ofstream(p) << text;
    return p;
  }
  const fs::path& path() const { return dir_; }

 private:
  fs::path dir_;
};

std::string kubeconfig(const std::string& cluster, const std::string& user,
                       const std::string& current = "ctx") {
  return "apiVersion: v1\nkind: Config\ncurrent-context: " + current +
         "\nclusters:\n- name: c\n  cluster:\n" + cluster +
         "contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n    namespace: "
         "kube-flannel\n"
         "users:\n- name: u\n  user:\n" +
         user;
}

TEST(Kubeconfig, TokenAndCaData) {
  auto c = parseKubeconfig(kubeconfig("    server: https://10.0.0.1:6443\n"
                                      "    certificate-authority-data: " +
                                          b64(kPem) + "\n",
                                      "    token: abc123\n"),
                           "/etc/k.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->server.host, "10.0.0.1");
  EXPECT_EQ(c->server.port, "6443");
  EXPECT_TRUE(c->server.tls);
  EXPECT_EQ(c->ca_pem, kPem);
  EXPECT_EQ(c->token, "abc123");
  EXPECT_EQ(c->namespace_name, "kube-flannel");
  EXPECT_EQ(c->source, "kubeconfig /etc/k.yaml (context ctx)");
  EXPECT_EQ(c->credentialsDescription(), "bearer token");
}

TEST(Kubeconfig, FilesAreResolvedRelativeToTheKubeconfig) {
  TempDir dir;
  dir.write("ca.crt", kPem);
  dir.write("client.crt", kPem);
  dir.write("client.key", "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n");
  dir.write("token", "tok\n");
  auto path = dir.write("k.yaml", kubeconfig("    server: https://api.example:443\n"
                                             "    certificate-authority: ca.crt\n",
                                             "    client-certificate: client.crt\n"
                                             "    client-key: client.key\n"
                                             "    tokenFile: token\n"));
  auto c = loadClientConfig(ClientConfigInputs{
      .kube_api_url = "", .kubeconfig_file = path, .in_cluster = {}, .env = [](const std::string&) {
        return std::optional<std::string>();
      }});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->ca_pem, kPem);
  EXPECT_EQ(c->client_cert_pem, kPem);
  EXPECT_THAT(c->client_key_pem, HasSubstr("PRIVATE KEY"));
  EXPECT_EQ(c->token_file, (dir.path() / "token").string());
  EXPECT_EQ(c->credentialsDescription(), "client certificate");
}

TEST(Kubeconfig, InsecureSkipTlsVerify) {
  auto c = parseKubeconfig(kubeconfig("    server: https://10.0.0.1:6443\n"
                                      "    insecure-skip-tls-verify: true\n",
                                      "    token: t\n"),
                           "k");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->insecure_skip_tls_verify);
}

TEST(Kubeconfig, ApiUrlFlagReplacesTheServer) {
  TempDir dir;
  auto path = dir.write("k.yaml", kubeconfig("    server: https://10.0.0.1:6443\n"
                                             "    insecure-skip-tls-verify: true\n",
                                             "    token: t\n"));
  auto c = loadClientConfig(ClientConfigInputs{.kube_api_url = "http://127.0.0.1:8080",
                                               .kubeconfig_file = path,
                                               .in_cluster = {},
                                               .env = {}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->server.text, "http://127.0.0.1:8080");
  EXPECT_EQ(c->token, "t");
}

TEST(Kubeconfig, BadFilesHaveClearErrors) {
  struct Case {
    std::string yaml;
    const char* expected;
  };
  const std::string server = "    server: https://10.0.0.1:6443\n";
  const Case cases[] = {
      {"clusters: [", "not valid YAML: line"},
      {"- just\n- a list\n", "not a kubeconfig"},
      {kubeconfig(server, "    token: t\n", ""), "current-context is not set"},
      {kubeconfig(server, "    token: t\n", "other"),
       "context \"other\" is not defined under contexts"},
      {kubeconfig("    insecure-skip-tls-verify: true\n", "    token: t\n"),
       "cluster \"c\" has no server"},
      {kubeconfig("    server: ftp://x\n", "    token: t\n"), "unsupported scheme"},
      {kubeconfig(server + "    certificate-authority-data: '!!!'\n", "    token: t\n"),
       "certificate-authority-data is not valid base64"},
      {kubeconfig(server + "    certificate-authority-data: " + b64("hello") + "\n",
                  "    token: t\n"),
       "is not PEM"},
      {kubeconfig(server + "    certificate-authority: /nonexistent/ca.crt\n", "    token: t\n"),
       "certificate-authority: reading CA certificate /nonexistent/ca.crt"},
      {kubeconfig(server + "    insecure-skip-tls-verify: maybe\n", "    token: t\n"),
       "insecure-skip-tls-verify must be true or false"},
      {kubeconfig(server + "    insecure-skip-tls-verify: true\n    certificate-authority-data: " +
                      b64(kPem) + "\n",
                  "    token: t\n"),
       "cannot be combined"},
      {kubeconfig(server, "    client-certificate-data: " + b64(kPem) + "\n"),
       "has a client certificate but no client key"},
      {kubeconfig(server, "    exec:\n      command: aws\n"), "uses exec"},
      {kubeconfig(server, "    username: admin\n    password: x\n"), "basic authentication"},
      {kubeconfig(server, "    tokenFile: /nonexistent/token\n"), "tokenFile: reading token file"},
      {kubeconfig(server, "    token: [1, 2]\n"), "user \"u\".token must be a string"},
  };
  for (const auto& c : cases) {
    auto r = parseKubeconfig(c.yaml, "/etc/kube/k.yaml");
    ASSERT_FALSE(r) << c.yaml;
    EXPECT_THAT(r.error().message, HasSubstr("kubeconfig /etc/kube/k.yaml: ")) << c.yaml;
    EXPECT_THAT(r.error().message, HasSubstr(c.expected)) << c.yaml;
  }
  auto user_missing =
      parseKubeconfig("current-context: ctx\nclusters:\n- name: c\n  cluster:\n" + server +
                          "contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: nobody\n",
                      "k");
  EXPECT_THAT(user_missing.error().message,
              HasSubstr("user \"nobody\" is not defined under users"));
}

TEST(Kubeconfig, MissingFileNamesTheFlag) {
  auto r = loadClientConfig(ClientConfigInputs{.kube_api_url = "",
                                               .kubeconfig_file = "/nonexistent/kubeconfig",
                                               .in_cluster = {},
                                               .env = {}});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("--kubeconfig-file: reading kubeconfig /nonexistent"));
}

TEST(ClientConfig, ApiUrlAloneMeansNoCredentials) {
  auto c = loadClientConfig(ClientConfigInputs{
      .kube_api_url = "http://127.0.0.1:8080", .kubeconfig_file = "", .in_cluster = {}, .env = {}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->credentialsDescription(), "no credentials");
  EXPECT_FALSE(loadClientConfig(ClientConfigInputs{
      .kube_api_url = "127.0.0.1:8080", .kubeconfig_file = "", .in_cluster = {}, .env = {}}));
}

TEST(InCluster, ServiceAccountFilesAndEnvironment) {
  TempDir dir;
  InClusterPaths paths{.token_file = dir.write("token", "sa-token\n"),
                       .ca_file = dir.write("ca.crt", kPem),
                       .namespace_file = dir.write("namespace", "kube-flannel")};
  std::map<std::string, std::string> env = {{"KUBERNETES_SERVICE_HOST", "fd00::1"},
                                            {"KUBERNETES_SERVICE_PORT", "443"}};
  EnvLookup lookup = [&](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  auto c = loadClientConfig(ClientConfigInputs{
      .kube_api_url = "", .kubeconfig_file = "", .in_cluster = paths, .env = lookup});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->server.text, "https://[fd00::1]:443");
  EXPECT_EQ(c->server.host, "fd00::1");
  EXPECT_EQ(c->token_file, paths.token_file);
  EXPECT_EQ(c->ca_pem, kPem);
  EXPECT_EQ(c->namespace_name, "kube-flannel");
  EXPECT_EQ(c->source, "in-cluster config");

  env.erase("KUBERNETES_SERVICE_PORT");
  auto no_env = inClusterConfig(paths, lookup);
  ASSERT_FALSE(no_env);
  EXPECT_THAT(no_env.error().message, HasSubstr("neither --kube-api-url nor --kubeconfig-file"));

  env["KUBERNETES_SERVICE_PORT"] = "443";
  paths.token_file = (dir.path() / "missing").string();
  auto no_token = inClusterConfig(paths, lookup);
  ASSERT_FALSE(no_token);
  EXPECT_THAT(no_token.error().message, HasSubstr("service-account token"));
}

TEST(ApiError, UnauthorizedSaysTheCredentialsWereRejected) {
  auto e = apiError(401,
                    R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",)"
                    R"("message":"Unauthorized","reason":"Unauthorized","code":401})",
                    Permission{.resource = "nodes", .verb = "list"}, "listing nodes",
                    "https://10.0.0.1:443", "bearer token from file /t");
  EXPECT_EQ(e.code, Errc::InvalidInput);
  EXPECT_THAT(e.message, HasSubstr("listing nodes: the API server https://10.0.0.1:443 rejected "
                                   "the credentials (bearer token from file /t)"));
}

TEST(ApiError, ForbiddenNamesTheMissingPermissionFromTheStatus) {
  auto e = apiError(
      403,
      R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nodes \"n1\" is forbidden: User \"system:serviceaccount:kube-flannel:flannel\" cannot patch resource \"nodes/status\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"name":"n1","kind":"nodes"},"code":403})",
      Permission{.resource = "nodes", .verb = "get"}, "patching node n1", "https://x", "t");
  EXPECT_EQ(e.code, Errc::InvalidInput);
  EXPECT_THAT(e.message, HasSubstr("missing RBAC permission nodes/status patch"));
  // Without a parsable Status, the permission the request needed is named.
  auto plain = apiError(403, "forbidden", Permission{.resource = "nodes", .verb = "watch"}, "w",
                        "https://x", "t");
  EXPECT_THAT(plain.message, HasSubstr("missing RBAC permission nodes watch"));
}

TEST(ApiError, StatusCodesMapToErrorCodes) {
  Permission p{.resource = "nodes", .verb = "get"};
  EXPECT_EQ(apiError(404, "", p, "w", "s", "c").code, Errc::NotFound);
  EXPECT_EQ(apiError(409, "", p, "w", "s", "c").code, Errc::Conflict);
  EXPECT_EQ(apiError(410, "", p, "w", "s", "c").code, Errc::Conflict);
  EXPECT_EQ(apiError(429, "", p, "w", "s", "c").code, Errc::Unavailable);
  EXPECT_EQ(apiError(500, "", p, "w", "s", "c").code, Errc::Unavailable);
  EXPECT_EQ(apiError(503, "", p, "w", "s", "c").code, Errc::Unavailable);
  EXPECT_EQ(apiError(422, "", p, "w", "s", "c").code, Errc::InvalidInput);
  auto e = apiError(
      500,
      R"({"kind":"Status","message":"etcdserver: leader changed","reason":"InternalError","code":500})",
      p, "reading node n1", "https://x", "c");
  EXPECT_THAT(
      e.message,
      HasSubstr("reading node n1: the API server https://x answered HTTP 500 InternalError: "
                "etcdserver: leader changed"));
}

TEST(TokenSource, ReReadsTheFileWhenItChanges) {
  TempDir dir;
  auto path = dir.write("token", "first\n");
  TokenSource source("", path);
  EXPECT_EQ(source.current().value(), "first");
  // Rotation as the kubelet does it: a new file renamed over the old one.
  auto fresh = dir.write("token.new", "second-token-longer");
  fs::rename(fresh, path);
  EXPECT_EQ(source.current().value(), "second-token-longer");
  // A file that disappears keeps the last good token.
  fs::remove(path);
  EXPECT_EQ(source.current().value(), "second-token-longer");
  // Forced re-read after the file is back.
  dir.write("token", "third");
  EXPECT_EQ(source.current(true).value(), "third");
  TokenSource fixed("static", "");
  EXPECT_EQ(fixed.current().value(), "static");
  TokenSource missing("", (dir.path() / "none").string());
  EXPECT_FALSE(missing.current());
}

}  // namespace
}  // namespace flannel::store::kube
