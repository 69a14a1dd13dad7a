#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "backend/alloc/alloc_network.h"
#include "backend/extension/extension_network.h"
#include "backend/hostgw/hostgw_network.h"
#include "backend/vxlan/vxlan_network.h"
#include "support/fake_kernel.h"
#include "support/fake_runner.h"

namespace flannel::backend {
namespace {

using ::testing::HasSubstr;

IpNet net(const char* s) {
  return IpNet::parse(s).value();
}
Mac mac(const char* s) {
  return Mac::parse(s).value();
}

NetworkConfig cfg(const char* json) {
  return loadNetworkConfig(json).value();
}

kernel::ExternalInterface eth0() {
  kernel::ExternalInterface e;
  e.link.index = 2;
  e.link.name = "eth0";
  e.link.mtu = 1500;
  e.iface_addr = Ip4::fromBytes(192, 168, 91, 11);
  e.ext_addr = e.iface_addr;
  return e;
}

Lease peer(const char* subnet, int host, std::string type, std::string data) {
  Lease l;
  l.subnet.ipv4 = net(subnet);
  l.attrs.public_ip = Ip4::fromBytes(192, 168, 91, static_cast<uint8_t>(host));
  l.attrs.backend_type = std::move(type);
  l.attrs.backend_data = std::move(data);
  return l;
}

Lease own(const char* subnet) {
  return peer(subnet, 11, "vxlan", "");
}

TEST(VxlanConfig, DefaultsAndFields) {
  auto d = vxlan::parseVxlanConfig(R"({"Type":"vxlan"})").value();
  EXPECT_EQ(d, (vxlan::VxlanConfig{}));
  auto c =
      vxlan::parseVxlanConfig(
          R"({"Type":"vxlan","vni":4096,"Port":4789,"GBP":true,"DirectRouting":true,"MTU":9000})")
          .value();
  EXPECT_EQ(c.vni, 4096u);
  EXPECT_EQ(c.port, 4789);
  EXPECT_TRUE(c.gbp);
  EXPECT_TRUE(c.direct_routing);
  EXPECT_EQ(c.mtu, 9000u);
  auto bad = vxlan::parseVxlanConfig(R"({"VNI":"one"})");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("Backend.VNI"));
  EXPECT_FALSE(vxlan::parseVxlanConfig(R"({"VNI":16777216})"));
}

TEST(VxlanData, EncodesLikeFlannelAndRejectsBadMacs) {
  EXPECT_EQ(vxlan::encodeVxlanData(1, mac("c6:7b:4a:66:8d:b3")),
            R"({"VNI":1,"VtepMAC":"c6:7b:4a:66:8d:b3"})");
  EXPECT_EQ(vxlan::decodeVtepMac(R"({"VNI":1,"VtepMAC":"C6:7B:4A:66:8D:B3"})").value(),
            mac("c6:7b:4a:66:8d:b3"));
  auto bad = vxlan::decodeVtepMac(R"({"VNI":1,"VtepMAC":"zz"})");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, R"(BackendData.VtepMAC "zz" is not a MAC address)");
  EXPECT_FALSE(vxlan::decodeVtepMac(R"({"VNI":1})"));
  EXPECT_FALSE(vxlan::decodeVtepMac("not json"));
}

class VxlanDesiredState : public ::testing::Test {
 protected:
  void SetUp() override {
    dev.index = 7;
    dev.name = "flannel.1";
    dev.kind = "vxlan";
    dev.mac = mac("0a:00:00:00:00:01");
  }
  vxlan::VxlanNetwork make(vxlan::VxlanConfig c = {}) {
    c.mtu = 1500;
    vxlan::VxlanNetwork n(cfg(R"({"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}})"), c, eth0(),
                          dev, std::nullopt, nullptr);
    EXPECT_TRUE(n.configure(own("10.5.1.0/24")));
    return n;
  }
  kernel::Link dev;
};

TEST_F(VxlanDesiredState, OneFdbNeighbourAndOnlinkRoutePerRemoteLease) {
  auto n = make();
  auto d = n.desiredState(
      {Peer{peer("10.5.2.0/24", 12, "vxlan", R"({"VNI":1,"VtepMAC":"3e:6b:00:00:00:02"})"), false,
            false}});
  ASSERT_EQ(d.addresses.size(), 1u);
  EXPECT_EQ(d.addresses[0], (kernel::Addr{7, *IpAddr::parse("10.5.1.0"), 32}));
  ASSERT_EQ(d.fdb.size(), 1u);
  EXPECT_EQ(d.fdb[0],
            (kernel::Fdb{7, mac("3e:6b:00:00:00:02"), *IpAddr::parse("192.168.91.12"), true}));
  ASSERT_EQ(d.neighbours.size(), 1u);
  EXPECT_EQ(d.neighbours[0],
            (kernel::Neigh{7, *IpAddr::parse("10.5.2.0"), mac("3e:6b:00:00:00:02"), true}));
  ASSERT_EQ(d.routes.size(), 1u);
  EXPECT_EQ(d.routes[0].dst, net("10.5.2.0/24"));
  EXPECT_EQ(d.routes[0].via, *IpAddr::parse("10.5.2.0"));
  EXPECT_EQ(d.routes[0].ifindex, 7);
  EXPECT_TRUE(d.routes[0].onlink);
  EXPECT_EQ(n.leaseAttrs().backend_data, R"({"VNI":1,"VtepMAC":"0a:00:00:00:00:01"})");
  EXPECT_EQ(n.leaseAttrs().backend_type, "vxlan");
  EXPECT_EQ(n.mtu(), 1450u);
  EXPECT_EQ(n.ownership().devices, std::vector<int>{7});
  EXPECT_EQ(n.ownership().networks, std::vector<IpNet>{net("10.5.0.0/16")});
}

TEST_F(VxlanDesiredState, DirectRoutingUsesThePublicIpForOnLinkPeersOnly) {
  vxlan::VxlanConfig c;
  c.direct_routing = true;
  auto n = make(c);
  EXPECT_TRUE(n.needsOnLinkInfo());
  auto data = R"({"VNI":1,"VtepMAC":"3e:6b:00:00:00:02"})";
  auto d = n.desiredState({Peer{peer("10.5.2.0/24", 12, "vxlan", data), true, false},
                           Peer{peer("10.5.3.0/24", 13, "vxlan", data), false, false}});
  ASSERT_EQ(d.routes.size(), 2u);
  EXPECT_EQ(d.routes[0].via, *IpAddr::parse("192.168.91.12"));
  EXPECT_EQ(d.routes[0].ifindex, 0);
  EXPECT_FALSE(d.routes[0].onlink);
  EXPECT_TRUE(d.routes[1].onlink);
  EXPECT_EQ(d.fdb.size(), 1u) << "only the tunnelled peer needs FDB and neighbour entries";
}

TEST_F(VxlanDesiredState, PeersOfOtherTypesOrWithBadDataAreRejectedWithTheReason) {
  auto n = make();
  auto other = n.acceptPeer(peer("10.5.2.0/24", 12, "host-gw", ""));
  ASSERT_FALSE(other);
  EXPECT_THAT(other.error().message, HasSubstr("\"host-gw\" is not vxlan"));
  auto bad = n.acceptPeer(peer("10.5.2.0/24", 12, "vxlan", R"({"VNI":1,"VtepMAC":"zz"})"));
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("VtepMAC"));
  EXPECT_TRUE(
      n.acceptPeer(peer("10.5.2.0/24", 12, "vxlan", R"({"VNI":1,"VtepMAC":"3e:6b:00:00:00:02"})")));
}

TEST(VxlanCreate, CreatesTheDeviceWithFlannelsParametersOnTheFakeKernel) {
  test::FakeKernel k;
  kernel::Link eth = k.addLink("eth0", "veth", 1500);
  auto e = eth0();
  e.link = eth;
  Context ctx{.config = cfg(R"({"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":3}})"),
              .ext = e,
              .kernel = &k,
              .runner = nullptr};
  auto n = createNetwork(ctx);
  ASSERT_TRUE(n) << n.error().message;
  auto dev = k.linkByName("flannel.3");
  ASSERT_TRUE(dev) << dev.error().message;
  ASSERT_TRUE(dev->vxlan);
  EXPECT_EQ(dev->vxlan->vni, 3u);
  EXPECT_EQ(dev->vxlan->underlay_ifindex, eth.index);
  EXPECT_EQ(dev->mtu, 1450u);
  EXPECT_EQ((*n)->leaseAttrs().backend_data,
            fmt::format(R"({{"VNI":3,"VtepMAC":"{}"}})", dev->mac.toString()));
}

TEST(HostGw, RoutesViaPublicIpOnTheExternalInterfaceAndSkipsOffSegmentPeers) {
  hostgw::HostGwNetwork n(cfg(R"({"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}})"), eth0());
  auto d = n.desiredState({Peer{peer("10.5.2.0/24", 12, "host-gw", ""), true, false},
                           Peer{peer("10.5.3.0/24", 13, "host-gw", ""), false, false}});
  ASSERT_EQ(d.routes.size(), 1u);
  EXPECT_EQ(d.routes[0].dst, net("10.5.2.0/24"));
  EXPECT_EQ(d.routes[0].via, *IpAddr::parse("192.168.91.12"));
  EXPECT_EQ(d.routes[0].ifindex, 2);
  EXPECT_TRUE(d.neighbours.empty());
  EXPECT_TRUE(n.ownership().devices.empty());
  EXPECT_EQ(n.leaseAttrs().backend_type, "host-gw");
  EXPECT_EQ(n.leaseAttrs().backend_data, "");
  EXPECT_EQ(n.mtu(), 1500u);
}

TEST(HostGw, RefusesNat) {
  test::FakeKernel k;
  auto e = eth0();
  e.ext_addr = Ip4::fromBytes(203, 0, 113, 5);
  auto r =
      createNetwork({.config = cfg(R"({"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}})"),
                     .ext = e,
                     .kernel = &k,
                     .runner = nullptr});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("does not support NAT"));
}

TEST(Registry, UnknownAndUnavailableBackendsAreClearErrors) {
  test::FakeKernel k;
  auto unknown =
      createNetwork({.config = cfg(R"({"Network":"10.5.0.0/16","Backend":{"Type":"Bogus"}})"),
                     .ext = eth0(),
                     .kernel = &k,
                     .runner = nullptr});
  ASSERT_FALSE(unknown);
  EXPECT_THAT(unknown.error().message, HasSubstr("unknown backend type \"bogus\""));
  EXPECT_THAT(unknown.error().message, HasSubstr("vxlan, host-gw"));
  auto none = createNetwork({.config = cfg(R"({"Network":"10.5.0.0/16","Backend":{}})"),
                             .ext = eth0(),
                             .kernel = &k,
                             .runner = nullptr});
  ASSERT_FALSE(none);
  auto alloc =
      createNetwork({.config = cfg(R"({"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}})"),
                     .ext = eth0(),
                     .kernel = &k,
                     .runner = nullptr});
  ASSERT_TRUE(alloc);
  EXPECT_EQ((*alloc)->leaseAttrs().backend_type, "");
  EXPECT_TRUE((*alloc)->desiredState({}).routes.empty());
}

TEST(ExtensionExpand, SplitsOnWhitespaceAndNeverResplitsExpansions) {
  std::map<std::string, std::string> vars = {{"SUBNET", "10.5.2.0/24 ; rm -rf /"},
                                             {"PUBLIC_IP", "$(id)"}};
  auto argv =
      extension::expandCommand("/usr/bin/add-route ${SUBNET} via=$PUBLIC_IP $ x$NOPE", vars, {});
  ASSERT_TRUE(argv);
  EXPECT_EQ(*argv, (std::vector<std::string>{"/usr/bin/add-route", "10.5.2.0/24 ; rm -rf /",
                                             "via=$(id)", "$", "x"}));
  EXPECT_FALSE(extension::expandCommand("   ", vars, {}));
  EXPECT_FALSE(extension::expandCommand("cmd ${OPEN", vars, {}));
}

TEST(Extension, HooksRunWithoutAShellAndLeaseTextStaysInert) {
  test::FakeRunner runner;
  runner.on({"/opt/pre"}, test::FakeRunner::exited(0, "aa:bb\n"));
  runner.on({"/opt/post"}, test::FakeRunner::exited(0));
  runner.on({"/opt/add"}, test::FakeRunner::exited(0));
  test::FakeKernel k;
  auto n = createNetwork({.config = cfg(R"({"Network":"10.5.0.0/16","Backend":{"Type":"extension",
          "PreStartupCommand":"/opt/pre","PostStartupCommand":"/opt/post $SUBNET",
          "SubnetAddCommand":"/opt/add ${SUBNET} $PUBLIC_IP"}})"),
                          .ext = eth0(),
                          .kernel = &k,
                          .runner = &runner});
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ((*n)->leaseAttrs().backend_data, R"("aa:bb")");
  ASSERT_TRUE((*n)->configure(own("10.5.1.0/24")));
  Lease evil = peer("10.5.2.0/24", 12, "extension", R"js("x; touch /tmp/pwned $(id)")js");
  (*n)->peersAdded({evil});
  const auto calls = runner.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].argv, (std::vector<std::string>{"/opt/pre"}));
  EXPECT_EQ(calls[1].argv, (std::vector<std::string>{"/opt/post", "10.5.1.0/24"}));
  EXPECT_EQ(calls[2].argv, (std::vector<std::string>{"/opt/add", "10.5.2.0/24", "192.168.91.12"}));
  EXPECT_EQ(calls[2].stdin_data, "x; touch /tmp/pwned $(id)\n");
  EXPECT_EQ(calls[2].env_add.at("SUBNET"), "10.5.2.0/24");
}

}  // namespace
}  // namespace flannel::backend
