#include "store/kube/kube_store.h"

#include <fmt/format.h>
#include <boost/asio/steady_timer.hpp>
#include <charconv>
#include <random>

#include "core/log.h"
#include "core/strings.h"

namespace flannel::store::kube {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("store.kube");
}

const Permission kNodesGet{.resource = "nodes", .verb = "get"};
const Permission kNodesList{.resource = "nodes", .verb = "list"};
const Permission kNodesWatch{.resource = "nodes", .verb = "watch"};
const Permission kNodeStatusPatch{.resource = "nodes/status", .verb = "patch"};
const Permission kPodsGet{.resource = "pods", .verb = "get"};

// Cancellable: throws operation_aborted when the task is cancelled.
async::Awaitable<void> sleepFor(std::chrono::milliseconds d) {
  net::steady_timer timer(co_await net::this_coro::executor, d);
  co_await timer.async_wait(async::use_awaitable);
}

double unitRandom() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

Revision revisionOf(const std::string& rv) {
  Revision out = 0;
  auto [ptr, ec] = std::from_chars(rv.data(), rv.data() + rv.size(), out);
  if (ec != std::errc() || ptr != rv.data() + rv.size()) {
    return 0;
  }
  return out;
}

bool retryable(const Error& e) {
  return e.code == Errc::Unavailable || e.code == Errc::Timeout || e.code == Errc::Conflict;
}

bool isGone(const ApiStatus& s) {
  return s.code == 410 || s.reason == "Expired" || s.reason == "Gone";
}

Result<NetworkConfig> loadKubeConfigFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return makeError(
        Errc::NotFound,
        fmt::format("network config file {} (--net-config-path) does not exist", path));
  }
  auto text = readTextFile(path, "network config file");
  if (!text) {
    return text.error();
  }
  auto parsed = parseNetworkConfig(*text);
  if (!parsed) {
    return parsed.error().context(fmt::format("network config file {}", path));
  }
  auto checked = validateKubeNetworkConfig(std::move(*parsed));
  if (!checked) {
    return checked.error().context(fmt::format("network config file {}", path));
  }
  return checked;
}

std::string joinKeys(const Annotations& a) {
  std::string out;
  for (const auto& [k, v] : a) {
    out += out.empty() ? "" : ", ";
    out += k;
  }
  return out;
}

}  // namespace

std::string queryEscape(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

std::string nodePath(std::string_view name) {
  return fmt::format("/api/v1/nodes/{}", queryEscape(name));
}

std::string nodeStatusPath(std::string_view name) {
  return nodePath(name) + "/status";
}

std::string podPath(std::string_view ns, std::string_view name) {
  return fmt::format("/api/v1/namespaces/{}/pods/{}", queryEscape(ns), queryEscape(name));
}

KubeStore::KubeStore(std::unique_ptr<KubeClient> client, KubeStoreOptions options,
                     std::string node_name, std::string prefix, NetworkConfig config)
    : client_(std::move(client)),
      options_(std::move(options)),
      node_name_(std::move(node_name)),
      prefix_(std::move(prefix)),
      keys_(AnnotationKeys::forPrefix(prefix_)),
      config_(std::move(config)),
      peers_(keys_, config_.enable_ipv4, config_.enable_ipv6, node_name_) {
  if (!options_.now) {
    options_.now = [] { return std::chrono::system_clock::now(); };
  }
}

async::Awaitable<Result<std::unique_ptr<KubeStore>>> KubeStore::create(
    std::unique_ptr<KubeClient> client, KubeStoreOptions options, EnvLookup env) {
  if (!env) {
    env = processEnvironment();
  }
  // 1. Node name (SPEC.md §4.1).
  std::string node_name = options.node_name;
  if (node_name.empty()) {
    node_name = env("NODE_NAME").value_or("");
  }
  if (node_name.empty()) {
    auto pod = env("POD_NAME");
    auto ns = env("POD_NAMESPACE");
    if (!pod || !ns) {
      co_return invalidInput(
          "cannot tell which node this is: NODE_NAME is not set, and finding the node from the "
          "pod needs both POD_NAME and POD_NAMESPACE (set them with the downward API)");
    }
    auto what = fmt::format("reading pod {}/{} to find its node", *ns, *pod);
    auto body = co_await client->get(podPath(*ns, *pod), kPodsGet, what);
    if (!body) {
      co_return body.error();
    }
    auto j = parseJson(*body, "pod");
    if (!j) {
      co_return j.error().context(what);
    }
    std::string from_pod;
    if (j->is_object() && j->contains("spec") && (*j)["spec"].is_object()) {
      const auto& spec = (*j)["spec"];
      if (auto it = spec.find("nodeName"); it != spec.end() && it->is_string()) {
        from_pod = it->get<std::string>();
      }
    }
    if (from_pod.empty()) {
      co_return invalidInput(
          fmt::format("{}: the pod has no spec.nodeName (not scheduled yet?)", what));
    }
    node_name = std::move(from_pod);
  }
  // 2. net-conf.json.
  auto config = loadKubeConfigFile(options.net_config_path);
  if (!config) {
    co_return config.error();
  }
  // 3. Annotation prefix, EVENT_QUEUE_DEPTH (only checked: there is no event queue here).
  auto prefix = normaliseAnnotationPrefix(options.annotation_prefix);
  if (!prefix) {
    co_return prefix.error();
  }
  if (auto depth = env("EVENT_QUEUE_DEPTH")) {
    long long n = 0;
    auto [ptr, ec] = std::from_chars(depth->data(), depth->data() + depth->size(), n);
    if (ec != std::errc() || ptr != depth->data() + depth->size()) {
      co_return invalidInput(
          fmt::format("EVENT_QUEUE_DEPTH {} is not an integer", quoteForMessage(*depth)));
    }
  }
  log()->info("Kubernetes subnet manager for node {} ({}, {}), annotation prefix {}", node_name,
              client->config().source, client->config().credentialsDescription(), *prefix);
  co_return std::unique_ptr<KubeStore>(new KubeStore(std::move(client), std::move(options),
                                                     std::move(node_name), std::move(*prefix),
                                                     std::move(*config)));
}

async::Awaitable<Result<NetworkConfig>> KubeStore::networkConfig() {
  co_return loadKubeConfigFile(options_.net_config_path);
}

async::Awaitable<Result<void>> KubeStore::sleepBackoff(unsigned attempt) {
  co_await sleepFor(options_.retry.delay(attempt, unitRandom()));
  co_return Result<void>{};
}

async::Awaitable<Result<Node>> KubeStore::getOwnNode() {
  auto what = fmt::format("reading node {}", node_name_);
  auto body = co_await client_->get(nodePath(node_name_), kNodesGet, what);
  if (!body) {
    co_return body.error();
  }
  auto node = parseNode(*body);
  if (!node) {
    co_return node.error().context(what);
  }
  co_return node;
}

async::Awaitable<Result<std::string>> KubeStore::patchStatus(std::string body, std::string what) {
  const auto deadline = std::chrono::steady_clock::now() + options_.patch_retry_for;
  for (unsigned attempt = 0;; ++attempt) {
    auto res = co_await client_->patch(nodeStatusPath(node_name_), body,
                                       std::string(kStrategicMergePatch), kNodeStatusPatch, what);
    if (res) {
      co_return res;
    }
    if (!retryable(res.error()) || std::chrono::steady_clock::now() >= deadline) {
      co_return res.error();
    }
    auto delay = options_.retry.delay(attempt, unitRandom());
    log()->warn("{}; retrying in {} ms", res.error().message, delay.count());
    co_await sleepFor(delay);
  }
}

async::Awaitable<Result<Lease>> KubeStore::acquireLease(NetworkConfig config,
                                                        AcquireRequest request) {
  config_ = config;
  peers_.setFamilies(config.enable_ipv4, config.enable_ipv6);
  // 1. Our node, once it has pod CIDRs (flannel exits here instead; SPEC.md §10.19).
  Node node;
  PodCidrs cidrs;
  auto last_log = std::chrono::steady_clock::time_point{};
  std::string last_reason;
  for (unsigned failures = 0;;) {
    auto got = co_await getOwnNode();
    const auto now = std::chrono::steady_clock::now();
    std::string reason;
    if (!got) {
      if (got.error().code == Errc::InvalidInput) {
        co_return got.error();  // credentials, permissions, a malformed answer: not transient
      }
      reason = got.error().code == Errc::NotFound
                   ? fmt::format("node {} does not exist (yet)", node_name_)
                   : got.error().message;
    } else {
      auto c = nodePodCidrs(*got);
      if (!c) {
        co_return c.error();
      }
      if (!c->empty()) {
        node = std::move(*got);
        cidrs = *c;
        break;
      }
      reason = fmt::format(
          "node {} has no pod CIDR yet (spec.podCIDR is empty; is kube-controller-manager "
          "running with --allocate-node-cidrs=true and a --cluster-cidr?)",
          node_name_);
    }
    if (reason != last_reason || now - last_log >= options_.wait_log_every) {
      log()->warn("waiting for a lease: {}; checking again every {} ms", reason,
                  options_.pod_cidr_poll.count());
      last_reason = reason;
      last_log = now;
    }
    if (!got && got.error().code != Errc::NotFound) {
      co_await sleepBackoff(failures++);
    } else {
      failures = 0;
      co_await sleepFor(options_.pod_cidr_poll);
    }
  }
  if (!last_reason.empty()) {
    log()->info("node {} has pod CIDR(s) now", node_name_);
  }
  // 2. Containment, before anything is published.
  auto subnet = leaseSubnetFor(node_name_, cidrs, config);
  if (!subnet) {
    co_return subnet.error();
  }
  // 3. Publish only what changed (SPEC.md §4.4 step 4, §10.17).
  std::string warning;
  auto desired = desiredAnnotations(keys_, request.attrs, node.annotations, &warning);
  if (!warning.empty()) {
    log()->warn("node {}: {}", node_name_, warning);
  }
  auto changed = changedAnnotations(node.annotations, desired);
  if (!changed.empty()) {
    auto res = co_await patchStatus(
        annotationPatchBody(changed),
        fmt::format("publishing the lease annotations of node {}", node_name_));
    if (!res) {
      co_return res.error();
    }
    log()->info("node {}: published annotations {}", node_name_, joinKeys(changed));
  } else {
    log()->info("node {}: lease annotations are up to date", node_name_);
  }
  Lease lease;
  lease.subnet = *subnet;
  lease.attrs = publishedAttrs(keys_, request.attrs, desired);
  log()->info("acquired lease {} (pod CIDRs of node {})", subnetKeyName(lease.subnet), node_name_);
  co_return lease;
}

async::Awaitable<Result<Lease>> KubeStore::renewLease(Lease lease) {
  co_return lease;  // no TTL in Kubernetes mode (SPEC.md §4.4 step 6)
}

async::Awaitable<Result<void>> KubeStore::setNodeNetworkUnavailable() {
  auto res = co_await patchStatus(
      networkUnavailablePatchBody(options_.now()),
      fmt::format("setting the NetworkUnavailable=False condition of node {}", node_name_));
  if (!res) {
    co_return res.error();
  }
  co_return Result<void>{};
}

async::Awaitable<Result<NodePublicIps>> KubeStore::nodePublicIps() {
  auto node = co_await getOwnNode();
  if (!node) {
    co_return node.error();
  }
  co_return parseNodePublicIps(*node);
}

Result<NodePublicIps> KubeStore::parseNodePublicIps(const Node& node) const {
  NodePublicIps out;
  auto bad = [&](const std::string& key, const std::string& value, Family f) {
    return invalidInput(fmt::format("node {}: annotation {} = {} is not an {} address", node.name,
                                    key, quoteForMessage(value), familyName(f)));
  };
  if (auto it = node.annotations.find(keys_.node_public_ip);
      it != node.annotations.end() && !it->second.empty()) {
    auto ip = Ip4::parse(it->second);
    if (!ip) {
      return bad(it->first, it->second, Family::V4);
    }
    out.ipv4 = *ip;
  }
  if (auto it = node.annotations.find(keys_.node_public_ipv6);
      it != node.annotations.end() && !it->second.empty()) {
    auto ip = Ip6::parse(it->second);
    if (!ip) {
      return bad(it->first, it->second, Family::V6);
    }
    out.ipv6 = *ip;
  }
  return out;
}

async::Awaitable<Result<NodeList>> KubeStore::listAllNodes() {
  for (int round = 0; round < 3; ++round) {
    NodeList all;
    std::string cont;
    bool expired = false;
    // The last round lists without paging (one consistent answer), as client-go falls back to.
    const bool paged = round < 2 && options_.list_page_size > 0;
    do {
      std::string target = "/api/v1/nodes";
      if (paged) {
        target += fmt::format("?limit={}", options_.list_page_size);
        if (!cont.empty()) {
          target += "&continue=" + queryEscape(cont);
        }
      }
      auto res =
          co_await client_->send(http::bhttp::verb::get, target, std::string(), std::string());
      if (!res) {
        co_return res.error().context("listing nodes");
      }
      if (res->status == 410) {
        expired = true;
        break;
      }
      if (res->status / 100 != 2) {
        co_return client_->errorFor(*res, kNodesList, "listing nodes");
      }
      auto page = parseNodeList(res->body);
      if (!page) {
        co_return page.error().context("listing nodes");
      }
      if (all.resource_version.empty()) {
        all.resource_version = page->resource_version;
      }
      all.items.insert(all.items.end(), std::make_move_iterator(page->items.begin()),
                       std::make_move_iterator(page->items.end()));
      cont = page->continue_token;
    } while (!cont.empty());
    if (!expired) {
      co_return all;
    }
    log()->warn("the node list expired while paging (410 Gone); listing again");
  }
  co_return makeError(Errc::Unavailable, "listing nodes: the paged list expired three times");
}

void KubeStore::noteRevision(const std::string& rv) {
  if (!rv.empty()) {
    rv_ = rv;
  }
}

async::Awaitable<Result<LeaseSnapshot>> KubeStore::leases() {
  auto list = co_await listAllNodes();
  if (!list) {
    co_return list.error();
  }
  peers_ = PeerTracker(keys_, config_.enable_ipv4, config_.enable_ipv6, node_name_);
  auto update = peers_.replaceAll(list->items);
  for (const auto& e : update.skipped) {
    log()->error("{}; node skipped", e.message);
  }
  watch_.reset();
  rv_ = list->resource_version;
  LeaseSnapshot snap;
  snap.leases = peers_.leases();
  snap.revision = revisionOf(rv_);
  returned_ = snap.revision;
  co_return snap;
}

async::Awaitable<Result<LeaseBatch>> KubeStore::resync() {
  auto list = co_await listAllNodes();
  if (!list) {
    co_return list.error();
  }
  auto update = peers_.replaceAll(list->items);
  for (const auto& e : update.skipped) {
    log()->error("{}; node skipped", e.message);
  }
  watch_.reset();
  rv_ = list->resource_version;
  LeaseBatch batch;
  batch.events = std::move(update.events);
  batch.revision = revisionOf(rv_);
  batch.resync = true;
  log()->info("re-listed {} nodes at resourceVersion {}: {} lease changes", list->items.size(), rv_,
              batch.events.size());
  co_return batch;
}

async::Awaitable<Result<LeaseBatch>> KubeStore::nextEvents(Revision since) {
  if (since != returned_ || rv_.empty()) {
    rv_ = std::to_string(since);
    watch_.reset();
  }
  LeaseBatch out;
  int reopened_after_cut = 0;
  int empty_watches = 0;  // watches the server ended at once, before sending anything
  auto opened_at = std::chrono::steady_clock::now();
  for (;;) {
    // Hand over what was gathered once no further complete event is already buffered (events
    // received in one read go out together).
    if (!out.events.empty() && (!watch_ || !watch_->hasPending())) {
      out.revision = revisionOf(rv_);
      returned_ = out.revision;
      co_return out;
    }
    if (!watch_) {
      auto target = fmt::format(
          "/api/v1/nodes?allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}&watch=true",
          queryEscape(rv_), options_.watch_timeout.count());
      unsigned status = 0;
      auto w = co_await client_->watch(target, kNodesWatch, "watching nodes", &status);
      if (!w && status == 410) {
        log()->warn("node watch from resourceVersion {} refused (410 Gone); re-listing nodes", rv_);
        auto batch = co_await resync();
        if (!batch) {
          co_return batch.error();
        }
        if (batch->events.empty()) {
          returned_ = batch->revision;
          continue;
        }
        returned_ = batch->revision;
        co_return batch;
      }
      if (!w) {
        co_return w.error();
      }
      watch_ = std::move(*w);
      opened_at = std::chrono::steady_clock::now();
    }
    auto line = co_await watch_->nextLine(options_.watch_idle_timeout);
    if (!line) {
      watch_.reset();
      if (line.error().code == Errc::Timeout) {
        log()->info("node watch idle for {} ms; reopening it from resourceVersion {}",
                    options_.watch_idle_timeout.count(), rv_);
        continue;
      }
      if (reopened_after_cut++ == 0) {
        log()->warn("{}; resuming the watch from resourceVersion {}", line.error().message, rv_);
        continue;
      }
      co_return line.error();
    }
    if (!*line) {
      watch_.reset();  // the server ended the watch (timeoutSeconds): resume where we were
      bool at_once = std::chrono::steady_clock::now() - opened_at < std::chrono::seconds(1);
      empty_watches = at_once ? empty_watches + 1 : 0;
      if (empty_watches >= 3) {
        // Not a timeout but a server (or proxy) that closes every watch at once: let the
        // caller back off instead of spinning.
        co_return makeError(Errc::Unavailable,
                            fmt::format("the API server {} keeps ending the node watch without "
                                        "sending anything",
                                        client_->server()));
      }
      continue;
    }
    reopened_after_cut = 0;
    empty_watches = 0;
    auto ev = parseWatchEvent(**line);
    if (!ev) {
      log()->error("node watch: {}; event skipped", ev.error().message);
      continue;
    }
    if (ev->type == WatchEventType::Bookmark) {
      noteRevision(ev->resource_version);
      continue;
    }
    if (ev->type == WatchEventType::Error) {
      watch_.reset();
      const ApiStatus status = ev->status.value_or(ApiStatus{});
      if (!isGone(status)) {
        co_return makeError(Errc::Unavailable,
                            fmt::format("node watch from resourceVersion {} failed: {} {}", rv_,
                                        status.reason, status.message));
      }
      log()->warn("node watch from resourceVersion {}: {}; re-listing nodes", rv_, status.message);
      auto batch = co_await resync();
      if (!batch) {
        co_return batch.error();
      }
      returned_ = batch->revision;
      if (batch->events.empty() && out.events.empty()) {
        continue;
      }
      // Events already gathered in this call are part of the state the relist diffed against.
      out.events.insert(out.events.end(), batch->events.begin(), batch->events.end());
      out.revision = batch->revision;
      out.resync = true;
      co_return out;
    }
    PeerTracker::Update update;
    if (ev->type == WatchEventType::Deleted) {
      update = peers_.remove(ev->node->name);
    } else {
      update = peers_.upsert(*ev->node);
    }
    for (const auto& e : update.skipped) {
      log()->error("{}; node skipped", e.message);
    }
    noteRevision(ev->resource_version);
    out.events.insert(out.events.end(), std::make_move_iterator(update.events.begin()),
                      std::make_move_iterator(update.events.end()));
  }
}

}  // namespace flannel::store::kube
