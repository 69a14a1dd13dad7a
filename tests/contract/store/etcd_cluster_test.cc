// EtcdStore against a 3-member etcd cluster: leader loss and a full outage (SPEC.md §3,
// DESIGN.md rule 5: the control plane recovers without a restart).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "contract/store/run_sync.h"
#include "store/etcd/etcd_store.h"
#include "support/etcd_cluster.h"
#include "support/test_run.h"

namespace flannel::store::etcd {
namespace {

using flannel::test::runSync;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

LeaseAttrs hostAttrs(int n) {
  return LeaseAttrs{.public_ip = Ip4::fromBytes(192, 168, 91, static_cast<uint8_t>(n)),
                    .public_ipv6 = std::nullopt,
                    .backend_type = "host-gw",
                    .backend_data = "",
                    .backend_v6_data = ""};
}

class EtcdClusterStore : public ::testing::Test {
 protected:
  void SetUp() override {
    auto run = flannel::test::TestRun::create();
    ASSERT_TRUE(run) << run.error().message;
    run_ = std::move(*run);
    auto cluster = flannel::test::EtcdCluster::startOnLoopback(*run_, 3);
    ASSERT_TRUE(cluster) << cluster.error().message;
    cluster_ = std::move(*cluster);
    ASSERT_TRUE(
        cluster_->etcdctl({"put", "/coreos.com/network/config",
                           R"({"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}})"}));
  }
  void TearDown() override {
    cluster_.reset();
    run_.reset();
  }
  std::unique_ptr<EtcdStore> newStore() {
    std::vector<std::string> endpoints;
    for (size_t i = 0; i < cluster_->size(); ++i) {
      endpoints.push_back(cluster_->member(i).member().clientUrl());
    }
    auto kv = EtcdKv::create(io_.get_executor(), EtcdOptions{.endpoints = endpoints,
                                                             .tls = {},
                                                             .username = "",
                                                             .password = "",
                                                             .request_timeout = 2000ms});
    return std::make_unique<EtcdStore>(std::move(*kv), EtcdStoreOptions{});
  }
  // What the daemon does with a failed store call: retry with a pause, for a bounded time.
  template <class F>
  auto retry(F op, std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto r = runSync(io_, op(), 10s);
      if ((r && *r) || std::chrono::steady_clock::now() > deadline) {
        return r;
      }
      std::this_thread::sleep_for(200ms);
    }
  }
  net::io_context io_;
  std::unique_ptr<flannel::test::TestRun> run_;
  std::unique_ptr<flannel::test::EtcdCluster> cluster_;
};

TEST_F(EtcdClusterStore, LeaderLossLosesNoLeaseAndTheWatchContinues) {
  auto manager = newStore();
  auto cfg = runSync(io_, manager->networkConfig()).value().value();
  auto mine = runSync(io_, manager->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(11)}))
                  .value()
                  .value();
  auto watcher = newStore();
  auto snap = runSync(io_, watcher->leases()).value().value();
  ASSERT_EQ(snap.leases.size(), 1u);

  auto leader = cluster_->leader();
  ASSERT_TRUE(leader) << leader.error().message;
  ASSERT_TRUE(cluster_->killMember(*leader));

  auto renewed = retry([&] { return manager->renewLease(mine); }, 20s);
  ASSERT_TRUE(renewed && *renewed) << "renew never succeeded after the leader died";
  auto peer_store = newStore();  // must outlive the coroutines started on it
  auto peer = retry(
      [&] { return peer_store->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(12)}); }, 20s);
  ASSERT_TRUE(peer && *peer);
  auto batch = retry([&] { return watcher->nextEvents(snap.revision); }, 20s);
  ASSERT_TRUE(batch && *batch) << "the watch did not resume on another member";
  ASSERT_EQ((*batch)->events.size(), 1u);
  EXPECT_EQ((*batch)->events[0].lease.subnet, (*peer)->subnet);
  auto after = retry([&] { return watcher->leases(); }, 10s);
  ASSERT_TRUE(after && *after);
  EXPECT_EQ((*after)->leases.size(), 2u) << "a lease was lost";
}

TEST_F(EtcdClusterStore, AFullOutageOf30SecondsIsSurvivedWithoutARestart) {
  auto manager = newStore();
  auto cfg = runSync(io_, manager->networkConfig()).value().value();
  auto mine = runSync(io_, manager->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(11)}))
                  .value()
                  .value();
  auto snap = runSync(io_, manager->leases()).value().value();
  for (size_t i = 0; i < cluster_->size(); ++i) {
    ASSERT_TRUE(cluster_->stopMember(i));
  }
  auto down = runSync(io_, manager->renewLease(mine)).value();
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code, Errc::Unavailable);
  EXPECT_THAT(down.error().message, HasSubstr("all etcd endpoints failed"));
  std::this_thread::sleep_for(30s);  // the outage itself is what is under test
  for (size_t i = 0; i < cluster_->size(); ++i) {
    ASSERT_TRUE(cluster_->member(i).start());
  }
  ASSERT_TRUE(cluster_->waitHealthy());
  // The same store objects carry on.
  auto renewed = retry([&] { return manager->renewLease(mine); }, 20s);
  ASSERT_TRUE(renewed && *renewed) << (renewed ? renewed->error().message : "timeout");
  auto peer_store = newStore();  // must outlive the coroutines started on it
  auto peer = retry(
      [&] { return peer_store->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(12)}); }, 20s);
  ASSERT_TRUE(peer && *peer);
  auto batch = retry([&] { return manager->nextEvents(snap.revision); }, 20s);
  ASSERT_TRUE(batch && *batch);
  ASSERT_EQ((*batch)->events.size(), 1u);
  EXPECT_EQ((*batch)->events[0].lease.subnet, (*peer)->subnet);
}

TEST_F(EtcdClusterStore, AWatchCutOffAndCompactedPastResyncsExactlyTheMissedChanges) {
  auto cfg = runSync(io_, newStore()->networkConfig()).value().value();
  auto stay_store = newStore();
  auto go_store = newStore();
  auto stay = runSync(io_, stay_store->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(11)}))
                  .value()
                  .value();
  auto go = runSync(io_, go_store->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(12)}))
                .value()
                .value();
  auto watcher = newStore();
  auto snap = runSync(io_, watcher->leases()).value().value();
  // Open the watch stream for real: it delivers one event, then stays connected.
  auto first_store = newStore();
  auto first = runSync(io_, first_store->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(13)}))
                   .value()
                   .value();
  auto b1 = runSync(io_, watcher->nextEvents(snap.revision)).value().value();
  ASSERT_EQ(b1.events.size(), 1u);
  EXPECT_EQ(b1.events[0].lease.subnet, first.subnet);
  // Cut the watch: stop the member it is connected to.
  size_t cut = cluster_->size();
  for (size_t i = 0; i < cluster_->size(); ++i) {
    if (cluster_->member(i).member().clientUrl() == watcher->kv().currentEndpoint()) {
      cut = i;
    }
  }
  ASSERT_LT(cut, cluster_->size());
  ASSERT_TRUE(cluster_->stopMember(cut));
  // Meanwhile a host leaves, another joins, and the history is compacted.
  ASSERT_TRUE(
      cluster_->etcdctl({"del", "/coreos.com/network/subnets/" + subnetKeyName(go.subnet)}));
  auto joined_store = newStore();
  auto joined = retry(
      [&] { return joined_store->acquireLease(cfg, AcquireRequest{.attrs = hostAttrs(14)}); }, 20s);
  ASSERT_TRUE(joined && *joined);
  auto rev = cluster_->etcdctl({"get", "/coreos.com/network/config", "-w", "json"});
  ASSERT_TRUE(rev);
  auto pos = rev->out.find("\"revision\":");
  ASSERT_NE(pos, std::string::npos);
  std::string revision = rev->out.substr(pos + 11, rev->out.find_first_of(",}", pos) - pos - 11);
  ASSERT_TRUE(cluster_->etcdctl({"compaction", revision}));
  auto batch = retry([&] { return watcher->nextEvents(b1.revision); }, 20s);
  ASSERT_TRUE(batch && *batch);
  EXPECT_TRUE((*batch)->resync);
  std::set<std::pair<int, SubnetKey>> seen;
  for (const auto& ev : (*batch)->events) {
    seen.insert({static_cast<int>(ev.type), ev.lease.subnet});
  }
  EXPECT_EQ(seen, (std::set<std::pair<int, SubnetKey>>{
                      {static_cast<int>(LeaseEventType::Removed), go.subnet},
                      {static_cast<int>(LeaseEventType::Added), (*joined)->subnet}}));
  (void)stay;
}

}  // namespace
}  // namespace flannel::store::etcd
