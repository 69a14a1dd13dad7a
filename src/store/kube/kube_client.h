// DOC: KubeClient, the few Kubernetes API calls flannel makes (GET, PATCH, list, watch), over
// the project's Beast HTTP(S) client on the control thread.
//
// Authentication: a bearer token (static, or read from a file and re-read whenever the file's
// modification time or size changes, and once more after a 401, since bound service-account
// tokens rotate), or a TLS client certificate, or nothing.
//
// Errors are values. A non-2xx answer becomes an Error built from the API's Status object:
//   401           Errc::InvalidInput  "the API server rejected the credentials ..."
//   403           Errc::InvalidInput  names the missing RBAC permission, e.g. "nodes/status patch"
//   404 / 409     Errc::NotFound / Errc::Conflict
//   410           Errc::Conflict      (callers that can recover, list and watch, check first)
//   429, 5xx      Errc::Unavailable   (retry with backoff)
//   other 4xx     Errc::InvalidInput
// Connection failures are Errc::Unavailable / Errc::Timeout (store/http).
//
// Thread safety: control thread only. Calls may overlap (each borrows a connection from a small
// idle pool); a watch has a connection of its own.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "async/asio.h"
#include "core/result.h"
#include "store/http/client.h"
#include "store/kube/client_config.h"

namespace flannel::store::kube {

// The RBAC permission a request needs (SPEC.md §4.2), for 403 messages: "nodes/status patch".
struct Permission {
  std::string resource{};  // "nodes", "nodes/status", "pods"
  std::string verb{};      // "get", "list", "watch", "patch"
  std::string text() const { return resource + " " + verb; }
};

struct ApiResponse {
  unsigned status = 0;
  std::string body{};
};

// The Error for a non-2xx answer (pure; see the table above). `what` says what was attempted
// ("patching node n1"), `server` and `credentials` name the endpoint and the credentials used.
Error apiError(unsigned status, std::string_view body, const Permission& permission,
               std::string_view what, std::string_view server, std::string_view credentials);

// Builds the TLS client context for `config` (CA / insecure, client certificate).
Result<std::shared_ptr<net::ssl::context>> makeKubeTlsContext(
    const KubeClientConfig& config) noexcept;

// Bearer token holder: static, or a file re-read when it changes.
class TokenSource {
 public:
  TokenSource(std::string token, std::string file);
  // The current token ("" = none). Re-reads the file when its mtime or size changed, or when
  // `force` is set. A file that cannot be read keeps the last good token (and returns it) if
  // there was one; else the error.
  Result<std::string> current(bool force = false);
  bool fromFile() const noexcept { return !file_.empty(); }

 private:
  std::string token_;
  std::string file_;
  std::optional<std::pair<long long, long long>> seen_;  // (mtime ns, size) of the last read
};

class KubeWatch;

class KubeClient {
 public:
  static Result<std::unique_ptr<KubeClient>> create(
      async::Executor executor, KubeClientConfig config,
      std::chrono::milliseconds request_timeout = std::chrono::seconds(30)) noexcept;
  ~KubeClient();

  // One request; only transport failures are errors, any HTTP status is returned. A 401 with a
  // token file re-reads the file and, if the token changed, sends once more.
  async::Awaitable<Result<ApiResponse>> send(http::bhttp::verb method, std::string target,
                                             std::string body, std::string content_type);

  // GET; the body of a 2xx answer, else apiError().
  async::Awaitable<Result<std::string>> get(std::string target, Permission permission,
                                            std::string what);
  // PATCH with `content_type`; the body of a 2xx answer, else apiError().
  async::Awaitable<Result<std::string>> patch(std::string target, std::string body,
                                              std::string content_type, Permission permission,
                                              std::string what);
  // Opens a streaming GET (a watch). A non-200 answer is read in full and returned as
  // apiError(), except that its status is kept in `*status` when given (410 handling).
  async::Awaitable<Result<std::unique_ptr<KubeWatch>>> watch(std::string target,
                                                             Permission permission,
                                                             std::string what,
                                                             unsigned* status = nullptr);

  // apiError() for this client's server and credentials.
  Error errorFor(const ApiResponse& r, const Permission& permission, std::string_view what) const;

  const KubeClientConfig& config() const noexcept { return config_; }
  const std::string& server() const noexcept { return config_.server.text; }

 private:
  KubeClient(async::Executor executor, KubeClientConfig config,
             std::shared_ptr<net::ssl::context> tls, std::chrono::milliseconds timeout);
  Result<http::Request> makeRequest(http::bhttp::verb method, const std::string& target,
                                    std::string body, const std::string& content_type,
                                    bool force_token);
  async::Awaitable<Result<ApiResponse>> sendOnce(http::Request request);

  async::Executor executor_;
  KubeClientConfig config_;
  std::shared_ptr<net::ssl::context> tls_;
  std::chrono::milliseconds timeout_;
  TokenSource token_;
  std::vector<std::unique_ptr<http::Connection>> idle_;
};

// One watch stream: newline-delimited JSON (one event per line), read as it arrives.
class KubeWatch {
 public:
  KubeWatch(std::unique_ptr<http::Connection> conn, std::string endpoint);
  // The next complete line (without the newline); nullopt when the server ended the stream
  // normally (timeoutSeconds elapsed). Errc::Timeout after `idle` without a byte; a cut
  // connection is Errc::Unavailable. A partial line at a cut is dropped.
  async::Awaitable<Result<std::optional<std::string>>> nextLine(std::chrono::milliseconds idle);
  // True when a complete line is already buffered (nextLine() will not wait).
  bool hasPending() const noexcept { return pending_.find('\n') != std::string::npos; }

 private:
  std::unique_ptr<http::Connection> conn_;
  std::string endpoint_;
  std::string pending_{};
  bool ended_ = false;
};

}  // namespace flannel::store::kube
