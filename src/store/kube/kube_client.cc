#include "store/kube/kube_client.h"

#include <openssl/ssl.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include "async/openssl.h"
#include "core/log.h"
#include "core/strings.h"
#include "store/kube/node.h"

namespace flannel::store::kube {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("store.kube");
}

// "nodes/status patch" from `... cannot patch resource "nodes/status" in API group "" ...`.
std::optional<std::string> permissionFromMessage(std::string_view message) {
  auto cannot = message.find("cannot ");
  if (cannot == std::string_view::npos) {
    return std::nullopt;
  }
  auto rest = message.substr(cannot + 7);
  auto space = rest.find(' ');
  if (space == std::string_view::npos) {
    return std::nullopt;
  }
  auto verb = rest.substr(0, space);
  rest = rest.substr(space + 1);
  constexpr std::string_view kResource = "resource \"";
  if (rest.substr(0, kResource.size()) != kResource) {
    return std::nullopt;
  }
  rest = rest.substr(kResource.size());
  auto quote = rest.find('"');
  if (quote == std::string_view::npos || quote == 0) {
    return std::nullopt;
  }
  return fmt::format("{} {}", rest.substr(0, quote), verb);
}

std::string describeStatus(unsigned status, const std::optional<ApiStatus>& s,
                           std::string_view body) {
  if (s) {
    return fmt::format("HTTP {}{}{}: {}", status, s->reason.empty() ? "" : " ", s->reason,
                       s->message.empty() ? std::string("(no message)") : s->message);
  }
  return fmt::format("HTTP {}: {}", status, quoteForMessage(trimSpace(body), 200));
}

}  // namespace

Error apiError(unsigned status, std::string_view body, const Permission& permission,
               std::string_view what, std::string_view server, std::string_view credentials) {
  auto s = parseStatus(body);
  auto detail = describeStatus(status, s, body);
  if (status == 401) {
    return makeError(Errc::InvalidInput,
                     fmt::format("{}: the API server {} rejected the credentials ({}) with {}; "
                                 "check the service-account token or the kubeconfig user",
                                 what, server, credentials, detail));
  }
  if (status == 403) {
    auto perm = s ? permissionFromMessage(s->message) : std::nullopt;
    return makeError(
        Errc::InvalidInput,
        fmt::format("{}: the API server {} forbids it: missing RBAC permission {} (flannel needs "
                    "pods get; nodes get, list, watch; nodes/status patch); server said {}",
                    what, server, perm.value_or(permission.text()), detail));
  }
  Errc code = Errc::InvalidInput;
  if (status == 404) {
    code = Errc::NotFound;
  } else if (status == 409 || status == 410) {
    code = Errc::Conflict;
  } else if (status == 429 || status >= 500) {
    code = Errc::Unavailable;
  }
  return makeError(code, fmt::format("{}: the API server {} answered {}", what, server, detail));
}

Result<std::shared_ptr<net::ssl::context>> makeKubeTlsContext(
    const KubeClientConfig& config) noexcept {
  if (auto loaded = async::loadOpenSsl(); !loaded) {
    return loaded.error();
  }
  try {
    auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    boost::system::error_code ec;
    if (config.insecure_skip_tls_verify) {
      ctx->set_verify_mode(net::ssl::verify_none);
    } else {
      ctx->set_verify_mode(net::ssl::verify_peer);
      if (config.ca_pem.empty()) {
        ctx->set_default_verify_paths(ec);
      } else {
        ctx->add_certificate_authority(net::buffer(config.ca_pem), ec);
        if (ec) {
          return invalidInput(
              fmt::format("{}: loading the CA certificate: {}", config.source, ec.message()));
        }
      }
    }
    if (!config.client_cert_pem.empty()) {
      ctx->use_certificate_chain(net::buffer(config.client_cert_pem), ec);
      if (ec) {
        return invalidInput(
            fmt::format("{}: loading the client certificate: {}", config.source, ec.message()));
      }
      ctx->use_private_key(net::buffer(config.client_key_pem), net::ssl::context::pem, ec);
      if (ec) {
        return invalidInput(
            fmt::format("{}: loading the client key: {}", config.source, ec.message()));
      }
      if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
        return invalidInput(
            fmt::format("{}: the client key does not match the client certificate", config.source));
      }
    }
    return ctx;
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, fmt::format("creating the TLS context: {}", e.what()));
  }
}

TokenSource::TokenSource(std::string token, std::string file)
    : token_(std::move(token)), file_(std::move(file)) {}

Result<std::string> TokenSource::current(bool force) {
  if (file_.empty()) {
    return token_;
  }
  struct stat st {};
  if (::stat(file_.c_str(), &st) != 0) {
    int err = errno;
    if (!token_.empty()) {
      return token_;
    }
    return makeError(Errc::InvalidInput,
                     fmt::format("reading token file {}: {}", file_, std::strerror(err)), err);
  }
  std::pair<long long, long long> id{
      static_cast<long long>(st.st_mtim.tv_sec) * 1'000'000'000LL + st.st_mtim.tv_nsec,
      static_cast<long long>(st.st_size)};
  if (!force && seen_ && *seen_ == id) {
    return token_;
  }
  auto text = readTextFile(file_, "token file");
  if (!text) {
    if (!token_.empty()) {
      return token_;
    }
    return text.error();
  }
  auto fresh = std::string(trimSpace(*text));
  if (fresh.empty()) {
    if (!token_.empty()) {
      return token_;
    }
    return invalidInput(fmt::format("token file {} is empty", file_));
  }
  if (seen_ && fresh != token_) {
    log()->info("token file {} changed; using the new token", file_);
  }
  token_ = std::move(fresh);
  seen_ = id;
  return token_;
}

KubeClient::KubeClient(async::Executor executor, KubeClientConfig config,
                       std::shared_ptr<net::ssl::context> tls, std::chrono::milliseconds timeout)
    : executor_(std::move(executor)),
      config_(std::move(config)),
      tls_(std::move(tls)),
      timeout_(timeout),
      token_(config_.token, config_.token_file) {}

KubeClient::~KubeClient() = default;

Result<std::unique_ptr<KubeClient>> KubeClient::create(async::Executor executor,
                                                       KubeClientConfig config,
                                                       std::chrono::milliseconds timeout) noexcept {
  try {
    std::shared_ptr<net::ssl::context> tls;
    if (config.server.tls) {
      auto ctx = makeKubeTlsContext(config);
      if (!ctx) {
        return ctx.error();
      }
      tls = std::move(*ctx);
    } else if (!config.client_cert_pem.empty()) {
      return invalidInput(fmt::format("{}: a client certificate needs an https server, not {}",
                                      config.source, config.server.text));
    }
    std::unique_ptr<KubeClient> client(
        new KubeClient(std::move(executor), std::move(config), std::move(tls), timeout));
    if (client->token_.fromFile()) {
      if (auto t = client->token_.current(); !t) {
        return t.error();
      }
    }
    return client;
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, fmt::format("Kubernetes client: {}", e.what()));
  }
}

Result<http::Request> KubeClient::makeRequest(http::bhttp::verb method, const std::string& target,
                                              std::string body, const std::string& content_type,
                                              bool force_token) {
  http::Request req;
  req.method = method;
  req.target = config_.server.base_path + target;
  req.body = std::move(body);
  req.content_type = content_type.empty() ? std::string("application/json") : content_type;
  req.headers.emplace_back("Accept", "application/json");
  auto token = token_.current(force_token);
  if (!token) {
    return token.error();
  }
  if (!token->empty()) {
    req.headers.emplace_back("Authorization", "Bearer " + *token);
  }
  return req;
}

async::Awaitable<Result<ApiResponse>> KubeClient::sendOnce(http::Request request) {
  std::unique_ptr<http::Connection> conn;
  if (!idle_.empty()) {
    conn = std::move(idle_.back());
    idle_.pop_back();
  } else {
    conn = std::make_unique<http::Connection>(executor_, config_.server, tls_);
  }
  auto res = co_await conn->request(std::move(request), timeout_);
  if (!res) {
    co_return res.error();
  }
  if (conn->connected() && idle_.size() < 4) {
    idle_.push_back(std::move(conn));
  }
  co_return ApiResponse{.status = res->status, .body = std::move(res->body)};
}

async::Awaitable<Result<ApiResponse>> KubeClient::send(http::bhttp::verb method, std::string target,
                                                       std::string body, std::string content_type) {
  auto req = makeRequest(method, target, body, content_type, false);
  if (!req) {
    co_return req.error();
  }
  std::string sent_auth;
  for (const auto& [name, value] : req->headers) {
    if (name == "Authorization") {
      sent_auth = value;
    }
  }
  auto res = co_await sendOnce(std::move(*req));
  if (!res || res->status != 401 || !token_.fromFile()) {
    co_return res;
  }
  // The token may have rotated between our last look at the file and now.
  auto again = makeRequest(method, target, std::move(body), content_type, true);
  if (!again) {
    co_return res;
  }
  bool changed = false;
  for (const auto& [name, value] : again->headers) {
    if (name == "Authorization" && value != sent_auth) {
      changed = true;
    }
  }
  if (!changed) {
    co_return res;
  }
  co_return co_await sendOnce(std::move(*again));
}

Error KubeClient::errorFor(const ApiResponse& r, const Permission& permission,
                           std::string_view what) const {
  return apiError(r.status, r.body, permission, what, config_.server.text,
                  config_.credentialsDescription());
}

async::Awaitable<Result<std::string>> KubeClient::get(std::string target, Permission permission,
                                                      std::string what) {
  auto res = co_await send(http::bhttp::verb::get, std::move(target), std::string(), std::string());
  if (!res) {
    co_return res.error().context(what);
  }
  if (res->status / 100 != 2) {
    co_return errorFor(*res, permission, what);
  }
  co_return std::move(res->body);
}

async::Awaitable<Result<std::string>> KubeClient::patch(std::string target, std::string body,
                                                        std::string content_type,
                                                        Permission permission, std::string what) {
  auto res = co_await send(http::bhttp::verb::patch, std::move(target), std::move(body),
                           std::move(content_type));
  if (!res) {
    co_return res.error().context(what);
  }
  if (res->status / 100 != 2) {
    co_return errorFor(*res, permission, what);
  }
  co_return std::move(res->body);
}

async::Awaitable<Result<std::unique_ptr<KubeWatch>>> KubeClient::watch(std::string target,
                                                                       Permission permission,
                                                                       std::string what,
                                                                       unsigned* status) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto req =
        makeRequest(http::bhttp::verb::get, target, std::string(), std::string(), attempt > 0);
    if (!req) {
      co_return req.error();
    }
    auto conn = std::make_unique<http::Connection>(executor_, config_.server, tls_);
    auto res = co_await conn->openStream(std::move(*req), timeout_);
    if (!res) {
      co_return res.error().context(what);
    }
    if (res->status == 200) {
      co_return std::make_unique<KubeWatch>(std::move(conn), config_.server.text);
    }
    // An error answer has a short, complete body: read it for the Status message.
    ApiResponse answer{.status = res->status, .body = {}};
    for (;;) {
      auto more = co_await conn->readStream(timeout_);
      if (!more || more->empty() || answer.body.size() > 65536) {
        break;
      }
      answer.body += *more;
    }
    if (status != nullptr) {
      *status = answer.status;
    }
    if (answer.status == 401 && token_.fromFile() && attempt == 0) {
      continue;  // re-read a possibly rotated token once
    }
    co_return errorFor(answer, permission, what);
  }
  co_return makeError(Errc::Internal, "unreachable");
}

KubeWatch::KubeWatch(std::unique_ptr<http::Connection> conn, std::string endpoint)
    : conn_(std::move(conn)), endpoint_(std::move(endpoint)) {}

async::Awaitable<Result<std::optional<std::string>>> KubeWatch::nextLine(
    std::chrono::milliseconds idle) {
  for (;;) {
    if (auto nl = pending_.find('\n'); nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      if (trimSpace(line).empty()) {
        continue;
      }
      co_return std::optional<std::string>(std::move(line));
    }
    if (ended_) {
      co_return std::optional<std::string>();
    }
    auto more = co_await conn_->readStream(idle);
    if (!more) {
      pending_.clear();
      co_return more.error().context("watching nodes");
    }
    if (more->empty()) {
      ended_ = true;
      if (!trimSpace(pending_).empty()) {
        pending_ += '\n';  // a last event without its newline
      }
      continue;
    }
    pending_ += *more;
    if (pending_.size() > http::kMaxBodyBytes) {
      co_return makeError(Errc::Unavailable, fmt::format("watch on {}: event larger than {} bytes",
                                                         endpoint_, http::kMaxBodyBytes));
    }
  }
}

}  // namespace flannel::store::kube
