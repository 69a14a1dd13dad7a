// KubeStore against the test API server (tests/support/kube): acquiring a lease from the node's
// podCIDR, publishing annotations, the NetworkUnavailable condition, peers from list+watch
// (cuts, 410 relists, bookmarks), credentials (401/403, token rotation, TLS, in-cluster) and
// dual stack. SPEC.md §4 and §10.16-19.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <filesystem>
#include <fstream>
#include <list>

#include "contract/store/run_sync.h"
#include "core/base64.h"
#include "store/kube/kube_store.h"
#include "support/kube/kube_api_server.h"

namespace flannel::store::kube {
namespace {

using flannel::test::KubeApiServer;
using flannel::test::KubeApiServerOptions;
using flannel::test::KubeNodeSpec;
using ::testing::HasSubstr;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kP = "flannel.alpha.coreos.com/";

std::string k(const char* name) {
  return std::string(kP) + name;
}

LeaseAttrs vxlanAttrs(int host, std::string mac = "32:dd:0a:da:f5:20") {
  return LeaseAttrs{.public_ip = Ip4::fromBytes(192, 168, 91, static_cast<uint8_t>(host)),
                    .public_ipv6 = std::nullopt,
                    .backend_type = "vxlan",
                    .backend_data = R"({"VNI":1,"VtepMAC":")" + mac + R"("})",
                    .backend_v6_data = ""};
}

std::map<std::string, std::string> peerAnnotations(int host) {
  return {{k("kube-subnet-manager"), "true"},
          {k("backend-type"), "vxlan"},
          {k("backend-data"), R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"})"},
          {k("public-ip"), fmt::format("192.168.91.{}", host)}};
}

KubeNodeSpec node(std::string name, std::vector<std::string> cidrs,
                  std::map<std::string, std::string> annotations = {}) {
  return KubeNodeSpec{.name = std::move(name),
                      .annotations = std::move(annotations),
                      .pod_cidrs = std::move(cidrs),
                      .labels = {},
                      .internal_ip = ""};
}

KubeNodeSpec peer(std::string name, int host) {
  return node(std::move(name), {fmt::format("10.5.{}.0/24", host)}, peerAnnotations(host));
}

std::string describe(const std::vector<LeaseEvent>& events) {
  std::string out;
  for (const auto& e : events) {
    out += e.type == LeaseEventType::Added ? "+" : "-";
    out += subnetKeyName(e.lease.subnet);
    out += "@" + e.lease.attrs.public_ip.toString();
    if (e.lease.attrs.public_ipv6) {
      out += "/" + e.lease.attrs.public_ipv6->toString();
    }
    out += " ";
  }
  return out;
}

template <class T>
struct Pending {
  std::optional<T> value{};
  std::exception_ptr error{};
  bool done = false;
};

class KubeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "kube-store-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    startServer({});
    writeNetConf(R"({"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}})");
  }
  void TearDown() override {
    for (auto& s : signals_) {
      s.emit(net::cancellation_type::terminal);
    }
    runFor(100ms);
    stores_.clear();
    server_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void startServer(KubeApiServerOptions options) {
    server_.reset();
    auto s = KubeApiServer::start(std::move(options));
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::move(*s);
  }
  std::string write(const std::string& name, const std::string& text) {
    auto tmp = (dir_ / (name + ".tmp")).string();
    std::ofstream(tmp) << text;
    auto path = (dir_ / name).string();
    fs::rename(tmp, path);  // atomic, as the kubelet swaps projected token files
    return path;
  }
  void writeNetConf(const std::string& json) { net_conf_ = write("net-conf.json", json); }
  NetworkConfig config() {
    return validateKubeNetworkConfig(
               parseNetworkConfig(*readTextFile(net_conf_, "net-conf")).value())
        .value();
  }

  KubeStoreOptions fastOptions() {
    KubeStoreOptions o;
    o.net_config_path = net_conf_;
    o.pod_cidr_poll = 50ms;
    o.wait_log_every = 1s;
    o.retry = Backoff{.initial = 20ms, .cap = 100ms, .factor = 2.0, .jitter = 0.2};
    o.patch_retry_for = 5s;
    o.list_page_size = 2;
    o.watch_timeout = 60s;
    o.watch_idle_timeout = 10s;
    o.now = [] { return std::chrono::system_clock::from_time_t(1714558830); };
    return o;
  }
  EnvLookup env(std::map<std::string, std::string> vars) {
    return [vars](const std::string& name) -> std::optional<std::string> {
      auto it = vars.find(name);
      return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
  }
  Result<std::unique_ptr<KubeClient>> client(ClientConfigInputs inputs) {
    auto config = loadClientConfig(inputs);
    if (!config) {
      return config.error();
    }
    return KubeClient::create(io_.get_executor(), std::move(*config), 5s);
  }
  ClientConfigInputs apiUrl() {
    return ClientConfigInputs{
        .kube_api_url = server_->url(), .kubeconfig_file = "", .in_cluster = {}, .env = env({})};
  }
  Result<KubeStore*> tryStore(KubeStoreOptions options, std::map<std::string, std::string> vars,
                              ClientConfigInputs inputs) {
    auto c = client(std::move(inputs));
    if (!c) {
      return c.error();
    }
    auto s = sync(KubeStore::create(std::move(*c), std::move(options), env(std::move(vars))));
    if (!s) {
      return s.error();
    }
    stores_.push_back(std::move(*s));
    return stores_.back().get();
  }
  KubeStore* store(KubeStoreOptions options,
                   std::map<std::string, std::string> vars = {{"NODE_NAME", "n1"}}) {
    auto s = tryStore(std::move(options), std::move(vars), apiUrl());
    EXPECT_TRUE(s) << s.error().message;
    return s ? *s : nullptr;
  }
  KubeStore* store() { return store(fastOptions()); }

  template <class T>
  T sync(async::Awaitable<T> a, std::chrono::milliseconds limit = 15s) {
    auto r = flannel::test::runSync(io_, std::move(a), limit);
    EXPECT_TRUE(r.has_value()) << "coroutine did not finish in time";
    return r ? std::move(*r) : T(makeError(Errc::Timeout, "test deadline"));
  }
  template <class T>
  std::shared_ptr<Pending<T>> spawn(async::Awaitable<T> a) {
    auto p = std::make_shared<Pending<T>>();
    auto& signal = signals_.emplace_back();
    net::co_spawn(io_, std::move(a),
                  net::bind_cancellation_slot(signal.slot(), [p](std::exception_ptr e, T v) {
                    p->error = e;
                    if (!e) {
                      p->value.emplace(std::move(v));
                    }
                    p->done = true;
                  }));
    return p;
  }
  void runFor(std::chrono::milliseconds d) {
    io_.restart();
    io_.run_for(d);
  }
  template <class Pred>
  bool runUntil(Pred pred, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return false;
      }
      runFor(20ms);
    }
    return true;
  }
  // Events from nextEvents() until `count` have arrived (or the deadline).
  std::vector<LeaseEvent> collect(KubeStore* s, Revision& since, size_t count) {
    std::vector<LeaseEvent> out;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
      auto batch = sync(s->nextEvents(since), 10s);
      if (!batch) {
        ADD_FAILURE() << batch.error().message;
        break;
      }
      since = batch->revision;
      out.insert(out.end(), batch->events.begin(), batch->events.end());
    }
    return out;
  }
  size_t watchRequests() {
    size_t n = 0;
    for (const auto& r : server_->requests()) {
      n += r.target.find("watch=true") != std::string::npos ? 1 : 0;
    }
    return n;
  }
  size_t listRequests() {
    size_t n = 0;
    for (const auto& r : server_->requests()) {
      n += r.path == "/api/v1/nodes" && r.target.find("watch=true") == std::string::npos ? 1 : 0;
    }
    return n;
  }

  net::io_context io_;
  std::list<net::cancellation_signal> signals_;
  std::unique_ptr<KubeApiServer> server_;
  std::vector<std::unique_ptr<KubeStore>> stores_;
  fs::path dir_;
  std::string net_conf_;
};

// ---------------------------------------------------------------- creation

TEST_F(KubeStoreTest, NodeNameFromNodeNameOrFromThePod) {
  EXPECT_EQ(store()->nodeName(), "n1");
  server_->putPod("kube-flannel", "kube-flannel-ds-x7", "worker-3");
  auto s =
      store(fastOptions(), {{"POD_NAME", "kube-flannel-ds-x7"}, {"POD_NAMESPACE", "kube-flannel"}});
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->nodeName(), "worker-3");
  EXPECT_EQ(server_->requests().back().path,
            "/api/v1/namespaces/kube-flannel/pods/kube-flannel-ds-x7");
}

TEST_F(KubeStoreTest, CreationErrorsNameTheProblem) {
  auto missing = tryStore(fastOptions(), {}, apiUrl());
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr("NODE_NAME is not set"));
  auto no_pod = tryStore(fastOptions(), {{"POD_NAME", "p"}, {"POD_NAMESPACE", "ns"}}, apiUrl());
  ASSERT_FALSE(no_pod);
  EXPECT_THAT(no_pod.error().message, HasSubstr("pods \"p\" not found"));
  auto bad_prefix = fastOptions();
  bad_prefix.annotation_prefix = "Not/A/Prefix";
  EXPECT_THAT(tryStore(bad_prefix, {{"NODE_NAME", "n1"}}, apiUrl()).error().message,
              HasSubstr("--kube-annotation-prefix"));
  auto no_conf = fastOptions();
  no_conf.net_config_path = (dir_ / "none.json").string();
  auto r = tryStore(no_conf, {{"NODE_NAME", "n1"}}, apiUrl());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::NotFound);
  EXPECT_THAT(r.error().message, HasSubstr("none.json (--net-config-path) does not exist"));
  EXPECT_THAT(
      tryStore(fastOptions(), {{"NODE_NAME", "n1"}, {"EVENT_QUEUE_DEPTH", "lots"}}, apiUrl())
          .error()
          .message,
      HasSubstr("EVENT_QUEUE_DEPTH \"lots\" is not an integer"));
  writeNetConf(R"({"EnableIPv6":true,"Network":"10.5.0.0/16"})");
  EXPECT_THAT(tryStore(fastOptions(), {{"NODE_NAME", "n1"}}, apiUrl()).error().message,
              HasSubstr("IPv6Network is missing"));
}

TEST_F(KubeStoreTest, NetworkConfigIsReadFromTheFile) {
  auto s = store();
  auto c = sync(s->networkConfig());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->network->toString(), "10.5.0.0/16");
  EXPECT_EQ(c->backend_type, "vxlan");
  writeNetConf("{not json");
  auto bad = sync(s->networkConfig());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::InvalidInput);
  EXPECT_THAT(bad.error().message, HasSubstr("net-conf.json"));
}

// ---------------------------------------------------------------- acquire

TEST_F(KubeStoreTest, AcquireWaitsForThePodCidrThenPatchesExactlyTheChangedAnnotations) {
  server_->putNode(node("n1", {}));  // registered, no podCIDR and no annotations yet
  auto s = store();
  auto lease = spawn(s->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(11)}));
  runFor(400ms);
  EXPECT_FALSE(lease->done);  // waiting, not failing (SPEC.md §10.19)
  EXPECT_TRUE(server_->patches().empty());
  EXPECT_GE(server_->requests().size(), 3u);  // it keeps looking
  server_->setPodCidrs("n1", {"10.5.1.0/24"});
  ASSERT_TRUE(runUntil([&] { return lease->done; }));
  ASSERT_FALSE(lease->error);
  ASSERT_TRUE(*lease->value) << lease->value->error().message;
  const Lease& l = **lease->value;
  EXPECT_EQ(subnetKeyName(l.subnet), "10.5.1.0-24");
  EXPECT_EQ(l.attrs, vxlanAttrs(11));
  EXPECT_FALSE(l.expiration);
  auto patches = server_->patches();
  ASSERT_EQ(patches.size(), 1u);
  EXPECT_EQ(patches[0].path, "/api/v1/nodes/n1/status");
  EXPECT_EQ(patches[0].content_type, "application/strategic-merge-patch+json");
  EXPECT_EQ(
      patches[0].body,
      R"({"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"32:dd:0a:da:f5:20\"}","flannel.alpha.coreos.com/backend-type":"vxlan","flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"192.168.91.11"}}})");
  EXPECT_EQ(server_->annotations("n1")->at(k("public-ip")), "192.168.91.11");

  // A restart with the same attributes patches nothing.
  server_->clearRequests();
  auto again = sync(store()->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(11)}));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(server_->patches().empty());
  // A new public IP: only that annotation.
  auto moved = sync(store()->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(12)}));
  ASSERT_TRUE(moved) << moved.error().message;
  ASSERT_EQ(server_->patches().size(), 1u);
  EXPECT_EQ(
      server_->patches()[0].body,
      R"({"metadata":{"annotations":{"flannel.alpha.coreos.com/public-ip":"192.168.91.12"}}})");
}

TEST_F(KubeStoreTest, AcquireWaitsForTheNodeToExistAndIsCancellable) {
  auto s = store();
  auto lease = spawn(s->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(11)}));
  runFor(300ms);
  EXPECT_FALSE(lease->done);
  signals_.back().emit(net::cancellation_type::terminal);
  ASSERT_TRUE(runUntil([&] { return lease->done; }, 2s));
  EXPECT_TRUE(lease->error);  // operation_aborted from the wait
}

TEST_F(KubeStoreTest, AcquireChecksContainmentBeforePublishing) {
  server_->putNode(node("n1", {"10.9.1.0/24"}));
  auto r = sync(store()->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(11)}));
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message,
              HasSubstr("pod CIDR 10.9.1.0/24 is not inside the network 10.5.0.0/16"));
  EXPECT_TRUE(server_->patches().empty());
}

TEST_F(KubeStoreTest, AcquireHonoursThePublicIpOverwrite) {
  server_->putNode(node("n1", {"10.5.1.0/24"}, {{k("public-ip-overwrite"), "203.0.113.7"}}));
  auto r = sync(store()->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(11)}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->attrs.public_ip.toString(), "203.0.113.7");
  EXPECT_EQ(server_->annotations("n1")->at(k("public-ip")), "203.0.113.7");
  EXPECT_EQ(server_->annotations("n1")->at(k("public-ip-overwrite")), "203.0.113.7");
}

TEST_F(KubeStoreTest, AcquireRetriesServerErrors) {
  server_->putNode(node("n1", {"10.5.1.0/24"}));
  server_->failNext("GET", "/api/v1/nodes/n1", 503, 2);
  server_->failNext("PATCH", "/api/v1/nodes/n1/status", 500, 2);
  auto r = sync(store()->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(11)}));
  ASSERT_TRUE(r) << r.error().message;
  auto patches = server_->patches();
  ASSERT_EQ(patches.size(), 3u);
  EXPECT_EQ(patches[0].status, 500u);
  EXPECT_EQ(patches[1].status, 500u);
  EXPECT_EQ(patches[2].status, 200u);
  EXPECT_EQ(patches[0].body, patches[2].body);
  EXPECT_EQ(server_->annotations("n1")->at(k("kube-subnet-manager")), "true");
}

TEST_F(KubeStoreTest, AcquireGivesUpAfterTheRetryWindow) {
  server_->putNode(node("n1", {"10.5.1.0/24"}));
  server_->failNext("PATCH", "/api/v1/nodes/n1/status", 500, 1000);
  auto options = fastOptions();
  options.patch_retry_for = 300ms;
  auto s = store(options);
  auto r = sync(s->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(11)}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::Unavailable);
  EXPECT_THAT(r.error().message, HasSubstr("HTTP 500 InternalError"));
  EXPECT_GE(server_->patches().size(), 2u);
}

TEST_F(KubeStoreTest, ForbiddenPatchNamesTheMissingPermission) {
  server_->putNode(node("n1", {"10.5.1.0/24"}));
  server_->forbid("patch", "nodes/status");
  auto r = sync(store()->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(11)}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::InvalidInput);
  EXPECT_THAT(r.error().message, HasSubstr("missing RBAC permission nodes/status patch"));
  EXPECT_EQ(server_->patches().size(), 1u);  // not retried
}

TEST_F(KubeStoreTest, ForbiddenListAndWatchAreClearErrors) {
  auto s = store();
  server_->forbid("list", "nodes");
  auto l = sync(s->leases());
  ASSERT_FALSE(l);
  EXPECT_THAT(l.error().message, HasSubstr("missing RBAC permission nodes list"));
  server_->allow("list", "nodes");
  auto snap = sync(s->leases());
  ASSERT_TRUE(snap) << snap.error().message;
  server_->forbid("watch", "nodes");
  auto w = sync(s->nextEvents(snap->revision));
  ASSERT_FALSE(w);
  EXPECT_THAT(w.error().message, HasSubstr("missing RBAC permission nodes watch"));
}

TEST_F(KubeStoreTest, UnauthorizedIsAClearError) {
  startServer(KubeApiServerOptions{.tokens = {{"good", "flannel"}}, .require_auth = true});
  server_->putNode(node("n1", {"10.5.1.0/24"}));
  auto s = store();  // --kube-api-url alone: no credentials
  auto r = sync(s->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(11)}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::InvalidInput);
  EXPECT_THAT(r.error().message,
              HasSubstr("rejected the credentials (no credentials) with HTTP 401 Unauthorized"));
}

TEST_F(KubeStoreTest, NetworkUnavailableConditionIsTheSpecBody) {
  server_->putNode(node("n1", {"10.5.1.0/24"}));
  auto s = store();
  auto r = sync(s->setNodeNetworkUnavailable());
  ASSERT_TRUE(r) << r.error().message;
  auto patches = server_->patches();
  ASSERT_EQ(patches.size(), 1u);
  EXPECT_EQ(patches[0].path, "/api/v1/nodes/n1/status");
  EXPECT_EQ(patches[0].content_type, "application/strategic-merge-patch+json");
  EXPECT_EQ(
      patches[0].body,
      R"({"status":{"conditions":[{"type":"NetworkUnavailable","status":"False","lastHeartbeatTime":"2024-05-01T10:20:30Z","lastTransitionTime":"2024-05-01T10:20:30Z","reason":"FlannelIsUp","message":"Flannel is running on this node"}]}})");
  auto conditions = server_->conditionsJson("n1").value();
  EXPECT_THAT(conditions, HasSubstr(R"("type":"Ready")"));  // merged by type, Ready kept
  EXPECT_THAT(conditions, HasSubstr(R"("type":"NetworkUnavailable","status":"False")"));
}

TEST_F(KubeStoreTest, NodePublicIpAnnotations) {
  server_->putNode(node("n1", {"10.5.1.0/24"}));
  auto s = store();
  auto none = sync(s->nodePublicIps());
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_FALSE(none->ipv4);
  EXPECT_FALSE(none->ipv6);
  server_->setAnnotations(
      "n1", {{k("node-public-ip"), "198.51.100.4"}, {k("node-public-ipv6"), "2001:db8::4"}});
  auto both = sync(s->nodePublicIps());
  ASSERT_TRUE(both) << both.error().message;
  EXPECT_EQ(both->ipv4->toString(), "198.51.100.4");
  EXPECT_EQ(both->ipv6->toString(), "2001:db8::4");
  server_->setAnnotations("n1", {{k("node-public-ip"), "2001:db8::4"}});
  auto bad = sync(s->nodePublicIps());
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message,
              HasSubstr("annotation flannel.alpha.coreos.com/node-public-ip = \"2001:db8::4\" is "
                        "not an IPv4 address"));
}

TEST_F(KubeStoreTest, RenewIsANoOp) {
  auto s = store();
  Lease l;
  l.subnet.ipv4 = IpNet::parse("10.5.1.0/24").value();
  auto r = sync(s->renewLease(l));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, l);
  EXPECT_TRUE(server_->requests().empty());
}

// ---------------------------------------------------------------- dual stack

TEST_F(KubeStoreTest, DualStackAcquireAndOneFamilyUpdates) {
  writeNetConf(R"({"Network":"10.5.0.0/16","IPv6Network":"fd00:5::/48","EnableIPv6":true,
                   "Backend":{"Type":"vxlan"}})");
  server_->putNode(node("n1", {"10.5.1.0/24", "fd00:5:0:1::/64"}));
  auto peer_annotations = peerAnnotations(2);
  peer_annotations[k("public-ipv6")] = "fd00::2";
  peer_annotations[k("backend-v6-data")] = R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"})";
  server_->putNode(node("n2", {"10.5.2.0/24", "fd00:5:0:2::/64"}, peer_annotations));
  auto s = store();
  auto attrs = vxlanAttrs(11);
  attrs.public_ipv6 = Ip6::parse("fd00::11").value();
  attrs.backend_v6_data = R"({"VNI":1,"VtepMAC":"32:dd:0a:da:f5:21"})";
  auto r = sync(s->acquireLease(config(), AcquireRequest{.attrs = attrs}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(subnetKeyName(r->subnet), "10.5.1.0-24&fd00:5:0:1::-64");
  auto published = server_->annotations("n1").value();
  EXPECT_EQ(published.at(k("public-ipv6")), "fd00::11");
  EXPECT_EQ(published.at(k("backend-v6-data")), R"({"VNI":1,"VtepMAC":"32:dd:0a:da:f5:21"})");

  auto snap = sync(s->leases());
  ASSERT_TRUE(snap) << snap.error().message;
  ASSERT_EQ(snap->leases.size(), 1u);
  EXPECT_EQ(subnetKeyName(snap->leases[0].subnet), "10.5.2.0-24&fd00:5:0:2::-64");
  // Only the IPv6 address changes: Go flannel misses this (SPEC.md §10.18); we do not.
  server_->setAnnotations("n2", {{k("public-ipv6"), "fd00::22"}});
  Revision since = snap->revision;
  EXPECT_EQ(describe(collect(s, since, 1)), "+10.5.2.0-24&fd00:5:0:2::-64@192.168.91.2/fd00::22 ");
  // Only the IPv4 address.
  server_->setAnnotations("n2", {{k("public-ip"), "192.168.91.222"}});
  EXPECT_EQ(describe(collect(s, since, 1)),
            "+10.5.2.0-24&fd00:5:0:2::-64@192.168.91.222/fd00::22 ");
}

TEST_F(KubeStoreTest, Ipv4OnlyConfigIgnoresTheNodesIpv6PodCidr) {
  server_->putNode(node("n1", {"10.5.1.0/24", "fd00:5:0:1::/64"}));
  auto r = sync(store()->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(11)}));
  ASSERT_TRUE(r) << r.error().message;  // Go flannel v0.20.2 exits here (SPEC.md §10.16)
  EXPECT_EQ(subnetKeyName(r->subnet), "10.5.1.0-24");
  EXPECT_EQ(server_->annotations("n1")->count(k("public-ipv6")), 0u);
}

// ---------------------------------------------------------------- peers

TEST_F(KubeStoreTest, LeasesListsFlannelPeersOnlyAcrossPages) {
  server_->putNode(peer("n1", 1));  // ourselves
  server_->putNode(peer("n2", 2));
  server_->putNode(node("n3", {"10.5.3.0/24"}));  // no annotations at all (SPEC.md §10.19)
  auto not_flannel = peerAnnotations(4);
  not_flannel[k("kube-subnet-manager")] = "false";
  server_->putNode(node("n4", {"10.5.4.0/24"}, not_flannel));
  auto malformed = peerAnnotations(5);
  malformed[k("public-ip")] = "nonsense";
  server_->putNode(node("n5", {"10.5.5.0/24"}, malformed));
  server_->putNode(peer("n6", 6));
  auto snap = sync(store()->leases());
  ASSERT_TRUE(snap) << snap.error().message;
  std::vector<LeaseEvent> as_events;
  for (const auto& l : snap->leases) {
    as_events.push_back({LeaseEventType::Added, l});
  }
  EXPECT_EQ(describe(as_events), "+10.5.2.0-24@192.168.91.2 +10.5.6.0-24@192.168.91.6 ");
  EXPECT_EQ(snap->revision, server_->resourceVersion());
  EXPECT_EQ(listRequests(), 3u);  // 6 nodes, 2 per page
  for (const auto& r : server_->requests()) {
    EXPECT_THAT(r.target, HasSubstr("limit=2"));
  }
}

TEST_F(KubeStoreTest, WatchTurnsNodeChangesIntoLeaseEvents) {
  server_->putNode(peer("n1", 1));
  server_->putNode(peer("n2", 2));
  auto s = store();
  auto snap = sync(s->leases());
  ASSERT_TRUE(snap);
  Revision since = snap->revision;
  server_->putNode(peer("n3", 3));
  EXPECT_EQ(describe(collect(s, since, 1)), "+10.5.3.0-24@192.168.91.3 ");
  // Heartbeats and changes of our own node are not events; the next event is the real change.
  server_->touchNodeStatus("n2");
  server_->setAnnotations("n1", {{k("public-ip"), "192.168.91.101"}});
  server_->setAnnotations("n2", {{k("public-ip"), "192.168.91.22"}});
  EXPECT_EQ(describe(collect(s, since, 1)), "+10.5.2.0-24@192.168.91.22 ");
  server_->setPodCidrs("n3", {"10.5.33.0/24"});
  EXPECT_EQ(describe(collect(s, since, 2)),
            "-10.5.3.0-24@192.168.91.3 +10.5.33.0-24@192.168.91.3 ");
  server_->deleteNode("n2");
  EXPECT_EQ(describe(collect(s, since, 1)), "-10.5.2.0-24@192.168.91.22 ");
  server_->removeAnnotation("n3", k("kube-subnet-manager"));
  EXPECT_EQ(describe(collect(s, since, 1)), "-10.5.33.0-24@192.168.91.3 ");
  // A node without annotations and a malformed one are skipped; the good one after them comes.
  server_->putNode(node("bare", {"10.5.7.0/24"}));
  auto bad = peerAnnotations(8);
  bad[k("backend-data")] = "{broken";
  server_->putNode(node("bad", {"10.5.8.0/24"}, bad));
  server_->putNode(peer("n9", 9));
  EXPECT_EQ(describe(collect(s, since, 1)), "+10.5.9.0-24@192.168.91.9 ");
  EXPECT_EQ(since, server_->resourceVersion());
  EXPECT_EQ(watchRequests(), 1u);  // one watch carried all of it
  for (const auto& r : server_->requests()) {
    if (r.target.find("watch=true") != std::string::npos) {
      EXPECT_THAT(r.target, HasSubstr("allowWatchBookmarks=true"));
      EXPECT_THAT(r.target, HasSubstr(fmt::format("resourceVersion={}", snap->revision)));
      EXPECT_THAT(r.target, HasSubstr("timeoutSeconds=60"));
    }
  }
}

TEST_F(KubeStoreTest, AWatchCutMidEventResumesWithoutLossOrDuplicates) {
  server_->putNode(peer("n2", 2));
  auto s = store();
  auto snap = sync(s->leases());
  ASSERT_TRUE(snap);
  Revision since = snap->revision;
  server_->putNode(peer("n3", 3));
  EXPECT_EQ(describe(collect(s, since, 1)), "+10.5.3.0-24@192.168.91.3 ");
  for (int round = 0; round < 3; ++round) {
    server_->putNode(peer(fmt::format("a{}", round), 10 + round));
    server_->cutWatches(/*mid_event=*/true);
    server_->putNode(peer(fmt::format("b{}", round), 20 + round));
    EXPECT_EQ(describe(collect(s, since, 2)),
              fmt::format("+10.5.{}.0-24@192.168.91.{} +10.5.{}.0-24@192.168.91.{} ", 10 + round,
                          10 + round, 20 + round, 20 + round));
  }
  EXPECT_EQ(listRequests(), 1u);  // resumed from the last version each time, never re-listed
  EXPECT_EQ(watchRequests(), 4u);
}

TEST_F(KubeStoreTest, AnEndedWatchIsReopenedFromTheLastVersion) {
  auto options = fastOptions();
  options.watch_timeout = 1s;
  auto s = store(options);
  auto snap = sync(s->leases());
  ASSERT_TRUE(snap);
  auto next = spawn(s->nextEvents(snap->revision));
  ASSERT_TRUE(runUntil([&] { return watchRequests() >= 2; }, 5s));  // timeoutSeconds=1 elapsed
  server_->endWatches();
  ASSERT_TRUE(runUntil([&] { return watchRequests() >= 3; }, 5s));
  server_->putNode(peer("n4", 4));
  ASSERT_TRUE(runUntil([&] { return next->done; }));
  ASSERT_TRUE(next->value && *next->value);
  EXPECT_EQ(describe((*next->value)->events), "+10.5.4.0-24@192.168.91.4 ");
  EXPECT_FALSE((*next->value)->resync);
}

TEST_F(KubeStoreTest, AServerThatEndsEveryWatchAtOnceIsAnErrorNotASpin) {
  auto options = fastOptions();
  options.watch_timeout = 0s;  // timeoutSeconds=0: the server ends each watch immediately
  auto s = store(options);
  auto snap = sync(s->leases());
  ASSERT_TRUE(snap);
  auto r = sync(s->nextEvents(snap->revision));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::Unavailable);
  EXPECT_THAT(r.error().message, HasSubstr("keeps ending the node watch"));
  EXPECT_EQ(watchRequests(), 3u);
}

TEST_F(KubeStoreTest, GoneRelistsAndReturnsTheExactDifference) {
  for (int i = 2; i <= 4; ++i) {
    server_->putNode(peer(fmt::format("n{}", i), i));
  }
  auto s = store();
  auto snap = sync(s->leases());
  ASSERT_TRUE(snap);
  ASSERT_EQ(snap->leases.size(), 3u);
  // While nobody watches: one peer goes, one changes, one comes, one only heartbeats.
  server_->deleteNode("n2");
  server_->setAnnotations("n4", {{k("public-ip"), "192.168.91.44"}});
  server_->putNode(peer("n5", 5));
  server_->touchNodeStatus("n3");
  server_->compact();
  auto batch = sync(s->nextEvents(snap->revision));
  ASSERT_TRUE(batch) << batch.error().message;
  EXPECT_TRUE(batch->resync);
  EXPECT_EQ(describe(batch->events),
            "-10.5.2.0-24@192.168.91.2 +10.5.4.0-24@192.168.91.44 +10.5.5.0-24@192.168.91.5 ");
  EXPECT_EQ(batch->revision, server_->resourceVersion());
  // And the watch goes on from the relist.
  server_->putNode(peer("n6", 6));
  auto after = sync(s->nextEvents(batch->revision));
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_FALSE(after->resync);
  EXPECT_EQ(describe(after->events), "+10.5.6.0-24@192.168.91.6 ");
}

TEST_F(KubeStoreTest, GoneWhileWatchingAlsoRelists) {
  server_->putNode(peer("n2", 2));
  auto s = store();
  auto snap = sync(s->leases());
  ASSERT_TRUE(snap);
  auto next = spawn(s->nextEvents(snap->revision));
  ASSERT_TRUE(runUntil([&] { return server_->openWatchCount() == 1; }));
  // The watch is cut, and history is compacted before it comes back.
  server_->putPod("ns", "p", "n2");  // a change elsewhere: the node watch sees nothing
  server_->compact();
  server_->cutWatches();
  server_->putNode(peer("n3", 3));
  ASSERT_TRUE(runUntil([&] { return next->done; }));
  ASSERT_TRUE(next->value && *next->value) << (next->value ? next->value->error().message : "");
  EXPECT_TRUE((*next->value)->resync);
  EXPECT_EQ(describe((*next->value)->events), "+10.5.3.0-24@192.168.91.3 ");
}

TEST_F(KubeStoreTest, BookmarksMoveTheResumePointForward) {
  server_->putNode(peer("n2", 2));
  auto s = store();
  auto snap = sync(s->leases());
  ASSERT_TRUE(snap);
  auto next = spawn(s->nextEvents(snap->revision));
  ASSERT_TRUE(runUntil([&] { return server_->openWatchCount() == 1; }));
  server_->putPod("ns", "p", "n2");  // the version moves on without a node event
  server_->sendBookmarks();
  runFor(200ms);
  EXPECT_FALSE(next->done);  // a bookmark is not an event
  server_->compact();        // everything before the bookmark is gone
  server_->cutWatches();
  server_->putNode(peer("n3", 3));
  ASSERT_TRUE(runUntil([&] { return next->done; }));
  ASSERT_TRUE(next->value && *next->value) << (next->value ? next->value->error().message : "");
  EXPECT_FALSE((*next->value)->resync);  // resumed from the bookmark: no 410, no relist
  EXPECT_EQ(describe((*next->value)->events), "+10.5.3.0-24@192.168.91.3 ");
  EXPECT_EQ(listRequests(), 1u);
}

TEST_F(KubeStoreTest, ABurstOfEventsArrivesCompletelyAndInOrder) {
  auto s = store();
  auto snap = sync(s->leases());
  ASSERT_TRUE(snap);
  std::vector<KubeNodeSpec> burst;
  for (int i = 10; i < 60; ++i) {
    burst.push_back(peer(fmt::format("p{}", i), i));
  }
  server_->putNodes(burst);
  Revision since = snap->revision;
  auto events = collect(s, since, 50);
  ASSERT_EQ(events.size(), 50u);
  for (int i = 10; i < 60; ++i) {
    EXPECT_EQ(subnetKeyName(events[static_cast<size_t>(i - 10)].lease.subnet),
              fmt::format("10.5.{}.0-24", i));
  }
  EXPECT_EQ(since, server_->resourceVersion());
}

// ---------------------------------------------------------------- credentials

TEST_F(KubeStoreTest, TokenFileRotationIsPickedUp) {
  startServer(
      KubeApiServerOptions{.tokens = {{"token-one", "system:serviceaccount:kube-flannel:flannel"}},
                           .require_auth = true});
  auto token = write("token", "token-one\n");
  auto kubeconfig = write(
      "kubeconfig", fmt::format("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                                "clusters:\n- name: k\n  cluster:\n    server: {}\n"
                                "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
                                "users:\n- name: u\n  user:\n    tokenFile: {}\n",
                                server_->url(), token));
  auto s = tryStore(
      fastOptions(), {{"NODE_NAME", "n1"}},
      ClientConfigInputs{
          .kube_api_url = "", .kubeconfig_file = kubeconfig, .in_cluster = {}, .env = env({})});
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_TRUE(sync((*s)->leases()));
  EXPECT_EQ(server_->requests().back().authorization, "Bearer token-one");
  // The kubelet rotates the bound token; the API server stops accepting the old one.
  server_->setToken("token-two-rotated", "system:serviceaccount:kube-flannel:flannel");
  write("token", "token-two-rotated\n");
  server_->removeToken("token-one");
  auto after = sync((*s)->leases());
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(server_->requests().back().authorization, "Bearer token-two-rotated");
  EXPECT_EQ(server_->requests().back().status, 200u);
}

class KubeStoreTlsTest : public KubeStoreTest {
 protected:
  void SetUp() override {
    KubeStoreTest::SetUp();
    auto pki = flannel::test::makeTestPki(dir_.string());
    ASSERT_TRUE(pki) << pki.error().message;
    pki_ = *pki;
    startServer(
        KubeApiServerOptions{.tls = true,
                             .cert_file = pki_.server_cert,
                             .key_file = pki_.server_key,
                             .client_ca_file = pki_.ca_pem,
                             .tokens = {{"sa-token", "system:serviceaccount:kube-flannel:flannel"}},
                             .require_auth = true});
    server_->putNode(node("n1", {"10.5.1.0/24"}));
  }
  static std::string b64File(const std::string& path) {
    auto text = readTextFile(path, "pem").value();
    return base64Encode(text);
  }
  flannel::test::TestPki pki_;
};

TEST_F(KubeStoreTlsTest, InClusterConfig) {
  InClusterPaths paths{.token_file = write("sa-token", "sa-token\n"),
                       .ca_file = pki_.ca_pem,
                       .namespace_file = write("namespace", "kube-flannel")};
  auto inputs = ClientConfigInputs{
      .kube_api_url = "",
      .kubeconfig_file = "",
      .in_cluster = paths,
      .env = env({{"KUBERNETES_SERVICE_HOST", "127.0.0.1"},
                  {"KUBERNETES_SERVICE_PORT", std::to_string(server_->port())}})};
  auto s = tryStore(fastOptions(), {{"NODE_NAME", "n1"}}, inputs);
  ASSERT_TRUE(s) << s.error().message;
  auto r = sync((*s)->acquireLease(config(), AcquireRequest{.attrs = vxlanAttrs(11)}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(server_->requests().back().user, "system:serviceaccount:kube-flannel:flannel");

  // The wrong CA: the server's certificate is not trusted.
  paths.ca_file = pki_.other_ca_pem;
  inputs.in_cluster = paths;
  auto wrong = tryStore(fastOptions(), {{"NODE_NAME", "n1"}}, inputs);
  ASSERT_TRUE(wrong);
  auto l = sync((*wrong)->leases());
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, Errc::Unavailable);
  EXPECT_THAT(l.error().message, HasSubstr("certificate verify failed"));
}

TEST_F(KubeStoreTlsTest, KubeconfigWithClientCertificateData) {
  auto kubeconfig = write(
      "kubeconfig", fmt::format("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                                "clusters:\n- name: k\n  cluster:\n    server: {}\n"
                                "    certificate-authority-data: {}\n"
                                "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
                                "users:\n- name: u\n  user:\n    client-certificate-data: {}\n"
                                "    client-key-data: {}\n",
                                server_->url(), b64File(pki_.ca_pem), b64File(pki_.client_cert),
                                b64File(pki_.client_key)));
  auto s = tryStore(
      fastOptions(), {{"NODE_NAME", "n1"}},
      ClientConfigInputs{
          .kube_api_url = "", .kubeconfig_file = kubeconfig, .in_cluster = {}, .env = env({})});
  ASSERT_TRUE(s) << s.error().message;
  auto snap = sync((*s)->leases());
  ASSERT_TRUE(snap) << snap.error().message;
  EXPECT_EQ(server_->requests().back().user, "flannel-client");
  // The watch goes over TLS too.
  server_->putNode(peer("n2", 2));
  Revision since = snap->revision;
  EXPECT_EQ(describe(collect(*s, since, 1)), "+10.5.2.0-24@192.168.91.2 ");
}

TEST_F(KubeStoreTlsTest, InsecureSkipTlsVerifyAcceptsAnyServerCertificate) {
  auto kubeconfig = write(
      "kubeconfig", fmt::format("current-context: c\n"
                                "clusters:\n- name: k\n  cluster:\n    server: {}\n"
                                "    insecure-skip-tls-verify: true\n"
                                "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
                                "users:\n- name: u\n  user:\n    token: sa-token\n",
                                server_->url()));
  auto s = tryStore(
      fastOptions(), {{"NODE_NAME", "n1"}},
      ClientConfigInputs{
          .kube_api_url = "", .kubeconfig_file = kubeconfig, .in_cluster = {}, .env = env({})});
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_TRUE(sync((*s)->leases()));
}

}  // namespace
}  // namespace flannel::store::kube
