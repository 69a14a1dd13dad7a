// diff() is pure: these tests build DesiredState/ObservedState by hand, no fake at all.
#include "kernel/reconcile.h"

#include <algorithm>
#include <functional>

#include <gtest/gtest.h>

namespace flannel::kernel {
namespace {

constexpr int kEth = 2;
constexpr int kCni = 4;
constexpr int kVx = 5;

IpAddr ip(std::string_view s) {
  return IpAddr::parse(s).value();
}
IpNet net(std::string_view s) {
  return IpNet::parse(s).value();
}
Mac mac(std::string_view s) {
  return Mac::parse(s).value();
}

// The three objects of one vxlan peer (SPEC.md §5.1).
Route vxRoute(std::string_view subnet, std::string_view gw) {
  return Route{.dst = net(subnet), .via = ip(gw), .ifindex = kVx, .onlink = true};
}
Neigh vxNeigh(std::string_view gw, std::string_view m) {
  return Neigh{.ifindex = kVx, .dst = ip(gw), .lladdr = mac(m), .permanent = true};
}
Fdb vxFdb(std::string_view m, std::string_view public_ip) {
  return Fdb{.ifindex = kVx, .mac = mac(m), .dst = ip(public_ip), .permanent = true};
}
Addr addr(int ifindex, std::string_view a, uint8_t len) {
  return Addr{.ifindex = ifindex, .address = ip(a), .prefix_len = len};
}

Ownership vxOwnership() {
  return Ownership{.devices = {kVx}, .networks = {net("10.5.0.0/16"), net("fd55::/48")}};
}

struct Peer {
  const char* subnet;
  const char* gw;
  const char* mac;
  const char* public_ip;
};
constexpr Peer kPeerA{"10.5.3.0/24", "10.5.3.0", "3e:6b:00:00:00:0a", "192.168.91.12"};
constexpr Peer kPeerB{"10.5.99.0/24", "10.5.99.0", "3e:6b:00:00:00:0b", "192.168.91.13"};

template <class State>
void addPeer(State& s, const Peer& p) {
  s.routes.push_back(vxRoute(p.subnet, p.gw));
  s.neighbours.push_back(vxNeigh(p.gw, p.mac));
  s.fdb.push_back(vxFdb(p.mac, p.public_ip));
}

Op replace(Object o, std::optional<Object> previous = std::nullopt) {
  return Op{.action = Action::Replace, .object = std::move(o), .previous = std::move(previous)};
}
Op del(Object o) {
  return Op{.action = Action::Delete, .object = std::move(o), .previous = std::nullopt};
}

size_t indexOf(const Plan& plan, const Op& op) {
  auto it = std::find(plan.ops.begin(), plan.ops.end(), op);
  EXPECT_NE(it, plan.ops.end()) << "missing: " << describe(op);
  return static_cast<size_t>(it - plan.ops.begin());
}

std::vector<std::string> described(const Plan& plan) {
  std::vector<std::string> out;
  for (const Op& op : plan.ops) {
    out.push_back(describe(op));
  }
  return out;
}

TEST(Reconcile, NoOpWhenInSync) {
  DesiredState desired;
  ObservedState observed;
  addPeer(desired, kPeerA);
  addPeer(observed, kPeerA);
  addPeer(desired, kPeerB);
  addPeer(observed, kPeerB);
  desired.addresses.push_back(addr(kVx, "10.5.92.0", 32));
  observed.addresses.push_back(addr(kVx, "10.5.92.0", 32));
  EXPECT_TRUE(diff(desired, observed, vxOwnership()).empty());
}

TEST(Reconcile, LeavesAlienRoutesAlone) {
  ObservedState observed;
  Route default_route{.dst = net("0.0.0.0/0"), .via = ip("192.168.91.1"), .ifindex = kEth};
  Route connected_cni{.dst = net("10.5.92.0/24"),
                      .ifindex = kCni,
                      .protocol = kProtoKernel,
                      .scope = kScopeLink,
                      .src = ip("10.5.92.1")};
  Route other_table = vxRoute("10.5.7.0/24", "10.5.7.0");
  other_table.table = 100;
  Route other_proto{.dst = net("10.5.8.0/24"), .via = ip("192.168.91.20"), .ifindex = kEth};
  other_proto.protocol = kProtoStatic;
  Route v6_link_local{.dst = net("fe80::/64"), .ifindex = kVx, .protocol = kProtoKernel};
  v6_link_local.metric = 256;
  Route blackhole{.dst = net("10.5.9.0/24")};
  blackhole.type = 6;  // RTN_BLACKHOLE
  Route outside{.dst = net("172.16.0.0/16"), .via = ip("192.168.91.1"), .ifindex = kEth};
  observed.routes = {default_route, connected_cni, other_table, other_proto,
                     v6_link_local, blackhole,     outside};
  // Alien neighbours, FDB entries and addresses too.
  observed.neighbours = {Neigh{.ifindex = kEth, .dst = ip("192.168.91.1"), .permanent = true},
                         Neigh{.ifindex = kVx, .dst = ip("10.5.50.0"), .permanent = false}};
  observed.fdb = {Fdb{.ifindex = kVx,
                      .mac = mac("3e:6b:00:00:00:ff"),
                      .dst = ip("192.168.91.50"),
                      .permanent = false}};
  observed.addresses = {addr(kEth, "192.168.91.11", 24), addr(kVx, "fe80::3c6b:ff:fe00:1", 64)};

  EXPECT_TRUE(diff(DesiredState{}, observed, vxOwnership()).empty())
      << ::testing::PrintToString(described(diff(DesiredState{}, observed, vxOwnership())));
}

TEST(Reconcile, ReplacesRouteWithWrongGateway) {
  DesiredState desired;
  ObservedState observed;
  addPeer(desired, kPeerA);
  addPeer(observed, kPeerA);
  observed.routes[0].via = ip("10.5.3.9");
  const Plan plan = diff(desired, observed, vxOwnership());
  // Overwritten in place (same key), never deleted first: no window without a route.
  EXPECT_EQ(plan.ops,
            std::vector<Op>{replace(vxRoute(kPeerA.subnet, kPeerA.gw), observed.routes[0])});
  EXPECT_EQ(describe(plan.ops[0]),
            "replace route 10.5.3.0/24 via 10.5.3.0 dev ifindex 5 onlink (was 10.5.3.0/24 via "
            "10.5.3.9 dev ifindex 5 onlink)");
}

TEST(Reconcile, ReplacesRoutesThatDifferInAnyCheckedField) {
  struct Case {
    const char* name;
    std::function<void(Route&)> observed_change;
    bool replaced;
  };
  const Case cases[] = {
      {"same", [](Route&) {}, false},
      {"gateway", [](Route& r) { r.via = ip("10.5.3.1"); }, true},
      {"no gateway", [](Route& r) { r.via.reset(); }, true},
      {"device", [](Route& r) { r.ifindex = kEth; }, true},
      {"onlink", [](Route& r) { r.onlink = false; }, true},
      {"protocol", [](Route& r) { r.protocol = kProtoStatic; }, true},
      {"scope", [](Route& r) { r.scope = kScopeLink; }, true},
      {"kernel picked src", [](Route& r) { r.src = ip("10.5.92.0"); }, false},
  };
  for (const auto& c : cases) {
    DesiredState desired;
    ObservedState observed;
    desired.routes.push_back(vxRoute(kPeerA.subnet, kPeerA.gw));
    Route o = vxRoute(kPeerA.subnet, kPeerA.gw);
    c.observed_change(o);
    observed.routes.push_back(o);
    const Plan plan = diff(desired, observed, vxOwnership());
    if (c.replaced) {
      EXPECT_EQ(plan.ops, std::vector<Op>{replace(desired.routes[0], o)}) << c.name;
    } else {
      EXPECT_TRUE(plan.empty()) << c.name;
    }
  }
}

TEST(Reconcile, DesiredRouteWithoutDeviceMatchesTheDeviceTheKernelPicked) {
  // vxlan DirectRouting / host-gw: `<subnet> via <peer PublicIP>`, no device given.
  DesiredState desired;
  desired.routes.push_back(Route{.dst = net("10.5.58.0/24"), .via = ip("192.168.91.12")});
  ObservedState observed;
  observed.routes.push_back(
      Route{.dst = net("10.5.58.0/24"), .via = ip("192.168.91.12"), .ifindex = kEth});
  EXPECT_TRUE(diff(desired, observed, vxOwnership()).empty());
}

TEST(Reconcile, Ipv6DefaultMetricMatchesTheKernelsNormalisedListing) {
  DesiredState desired;
  ObservedState observed;
  Route want = vxRoute("fd55:0:0:36::/64", "fd55:0:0:36::");
  desired.routes.push_back(want);
  observed.routes.push_back(want);  // listed with metric nullopt (kernel: 1024)
  EXPECT_TRUE(diff(desired, observed, vxOwnership()).empty());
  desired.routes[0].metric = kIpv6DefaultMetric;  // explicit default: same key, same route
  EXPECT_TRUE(diff(desired, observed, vxOwnership()).empty());
  desired.routes[0].metric = 100;  // another key: add it, delete the old one
  const Plan plan = diff(desired, observed, vxOwnership());
  EXPECT_EQ(plan.ops, (std::vector<Op>{del(want), replace(desired.routes[0])}));
}

TEST(Reconcile, DeletesStaleOwnedRoutesAndTheirNeighbours) {
  DesiredState desired;
  ObservedState observed;
  addPeer(desired, kPeerA);
  addPeer(observed, kPeerA);
  addPeer(observed, kPeerB);  // B's lease is gone
  const Plan plan = diff(desired, observed, vxOwnership());
  const Op route = del(vxRoute(kPeerB.subnet, kPeerB.gw));
  const Op neigh = del(vxNeigh(kPeerB.gw, kPeerB.mac));
  const Op fdb = del(vxFdb(kPeerB.mac, kPeerB.public_ip));
  ASSERT_EQ(plan.ops.size(), 3u) << ::testing::PrintToString(described(plan));
  // The route goes first, so it never points at a missing neighbour.
  EXPECT_LT(indexOf(plan, route), indexOf(plan, neigh));
  EXPECT_LT(indexOf(plan, route), indexOf(plan, fdb));
}

TEST(Reconcile, AddsNeighbourAndFdbBeforeRoute) {
  DesiredState desired;
  addPeer(desired, kPeerA);
  const Plan plan = diff(desired, ObservedState{}, vxOwnership());
  EXPECT_EQ(plan.ops, (std::vector<Op>{replace(vxFdb(kPeerA.mac, kPeerA.public_ip)),
                                       replace(vxNeigh(kPeerA.gw, kPeerA.mac)),
                                       replace(vxRoute(kPeerA.subnet, kPeerA.gw))}));
}

TEST(Reconcile, APeerSwitchingToDirectRoutingKeepsItsNeighbourUntilTheRouteMoved) {
  DesiredState desired;
  ObservedState observed;
  addPeer(observed, kPeerA);
  // DirectRouting: the same subnet, now via the peer's PublicIP with no device.
  const Route direct{.dst = net(kPeerA.subnet), .via = ip(kPeerA.public_ip)};
  desired.routes.push_back(direct);
  const Plan plan = diff(desired, observed, vxOwnership());
  EXPECT_EQ(plan.ops, (std::vector<Op>{replace(direct, observed.routes[0]),
                                       del(observed.neighbours[0]), del(observed.fdb[0])}));
}

TEST(Reconcile, HostGwRouteOnTheExternalInterfaceIsOursBecauseOfTheNetwork) {
  Ownership own{.devices = {}, .networks = {net("10.5.0.0/16")}};
  Route stale{.dst = net("10.5.37.0/24"), .via = ip("192.168.91.12"), .ifindex = kEth};
  Route wanted{.dst = net("10.5.38.0/24"), .via = ip("192.168.91.13"), .ifindex = kEth};
  DesiredState desired;
  desired.routes = {wanted};
  ObservedState observed;
  observed.routes = {stale};
  const Plan plan = diff(desired, observed, own);
  EXPECT_EQ(plan.ops, (std::vector<Op>{del(stale), replace(wanted)}));
}

TEST(Reconcile, ReplacesNeighbourWithWrongMacOrNotPermanent) {
  for (bool wrong_mac : {true, false}) {
    DesiredState desired;
    ObservedState observed;
    desired.neighbours.push_back(vxNeigh(kPeerA.gw, kPeerA.mac));
    Neigh o = vxNeigh(kPeerA.gw, kPeerA.mac);
    if (wrong_mac) {
      o.lladdr = mac("3e:6b:00:00:00:99");
    } else {
      o.permanent = false;  // e.g. learnt by ARP while our entry was missing
    }
    observed.neighbours.push_back(o);
    EXPECT_EQ(diff(desired, observed, vxOwnership()).ops,
              std::vector<Op>{replace(desired.neighbours[0], o)})
        << wrong_mac;
  }
}

TEST(Reconcile, MovesAnFdbEntryToTheNewDstBeforeDeletingTheOldOne) {
  DesiredState desired;
  ObservedState observed;
  addPeer(desired, kPeerA);
  addPeer(observed, kPeerA);
  observed.fdb[0].dst = ip("192.168.91.77");  // the peer's PublicIP changed
  const Plan plan = diff(desired, observed, vxOwnership());
  EXPECT_EQ(plan.ops, (std::vector<Op>{replace(desired.fdb[0]), del(observed.fdb[0])}));
}

TEST(Reconcile, AddsMissingAddressesAndRemovesOtherOwnedOnes) {
  DesiredState desired;
  desired.addresses = {addr(kVx, "10.5.92.0", 32)};
  ObservedState observed;
  observed.addresses = {addr(kVx, "10.5.50.0", 32),  // the previous lease: ours, unwanted
                        addr(kVx, "fe80::3c6b:ff:fe00:1", 64),  // kernel's
                        addr(kEth, "192.168.91.11", 24)};       // not our device
  const Plan plan = diff(desired, observed, vxOwnership());
  EXPECT_EQ(plan.ops, (std::vector<Op>{del(observed.addresses[0]), replace(desired.addresses[0])}));
}

TEST(Reconcile, SamePrefixWithAnotherLengthIsAnotherAddress) {
  DesiredState desired;
  desired.addresses = {addr(kVx, "10.5.92.0", 32)};
  ObservedState observed;
  observed.addresses = {addr(kVx, "10.5.92.0", 24)};
  const Plan plan = diff(desired, observed, vxOwnership());
  EXPECT_EQ(plan.ops, (std::vector<Op>{del(observed.addresses[0]), replace(desired.addresses[0])}));
}

TEST(Reconcile, DuplicateDesiredObjectsCountOnce) {
  DesiredState desired;
  addPeer(desired, kPeerA);
  addPeer(desired, kPeerA);
  Route again = vxRoute(kPeerA.subnet, "10.5.3.7");  // same key, first one wins
  desired.routes.push_back(again);
  const Plan plan = diff(desired, ObservedState{}, vxOwnership());
  EXPECT_EQ(plan.ops.size(), 3u) << ::testing::PrintToString(described(plan));
  EXPECT_EQ(std::count(plan.ops.begin(), plan.ops.end(), replace(again)), 0);
}

TEST(Reconcile, FullOrderOfAMixedPlan) {
  DesiredState desired;
  ObservedState observed;
  addPeer(observed, kPeerB);  // to delete
  addPeer(desired, kPeerA);   // to add
  observed.addresses = {addr(kVx, "10.5.50.0", 32)};
  desired.addresses = {addr(kVx, "10.5.92.0", 32)};
  const Plan plan = diff(desired, observed, vxOwnership());
  EXPECT_EQ(described(plan),
            (std::vector<std::string>{
                "delete route 10.5.99.0/24 via 10.5.99.0 dev ifindex 5 onlink",
                "delete neighbour 10.5.99.0 lladdr 3e:6b:00:00:00:0b dev ifindex 5",
                "delete address 10.5.50.0/32 dev ifindex 5",
                "replace address 10.5.92.0/32 dev ifindex 5",
                "replace fdb 3e:6b:00:00:00:0a dev ifindex 5 dst 192.168.91.12",
                "replace neighbour 10.5.3.0 lladdr 3e:6b:00:00:00:0a dev ifindex 5",
                "delete fdb 3e:6b:00:00:00:0b dev ifindex 5 dst 192.168.91.13",
                "replace route 10.5.3.0/24 via 10.5.3.0 dev ifindex 5 onlink",
            }));
}

TEST(Ownership, RulesPerObjectKind) {
  const Ownership own = vxOwnership();
  EXPECT_TRUE(isOurs(vxRoute("10.5.3.0/24", "10.5.3.0"), own));
  EXPECT_TRUE(isOurs(Route{.dst = net("192.168.5.0/24"), .ifindex = kVx}, own));  // our device
  EXPECT_TRUE(isOurs(Route{.dst = net("fd55:0:0:3::/64"), .ifindex = kEth}, own));
  EXPECT_FALSE(isOurs(Route{.dst = net("10.6.0.0/24"), .ifindex = kEth}, own));
  EXPECT_FALSE(isOurs(Route{.dst = net("10.0.0.0/8"), .ifindex = kEth}, own));  // wider
  Route kernel_made{.dst = net("10.5.92.0/24"), .ifindex = kCni, .protocol = kProtoKernel};
  EXPECT_FALSE(isOurs(kernel_made, own));

  EXPECT_TRUE(isOurs(addr(kVx, "10.5.92.0", 32), own));
  EXPECT_FALSE(isOurs(addr(kVx, "fe80::1", 64), own));
  EXPECT_FALSE(isOurs(addr(kEth, "10.5.92.0", 32), own));

  EXPECT_TRUE(isOurs(vxNeigh("10.5.3.0", "3e:6b:00:00:00:0a"), own));
  Neigh dynamic = vxNeigh("10.5.3.0", "3e:6b:00:00:00:0a");
  dynamic.permanent = false;
  EXPECT_FALSE(isOurs(dynamic, own));
  EXPECT_TRUE(isOurs(vxFdb("3e:6b:00:00:00:0a", "192.168.91.12"), own));
  Fdb learned = vxFdb("3e:6b:00:00:00:0a", "192.168.91.12");
  learned.permanent = false;
  EXPECT_FALSE(isOurs(learned, own));
  Fdb elsewhere = vxFdb("3e:6b:00:00:00:0a", "192.168.91.12");
  elsewhere.ifindex = kEth;
  EXPECT_FALSE(isOurs(elsewhere, own));
}

TEST(Ownership, ARouteInAnotherTableOrProtocolIsOursOnlyWhenConfiguredSo) {
  Ownership own{
      .devices = {}, .networks = {net("10.5.0.0/16")}, .route_table = 100, .route_protocol = 201};
  Route r{.dst = net("10.5.3.0/24"), .via = ip("192.168.91.12"), .ifindex = kEth};
  EXPECT_FALSE(isOurs(r, own));
  r.table = 100;
  EXPECT_FALSE(isOurs(r, own));
  r.protocol = 201;
  EXPECT_TRUE(isOurs(r, own));
}

}  // namespace
}  // namespace flannel::kernel
