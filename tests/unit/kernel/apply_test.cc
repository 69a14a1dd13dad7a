// apply() and listObserved() against FakeKernel: order, convergence, and carrying on past
// failures.
#include <algorithm>
#include <cerrno>

#include <gtest/gtest.h>

#include "kernel/reconcile.h"
#include "support/fake_kernel.h"

namespace flannel::kernel {
namespace {

using test::FakeKernel;

IpAddr ip(std::string_view s) {
  return IpAddr::parse(s).value();
}
IpNet net(std::string_view s) {
  return IpNet::parse(s).value();
}
Mac mac(std::string_view s) {
  return Mac::parse(s).value();
}

struct Peer {
  const char* subnet;
  const char* gw;
  const char* mac;
  const char* public_ip;
};
constexpr Peer kPeerA{"10.5.3.0/24", "10.5.3.0", "3e:6b:00:00:00:0a", "192.168.91.12"};
constexpr Peer kPeerB{"10.5.99.0/24", "10.5.99.0", "3e:6b:00:00:00:0b", "192.168.91.13"};

class ApplyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    eth0_ = fake_.addLink("eth0", "veth", 1500, /*up=*/true).index;
    ASSERT_TRUE(fake_.replaceAddress(
        Addr{.ifindex = eth0_, .address = ip("192.168.91.11"), .prefix_len = 24}));
    auto vx = fake_.ensureVxlan(VxlanSpec{.name = "flannel.1",
                                          .vni = 1,
                                          .local = ip("192.168.91.11"),
                                          .underlay_ifindex = eth0_,
                                          .port = 0,
                                          .learning = false,
                                          .gbp = false,
                                          .mac = std::nullopt});
    ASSERT_TRUE(vx);
    vx_ = vx->index;
    ASSERT_TRUE(fake_.setLinkUp(vx_));
    own_ = Ownership{.devices = {vx_}, .networks = {net("10.5.0.0/16")}};
    fake_.clearCalls();
  }

  void addPeer(DesiredState& s, const Peer& p) const {
    s.fdb.push_back(Fdb{.ifindex = vx_, .mac = mac(p.mac), .dst = ip(p.public_ip)});
    s.neighbours.push_back(Neigh{.ifindex = vx_, .dst = ip(p.gw), .lladdr = mac(p.mac)});
    s.routes.push_back(
        Route{.dst = net(p.subnet), .via = ip(p.gw), .ifindex = vx_, .onlink = true});
  }

  DesiredState desired(std::initializer_list<Peer> peers) const {
    DesiredState s;
    s.addresses.push_back(Addr{.ifindex = vx_, .address = ip("10.5.92.0"), .prefix_len = 32});
    for (const Peer& p : peers) {
      addPeer(s, p);
    }
    return s;
  }

  // One reconcile pass, as the network runner does it.
  ApplyReport reconcile(const DesiredState& want) {
    auto observed = listObserved(fake_, own_);
    EXPECT_TRUE(observed) << observed.error().message;
    return apply(fake_, diff(want, *observed, own_));
  }

  bool inSync(const DesiredState& want) {
    auto observed = listObserved(fake_, own_);
    return observed && diff(want, *observed, own_).empty();
  }

  FakeKernel fake_;
  int eth0_ = 0;
  int vx_ = 0;
  Ownership own_;
};

TEST_F(ApplyTest, InstallsANewPeerInSpecOrderAndConverges) {
  const DesiredState want = desired({kPeerA});
  ApplyReport report = reconcile(want);
  EXPECT_TRUE(report.clean());
  EXPECT_EQ(report.applied, 4u);
  EXPECT_EQ(fake_.mutations(),
            (std::vector<std::string>{
                "replace address 10.5.92.0/32 dev flannel.1",
                "replace fdb 3e:6b:00:00:00:0a dev flannel.1 dst 192.168.91.12",
                "replace neighbour 10.5.3.0 lladdr 3e:6b:00:00:00:0a dev flannel.1",
                "replace route 10.5.3.0/24 via 10.5.3.0 dev flannel.1 onlink",
            }));
  EXPECT_TRUE(inSync(want));
  fake_.clearCalls();
  EXPECT_EQ(reconcile(want).applied, 0u);  // second pass: nothing to do
  EXPECT_TRUE(fake_.mutations().empty());
}

TEST_F(ApplyTest, RemovesAGonePeerRouteFirst) {
  ASSERT_TRUE(reconcile(desired({kPeerA, kPeerB})).clean());
  fake_.clearCalls();
  const DesiredState want = desired({kPeerA});
  EXPECT_TRUE(reconcile(want).clean());
  EXPECT_EQ(fake_.mutations(),
            (std::vector<std::string>{
                "delete route 10.5.99.0/24 via 10.5.99.0 dev flannel.1 onlink",
                "delete neighbour 10.5.99.0 lladdr 3e:6b:00:00:00:0b dev flannel.1",
                "delete fdb 3e:6b:00:00:00:0b dev flannel.1 dst 192.168.91.13",
            }));
  EXPECT_TRUE(inSync(want));
}

TEST_F(ApplyTest, AnInjectedFailureDoesNotStopTheRest) {
  const DesiredState want = desired({kPeerA, kPeerB});
  fake_.failNext(FakeKernel::Op::ReplaceRoute, ENETUNREACH);
  ApplyReport report = reconcile(want);
  ASSERT_EQ(report.failures.size(), 1u);
  const OpFailure& failure = report.failures[0];
  EXPECT_EQ(failure.error.sys_errno, ENETUNREACH);
  EXPECT_EQ(failure.error.code, Errc::Unavailable);
  EXPECT_NE(failure.error.message.find(
                "replacing route 10.5.3.0/24 via 10.5.3.0 dev flannel.1 onlink: Network is "
                "unreachable (errno 101)"),
            std::string::npos)
      << failure.error.message;
  EXPECT_EQ(std::get<Route>(failure.op.object).dst, net(kPeerA.subnet));
  EXPECT_TRUE(report.skipped.empty());
  EXPECT_EQ(report.applied, 6u);  // address, 2 fdb, 2 neighbours, B's route
  EXPECT_FALSE(inSync(want));

  // The next pass (a retry) repairs exactly what failed.
  fake_.clearCalls();
  report = reconcile(want);
  EXPECT_TRUE(report.clean());
  EXPECT_EQ(
      fake_.mutations(),
      (std::vector<std::string>{"replace route 10.5.3.0/24 via 10.5.3.0 dev flannel.1 onlink"}));
  EXPECT_TRUE(inSync(want));
}

TEST_F(ApplyTest, AFailedNeighbourHoldsBackItsRouteButNotOtherPeers) {
  const DesiredState want = desired({kPeerA, kPeerB});
  fake_.failNext(FakeKernel::Op::ReplaceNeighbour, EINVAL);  // A's neighbour
  ApplyReport report = reconcile(want);
  ASSERT_EQ(report.failures.size(), 1u);
  EXPECT_EQ(std::get<Neigh>(report.failures[0].op.object).dst, ip(kPeerA.gw));
  ASSERT_EQ(report.skipped.size(), 1u);
  EXPECT_EQ(std::get<Route>(report.skipped[0].object).dst, net(kPeerA.subnet));
  auto routes =
      fake_.routes(RouteFilter{.family = Family::V4, .table = kMainTable, .ifindex = vx_});
  ASSERT_TRUE(routes);
  ASSERT_EQ(routes->size(), 1u);
  EXPECT_EQ((*routes)[0].dst, net(kPeerB.subnet));
}

TEST_F(ApplyTest, AFailedFdbEntryHoldsBackNeighbourAndRoute) {
  const DesiredState want = desired({kPeerA});
  fake_.failNext(FakeKernel::Op::ReplaceFdb, EOPNOTSUPP);
  ApplyReport report = reconcile(want);
  EXPECT_EQ(report.failures.size(), 1u);
  ASSERT_EQ(report.skipped.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<Neigh>(report.skipped[0].object));
  EXPECT_TRUE(std::holds_alternative<Route>(report.skipped[1].object));
  EXPECT_TRUE(reconcile(want).clean());
  EXPECT_TRUE(inSync(want));
}

TEST_F(ApplyTest, AFailedRouteDeleteKeepsItsNeighbourAndFdbEntry) {
  ASSERT_TRUE(reconcile(desired({kPeerA, kPeerB})).clean());
  fake_.failNext(FakeKernel::Op::DeleteRoute, EPERM);
  ApplyReport report = reconcile(desired({kPeerA}));
  ASSERT_EQ(report.failures.size(), 1u);
  EXPECT_EQ(report.failures[0].error.code, Errc::Kernel);
  EXPECT_EQ(report.skipped.size(), 2u);  // B's neighbour, then B's FDB entry
  auto neighs = fake_.neighbours(vx_);
  ASSERT_TRUE(neighs);
  EXPECT_EQ(neighs->size(), 2u);  // the route to B still has its neighbour
  EXPECT_TRUE(reconcile(desired({kPeerA})).clean());
  EXPECT_TRUE(inSync(desired({kPeerA})));
}

TEST_F(ApplyTest, AFailedRouteOverwriteKeepsTheOldRoutesNeighbour) {
  ASSERT_TRUE(reconcile(desired({kPeerA})).clean());
  DesiredState direct = desired({});
  direct.routes.push_back(Route{.dst = net(kPeerA.subnet), .via = ip(kPeerA.public_ip)});
  fake_.failNext(FakeKernel::Op::ReplaceRoute, ENETUNREACH);
  ApplyReport report = reconcile(direct);
  ASSERT_EQ(report.failures.size(), 1u);
  EXPECT_EQ(report.skipped.size(), 2u);  // the old route still uses its neighbour and FDB entry
  EXPECT_EQ(fake_.neighbours(vx_).value().size(), 1u);
  EXPECT_EQ(fake_.fdbEntries(vx_).value().size(), 1u);

  fake_.clearCalls();
  EXPECT_TRUE(reconcile(direct).clean());
  EXPECT_EQ(fake_.mutations(),
            (std::vector<std::string>{
                "replace route 10.5.3.0/24 via 192.168.91.12",
                "delete neighbour 10.5.3.0 lladdr 3e:6b:00:00:00:0a dev flannel.1",
                "delete fdb 3e:6b:00:00:00:0a dev flannel.1 dst 192.168.91.12",
            }));
  auto routes =
      fake_.routes(RouteFilter{.family = Family::V4, .table = kMainTable, .ifindex = eth0_});
  ASSERT_TRUE(routes);
  EXPECT_NE(std::find_if(routes->begin(), routes->end(),
                         [](const Route& r) { return r.dst == net(kPeerA.subnet); }),
            routes->end());
  EXPECT_TRUE(inSync(direct));
}

TEST_F(ApplyTest, RepairsDriftMadeBehindItsBack) {
  const DesiredState want = desired({kPeerA});
  ASSERT_TRUE(reconcile(want).clean());
  // Someone deletes our neighbour and points our route elsewhere.
  ASSERT_TRUE(fake_.deleteNeighbour(want.neighbours[0]));
  Route wrong = want.routes[0];
  wrong.via = ip("10.5.3.7");
  ASSERT_TRUE(fake_.replaceRoute(wrong));
  fake_.clearCalls();
  EXPECT_TRUE(reconcile(want).clean());
  EXPECT_EQ(fake_.mutations(),
            (std::vector<std::string>{
                "replace neighbour 10.5.3.0 lladdr 3e:6b:00:00:00:0a dev flannel.1",
                "replace route 10.5.3.0/24 via 10.5.3.0 dev flannel.1 onlink",
            }));
}

TEST_F(ApplyTest, ListObservedToleratesAVanishedDeviceButNotOtherErrors) {
  fake_.failNext(FakeKernel::Op::Neighbours, ENODEV);
  EXPECT_TRUE(listObserved(fake_, own_));
  fake_.failNext(FakeKernel::Op::FdbEntries, EPERM);
  auto observed = listObserved(fake_, own_);
  ASSERT_FALSE(observed);
  EXPECT_EQ(observed.error().sys_errno, EPERM);
  EXPECT_EQ(observed.error().message.rfind("listing kernel state: ", 0), 0u)
      << observed.error().message;
}

TEST_F(ApplyTest, ListObservedSeesOnlyOurDevicesAndTable) {
  ASSERT_TRUE(reconcile(desired({kPeerA})).clean());
  auto observed = listObserved(fake_, own_);
  ASSERT_TRUE(observed);
  EXPECT_EQ(observed->addresses.size(), 1u);  // not eth0's
  EXPECT_EQ(observed->neighbours.size(), 1u);
  EXPECT_EQ(observed->fdb.size(), 1u);
  // Routes: the whole main table (ownership is diff()'s business): ours plus eth0's connected.
  EXPECT_EQ(observed->routes.size(), 2u);
}

}  // namespace
}  // namespace flannel::kernel
