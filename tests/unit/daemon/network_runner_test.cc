#include "daemon/network_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "backend/hostgw/hostgw_network.h"
#include "support/fake_kernel.h"
#include "support/fake_store.h"

namespace flannel::daemon {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

SubnetKey key(const char* subnet) {
  SubnetKey k;
  k.ipv4 = IpNet::parse(subnet).value();
  return k;
}

LeaseAttrs attrs(int host) {
  LeaseAttrs a;
  a.public_ip = Ip4::fromBytes(192, 168, 91, static_cast<uint8_t>(host));
  a.backend_type = "host-gw";
  return a;
}

kernel::Route hostRoute(const char* dst, int host, int ifindex) {
  kernel::Route r;
  r.dst = IpNet::parse(dst).value();
  r.via = IpAddr(Ip4::fromBytes(192, 168, 91, static_cast<uint8_t>(host)));
  r.ifindex = ifindex;
  return r;
}

std::vector<std::string> matching(const std::vector<std::string>& all, const std::string& what) {
  std::vector<std::string> out;
  for (const auto& m : all) {
    if (m.find(what) != std::string::npos) {
      out.push_back(m);
    }
  }
  return out;
}

// A restart with routes left by the earlier run: one for a peer that is still there
// (10.5.2.0/24), one for a peer that left while we were down (10.5.3.0/24). The lease listing
// fails at first (etcd slow or down). Nothing may be deleted before a listing says what exists:
// the live peer's route stays in place the whole time, the stale one goes once the listing is in.
TEST(NetworkRunner, DeletesNothingBeforeTheFirstLeaseListing) {
  test::FakeKernel k;
  kernel::Link eth = k.addLink("eth0", "veth", 1500, true);
  ASSERT_TRUE(k.replaceAddress({eth.index, IpAddr(Ip4::fromBytes(192, 168, 91, 11)), 24}));
  ASSERT_TRUE(k.replaceRoute(hostRoute("10.5.2.0/24", 12, eth.index)));
  ASSERT_TRUE(k.replaceRoute(hostRoute("10.5.3.0/24", 13, eth.index)));
  k.clearCalls();

  kernel::ExternalInterface ext;
  ext.link = eth;
  ext.iface_addr = Ip4::fromBytes(192, 168, 91, 11);
  ext.ext_addr = ext.iface_addr;
  backend::hostgw::HostGwNetwork network(
      loadNetworkConfig(R"({"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}})").value(), ext);

  auto state = std::make_shared<test::FakeStoreState>();
  state->put(key("10.5.1.0/24"), attrs(11), false);
  state->put(key("10.5.2.0/24"), attrs(12), false);
  state->fail_next = 1;  // the first listing fails; the retry comes after ~100 ms
  test::FakeStore store(state);
  Lease own;
  own.subnet = key("10.5.1.0/24");
  own.attrs = attrs(11);

  net::io_context io;  // outlives the runner, whose timer belongs to it
  NetworkRunner runner(store, network, k, own, 20ms);
  net::co_spawn(io, runner.run(), net::detached);
  // Several reconcile periods pass while the listing is still failing.
  io.run_for(60ms);
  EXPECT_EQ(runner.stats().watch_errors, 1u);
  EXPECT_GE(runner.stats().reconciles, 2u);
  EXPECT_FALSE(runner.ready());
  EXPECT_THAT(matching(k.mutations(), "delete"), IsEmpty());

  for (int i = 0; i < 100 && !runner.ready(); ++i) {
    io.run_for(10ms);
  }
  ASSERT_TRUE(runner.ready());
  EXPECT_EQ(runner.stats().peers, 1u);
  EXPECT_THAT(matching(k.mutations(), "10.5.2.0/24"), IsEmpty())
      << "the live peer's route was touched";
  auto deletes = matching(k.mutations(), "delete");
  ASSERT_EQ(deletes.size(), 1u);
  EXPECT_THAT(deletes[0], HasSubstr("10.5.3.0/24"));
  auto routes = k.routes({});
  ASSERT_TRUE(routes);
  bool live = false;
  for (const auto& r : *routes) {
    EXPECT_NE(r.dst.toString(), "10.5.3.0/24");
    live = live || r.dst.toString() == "10.5.2.0/24";
  }
  EXPECT_TRUE(live);
  io.stop();
}

}  // namespace
}  // namespace flannel::daemon
