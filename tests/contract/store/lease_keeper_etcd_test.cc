// LeaseKeeper with EtcdStore on a real etcd: the lease is renewed before it expires, and a
// deleted lease ends the keeper with the reason (SPEC.md §3.4, §3.9).
#include "daemon/lease_keeper.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>

#include "contract/store/run_sync.h"
#include "store/etcd/etcd_store.h"
#include "support/etcd_cluster.h"
#include "support/test_run.h"

namespace flannel::daemon {
namespace {

using flannel::test::runSync;
using namespace std::chrono_literals;

TEST(LeaseKeeperEtcd, RenewsBeforeExpiryAndStopsWhenTheLeaseIsDeleted) {
  auto run = flannel::test::TestRun::create().value();
  auto cluster = flannel::test::EtcdCluster::startOnLoopback(*run, 1).value();
  ASSERT_TRUE(
      cluster->etcdctl({"put", "/coreos.com/network/config", R"({"Network": "10.5.0.0/16"})"}));
  net::io_context io;
  auto kv =
      store::etcd::EtcdKv::create(
          io.get_executor(), store::etcd::EtcdOptions{.endpoints = {cluster->clientEndpoints()},
                                                      .tls = {},
                                                      .username = "",
                                                      .password = "",
                                                      .request_timeout = 3000ms})
          .value();
  auto* raw = kv.get();
  // 6 s leases renewed 4 s before expiry: a renewal every ~2 s.
  store::etcd::EtcdStore store(std::move(kv),
                               store::etcd::EtcdStoreOptions{.prefix = "/coreos.com/network",
                                                             .lease_ttl = 6s,
                                                             .watch_idle_timeout = 10min,
                                                             .max_acquire_attempts = 10});
  auto cfg = runSync(io, store.networkConfig()).value().value();
  LeaseAttrs attrs{.public_ip = Ip4::fromBytes(192, 168, 91, 11),
                   .public_ipv6 = std::nullopt,
                   .backend_type = "host-gw",
                   .backend_data = "",
                   .backend_v6_data = ""};
  auto lease =
      runSync(io, store.acquireLease(cfg, store::AcquireRequest{.attrs = attrs})).value().value();
  const auto key = "/coreos.com/network/subnets/" + subnetKeyName(lease.subnet);
  const int64_t etcd_lease = runSync(io, raw->get(key)).value().value().kvs.at(0).lease;

  LeaseKeeper keeper(store, lease, 4s, 500ms);
  std::optional<Error> ended;
  net::co_spawn(io, keeper.run(), [&](std::exception_ptr e, Error why) {
    ASSERT_FALSE(e);
    ended = why;
  });
  // Run 8 s: the 6 s lease must still exist (renewed at least twice) and keep its etcd lease.
  auto stop = std::chrono::steady_clock::now() + 8s;
  while (std::chrono::steady_clock::now() < stop) {
    io.run_for(100ms);
  }
  ASSERT_FALSE(ended) << ended->message;
  auto now = runSync(io, raw->get(key)).value().value();
  ASSERT_EQ(now.kvs.size(), 1u) << "the lease expired: it was not renewed";
  EXPECT_EQ(now.kvs[0].lease, etcd_lease) << "renewal keeps the same etcd lease";
  ASSERT_TRUE(keeper.lease().expiration);
  EXPECT_GT(*keeper.lease().expiration, *lease.expiration);

  ASSERT_TRUE(cluster->etcdctl({"del", key}));
  for (int i = 0; i < 100 && !ended; ++i) {
    io.run_for(100ms);
  }
  ASSERT_TRUE(ended) << "the keeper did not notice the deleted lease";
  EXPECT_EQ(ended->code, Errc::Conflict);
  EXPECT_THAT(ended->message, ::testing::HasSubstr("deleted or taken over"));
}

}  // namespace
}  // namespace flannel::daemon
