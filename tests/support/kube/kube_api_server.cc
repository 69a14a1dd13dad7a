#include "support/kube/kube_api_server.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fmt/format.h>
#include <algorithm>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <list>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "async/asio.h"
#include "core/base64.h"
#include "core/exec.h"

namespace flannel::test {

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using Json = nlohmann::ordered_json;
using async::use_nothrow;
using Clock = std::chrono::steady_clock;

std::string reasonFor(unsigned status) {
  switch (status) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 409:
      return "Conflict";
    case 410:
      return "Expired";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "Invalid";
    case 429:
      return "TooManyRequests";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "Timeout";
    default:
      return status >= 500 ? "InternalError" : "BadRequest";
  }
}

Json statusObject(unsigned code, const std::string& message, Json details = nullptr) {
  Json s = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", Json::object()},
            {"status", "Failure"}, {"message", message}, {"reason", reasonFor(code)}};
  if (!details.is_null()) {
    s["details"] = std::move(details);
  }
  s["code"] = code;
  return s;
}

std::string nowRfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

std::string percentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hexValue(s[i + 1]) >= 0 && hexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(hexValue(s[i + 1]) * 16 + hexValue(s[i + 2]));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::map<std::string, std::string> parseQuery(std::string_view q) {
  std::map<std::string, std::string> out;
  while (!q.empty()) {
    auto amp = q.find('&');
    auto part = q.substr(0, amp);
    auto eq = part.find('=');
    if (eq == std::string_view::npos) {
      out[percentDecode(part)] = "";
    } else {
      out[percentDecode(part.substr(0, eq))] = percentDecode(part.substr(eq + 1));
    }
    if (amp == std::string_view::npos) {
      break;
    }
    q.remove_prefix(amp + 1);
  }
  return out;
}

std::vector<std::string> splitPath(std::string_view path) {
  std::vector<std::string> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    auto slash = path.find('/');
    out.push_back(percentDecode(path.substr(0, slash)));
    if (slash == std::string_view::npos) {
      break;
    }
    path.remove_prefix(slash);
  }
  return out;
}

std::optional<int64_t> parseInt(const std::string& s) {
  if (s.empty()) {
    return std::nullopt;
  }
  try {
    size_t used = 0;
    long long v = std::stoll(s, &used);
    if (used != s.size()) {
      return std::nullopt;
    }
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// Lists of objects that all carry "type" are merged by it under strategic merge
// (status.conditions, status.addresses; patchMergeKey "type" in the API types).
bool isTypedList(const Json& v) {
  return v.is_array() && !v.empty() && std::all_of(v.begin(), v.end(), [](const Json& item) {
           return item.is_object() && item.contains("type");
         });
}

void applyMergePatch(Json& target, const Json& patch, bool strategic) {
  if (!patch.is_object()) {
    target = patch;
    return;
  }
  if (!target.is_object()) {
    target = Json::object();
  }
  for (const auto& [key, value] : patch.items()) {
    if (value.is_null()) {
      target.erase(key);
    } else if (value.is_object()) {
      applyMergePatch(target[key], value, strategic);
    } else if (strategic && isTypedList(value) && target.contains(key) && target[key].is_array()) {
      Json& list = target[key];
      for (const auto& item : value) {
        auto it = std::find_if(list.begin(), list.end(), [&](const Json& existing) {
          return existing.is_object() && existing.value("type", Json()) == item["type"];
        });
        if (it == list.end()) {
          list.push_back(item);
        } else {
          applyMergePatch(*it, item, strategic);
        }
      }
    } else {
      target[key] = value;
    }
  }
}

struct Watcher {
  explicit Watcher(const net::any_io_executor& ex) : wake(ex) {}
  std::deque<std::string> queue;
  net::steady_timer wake;
  bool bookmarks = false;
  bool end_after_queue = false;  // the 410 ERROR case
  bool cut = false;
  bool mid_event = false;
  bool end = false;
};

struct Reply {
  unsigned status = 200;
  std::string body{};
};

struct Outcome {
  std::optional<Reply> reply{};
  std::shared_ptr<Watcher> watcher{};
  Clock::time_point deadline{};
};

Outcome reply(unsigned status, std::string body) {
  return Outcome{.reply = Reply{.status = status, .body = std::move(body)},
                 .watcher = nullptr,
                 .deadline = {}};
}

Outcome fail(unsigned status, const std::string& message, Json details = nullptr) {
  return reply(status, statusObject(status, message, std::move(details)).dump());
}

std::string eventLine(std::string_view type, std::string_view object) {
  std::string line = R"({"type":")";
  line += type;
  line += R"(","object":)";
  line += object;
  line += "}\n";
  return line;
}

std::string withKind(const std::string& item, std::string_view kind) {
  // Items of a list carry no kind/apiVersion; single objects and watch events do.
  return fmt::format(R"({{"kind":"{}","apiVersion":"v1",{})", kind, item.substr(1));
}

}  // namespace

struct KubeApiServer::Impl {
  struct NodeRec {
    Json obj;
    std::shared_ptr<const std::string> item;  // JSON without kind/apiVersion
  };
  struct Change {
    int64_t rv = 0;
    std::string line;
  };
  struct Fault {
    std::string method;
    std::string prefix;
    unsigned status = 500;
    int count = 0;
  };
  using Snapshot = std::vector<std::pair<std::string, std::shared_ptr<const std::string>>>;

  KubeApiServerOptions options;
  std::unique_ptr<net::io_context> io = std::make_unique<net::io_context>(1);
  std::optional<tcp::acceptor> acceptor;
  std::shared_ptr<net::ssl::context> tls;
  std::thread thread;
  uint16_t port = 0;

  std::map<std::string, NodeRec> nodes;
  std::map<std::pair<std::string, std::string>, Json> pods;
  int64_t rv = 1000;
  int64_t compacted = 0;
  std::deque<Change> history;
  std::map<int64_t, std::shared_ptr<const Snapshot>> snapshots;
  std::map<std::string, std::string> tokens;
  std::set<std::string> forbidden;  // "verb resource"
  std::vector<Fault> faults;
  std::list<std::shared_ptr<Watcher>> watchers;
  std::vector<RecordedRequest> recorded;
  uint64_t uids = 0;

  template <class F>
  auto call(F f) -> decltype(f()) {
    if (std::this_thread::get_id() == thread.get_id()) {
      return f();
    }
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    net::post(*io, [&task] { task(); });
    return result.get();
  }

  // ---- state changes (server thread)

  void record(int64_t at, std::string line) {
    for (auto& w : watchers) {
      w->queue.push_back(line);
      w->wake.cancel();
    }
    history.push_back(Change{.rv = at, .line = std::move(line)});
    while (history.size() > options.history_limit) {
      compacted = history.front().rv;
      history.pop_front();
    }
  }

  void commit(const std::string& name, Json obj, std::string_view type) {
    ++rv;
    obj["metadata"]["resourceVersion"] = std::to_string(rv);
    auto item = std::make_shared<const std::string>(obj.dump());
    auto line = eventLine(type, withKind(*item, "Node"));
    nodes[name] = NodeRec{.obj = std::move(obj), .item = std::move(item)};
    record(rv, std::move(line));
  }

  Json makeNode(const KubeNodeSpec& s) {
    Json meta = {{"name", s.name},
                 {"uid", fmt::format("00000000-0000-4000-8000-{:012x}", ++uids)},
                 {"resourceVersion", ""},
                 {"creationTimestamp", nowRfc3339()}};
    if (!s.labels.empty()) {
      meta["labels"] = s.labels;
    }
    if (!s.annotations.empty()) {
      meta["annotations"] = s.annotations;
    }
    Json spec = Json::object();
    if (!s.pod_cidrs.empty()) {
      spec["podCIDR"] = s.pod_cidrs.front();
      spec["podCIDRs"] = s.pod_cidrs;
    }
    auto now = nowRfc3339();
    Json status = {
        {"conditions", Json::array({Json{{"type", "Ready"},
                                         {"status", "True"},
                                         {"lastHeartbeatTime", now},
                                         {"lastTransitionTime", now},
                                         {"reason", "KubeletReady"},
                                         {"message", "kubelet is posting ready status"}}})}};
    if (!s.internal_ip.empty()) {
      status["addresses"] = Json::array({Json{{"type", "InternalIP"}, {"address", s.internal_ip}}});
    }
    return Json{
        {"metadata", std::move(meta)}, {"spec", std::move(spec)}, {"status", std::move(status)}};
  }

  void putNode(const KubeNodeSpec& spec) {
    auto obj = makeNode(spec);
    auto it = nodes.find(spec.name);
    if (it != nodes.end()) {
      obj["metadata"]["uid"] = it->second.obj["metadata"]["uid"];
      obj["metadata"]["creationTimestamp"] = it->second.obj["metadata"]["creationTimestamp"];
    }
    commit(spec.name, std::move(obj), it == nodes.end() ? "ADDED" : "MODIFIED");
  }

  // Applies `change` to a copy of the node; commits a MODIFIED event if anything changed.
  template <class Change>
  void modify(const std::string& name, Change change) {
    auto it = nodes.find(name);
    if (it == nodes.end()) {
      return;
    }
    Json obj = it->second.obj;
    change(obj);
    normalise(obj);
    if (obj == it->second.obj) {
      return;
    }
    commit(name, std::move(obj), "MODIFIED");
  }

  static void normalise(Json& obj) {
    auto& meta = obj["metadata"];
    if (meta.contains("annotations") &&
        (meta["annotations"].is_null() || meta["annotations"].empty())) {
      meta.erase("annotations");
    }
  }

  void deleteNode(const std::string& name) {
    auto it = nodes.find(name);
    if (it == nodes.end()) {
      return;
    }
    ++rv;
    Json obj = it->second.obj;
    obj["metadata"]["resourceVersion"] = std::to_string(rv);
    auto line = eventLine("DELETED", withKind(obj.dump(), "Node"));
    nodes.erase(it);
    record(rv, std::move(line));
  }

  void compactNow() {
    compacted = rv;
    history.clear();
    snapshots.clear();
  }

  // ---- request handling (server thread)

  std::optional<Outcome> authorize(const std::string& user, const std::string& verb,
                                   const std::string& resource, const std::string& name,
                                   const std::string& ns) {
    if (!forbidden.count(verb + " " + resource)) {
      return std::nullopt;
    }
    std::string base = resource.substr(0, resource.find('/'));
    std::string subject = name.empty() ? base : fmt::format("{} \"{}\"", base, name);
    std::string scope = ns.empty() ? std::string("at the cluster scope")
                                   : fmt::format("in the namespace \"{}\"", ns);
    auto message =
        fmt::format("{} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"\" {}",
                    subject, user, verb, resource, scope);
    Json details = {{"kind", base}};
    if (!name.empty()) {
      details = {{"name", name}, {"kind", base}};
    }
    return fail(403, message, std::move(details));
  }

  std::shared_ptr<const Snapshot> snapshotNow() {
    auto& slot = snapshots[rv];
    if (!slot) {
      auto snap = std::make_shared<Snapshot>();
      snap->reserve(nodes.size());
      for (const auto& [name, rec] : nodes) {
        snap->emplace_back(name, rec.item);
      }
      slot = std::move(snap);
    }
    while (snapshots.size() > options.max_snapshots) {
      snapshots.erase(snapshots.begin());
    }
    return slot;
  }

  Outcome listNodes(const std::map<std::string, std::string>& q) {
    auto get = [&](const char* k) {
      auto it = q.find(k);
      return it == q.end() ? std::string() : it->second;
    };
    int64_t limit = 0;
    if (auto l = get("limit"); !l.empty()) {
      auto v = parseInt(l);
      if (!v || *v < 0) {
        return fail(400, fmt::format("invalid limit {}", l));
      }
      limit = *v;
    }
    std::string rv_param = get("resourceVersion");
    std::string cont = get("continue");
    int64_t list_rv = rv;
    std::shared_ptr<const Snapshot> snap;
    size_t start = 0;
    if (!cont.empty()) {
      auto decoded = base64Decode(cont);
      std::string raw = decoded ? *decoded : std::string();
      Json token = Json::parse(raw, nullptr, false);
      if (raw.empty() || !token.is_object() || !token.contains("rv") ||
          !token["rv"].is_number_integer() || !token.contains("start") ||
          !token["start"].is_string()) {
        return fail(400, "continue key is not valid: not a continue token of this server");
      }
      list_rv = token["rv"].get<int64_t>();
      auto it = snapshots.find(list_rv);
      if (list_rv <= compacted || it == snapshots.end()) {
        return fail(410,
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.");
      }
      snap = it->second;
      auto from = token["start"].get<std::string>();
      start = static_cast<size_t>(std::lower_bound(snap->begin(), snap->end(), from,
                                                   [](const auto& entry, const std::string& key) {
                                                     return entry.first < key;
                                                   }) -
                                  snap->begin());
    } else {
      if (rv_param == "0") {
        limit = 0;  // served from the watch cache: no paging
      } else if (!rv_param.empty()) {
        auto v = parseInt(rv_param);
        if (!v) {
          return fail(400, fmt::format("invalid resourceVersion {}", rv_param));
        }
        if (*v > rv) {
          return fail(504, fmt::format("Too large resource version: {}, current: {}", *v, rv));
        }
      }
      if (limit > 0 && static_cast<int64_t>(nodes.size()) > limit) {
        snap = snapshotNow();
      }
    }
    std::string body = R"({"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":")";
    body += std::to_string(list_rv);
    body += '"';
    std::string items;
    if (snap) {
      size_t end = std::min(snap->size(), start + static_cast<size_t>(limit));
      for (size_t i = start; i < end; ++i) {
        items += items.empty() ? "" : ",";
        items += *(*snap)[i].second;
      }
      if (end < snap->size()) {
        Json token = {{"v", "meta.k8s.io/v1"}, {"rv", list_rv}, {"start", (*snap)[end].first}};
        auto text = token.dump();
        body += R"(,"continue":")" + base64Encode(text) + R"(","remainingItemCount":)" +
                std::to_string(snap->size() - end);
      }
    } else {
      items.reserve(nodes.size() * 600);
      for (const auto& [name, rec] : nodes) {
        items += items.empty() ? "" : ",";
        items += *rec.item;
      }
    }
    body += R"(},"items":[)";
    body += items;
    body += "]}";
    return reply(200, std::move(body));
  }

  Outcome watchNodes(const std::map<std::string, std::string>& q) {
    auto get = [&](const char* k) {
      auto it = q.find(k);
      return it == q.end() ? std::string() : it->second;
    };
    auto w = std::make_shared<Watcher>(io->get_executor());
    w->bookmarks = get("allowWatchBookmarks") == "true" || get("allowWatchBookmarks") == "1";
    int64_t timeout = 1800;
    if (auto t = get("timeoutSeconds"); !t.empty()) {
      auto v = parseInt(t);
      if (!v || *v < 0) {
        return fail(400, fmt::format("invalid timeoutSeconds {}", t));
      }
      timeout = *v;
    }
    std::string rv_param = get("resourceVersion");
    if (rv_param.empty() || rv_param == "0") {
      for (const auto& [name, rec] : nodes) {
        w->queue.push_back(eventLine("ADDED", withKind(*rec.item, "Node")));
      }
    } else {
      auto from = parseInt(rv_param);
      if (!from) {
        return fail(400, fmt::format("invalid resourceVersion {}", rv_param));
      }
      if (*from < compacted) {
        // The API reports this inside the stream (HTTP 200), not as the response status.
        w->queue.push_back(eventLine(
            "ERROR",
            statusObject(410, fmt::format("too old resource version: {} ({})", *from, compacted))
                .dump()));
        w->end_after_queue = true;
      } else {
        auto it = std::upper_bound(history.begin(), history.end(), *from,
                                   [](int64_t v, const Change& c) { return v < c.rv; });
        for (; it != history.end(); ++it) {
          w->queue.push_back(it->line);
        }
      }
    }
    watchers.push_back(w);
    return Outcome{.reply = std::nullopt,
                   .watcher = std::move(w),
                   .deadline = Clock::now() + std::chrono::seconds(timeout)};
  }

  Outcome patchNode(const std::string& name, bool status_subresource,
                    const std::string& content_type, const std::string& body) {
    std::string ct = content_type.substr(0, content_type.find(';'));
    while (!ct.empty() && ct.back() == ' ') {
      ct.pop_back();
    }
    bool strategic = ct == "application/strategic-merge-patch+json";
    if (!strategic && ct != "application/merge-patch+json") {
      return fail(415,
                  fmt::format("the body of the request was in an unknown format - accepted media "
                              "types include: application/json-patch+json, "
                              "application/merge-patch+json, application/apply-patch+yaml, "
                              "application/strategic-merge-patch+json (got {})",
                              content_type));
    }
    auto it = nodes.find(name);
    if (it == nodes.end()) {
      return fail(404, fmt::format("nodes \"{}\" not found", name),
                  Json{{"name", name}, {"kind", "nodes"}});
    }
    Json patch = Json::parse(body, nullptr, false);
    if (patch.is_discarded() || !patch.is_object()) {
      return fail(400, "error decoding patch: the body is not a JSON object");
    }
    const Json& old = it->second.obj;
    if (patch.contains("metadata") && patch["metadata"].is_object() &&
        patch["metadata"].contains("resourceVersion") &&
        patch["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]) {
      return fail(409,
                  fmt::format("Operation cannot be fulfilled on nodes \"{}\": the object has been "
                              "modified; please apply your changes to the latest version and "
                              "try again",
                              name),
                  Json{{"name", name}, {"kind", "nodes"}});
    }
    Json updated = old;
    applyMergePatch(updated, patch, strategic);
    if (!updated.is_object()) {
      return fail(422, "the patched object is not an object");
    }
    for (const char* field : {"name", "uid", "resourceVersion", "creationTimestamp"}) {
      updated["metadata"][field] = old["metadata"][field];
    }
    // The status subresource changes metadata and status, never spec; the main resource
    // changes metadata and spec, never status.
    updated[status_subresource ? "spec" : "status"] = old[status_subresource ? "spec" : "status"];
    normalise(updated);
    if (!(updated == old)) {
      commit(name, std::move(updated), "MODIFIED");
    }
    return reply(200, withKind(*nodes[name].item, "Node"));
  }

  Outcome dispatch(const bhttp::request<bhttp::string_body>& req, const std::string& cert_user,
                   RecordedRequest& rec) {
    // Authentication.
    std::string user;
    auto auth = std::string(req[bhttp::field::authorization]);
    if (!auth.empty()) {
      constexpr std::string_view kBearer = "Bearer ";
      auto it =
          auth.rfind(kBearer, 0) == 0 ? tokens.find(auth.substr(kBearer.size())) : tokens.end();
      if (it == tokens.end()) {
        return fail(401, "Unauthorized");
      }
      user = it->second;
    } else if (!cert_user.empty()) {
      user = cert_user;
    } else if (options.require_auth) {
      return fail(401, "Unauthorized");
    } else {
      user = "system:anonymous";
    }
    rec.user = user;
    // Injected faults.
    for (auto& f : faults) {
      if (f.count > 0 && f.method == rec.method && rec.path.rfind(f.prefix, 0) == 0) {
        --f.count;
        return fail(f.status, fmt::format("injected failure (HTTP {})", f.status));
      }
    }
    auto target = std::string_view(req.target());
    auto qpos = target.find('?');
    auto query =
        parseQuery(qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1));
    auto parts = splitPath(rec.path);
    const bool is_get = req.method() == bhttp::verb::get;
    const bool is_patch = req.method() == bhttp::verb::patch;
    auto not_allowed = [&] {
      return fail(405, fmt::format("the server does not allow this method on the requested "
                                   "resource ({})",
                                   rec.method));
    };
    if (parts.size() >= 3 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "nodes") {
      if (parts.size() == 3) {
        if (!is_get) {
          return not_allowed();
        }
        bool watch = query.count("watch") && (query["watch"] == "true" || query["watch"] == "1");
        if (auto denied = authorize(user, watch ? "watch" : "list", "nodes", "", "")) {
          return *denied;
        }
        return watch ? watchNodes(query) : listNodes(query);
      }
      const std::string& name = parts[3];
      if (parts.size() == 4 || (parts.size() == 5 && parts[4] == "status")) {
        bool status = parts.size() == 5;
        std::string resource = status ? "nodes/status" : "nodes";
        if (is_get) {
          if (auto denied = authorize(user, "get", resource, name, "")) {
            return *denied;
          }
          auto it = nodes.find(name);
          if (it == nodes.end()) {
            return fail(404, fmt::format("nodes \"{}\" not found", name),
                        Json{{"name", name}, {"kind", "nodes"}});
          }
          return reply(200, withKind(*it->second.item, "Node"));
        }
        if (is_patch) {
          if (auto denied = authorize(user, "patch", resource, name, "")) {
            return *denied;
          }
          return patchNode(name, status, std::string(req[bhttp::field::content_type]), req.body());
        }
        return not_allowed();
      }
    }
    if (parts.size() == 6 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "namespaces" &&
        parts[4] == "pods") {
      if (!is_get) {
        return not_allowed();
      }
      const std::string& ns = parts[3];
      const std::string& name = parts[5];
      if (auto denied = authorize(user, "get", "pods", name, ns)) {
        return *denied;
      }
      auto it = pods.find({ns, name});
      if (it == pods.end()) {
        return fail(404, fmt::format("pods \"{}\" not found", name),
                    Json{{"name", name}, {"kind", "pods"}});
      }
      return reply(200, it->second.dump());
    }
    return fail(404, "the server could not find the requested resource");
  }

  Outcome handle(const bhttp::request<bhttp::string_body>& req, const std::string& cert_user) {
    RecordedRequest rec;
    rec.method = std::string(req.method_string());
    rec.target = std::string(req.target());
    rec.path = rec.target.substr(0, rec.target.find('?'));
    rec.content_type = std::string(req[bhttp::field::content_type]);
    rec.body = req.body();
    rec.authorization = std::string(req[bhttp::field::authorization]);
    auto out = dispatch(req, cert_user, rec);
    if (out.reply && out.reply->status == 401) {
      rec.user.clear();
    }
    rec.status = out.reply ? out.reply->status : 200;
    recorded.push_back(std::move(rec));
    return out;
  }

  // ---- sessions

  template <class Stream>
  static void closeSocket(Stream& stream) {
    boost::system::error_code ec;
    beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ec);
    beast::get_lowest_layer(stream).socket().close(ec);
  }

  template <class Stream>
  async::Awaitable<void> serveWatch(Stream& stream, std::shared_ptr<Watcher> w,
                                    Clock::time_point deadline) {
    struct Unregister {
      Impl* impl;
      std::shared_ptr<Watcher> w;
      ~Unregister() { impl->watchers.remove(w); }
    } unregister{this, w};
    bhttp::response<bhttp::empty_body> res{bhttp::status::ok, 11};
    res.set(bhttp::field::content_type, "application/json");
    res.set(bhttp::field::cache_control, "no-cache, private");
    res.chunked(true);
    bhttp::response_serializer<bhttp::empty_body> sr{res};
    auto [hec, hn] = co_await bhttp::async_write_header(stream, sr, use_nothrow);
    (void)hn;
    if (hec) {
      co_return;
    }
    const auto interval = options.bookmark_interval;
    auto next_bookmark = interval.count() > 0 ? Clock::now() + interval : Clock::time_point::max();
    for (;;) {
      if (w->cut) {
        if (w->mid_event) {
          std::string line =
              w->queue.empty() ? std::string(R"({"type":"MODIFIED","object":{"kind":"Node","apiVe)")
                               : w->queue.front();
          std::string half = line.substr(0, std::max<size_t>(1, line.size() / 2));
          (void)co_await net::async_write(stream, bhttp::make_chunk(net::buffer(half)),
                                          use_nothrow);
        }
        closeSocket(stream);
        co_return;
      }
      if (!w->queue.empty()) {
        std::string line = std::move(w->queue.front());
        w->queue.pop_front();
        auto [ec, n] =
            co_await net::async_write(stream, bhttp::make_chunk(net::buffer(line)), use_nothrow);
        (void)n;
        if (ec) {
          co_return;
        }
        continue;
      }
      const auto now = Clock::now();
      if (w->end_after_queue || w->end || now >= deadline) {
        (void)co_await net::async_write(stream, bhttp::make_chunk_last(), use_nothrow);
        co_return;
      }
      if (w->bookmarks && now >= next_bookmark) {
        w->queue.push_back(bookmarkLine());
        next_bookmark = now + interval;
        continue;
      }
      w->wake.expires_at(std::min(deadline, next_bookmark));
      (void)co_await w->wake.async_wait(use_nothrow);
    }
  }

  std::string bookmarkLine() const {
    return eventLine(
        "BOOKMARK",
        fmt::format(R"({{"kind":"Node","apiVersion":"v1","metadata":{{"resourceVersion":"{}"}}}})",
                    rv));
  }

  template <class Stream>
  async::Awaitable<void> serve(Stream& stream, std::string cert_user) {
    beast::flat_buffer buffer;
    for (;;) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(64u << 20);
      auto [ec, n] = co_await bhttp::async_read(stream, buffer, parser, use_nothrow);
      (void)n;
      if (ec) {
        break;
      }
      auto req = parser.release();
      auto out = handle(req, cert_user);
      if (out.watcher) {
        co_await serveWatch(stream, out.watcher, out.deadline);
        break;
      }
      bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(out.reply->status), 11};
      res.set(bhttp::field::content_type, "application/json");
      res.body() = std::move(out.reply->body);
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      auto [wec, wn] = co_await bhttp::async_write(stream, res, use_nothrow);
      (void)wn;
      if (wec || !req.keep_alive()) {
        break;
      }
    }
    closeSocket(stream);
  }

  async::Awaitable<void> plainSession(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    co_await serve(stream, std::string());
  }

  async::Awaitable<void> tlsSession(tcp::socket socket) {
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *tls);
    auto [ec] = co_await stream.async_handshake(net::ssl::stream_base::server, use_nothrow);
    if (ec) {
      co_return;
    }
    std::string cert_user;
    if (X509* cert = SSL_get_peer_certificate(stream.native_handle())) {
      if (SSL_get_verify_result(stream.native_handle()) == X509_V_OK) {
        char cn[256] = {0};
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
        cert_user = cn;
      }
      X509_free(cert);
    }
    co_await serve(stream, std::move(cert_user));
  }

  async::Awaitable<void> acceptLoop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(use_nothrow);
      if (ec) {
        if (!acceptor->is_open()) {
          co_return;
        }
        continue;
      }
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (tls) {
        net::co_spawn(*io, tlsSession(std::move(socket)), net::detached);
      } else {
        net::co_spawn(*io, plainSession(std::move(socket)), net::detached);
      }
    }
  }
};

KubeApiServer::KubeApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

KubeApiServer::~KubeApiServer() {
  impl_->call([this] {
    boost::system::error_code ec;
    impl_->acceptor->close(ec);
    impl_->watchers.clear();
  });
  impl_->io->stop();
  impl_->thread.join();
  // I/O objects go before their io_context; the io_context goes before the state its remaining
  // sessions touch when they are destroyed.
  impl_->acceptor.reset();
  impl_->io.reset();
}

Result<std::unique_ptr<KubeApiServer>> KubeApiServer::start(KubeApiServerOptions options) {
  try {
    auto impl = std::make_unique<Impl>();
    impl->options = std::move(options);
    impl->tokens = impl->options.tokens;
    if (impl->options.tls) {
      auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
      boost::system::error_code ec;
      ctx->use_certificate_chain_file(impl->options.cert_file, ec);
      if (!ec) {
        ctx->use_private_key_file(impl->options.key_file, net::ssl::context::pem, ec);
      }
      if (!ec && !impl->options.client_ca_file.empty()) {
        ctx->load_verify_file(impl->options.client_ca_file, ec);
        ctx->set_verify_mode(net::ssl::verify_peer);
      }
      if (ec) {
        return makeError(Errc::InvalidInput,
                         fmt::format("test API server TLS files: {}", ec.message()));
      }
      impl->tls = std::move(ctx);
    }
    impl->acceptor.emplace(*impl->io);
    tcp::endpoint ep(net::ip::make_address(impl->options.bind_address), 0);
    impl->acceptor->open(ep.protocol());
    impl->acceptor->set_option(tcp::acceptor::reuse_address(true));
    impl->acceptor->bind(ep);
    impl->acceptor->listen();
    impl->port = impl->acceptor->local_endpoint().port();
    Impl* raw = impl.get();
    net::co_spawn(*impl->io, raw->acceptLoop(), net::detached);
    impl->thread = std::thread([raw] {
      auto guard = net::make_work_guard(*raw->io);
      raw->io->run();
    });
    return std::unique_ptr<KubeApiServer>(new KubeApiServer(std::move(impl)));
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, fmt::format("starting the test API server: {}", e.what()));
  }
}

std::string KubeApiServer::url() const {
  return fmt::format("{}://{}:{}", impl_->tls ? "https" : "http", impl_->options.bind_address,
                     impl_->port);
}

uint16_t KubeApiServer::port() const {
  return impl_->port;
}

void KubeApiServer::putNode(KubeNodeSpec spec) {
  impl_->call([&] { impl_->putNode(spec); });
}

void KubeApiServer::putNodes(std::vector<KubeNodeSpec> specs) {
  impl_->call([&] {
    for (const auto& s : specs) {
      impl_->putNode(s);
    }
  });
}

void KubeApiServer::setAnnotations(const std::string& node,
                                   std::map<std::string, std::string> set) {
  impl_->call([&] {
    impl_->modify(node, [&](Json& obj) {
      for (const auto& [k, v] : set) {
        obj["metadata"]["annotations"][k] = v;
      }
    });
  });
}

void KubeApiServer::removeAnnotation(const std::string& node, const std::string& key) {
  impl_->call([&] {
    impl_->modify(node, [&](Json& obj) {
      if (obj["metadata"].contains("annotations")) {
        obj["metadata"]["annotations"].erase(key);
      }
    });
  });
}

void KubeApiServer::setPodCidrs(const std::string& node, std::vector<std::string> cidrs) {
  impl_->call([&] {
    impl_->modify(node, [&](Json& obj) {
      if (cidrs.empty()) {
        obj["spec"].erase("podCIDR");
        obj["spec"].erase("podCIDRs");
      } else {
        obj["spec"]["podCIDR"] = cidrs.front();
        obj["spec"]["podCIDRs"] = cidrs;
      }
    });
  });
}

void KubeApiServer::touchNodeStatus(const std::string& node) {
  impl_->call([&] {
    impl_->modify(node, [&](Json& obj) {
      Json beat = {{"type", "Ready"},
                   {"status", "True"},
                   {"lastHeartbeatTime", nowRfc3339()},
                   {"reason", "KubeletReady"},
                   {"message", fmt::format("kubelet is posting ready status ({})", impl_->rv)}};
      applyMergePatch(obj["status"], Json{{"conditions", Json::array({beat})}}, true);
    });
  });
}

void KubeApiServer::deleteNode(const std::string& node) {
  impl_->call([&] { impl_->deleteNode(node); });
}

std::optional<std::string> KubeApiServer::nodeJson(const std::string& node) {
  return impl_->call([&]() -> std::optional<std::string> {
    auto it = impl_->nodes.find(node);
    if (it == impl_->nodes.end()) {
      return std::nullopt;
    }
    return withKind(*it->second.item, "Node");
  });
}

std::optional<std::map<std::string, std::string>> KubeApiServer::annotations(
    const std::string& node) {
  return impl_->call([&]() -> std::optional<std::map<std::string, std::string>> {
    auto it = impl_->nodes.find(node);
    if (it == impl_->nodes.end()) {
      return std::nullopt;
    }
    std::map<std::string, std::string> out;
    const auto& meta = it->second.obj["metadata"];
    if (meta.contains("annotations")) {
      for (const auto& [k, v] : meta["annotations"].items()) {
        out[k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
    }
    return out;
  });
}

std::optional<std::string> KubeApiServer::conditionsJson(const std::string& node) {
  return impl_->call([&]() -> std::optional<std::string> {
    auto it = impl_->nodes.find(node);
    if (it == impl_->nodes.end()) {
      return std::nullopt;
    }
    const auto& status = it->second.obj["status"];
    return status.contains("conditions") ? status["conditions"].dump() : std::string("[]");
  });
}

size_t KubeApiServer::nodeCount() {
  return impl_->call([&] { return impl_->nodes.size(); });
}

void KubeApiServer::putPod(const std::string& ns, const std::string& name,
                           const std::string& node_name) {
  impl_->call([&] {
    ++impl_->rv;
    impl_->pods[{ns, name}] =
        Json{{"kind", "Pod"},
             {"apiVersion", "v1"},
             {"metadata",
              {{"name", name}, {"namespace", ns}, {"resourceVersion", std::to_string(impl_->rv)}}},
             {"spec", {{"nodeName", node_name}}}};
  });
}

int64_t KubeApiServer::resourceVersion() {
  return impl_->call([&] { return impl_->rv; });
}

void KubeApiServer::compact() {
  impl_->call([&] { impl_->compactNow(); });
}

void KubeApiServer::setToken(const std::string& token, const std::string& user) {
  impl_->call([&] { impl_->tokens[token] = user; });
}

void KubeApiServer::removeToken(const std::string& token) {
  impl_->call([&] { impl_->tokens.erase(token); });
}

void KubeApiServer::forbid(const std::string& verb, const std::string& resource) {
  impl_->call([&] { impl_->forbidden.insert(verb + " " + resource); });
}

void KubeApiServer::allow(const std::string& verb, const std::string& resource) {
  impl_->call([&] { impl_->forbidden.erase(verb + " " + resource); });
}

void KubeApiServer::failNext(const std::string& method, const std::string& path_prefix,
                             unsigned status, int count) {
  impl_->call([&] {
    impl_->faults.push_back(
        Impl::Fault{.method = method, .prefix = path_prefix, .status = status, .count = count});
  });
}

void KubeApiServer::cutWatches(bool mid_event) {
  impl_->call([&] {
    for (auto& w : impl_->watchers) {
      w->cut = true;
      w->mid_event = mid_event;
      w->wake.cancel();
    }
    // A cut watch no longer counts as open, even before its session has noticed.
    impl_->watchers.clear();
  });
}

void KubeApiServer::endWatches() {
  impl_->call([&] {
    for (auto& w : impl_->watchers) {
      w->end = true;
      w->wake.cancel();
    }
    impl_->watchers.clear();
  });
}

void KubeApiServer::sendBookmarks() {
  impl_->call([&] {
    for (auto& w : impl_->watchers) {
      if (w->bookmarks) {
        w->queue.push_back(impl_->bookmarkLine());
        w->wake.cancel();
      }
    }
  });
}

size_t KubeApiServer::openWatchCount() {
  return impl_->call([&] { return impl_->watchers.size(); });
}

std::vector<RecordedRequest> KubeApiServer::requests() {
  return impl_->call([&] { return impl_->recorded; });
}

std::vector<RecordedRequest> KubeApiServer::patches() {
  return impl_->call([&] {
    std::vector<RecordedRequest> out;
    for (const auto& r : impl_->recorded) {
      if (r.method == "PATCH") {
        out.push_back(r);
      }
    }
    return out;
  });
}

void KubeApiServer::clearRequests() {
  impl_->call([&] { impl_->recorded.clear(); });
}

Result<TestPki> makeTestPki(const std::string& dir) {
  namespace fs = std::filesystem;
  SpawnCommandRunner runner;
  auto p = [&](const std::string& name) { return (fs::path(dir) / name).string(); };
  auto openssl = [&](std::vector<std::string> args) -> Result<void> {
    Command cmd;
    cmd.argv = {"openssl"};
    cmd.argv.insert(cmd.argv.end(), args.begin(), args.end());
    cmd.timeout = std::chrono::seconds(30);
    auto r = runChecked(runner, cmd);
    if (!r) {
      return r.error();
    }
    return {};
  };
  const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                       "-nodes"};
  auto cat = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  for (std::string ca : {"ca", "other-ca"}) {
    if (auto r = openssl(
            cat(cat({"req", "-x509"}, ec), {"-keyout", p(ca + ".key"), "-out", p(ca + ".pem"),
                                            "-days", "2", "-subj", "/CN=flannel-test-kube-" + ca}));
        !r) {
      return r.error();
    }
  }
  std::ofstream(p("server.ext"))
      << "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
  std::ofstream(p("client.ext")) << "extendedKeyUsage=clientAuth\n";
  for (auto [who, cn] : {std::pair<std::string, std::string>{"server", "kube-apiserver"},
                         std::pair<std::string, std::string>{"client", "flannel-client"}}) {
    if (auto r = openssl(cat(cat({"req"}, ec), {"-keyout", p(who + ".key"), "-out", p(who + ".csr"),
                                                "-subj", "/CN=" + cn}));
        !r) {
      return r.error();
    }
    if (auto r = openssl({"x509", "-req", "-in", p(who + ".csr"), "-CA", p("ca.pem"), "-CAkey",
                          p("ca.key"), "-CAcreateserial", "-out", p(who + ".pem"), "-days", "2",
                          "-extfile", p(who + ".ext")});
        !r) {
      return r.error();
    }
  }
  return TestPki{.ca_pem = p("ca.pem"),
                 .ca_key = p("ca.key"),
                 .server_cert = p("server.pem"),
                 .server_key = p("server.key"),
                 .client_cert = p("client.pem"),
                 .client_key = p("client.key"),
                 .other_ca_pem = p("other-ca.pem")};
}

}  // namespace flannel::test
