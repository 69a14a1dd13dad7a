// DOC: HealthServer, flanneld's HTTP health endpoints (SPEC.md §1.8) and /metrics.
//
// Routes (any method; HEAD gets the headers only):
//   /healthz          200 "flanneld is running"         liveness: the process and its loop work
//   /healthz?verbose  200, the same line, then "ready: true|false" and the detail text
//                     (degraded states such as an unreachable store or failing reconciles)
//   /readyz           503 "flanneld is not ready yet" until setReady(true), then
//                     200 "flanneld is ready"
//   /metrics          200, the Metrics registry (text format 0.0.4)
//   anything else     404 "404 page not found" (Go's http.NotFound, as flannel answers)
// Bodies are text/plain; charset=utf-8 (Go's sniffed type), except /metrics.
//
// Degraded control-plane states never make /healthz fail: a failing liveness probe restarts the
// pod and with it would disturb the data plane (DESIGN.md rule 5). They show in the detail and
// in metrics instead.
//
// Lifecycle:
//   listen() ── bound ── run() ── accepting ──(cancellation)──▶ acceptor closed, connections
//                                                              cancelled, run() returns
// listen() binds and listens at once, so a port in use is a Result error naming ip:port, not a
// crash (flannel panics). run() is the accept loop: spawn it in a TaskGroup; emit() (total or
// terminal) stops it. Each connection is a coroutine of its own (keep-alive, one request at a
// time, requests bounded by kMaxHeaderBytes/kMaxBodyBytes, idle connections closed after
// idle_timeout, at most max_connections at once; beyond that new ones are closed at once).
//
// Thread safety: listen(), run() and the destructor on the control-plane thread (the executor's);
// setReady()/setDetail() from any thread. The server must outlive run().
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "async/asio.h"
#include "async/task_group.h"
#include "core/result.h"
#include "daemon/metrics.h"

namespace flannel::daemon {

struct HealthOptions {
  std::string ip = "0.0.0.0";  // -healthz-ip
  uint16_t port = 0;           // -healthz-port; 0 = any free port (tests read it back)
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(30);
  size_t max_connections = 64;
};

inline constexpr size_t kMaxHeaderBytes = 8 * 1024;
inline constexpr size_t kMaxBodyBytes = 8 * 1024;

inline constexpr std::string_view kHealthzBody = "flanneld is running";
inline constexpr std::string_view kReadyBody = "flanneld is ready";
inline constexpr std::string_view kNotReadyBody = "flanneld is not ready yet";
inline constexpr std::string_view kNotFoundBody = "404 page not found\n";
inline constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";

// One answer, before HTTP framing.
struct HealthReply {
  unsigned status = 200;
  std::string content_type{};
  std::string body{};
  friend bool operator==(const HealthReply&, const HealthReply&) = default;
};

// What a request for `target` (path and query) gets; pure. `metrics` may be null (then
// /metrics is a 404).
HealthReply healthReply(std::string_view target, bool ready, std::string_view detail,
                        const Metrics* metrics);

class HealthServer {
 public:
  // Binds options.ip:options.port and listens. Errors: InvalidInput for an ip that is not an
  // address; Conflict (EADDRINUSE) or Unavailable otherwise, naming ip:port and the reason.
  // `metrics` must outlive the server.
  static Result<std::unique_ptr<HealthServer>> listen(async::Executor executor,
                                                      HealthOptions options,
                                                      const Metrics& metrics);

  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;
  ~HealthServer();

  // The bound address; the real port when options.port was 0.
  net::ip::tcp::endpoint endpoint() const { return endpoint_; }
  uint16_t port() const { return endpoint_.port(); }

  // Serves until cancelled (a TaskGroup emit of any type), then closes the listening socket,
  // cancels open connections, waits for them and returns. Call once.
  async::Awaitable<void> run();

  void setReady(bool ready) noexcept { ready_.store(ready, std::memory_order_relaxed); }
  bool ready() const noexcept { return ready_.load(std::memory_order_relaxed); }
  // Free text for /healthz?verbose (one item per line); "" for none.
  void setDetail(std::string detail);
  std::string detail() const;

 private:
  HealthServer(async::Executor executor, net::ip::tcp::acceptor acceptor, HealthOptions options,
               const Metrics& metrics);
  async::Awaitable<void> session(net::ip::tcp::socket socket);

  async::Executor executor_;
  net::ip::tcp::acceptor acceptor_;
  net::ip::tcp::endpoint endpoint_{};
  HealthOptions options_{};
  const Metrics& metrics_;
  std::atomic<bool> ready_{false};
  mutable std::mutex detail_mutex_{};
  std::string detail_{};
  async::TaskGroup sessions_;
  // Open connections, so that shutdown can cancel their pending reads.
  std::list<boost::beast::tcp_stream*> streams_{};
};

// "127.0.0.1:8081", "[::1]:8081".
std::string endpointText(const net::ip::tcp::endpoint& endpoint);

}  // namespace flannel::daemon
