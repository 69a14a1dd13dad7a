// FakeKernel's own test-facing features: the call log, fault injection and hooks. Its kernel
// semantics are checked by tests/contract/kernel against the real thing.
#include "support/fake_kernel.h"

#include <cerrno>

#include <gtest/gtest.h>

namespace flannel::test {
namespace {

using kernel::Neigh;
using kernel::Route;

IpAddr ip(std::string_view s) {
  return IpAddr::parse(s).value();
}

TEST(FakeKernel, StartsWithLoopbackAndAllocatesIndexesUpward) {
  FakeKernel fake;
  auto lo = fake.linkByName("lo");
  ASSERT_TRUE(lo);
  EXPECT_EQ(lo->index, 1);
  EXPECT_TRUE(lo->up);
  EXPECT_EQ(fake.addLink("eth0").index, 2);
  EXPECT_EQ(fake.addLink("eth1").index, 3);
  ASSERT_TRUE(fake.deleteLink(3));
  EXPECT_EQ(fake.addLink("eth2").index, 4);  // never reused
}

TEST(FakeKernel, FailNextFailsExactlyThatManyCallsAndChangesNothing) {
  FakeKernel fake;
  const int eth0 = fake.addLink("eth0").index;
  fake.failNext(FakeKernel::Op::SetLinkUp, EPERM, 2);
  for (int i = 0; i < 2; ++i) {
    auto r = fake.setLinkUp(eth0);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().sys_errno, EPERM);
    EXPECT_EQ(r.error().message,
              "setting link eth0 up: Operation not permitted (errno 1): injected by FakeKernel");
    EXPECT_FALSE(fake.linkByIndex(eth0)->up);
  }
  EXPECT_TRUE(fake.setLinkUp(eth0));
  EXPECT_TRUE(fake.linkByIndex(eth0)->up);
}

TEST(FakeKernel, LogsEveryCallWithItsOutcome) {
  FakeKernel fake;
  const int eth0 = fake.addLink("eth0").index;
  (void)fake.links();
  (void)fake.setLinkUp(99);
  (void)fake.setLinkUp(eth0);
  ASSERT_EQ(fake.calls().size(), 3u);
  EXPECT_EQ(fake.calls()[0].op, FakeKernel::Op::Links);
  EXPECT_EQ(fake.calls()[1].err, ENODEV);
  EXPECT_EQ(fake.calls()[2].err, 0);
  EXPECT_EQ(fake.mutations(), std::vector<std::string>{"set link up eth0"});
}

TEST(FakeKernel, BeforeNextStagesARace) {
  FakeKernel fake;
  const int eth0 = fake.addLink("eth0", "veth", 1500, true).index;
  // The link disappears between the caller's check and its route replace.
  fake.beforeNext(FakeKernel::Op::ReplaceRoute, [&] { ASSERT_TRUE(fake.deleteLink(eth0)); });
  auto r = fake.replaceRoute(Route{.dst = IpNet::parse("10.5.3.0/24").value(),
                                   .via = ip("10.5.3.0"),
                                   .ifindex = eth0,
                                   .onlink = true});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sys_errno, ENODEV);
  EXPECT_EQ(fake.calls().back().op, FakeKernel::Op::ReplaceRoute);
  EXPECT_EQ(fake.calls().back().err, ENODEV);
}

TEST(FakeKernel, TakingALinkDownFlushesItsRoutes) {
  FakeKernel fake;
  const int eth0 = fake.addLink("eth0", "veth", 1500, true).index;
  ASSERT_TRUE(fake.replaceRoute(Route{.dst = IpNet::parse("10.5.3.0/24").value(),
                                      .via = ip("10.5.3.0"),
                                      .ifindex = eth0,
                                      .onlink = true}));
  fake.setLinkDown(eth0);
  EXPECT_TRUE(fake.routes(kernel::RouteFilter{})->empty());
}

TEST(FakeKernel, SysctlsNeedTheirDevice) {
  FakeKernel fake;
  fake.addLink("eth0");
  EXPECT_TRUE(fake.setSysctl("net/ipv6/conf/eth0/accept_ra", "0"));
  EXPECT_EQ(fake.sysctl("net/ipv6/conf/eth0/accept_ra").value(), "0");
  EXPECT_EQ(fake.setSysctl("net/ipv6/conf/eth9/accept_ra", "0").error().sys_errno, ENOENT);
  EXPECT_EQ(fake.sysctl("net/ipv4/ip_forward").error().code, Errc::NotFound);
  fake.presetSysctl("net/ipv4/ip_forward", "1");
  EXPECT_EQ(fake.sysctl("net/ipv4/ip_forward").value(), "1");
  EXPECT_EQ(fake.setSysctl("../etc", "x").error().code, Errc::InvalidInput);
}

TEST(FakeKernel, NeighboursOnAnAbsentLinkFail) {
  FakeKernel fake;
  auto r = fake.replaceNeighbour(Neigh{.ifindex = 42, .dst = ip("10.5.3.0")});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::NotFound);
  EXPECT_EQ(r.error().message,
            "replacing neighbour 10.5.3.0 lladdr 00:00:00:00:00:00 dev ifindex 42: No such "
            "device (errno 19)");
}

}  // namespace
}  // namespace flannel::test
