#include "store/etcd/etcd_kv.h"

#include <fmt/format.h>
#include <charconv>
#include <nlohmann/json.hpp>

#include "core/base64.h"
#include "core/log.h"
#include "core/strings.h"

namespace flannel::store::etcd {

namespace {

using json = nlohmann::json;

// int64 fields arrive as JSON strings (gateway) or numbers; absent = 0.
Result<int64_t> int64Field(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) {
    return int64_t{0};
  }
  if (it->is_number_integer()) {
    return it->get<int64_t>();
  }
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && ptr == s.data() + s.size()) {
      return v;
    }
  }
  return invalidInput(fmt::format("field {} is not an integer", name));
}

Result<std::string> bytesField(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) {
    return std::string();
  }
  if (!it->is_string()) {
    return invalidInput(fmt::format("field {} is not a base64 string", name));
  }
  auto r = base64Decode(it->get<std::string>());
  if (!r) {
    return r.error().context(fmt::format("field {}", name));
  }
  return r;
}

Result<KeyValue> parseKv(const json& j) {
  if (!j.is_object()) {
    return invalidInput("key-value entry is not an object");
  }
  KeyValue kv;
  auto key = bytesField(j, "key");
  if (!key) {
    return key.error();
  }
  auto value = bytesField(j, "value");
  if (!value) {
    return value.error();
  }
  kv.key = std::move(*key);
  kv.value = std::move(*value);
  for (auto [name, dest] : {std::pair{"create_revision", &kv.create_revision},
                            std::pair{"mod_revision", &kv.mod_revision},
                            std::pair{"version", &kv.version}, std::pair{"lease", &kv.lease}}) {
    auto v = int64Field(j, name);
    if (!v) {
      return v.error();
    }
    *dest = *v;
  }
  return kv;
}

Result<json> parseBody(const std::string& body, std::string_view what) {
  try {
    return Result<json>(boost::system::in_place_value, json::parse(body));
  } catch (const std::exception& e) {
    return makeError(Errc::Unavailable,
                     fmt::format("{}: response is not JSON: {}", what, e.what()));
  }
}

Result<int64_t> headerRevision(const json& j) {
  auto h = j.find("header");
  if (h == j.end() || !h->is_object()) {
    return int64_t{0};
  }
  return int64Field(*h, "revision");
}

// gRPC status codes used by etcd's gateway errors.
constexpr int kGrpcInvalidArgument = 3;
constexpr int kGrpcDeadlineExceeded = 4;
constexpr int kGrpcNotFound = 5;
constexpr int kGrpcPermissionDenied = 7;
constexpr int kGrpcFailedPrecondition = 9;
constexpr int kGrpcOutOfRange = 11;
constexpr int kGrpcUnavailable = 14;
constexpr int kGrpcUnauthenticated = 16;

// Turns an HTTP answer into the body or an error. Kept out of the coroutines on purpose: GCC 12
// double-destroys locals in coroutines that co_return from several switch cases.
Result<std::string> interpretAnswer(const std::string& endpoint, const std::string& path,
                                    http::Response res, bool* failover) {
  if (res.status == 200) {
    return std::move(res.body);
  }
  // An error answer: {"error": "...", "message": "...", "code": N}.
  int code = 0;
  std::string message;
  try {
    auto j = json::parse(res.body);
    code = j.value("code", 0);
    message = j.value("message", j.value("error", std::string()));
  } catch (const std::exception&) {
    message = res.body.substr(0, 200);
  }
  auto text = fmt::format("etcd at {} answered HTTP {} to {}: {}", endpoint, res.status, path,
                          message.empty() ? std::string("(no message)") : message);
  switch (code) {
    case kGrpcUnavailable:
      *failover = true;
      return makeError(Errc::Unavailable, text);
    case kGrpcDeadlineExceeded:
      *failover = true;
      return makeError(Errc::Timeout, text);
    case kGrpcUnauthenticated:
    case kGrpcPermissionDenied:
      return makeError(Errc::InvalidInput, text, code);
    case kGrpcNotFound:
      return makeError(Errc::NotFound, text, code);
    case kGrpcFailedPrecondition:
    case kGrpcOutOfRange:
      return makeError(Errc::Conflict, text, code);
    case kGrpcInvalidArgument:
      return makeError(Errc::InvalidInput, text, code);
    default:
      if (res.status >= 500) {
        *failover = true;
        return makeError(Errc::Unavailable, text, code);
      }
      return makeError(Errc::InvalidInput, text, code);
  }
}

}  // namespace

std::string prefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(end.back());
    if (c < 0xff) {
      ++c;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // all keys
}

struct EtcdKv::Endpoint {
  http::Url url;
  std::vector<std::unique_ptr<http::Connection>> idle;  // kept-alive connections
};

EtcdKv::EtcdKv(async::Executor executor, EtcdOptions options)
    : executor_(std::move(executor)), options_(std::move(options)) {}

EtcdKv::~EtcdKv() = default;

Result<std::unique_ptr<EtcdKv>> EtcdKv::create(async::Executor executor,
                                               EtcdOptions options) noexcept {
  try {
    if (options.endpoints.empty()) {
      return invalidInput("etcd: no endpoints given (-etcd-endpoints)");
    }
    std::unique_ptr<EtcdKv> kv(new EtcdKv(std::move(executor), options));
    bool any_tls = false;
    for (const auto& text : options.endpoints) {
      auto url = http::parseUrl(text);
      if (!url) {
        return url.error().context("etcd endpoint (-etcd-endpoints)");
      }
      any_tls = any_tls || url->tls;
      auto ep = std::make_unique<Endpoint>();
      ep->url = std::move(*url);
      kv->endpoints_.push_back(std::move(ep));
    }
    if (any_tls) {
      auto ctx = http::makeTlsContext(options.tls);
      if (!ctx) {
        return ctx.error().context("etcd TLS (-etcd-cafile/-etcd-certfile/-etcd-keyfile)");
      }
      kv->tls_ = std::move(*ctx);
    }
    return kv;
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, fmt::format("etcd client: {}", e.what()));
  }
}

const std::string& EtcdKv::currentEndpoint() const {
  return endpoints_[current_]->url.text;
}

async::Awaitable<Result<void>> EtcdKv::authenticate(Endpoint& ep) {
  json body = {{"name", options_.username}, {"password", options_.password}};
  token_.clear();
  bool failover = false;
  auto res = co_await callOne(ep, "/v3/auth/authenticate", body.dump(), &failover);
  if (!res) {
    if (!failover) {
      co_return makeError(
          Errc::InvalidInput,
          fmt::format("etcd at {} refused authentication for user {}: {}", ep.url.text,
                      quoteForMessage(options_.username), res.error().message));
    }
    co_return res.error();
  }
  auto j = parseBody(*res, "etcd authenticate");
  if (!j) {
    co_return j.error();
  }
  auto token = j->find("token");
  if (token == j->end() || !token->is_string() || token->get<std::string>().empty()) {
    co_return makeError(
        Errc::Unavailable,
        fmt::format("etcd at {}: authenticate answered without a token", ep.url.text));
  }
  token_ = token->get<std::string>();
  co_return Result<void>{};
}

async::Awaitable<Result<std::string>> EtcdKv::callOne(Endpoint& ep, const std::string& path,
                                                      const std::string& body, bool* failover) {
  *failover = false;
  std::unique_ptr<http::Connection> conn;
  if (!ep.idle.empty()) {
    conn = std::move(ep.idle.back());
    ep.idle.pop_back();
  } else {
    conn = std::make_unique<http::Connection>(executor_, ep.url, tls_);
  }
  http::Request req;
  req.target = ep.url.base_path + path;
  req.body = body;
  if (!token_.empty() && path != "/v3/auth/authenticate") {
    req.headers.emplace_back("Authorization", token_);
  }
  auto res = co_await conn->request(std::move(req), options_.request_timeout);
  if (!res) {
    *failover = true;
    co_return res.error();
  }
  if (conn->connected() && ep.idle.size() < 4) {
    ep.idle.push_back(std::move(conn));
  }
  co_return interpretAnswer(ep.url.text, path, std::move(*res), failover);
}

async::Awaitable<Result<std::string>> EtcdKv::call(std::string path, std::string body) {
  std::string failures;
  for (size_t tried = 0; tried < endpoints_.size(); ++tried) {
    Endpoint& ep = *endpoints_[current_];
    bool failover = false;
    if (!options_.username.empty() && token_.empty()) {
      auto auth = co_await authenticate(ep);
      if (!auth) {
        if (auth.error().code == Errc::InvalidInput) {
          co_return auth.error();  // wrong credentials: another endpoint will not help
        }
        failures += fmt::format("{}{}", failures.empty() ? "" : "; ", auth.error().message);
        current_ = (current_ + 1) % endpoints_.size();
        continue;
      }
    }
    auto res = co_await callOne(ep, path, body, &failover);
    if (!res && !options_.username.empty() && res.error().sys_errno == kGrpcUnauthenticated &&
        res.error().message.find("invalid auth token") != std::string::npos) {
      // The token expired (etcd's simple tokens live 5 minutes): fetch a new one, once.
      auto auth = co_await authenticate(ep);
      if (!auth) {
        co_return auth.error();
      }
      res = co_await callOne(ep, path, body, &failover);
    }
    if (res || !failover) {
      co_return res;
    }
    failures += fmt::format("{}{}", failures.empty() ? "" : "; ", res.error().message);
    if (endpoints_.size() > 1) {
      logger("store.etcd")
          ->warn("etcd endpoint {} failed ({}); trying the next endpoint", ep.url.text,
                 res.error().message);
    }
    current_ = (current_ + 1) % endpoints_.size();
    if (tried + 1 == endpoints_.size()) {
      Error e = res.error();
      e.message = endpoints_.size() == 1 ? e.message
                                         : fmt::format("all etcd endpoints failed: {}", failures);
      co_return e;
    }
  }
  co_return makeError(Errc::Unavailable, fmt::format("all etcd endpoints failed: {}", failures));
}

async::Awaitable<Result<RangeResult>> EtcdKv::get(std::string key) {
  co_return co_await range(std::move(key), std::string(), 0);
}

async::Awaitable<Result<RangeResult>> EtcdKv::range(std::string key, std::string range_end,
                                                    int64_t limit) {
  json body = {{"key", base64Encode(key)}};
  if (!range_end.empty()) {
    body["range_end"] = base64Encode(range_end);
  }
  if (limit > 0) {
    body["limit"] = std::to_string(limit);
  }
  auto res = co_await call("/v3/kv/range", body.dump());
  if (!res) {
    co_return res.error();
  }
  auto j = parseBody(*res, "etcd range");
  if (!j) {
    co_return j.error();
  }
  RangeResult out;
  auto rev = headerRevision(*j);
  if (!rev) {
    co_return rev.error().context("etcd range response");
  }
  out.revision = *rev;
  out.more = j->value("more", false);
  if (auto kvs = j->find("kvs"); kvs != j->end() && kvs->is_array()) {
    out.kvs.reserve(kvs->size());
    for (const auto& item : *kvs) {
      auto kv = parseKv(item);
      if (!kv) {
        co_return kv.error().context("etcd range response");
      }
      out.kvs.push_back(std::move(*kv));
    }
  }
  co_return out;
}

async::Awaitable<Result<int64_t>> EtcdKv::put(std::string key, std::string value, int64_t lease) {
  json body = {{"key", base64Encode(key)}, {"value", base64Encode(value)}};
  if (lease != 0) {
    body["lease"] = std::to_string(lease);
  }
  auto res = co_await call("/v3/kv/put", body.dump());
  if (!res) {
    co_return res.error();
  }
  auto j = parseBody(*res, "etcd put");
  if (!j) {
    co_return j.error();
  }
  co_return headerRevision(*j);
}

async::Awaitable<Result<bool>> EtcdKv::createIfAbsent(std::string key, std::string value,
                                                      int64_t lease, KeyValue* existing) {
  json put = {{"key", base64Encode(key)}, {"value", base64Encode(value)}};
  if (lease != 0) {
    put["lease"] = std::to_string(lease);
  }
  json body = {{"compare", json::array({{{"key", base64Encode(key)},
                                         {"target", "VERSION"},
                                         {"result", "EQUAL"},
                                         {"version", "0"}}})},
               {"success", json::array({{{"request_put", put}}})},
               {"failure", json::array({{{"request_range", {{"key", base64Encode(key)}}}}})}};
  auto res = co_await call("/v3/kv/txn", body.dump());
  if (!res) {
    co_return res.error();
  }
  auto j = parseBody(*res, "etcd txn");
  if (!j) {
    co_return j.error();
  }
  bool succeeded = j->value("succeeded", false);
  if (!succeeded && existing != nullptr) {
    *existing = KeyValue{};
    try {
      const auto& range = j->at("responses").at(0).at("response_range");
      if (auto kvs = range.find("kvs"); kvs != range.end() && !kvs->empty()) {
        auto kv = parseKv(kvs->at(0));
        if (kv) {
          *existing = std::move(*kv);
        }
      }
    } catch (const std::exception&) {
      // The key vanished between compare and read; leave `existing` empty.
    }
  }
  co_return succeeded;
}

async::Awaitable<Result<int64_t>> EtcdKv::deleteKey(std::string key) {
  json body = {{"key", base64Encode(key)}};
  auto res = co_await call("/v3/kv/deleterange", body.dump());
  if (!res) {
    co_return res.error();
  }
  auto j = parseBody(*res, "etcd delete");
  if (!j) {
    co_return j.error();
  }
  co_return int64Field(*j, "deleted");
}

async::Awaitable<Result<LeaseGrant>> EtcdKv::grantLease(std::chrono::seconds ttl) {
  json body = {{"TTL", std::to_string(ttl.count())}};
  auto res = co_await call("/v3/lease/grant", body.dump());
  if (!res) {
    co_return res.error();
  }
  auto j = parseBody(*res, "etcd lease grant");
  if (!j) {
    co_return j.error();
  }
  auto id = int64Field(*j, "ID");
  auto granted = int64Field(*j, "TTL");
  if (!id || !granted || *id == 0) {
    co_return makeError(Errc::Unavailable, "etcd lease grant: answer without a lease ID");
  }
  co_return LeaseGrant{*id, *granted};
}

async::Awaitable<Result<int64_t>> EtcdKv::keepAliveOnce(int64_t lease) {
  // The gateway's keepalive is a stream endpoint; one request yields one answer.
  json body = {{"ID", std::to_string(lease)}};
  auto res = co_await call("/v3/lease/keepalive", body.dump());
  if (!res) {
    co_return res.error();
  }
  auto nl = res->find('\n');
  auto j = parseBody(res->substr(0, nl), "etcd lease keepalive");
  if (!j) {
    co_return j.error();
  }
  const json& result = j->contains("result") ? (*j)["result"] : *j;
  co_return int64Field(result, "TTL");
}

async::Awaitable<Result<void>> EtcdKv::revokeLease(int64_t lease) {
  json body = {{"ID", std::to_string(lease)}};
  auto res = co_await call("/v3/lease/revoke", body.dump());
  if (!res) {
    if (res.error().code == Errc::NotFound) {
      co_return Result<void>{};  // already gone
    }
    co_return res.error();
  }
  co_return Result<void>{};
}

async::Awaitable<Result<int64_t>> EtcdKv::leaseTimeToLive(int64_t lease) {
  json body = {{"ID", std::to_string(lease)}};
  auto res = co_await call("/v3/lease/timetolive", body.dump());
  if (!res) {
    co_return res.error();
  }
  auto j = parseBody(*res, "etcd lease timetolive");
  if (!j) {
    co_return j.error();
  }
  co_return int64Field(*j, "TTL");
}

async::Awaitable<Result<void>> EtcdKv::compact(int64_t revision) {
  json body = {{"revision", std::to_string(revision)}, {"physical", true}};
  auto res = co_await call("/v3/kv/compaction", body.dump());
  if (!res) {
    co_return res.error();
  }
  co_return Result<void>{};
}

async::Awaitable<Result<std::unique_ptr<EtcdWatch>>> EtcdKv::watch(std::string key,
                                                                   std::string range_end,
                                                                   int64_t start_revision) {
  json create = {{"key", base64Encode(key)}, {"progress_notify", true}};
  if (!range_end.empty()) {
    create["range_end"] = base64Encode(range_end);
  }
  if (start_revision > 0) {
    create["start_revision"] = std::to_string(start_revision);
  }
  json body = {{"create_request", create}};
  std::string failures;
  for (size_t tried = 0; tried < endpoints_.size(); ++tried) {
    Endpoint& ep = *endpoints_[current_];
    if (!options_.username.empty() && token_.empty()) {
      auto auth = co_await authenticate(ep);
      if (!auth) {
        if (auth.error().code == Errc::InvalidInput) {
          co_return auth.error();
        }
        failures += fmt::format("{}{}", failures.empty() ? "" : "; ", auth.error().message);
        current_ = (current_ + 1) % endpoints_.size();
        continue;
      }
    }
    auto conn = std::make_unique<http::Connection>(executor_, ep.url, tls_);
    http::Request req;
    req.target = ep.url.base_path + "/v3/watch";
    req.body = body.dump();
    // Ask etcd to cancel the watch when this member loses its leader (gRPC metadata
    // "hasleader", forwarded by the gateway), so a partitioned member cannot stall us.
    req.headers.emplace_back("Grpc-Metadata-hasleader", "true");
    if (!token_.empty()) {
      req.headers.emplace_back("Authorization", token_);
    }
    auto res = co_await conn->openStream(std::move(req), options_.request_timeout);
    if (res && res->status == 200) {
      co_return std::make_unique<EtcdWatch>(std::move(conn), ep.url.text);
    }
    std::string why = res ? fmt::format("HTTP {}", res->status) : res.error().message;
    failures += fmt::format("{}{}", failures.empty() ? "" : "; ", why);
    if (res && res->status == 401) {
      token_.clear();
    }
    current_ = (current_ + 1) % endpoints_.size();
  }
  co_return makeError(Errc::Unavailable,
                      fmt::format("opening etcd watch on {}: {}", quoteForMessage(key), failures));
}

EtcdWatch::EtcdWatch(std::unique_ptr<http::Connection> conn, std::string endpoint)
    : conn_(std::move(conn)), endpoint_(std::move(endpoint)) {}

EtcdWatch::~EtcdWatch() = default;

async::Awaitable<Result<WatchBatch>> EtcdWatch::next(std::chrono::milliseconds idle_timeout) {
  for (;;) {
    // The gateway writes one JSON message per line.
    if (auto nl = pending_.find('\n'); nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      if (trimSpace(line).empty()) {
        continue;
      }
      auto j = parseBody(line, fmt::format("etcd watch on {}", endpoint_));
      if (!j) {
        co_return j.error();
      }
      if (auto err = j->find("error"); err != j->end()) {
        co_return makeError(Errc::Unavailable,
                            fmt::format("etcd watch on {} failed: {}", endpoint_, err->dump()));
      }
      const json& r = j->contains("result") ? (*j)["result"] : *j;
      WatchBatch batch;
      auto rev = headerRevision(r);
      auto compact = int64Field(r, "compact_revision");
      if (!rev || !compact) {
        co_return makeError(Errc::Unavailable,
                            fmt::format("etcd watch on {}: malformed response", endpoint_));
      }
      batch.revision = *rev;
      batch.compact_revision = *compact;
      batch.canceled = r.value("canceled", false);
      batch.cancel_reason = r.value("cancel_reason", std::string());
      if (auto events = r.find("events"); events != r.end() && events->is_array()) {
        for (const auto& ev : *events) {
          WatchEvent out;
          out.type =
              ev.value("type", std::string("PUT")) == "DELETE" ? EventType::Delete : EventType::Put;
          auto kv = ev.contains("kv") ? parseKv(ev["kv"]) : Result<KeyValue>(KeyValue{});
          if (!kv) {
            co_return kv.error().context(fmt::format("etcd watch on {}", endpoint_));
          }
          out.kv = std::move(*kv);
          batch.events.push_back(std::move(out));
        }
      }
      co_return batch;
    }
    auto more = co_await conn_->readStream(idle_timeout);
    if (!more) {
      co_return more.error();
    }
    if (more->empty()) {
      co_return makeError(Errc::Unavailable,
                          fmt::format("etcd watch on {}: the server ended the stream", endpoint_));
    }
    pending_ += *more;
    if (pending_.size() > http::kMaxBodyBytes) {
      co_return makeError(Errc::Unavailable,
                          fmt::format("etcd watch on {}: message too large", endpoint_));
    }
  }
}

}  // namespace flannel::store::etcd
