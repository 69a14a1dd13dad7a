// DOC: EtcdKv, the raw etcd v3 client flannel needs (KV range/put/txn/delete, leases, watch,
// auth), spoken as etcd's documented JSON API (the gRPC gateway under /v3/) over Beast.
//
// Wire facts (etcd 3.4 gateway): bytes fields (key, value, range_end) are base64; int64 fields
// are JSON strings in responses; false/zero/empty fields are omitted; errors are HTTP 4xx/5xx
// with {"error": "...", "code": <gRPC code>}.
//
// Endpoints: requests go to the current endpoint; when it is unreachable, times out or answers
// "no leader"/"unavailable", the next endpoint is tried, each at most once per call. Retrying
// later (with backoff) is the caller's business. Every error names the endpoint(s) that failed.
//
// Auth: with a user name, a token is fetched from /v3/auth/authenticate and sent as the
// Authorization header; an "invalid auth token" answer (expired token) re-authenticates once.
//
// Thread safety: control thread only; calls may overlap (one connection per concurrent call is
// borrowed from a small pool per endpoint).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "async/asio.h"
#include "core/result.h"
#include "store/http/client.h"

namespace flannel::store::etcd {

struct EtcdOptions {
  std::vector<std::string> endpoints{};  // URLs, e.g. "http://127.0.0.1:2379"
  // TLS is used for https endpoints; client certificate only when both files are given.
  http::TlsFiles tls{};
  std::string username{};  // empty = no authentication
  std::string password{};
  std::chrono::milliseconds request_timeout{5000};
};

struct KeyValue {
  std::string key{};
  std::string value{};
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;  // 0 = no lease (a reservation, for flannel)

  friend bool operator==(const KeyValue&, const KeyValue&) = default;
};

struct RangeResult {
  std::vector<KeyValue> kvs{};
  int64_t revision = 0;  // store revision at the time of the read
  bool more = false;
};

struct LeaseGrant {
  int64_t id = 0;
  int64_t ttl = 0;  // seconds
};

enum class EventType { Put, Delete };

struct WatchEvent {
  EventType type = EventType::Put;
  KeyValue kv;  // for Delete: key and mod_revision only
};

struct WatchBatch {
  int64_t revision = 0;  // header revision of this response
  std::vector<WatchEvent> events{};
  int64_t compact_revision = 0;  // non-zero: the start revision was compacted; watch canceled
  bool canceled = false;
  std::string cancel_reason{};
};

// The exclusive end of the range of all keys starting with `prefix` (etcd's prefix rule).
std::string prefixRangeEnd(const std::string& prefix);

class EtcdWatch;

class EtcdKv {
 public:
  // Validates the endpoints and loads TLS files; no network traffic yet.
  static Result<std::unique_ptr<EtcdKv>> create(async::Executor executor,
                                                EtcdOptions options) noexcept;
  ~EtcdKv();

  async::Awaitable<Result<RangeResult>> get(std::string key);
  // Keys in [key, range_end); range_end "" = just `key`. limit 0 = no limit.
  async::Awaitable<Result<RangeResult>> range(std::string key, std::string range_end,
                                              int64_t limit = 0);
  // Returns the new store revision.
  async::Awaitable<Result<int64_t>> put(std::string key, std::string value, int64_t lease = 0);
  // Puts only if the key does not exist (txn: version(key) == 0). true = created. When false,
  // `existing` (if given) receives the current value.
  async::Awaitable<Result<bool>> createIfAbsent(std::string key, std::string value, int64_t lease,
                                                KeyValue* existing = nullptr);
  // Deletes `key`; returns the number of keys deleted.
  async::Awaitable<Result<int64_t>> deleteKey(std::string key);
  async::Awaitable<Result<LeaseGrant>> grantLease(std::chrono::seconds ttl);
  // One keep-alive round trip; returns the remaining TTL (0 = the lease no longer exists).
  async::Awaitable<Result<int64_t>> keepAliveOnce(int64_t lease);
  async::Awaitable<Result<void>> revokeLease(int64_t lease);
  // Remaining TTL in seconds, -1 when the lease does not exist (expired or revoked).
  async::Awaitable<Result<int64_t>> leaseTimeToLive(int64_t lease);
  async::Awaitable<Result<void>> compact(int64_t revision);

  // Opens a watch on [key, range_end) from `start_revision` (0 = now). The first batch may be
  // empty (the "created" answer).
  async::Awaitable<Result<std::unique_ptr<EtcdWatch>>> watch(std::string key, std::string range_end,
                                                             int64_t start_revision);

  const std::string& currentEndpoint() const;
  const EtcdOptions& options() const noexcept { return options_; }

 private:
  friend class EtcdWatch;
  struct Endpoint;
  EtcdKv(async::Executor executor, EtcdOptions options);
  // POSTs `body` (JSON) to `path` with failover and auth; returns the parsed JSON text body.
  async::Awaitable<Result<std::string>> call(std::string path, std::string body);
  async::Awaitable<Result<void>> authenticate(Endpoint& ep);
  async::Awaitable<Result<std::string>> callOne(Endpoint& ep, const std::string& path,
                                                const std::string& body, bool* failover);

  async::Executor executor_;
  EtcdOptions options_;
  std::shared_ptr<net::ssl::context> tls_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  size_t current_ = 0;
  std::string token_{};
};

// One watch stream. next() returns the next response; errors (connection lost, idle timeout)
// end the stream: open a new watch from the last revision + 1.
class EtcdWatch {
 public:
  EtcdWatch(std::unique_ptr<http::Connection> conn, std::string endpoint);
  ~EtcdWatch();
  async::Awaitable<Result<WatchBatch>> next(std::chrono::milliseconds idle_timeout);
  const std::string& endpoint() const noexcept { return endpoint_; }

 private:
  std::unique_ptr<http::Connection> conn_;
  std::string endpoint_{};
  std::string pending_{};  // bytes received but not yet a complete JSON message
};

}  // namespace flannel::store::etcd
