// The SubnetStore contract (store/store.h), run against FakeStore and against EtcdStore on a
// real etcd: the fake is trusted in unit tests only because these cases pass on both.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <set>

#include "contract/store/run_sync.h"
#include "store/allocator.h"
#include "store/etcd/etcd_store.h"
#include "support/etcd_cluster.h"
#include "support/fake_store.h"
#include "support/test_run.h"

namespace flannel::store {
namespace {

using flannel::test::runSync;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

IpNet net(const char* s) {
  return IpNet::parse(s).value();
}

LeaseAttrs hostAttrs(int n, std::string mac = "aa:bb:cc:dd:ee:01") {
  return LeaseAttrs{.public_ip = Ip4::fromBytes(192, 168, 91, static_cast<uint8_t>(n)),
                    .public_ipv6 = std::nullopt,
                    .backend_type = "vxlan",
                    .backend_data = R"({"VNI":1,"VtepMAC":")" + mac + R"("})",
                    .backend_v6_data = ""};
}

SubnetKey v4key(const char* s) {
  return SubnetKey{.ipv4 = net(s), .ipv6 = std::nullopt};
}

// Each environment gives the suite fresh stores over one shared backing store, and a back
// door to change that store the way an operator or another node would.
class FakeEnv {
 public:
  explicit FakeEnv(net::io_context&) {}
  std::unique_ptr<SubnetStore> newStore() {
    return std::make_unique<flannel::test::FakeStore>(state_);
  }
  void putConfig(const std::string& json) { state_->config_json = json; }
  void putReservation(const SubnetKey& key, const LeaseAttrs& attrs) {
    state_->put(key, attrs, true);
  }
  void deleteLease(const SubnetKey& key) { state_->erase(key); }
  void compact() { state_->compact(); }

 private:
  std::shared_ptr<flannel::test::FakeStoreState> state_ =
      std::make_shared<flannel::test::FakeStoreState>();
};

class EtcdEnv {
 public:
  explicit EtcdEnv(net::io_context& io) : io_(io) {
    prefix_ = std::string("/contract/") +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/net";
    raw_ = newKv();
  }
  static void startEtcd() {
    if (cluster_) {
      return;
    }
    auto run = flannel::test::TestRun::create();
    ASSERT_TRUE(run) << run.error().message;
    run_ = std::move(*run);
    auto cluster = flannel::test::EtcdCluster::startOnLoopback(*run_, 1);
    ASSERT_TRUE(cluster) << cluster.error().message;
    cluster_ = std::move(*cluster);
  }
  static void stopEtcd() {
    cluster_.reset();
    run_.reset();
  }
  std::unique_ptr<SubnetStore> newStore() {
    return std::make_unique<etcd::EtcdStore>(
        newKv(),
        etcd::EtcdStoreOptions{.prefix = prefix_,
                               .lease_ttl = std::chrono::hours(24),
                               .watch_idle_timeout = 10min,
                               .max_acquire_attempts = 10},
        [](size_t) { return size_t{0}; });
  }
  void putConfig(const std::string& json) {
    ASSERT_TRUE(run(raw_->put(prefix_ + "/config", json)));
  }
  void putReservation(const SubnetKey& key, const LeaseAttrs& attrs) {
    ASSERT_TRUE(
        run(raw_->put(prefix_ + "/subnets/" + subnetKeyName(key), encodeLeaseAttrs(attrs))));
  }
  void deleteLease(const SubnetKey& key) {
    ASSERT_TRUE(run(raw_->deleteKey(prefix_ + "/subnets/" + subnetKeyName(key))));
  }
  void compact() {
    auto now = run(raw_->get(prefix_ + "/config"));
    ASSERT_TRUE(now);
    ASSERT_TRUE(run(raw_->compact(now->revision)));
  }

 private:
  template <class T>
  T run(async::Awaitable<T> a) {
    return runSync(io_, std::move(a)).value();
  }
  std::unique_ptr<etcd::EtcdKv> newKv() {
    return etcd::EtcdKv::create(io_.get_executor(),
                                etcd::EtcdOptions{.endpoints = {cluster_->clientEndpoints()},
                                                  .tls = {},
                                                  .username = "",
                                                  .password = "",
                                                  .request_timeout = 5000ms})
        .value();
  }
  net::io_context& io_;
  std::string prefix_;
  std::unique_ptr<etcd::EtcdKv> raw_;
  static inline std::unique_ptr<flannel::test::TestRun> run_;
  static inline std::unique_ptr<flannel::test::EtcdCluster> cluster_;
};

template <class Env>
class StoreContract : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if constexpr (std::is_same_v<Env, EtcdEnv>) {
      EtcdEnv::startEtcd();
    }
  }
  static void TearDownTestSuite() {
    if constexpr (std::is_same_v<Env, EtcdEnv>) {
      EtcdEnv::stopEtcd();
    }
  }
  template <class T>
  T sync(async::Awaitable<T> a) {
    auto r = runSync(io_, std::move(a));
    EXPECT_TRUE(r.has_value()) << "coroutine did not finish in time";
    return r ? std::move(*r) : T(makeError(Errc::Timeout, "test deadline"));
  }
  NetworkConfig config(const std::string& json) {
    env_.putConfig(json);
    return sync(env_.newStore()->networkConfig()).value();
  }
  net::io_context io_;
  Env env_{io_};
};

using Envs = ::testing::Types<FakeEnv, EtcdEnv>;
class EnvNames {
 public:
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, FakeEnv> ? "Fake" : "Etcd";
  }
};
TYPED_TEST_SUITE(StoreContract, Envs, EnvNames);

TYPED_TEST(StoreContract, ConfigIsNotFoundUntilWritten) {
  auto store = this->env_.newStore();
  auto missing = this->sync(store->networkConfig());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::NotFound);
  this->env_.putConfig(R"({"Network": "10.5.0.0/16"})");
  auto found = this->sync(store->networkConfig());
  ASSERT_TRUE(found) << found.error().message;
  EXPECT_EQ(found->subnet_len, 24);
}

TYPED_TEST(StoreContract, HostsGetDistinctSubnetsInsideTheRange) {
  auto cfg = this->config(
      R"({"Network": "10.5.0.0/16", "SubnetMin": "10.5.10.0", "SubnetMax": "10.5.12.0"})");
  std::set<SubnetKey> got;
  for (int host = 11; host <= 13; ++host) {
    auto l = this->sync(
        this->env_.newStore()->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(host)}));
    ASSERT_TRUE(l) << l.error().message;
    EXPECT_TRUE(subnetFitsConfig(l->subnet, cfg));
    EXPECT_TRUE(l->expiration.has_value());
    EXPECT_FALSE(l->reservation);
    got.insert(l->subnet);
  }
  EXPECT_EQ(got.size(), 3u);
  auto full =
      this->sync(this->env_.newStore()->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(14)}));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Errc::Conflict);
  EXPECT_THAT(full.error().message, HasSubstr("network is full"));
}

TYPED_TEST(StoreContract, SamePublicIpGetsItsSubnetBackWithNewAttrs) {
  auto cfg = this->config(R"({"Network": "10.5.0.0/16"})");
  auto first =
      this->sync(this->env_.newStore()->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(11)}));
  ASSERT_TRUE(first);
  auto attrs = hostAttrs(11, "aa:bb:cc:dd:ee:99");
  auto again = this->sync(this->env_.newStore()->acquireLease(cfg, AcquireRequest{.attrs = attrs}));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->subnet, first->subnet);
  EXPECT_EQ(again->attrs, attrs);
  auto snap = this->sync(this->env_.newStore()->leases()).value();
  ASSERT_EQ(snap.leases.size(), 1u);
  EXPECT_EQ(snap.leases[0].attrs, attrs);
}

TYPED_TEST(StoreContract, PreviousSubnetIsReusedWhenFree) {
  auto cfg = this->config(R"({"Network": "10.5.0.0/16"})");
  auto l = this->sync(this->env_.newStore()->acquireLease(
      cfg, AcquireRequest{.attrs = hostAttrs(11), .previous_subnet = net("10.5.77.0/24")}));
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->subnet, v4key("10.5.77.0/24"));
}

TYPED_TEST(StoreContract, ReservationsGoOnlyToTheirOwner) {
  auto cfg = this->config(R"({"Network": "10.5.0.0/28", "SubnetLen": 30})");
  this->env_.putReservation(v4key("10.5.0.4/30"), hostAttrs(50));
  auto other =
      this->sync(this->env_.newStore()->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(11)}));
  ASSERT_TRUE(other);
  EXPECT_NE(other->subnet, v4key("10.5.0.4/30"));
  auto owner =
      this->sync(this->env_.newStore()->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(50)}));
  ASSERT_TRUE(owner) << owner.error().message;
  EXPECT_EQ(owner->subnet, v4key("10.5.0.4/30"));
  EXPECT_TRUE(owner->reservation);
  auto snap = this->sync(this->env_.newStore()->leases()).value();
  for (const auto& l : snap.leases) {
    EXPECT_EQ(l.reservation, l.subnet == v4key("10.5.0.4/30"));
  }
}

TYPED_TEST(StoreContract, RenewFailsWithConflictOnceTheLeaseIsDeleted) {
  auto cfg = this->config(R"({"Network": "10.5.0.0/16"})");
  auto store = this->env_.newStore();
  auto l = this->sync(store->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(11)}));
  ASSERT_TRUE(l);
  auto renewed = this->sync(store->renewLease(*l));
  ASSERT_TRUE(renewed) << renewed.error().message;
  EXPECT_TRUE(renewed->expiration.has_value());
  this->env_.deleteLease(l->subnet);
  auto lost = this->sync(store->renewLease(*l));
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, Errc::Conflict);
}

TYPED_TEST(StoreContract, WatchSeesAddsAndRemovesWithLastAttrs) {
  auto cfg = this->config(R"({"Network": "10.5.0.0/16"})");
  auto watcher = this->env_.newStore();
  auto snap = this->sync(watcher->leases()).value();
  auto peer =
      this->sync(this->env_.newStore()->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(12)}));
  ASSERT_TRUE(peer);
  auto added = this->sync(watcher->nextEvents(snap.revision));
  ASSERT_TRUE(added) << added.error().message;
  ASSERT_EQ(added->events.size(), 1u);
  EXPECT_EQ(added->events[0].type, LeaseEventType::Added);
  EXPECT_EQ(added->events[0].lease.subnet, peer->subnet);
  this->env_.deleteLease(peer->subnet);
  auto removed = this->sync(watcher->nextEvents(added->revision));
  ASSERT_TRUE(removed) << removed.error().message;
  ASSERT_EQ(removed->events.size(), 1u);
  EXPECT_EQ(removed->events[0].type, LeaseEventType::Removed);
  EXPECT_EQ(removed->events[0].lease.attrs, hostAttrs(12));
}

TYPED_TEST(StoreContract, CompactionIsBridgedByAnExactResync) {
  auto cfg = this->config(R"({"Network": "10.5.0.0/16"})");
  auto stay =
      this->sync(this->env_.newStore()->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(11)}));
  auto go =
      this->sync(this->env_.newStore()->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(12)}));
  ASSERT_TRUE(stay && go);
  auto watcher = this->env_.newStore();
  auto snap = this->sync(watcher->leases()).value();
  // While the watcher is away: a host joins, another leaves, and history is compacted.
  auto joined =
      this->sync(this->env_.newStore()->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(13)}));
  ASSERT_TRUE(joined);
  this->env_.deleteLease(go->subnet);
  this->env_.compact();
  auto batch = this->sync(watcher->nextEvents(snap.revision));
  ASSERT_TRUE(batch) << batch.error().message;
  EXPECT_TRUE(batch->resync);
  std::set<std::pair<int, SubnetKey>> seen;
  for (const auto& ev : batch->events) {
    seen.insert({static_cast<int>(ev.type), ev.lease.subnet});
  }
  EXPECT_EQ(seen, (std::set<std::pair<int, SubnetKey>>{
                      {static_cast<int>(LeaseEventType::Removed), go->subnet},
                      {static_cast<int>(LeaseEventType::Added), joined->subnet}}));
}

}  // namespace
}  // namespace flannel::store
