#include "daemon/lease_keeper.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>

#include "support/fake_store.h"

namespace flannel::daemon {
namespace {

using namespace std::chrono_literals;

Lease lease(const char* subnet, int host) {
  Lease l;
  l.subnet.ipv4 = IpNet::parse(subnet).value();
  l.attrs.public_ip = Ip4::fromBytes(192, 168, 91, static_cast<uint8_t>(host));
  return l;
}

TEST(RenewAt, IsTheMarginBeforeExpiry) {
  SystemTime exp = SystemTime{} + 24h;
  EXPECT_EQ(renewAt(exp, 60min), SystemTime{} + 23h);
  EXPECT_EQ(renewAt(exp, 1439min), SystemTime{} + 1min);
}

TEST(OwnLeaseAfter, RemovalRevokesAndOtherAttrsMeanTakenOver) {
  Lease own = lease("10.5.1.0/24", 11);
  store::LeaseBatch peers{.events = {{store::LeaseEventType::Added, lease("10.5.2.0/24", 12)},
                                     {store::LeaseEventType::Removed, lease("10.5.3.0/24", 13)}}};
  EXPECT_EQ(ownLeaseAfter(own, peers), OwnLeaseState::Held);
  store::LeaseBatch removed{.events = {{store::LeaseEventType::Removed, own}}};
  EXPECT_EQ(ownLeaseAfter(own, removed), OwnLeaseState::Revoked);
  store::LeaseBatch taken{.events = {{store::LeaseEventType::Added, lease("10.5.1.0/24", 99)}}};
  EXPECT_EQ(ownLeaseAfter(own, taken), OwnLeaseState::TakenOver);
  store::LeaseBatch same{.events = {{store::LeaseEventType::Added, own}}};
  EXPECT_EQ(ownLeaseAfter(own, same), OwnLeaseState::Held);
  // The last event about our subnet decides: removed, then re-added with our attrs.
  store::LeaseBatch back{
      .events = {{store::LeaseEventType::Removed, own}, {store::LeaseEventType::Added, own}}};
  EXPECT_EQ(ownLeaseAfter(own, back), OwnLeaseState::Held);
}

TEST(WaitForNetworkConfig, RetriesUntilTheConfigAppears) {
  auto state = std::make_shared<flannel::test::FakeStoreState>();
  flannel::test::FakeStore store(state);
  net::io_context io;
  std::optional<NetworkConfig> got;
  net::co_spawn(io, waitForNetworkConfig(store, 1ms, 60s),
                [&](std::exception_ptr e, NetworkConfig c) {
                  ASSERT_FALSE(e);
                  got = std::move(c);
                });
  // A few failed attempts: no config, then a broken one, then a valid one.
  for (int i = 0; i < 5; ++i) {
    io.run_for(5ms);
  }
  EXPECT_FALSE(got);
  state->config_json = R"({"Network": 5})";
  for (int i = 0; i < 5; ++i) {
    io.run_for(5ms);
  }
  EXPECT_FALSE(got);
  state->config_json = R"({"Network": "10.5.0.0/16"})";
  for (int i = 0; i < 200 && !got; ++i) {
    io.run_for(5ms);
  }
  ASSERT_TRUE(got);
  EXPECT_EQ(got->network->toString(), "10.5.0.0/16");
}

}  // namespace
}  // namespace flannel::daemon
