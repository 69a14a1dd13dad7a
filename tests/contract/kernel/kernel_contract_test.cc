// The Kernel contract: one typed suite run against FakeKernel and NetlinkKernel (DESIGN.md
// "The seams"). The fake is trusted by unit tests only because this suite passes on both.
//
// The NetlinkKernel half runs as root in a fresh network namespace made by the test harness
// (tests/support/netns.h): the test thread setns()es into it for the duration of one test, opens
// the NetlinkKernel there (its socket stays bound to that namespace) and goes back to its own
// namespace before the namespace is deleted. The host's interfaces are never touched. Its tests
// are named KernelContractNetlinkPrivileged/* and carry the CTest label `privileged`; they skip
// only when not running as root.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "kernel/kernel.h"
#include "kernel/netlink/netlink_kernel.h"
#include "support/fake_kernel.h"
#include "support/netns.h"
#include "support/test_run.h"

namespace flannel::kernel {
namespace {

IpAddr ip(std::string_view s) {
  return IpAddr::parse(s).value();
}
IpNet net(std::string_view s) {
  return IpNet::parse(s).value();
}
Mac mac(std::string_view s) {
  return Mac::parse(s).value();
}

// --- the two implementations ---------------------------------------------------------------

class FakeHarness {
 public:
  static constexpr bool kNeedsRoot = false;

  Result<void> setUp() {
    fake_ = std::make_unique<test::FakeKernel>();
    return ok();
  }
  void tearDown() { fake_.reset(); }
  Kernel& kernel() { return *fake_; }
  // An "ordinary" device (a veth end in the real namespace), up, with carrier.
  Result<int> addUplink(const std::string& name, uint32_t mtu) {
    return fake_->addLink(name, "veth", mtu, /*up=*/true).index;
  }

 private:
  std::unique_ptr<test::FakeKernel> fake_;
};

class NetlinkHarness {
 public:
  static constexpr bool kNeedsRoot = true;

  Result<void> setUp() {
    auto run = test::TestRun::create();
    if (!run) {
      return run.error();
    }
    run_ = std::move(*run);
    auto ns = test::Netns::create(*run_, "kc");
    if (!ns) {
      return ns.error();
    }
    ns_ = std::move(*ns);
    own_ns_fd_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    const std::string path = "/run/netns/" + ns_->name();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (own_ns_fd_ < 0 || fd < 0) {
      return makeError(Errc::Internal, "opening namespace files: " + std::string(strerror(errno)));
    }
    const int rc = ::setns(fd, CLONE_NEWNET);
    ::close(fd);
    if (rc != 0) {
      return makeError(Errc::Internal, "setns into " + ns_->name() + ": " + strerror(errno));
    }
    entered_ = true;
    auto kernel = NetlinkKernel::open();
    if (!kernel) {
      return kernel.error();
    }
    kernel_ = std::move(*kernel);
    return ok();
  }

  void tearDown() {
    kernel_.reset();
    if (entered_) {
      // Back to our own namespace before the test one goes away.
      EXPECT_EQ(::setns(own_ns_fd_, CLONE_NEWNET), 0) << strerror(errno);
      entered_ = false;
    }
    if (own_ns_fd_ >= 0) {
      ::close(own_ns_fd_);
      own_ns_fd_ = -1;
    }
    if (ns_) {
      auto destroyed = ns_->destroy();
      EXPECT_TRUE(destroyed) << destroyed.error().message;
      ns_.reset();
    }
    run_.reset();
  }

  Kernel& kernel() { return *kernel_; }
  NetlinkKernel& netlink() { return *kernel_; }
  const std::string& netnsName() const { return ns_->name(); }

  Result<int> addUplink(const std::string& name, uint32_t mtu) {
    const std::string peer = name + "p";
    for (const auto& args :
         std::vector<std::vector<std::string>>{{"link", "add", name, "mtu", std::to_string(mtu),
                                                "type", "veth", "peer", "name", peer},
                                               {"link", "set", peer, "up"},
                                               {"link", "set", name, "up"}}) {
      if (auto done = ns_->ip(args); !done) {
        return done.error();
      }
    }
    auto link = kernel_->linkByName(name);
    if (!link) {
      return link.error();
    }
    return link->index;
  }

 private:
  std::unique_ptr<test::TestRun> run_;
  std::unique_ptr<test::Netns> ns_;
  std::unique_ptr<NetlinkKernel> kernel_;
  int own_ns_fd_ = -1;
  bool entered_ = false;
};

template <class Harness>
class KernelContract : public ::testing::Test {
 protected:
  void SetUp() override {
    if constexpr (Harness::kNeedsRoot) {
      if (::geteuid() != 0) {
        GTEST_SKIP() << "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create a network "
                        "namespace; run as root to check NetlinkKernel";
      }
    }
    auto ready = h_.setUp();
    ASSERT_TRUE(ready) << ready.error().message;
  }
  void TearDown() override { h_.tearDown(); }

  Kernel& k() { return h_.kernel(); }

  int uplink(const std::string& name = "u0", uint32_t mtu = 1500) {
    auto index = h_.addUplink(name, mtu);
    EXPECT_TRUE(index) << index.error().message;
    return index ? *index : 0;
  }

  // u0 with 192.168.91.11/24, the "external interface" of SPEC.md's examples.
  int external() {
    const int u0 = uplink("u0");
    EXPECT_TRUE(
        k().replaceAddress(Addr{.ifindex = u0, .address = ip("192.168.91.11"), .prefix_len = 24}));
    return u0;
  }

  VxlanSpec vxlanSpec(int underlay, uint32_t vni = 1) {
    return VxlanSpec{.name = "flannel.1",
                     .vni = vni,
                     .local = ip("192.168.91.11"),
                     .underlay_ifindex = underlay,
                     .port = 0,
                     .learning = false,
                     .gbp = false,
                     .mac = std::nullopt};
  }

  // flannel.1 on u0, up.
  Link upVxlan() {
    const int u0 = external();
    auto vx = k().ensureVxlan(vxlanSpec(u0));
    EXPECT_TRUE(vx) << vx.error().message;
    EXPECT_TRUE(k().setLinkUp(vx->index));
    return vx.value();
  }

  // Non-link-local addresses of a link (the kernel adds fe80:: ones by itself).
  std::vector<Addr> globalAddresses(int ifindex) {
    auto all = k().addresses(ifindex);
    EXPECT_TRUE(all) << all.error().message;
    std::vector<Addr> out;
    for (const Addr& a : all.value()) {
      if (!a.address.isLinkLocal()) {
        out.push_back(a);
      }
    }
    return out;
  }

  std::vector<Route> routesOn(int ifindex, Family family) {
    auto r = k().routes(RouteFilter{.family = family, .table = kMainTable, .ifindex = ifindex});
    EXPECT_TRUE(r) << r.error().message;
    std::vector<Route> out;
    for (const Route& route : r.value()) {
      if (route.protocol != kProtoKernel) {  // connected and fe80::/64 routes
        out.push_back(route);
      }
    }
    return out;
  }

  std::vector<Neigh> permanentNeighbours(int ifindex) {
    auto n = k().neighbours(ifindex);
    EXPECT_TRUE(n) << n.error().message;
    std::vector<Neigh> out;
    std::copy_if(n.value().begin(), n.value().end(), std::back_inserter(out),
                 [](const Neigh& x) { return x.permanent; });
    return out;
  }

  Harness h_;
};

TYPED_TEST_SUITE_P(KernelContract);

// --- links ------------------------------------------------------------------------------------

TYPED_TEST_P(KernelContract, ListsLoopbackFirstAndLinksByNameAndIndex) {
  const int u0 = this->uplink("u0", 1400);
  auto links = this->k().links();
  ASSERT_TRUE(links) << links.error().message;
  ASSERT_FALSE(links->empty());
  EXPECT_EQ(links->front().name, "lo");
  EXPECT_EQ(links->front().index, 1);
  EXPECT_TRUE(std::is_sorted(links->begin(), links->end(),
                             [](const Link& a, const Link& b) { return a.index < b.index; }));
  auto by_name = this->k().linkByName("u0");
  ASSERT_TRUE(by_name) << by_name.error().message;
  EXPECT_EQ(by_name->index, u0);
  EXPECT_EQ(by_name->kind, "veth");
  EXPECT_EQ(by_name->mtu, 1400u);
  EXPECT_TRUE(by_name->up);
  EXPECT_FALSE(by_name->mac.isZero());
  EXPECT_EQ(this->k().linkByIndex(u0).value(), *by_name);

  auto missing = this->k().linkByName("nosuchdev");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::NotFound);
  EXPECT_EQ(missing.error().sys_errno, ENODEV);
  EXPECT_NE(missing.error().message.find("nosuchdev"), std::string::npos);
  EXPECT_EQ(this->k().linkByIndex(4242).error().code, Errc::NotFound);
}

TYPED_TEST_P(KernelContract, CreatesVxlanThenAdoptsItAgainKeepingItsMac) {
  const int u0 = this->external();
  auto created = this->k().ensureVxlan(this->vxlanSpec(u0));
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(created->name, "flannel.1");
  EXPECT_EQ(created->kind, "vxlan");
  EXPECT_FALSE(created->up);
  EXPECT_EQ(created->mtu, 1450u);  // underlay 1500 - 50
  EXPECT_TRUE(created->mac.isLocallyAdministered());
  EXPECT_FALSE(created->mac.isMulticast());
  ASSERT_TRUE(created->vxlan.has_value());
  EXPECT_EQ(*created->vxlan, (VxlanInfo{.vni = 1,
                                        .local = ip("192.168.91.11"),
                                        .group = std::nullopt,
                                        .underlay_ifindex = u0,
                                        .port = kVxlanKernelDefaultPort,
                                        .learning = false,
                                        .gbp = false,
                                        .l2miss = false}));
  EXPECT_EQ(this->k().linkByName("flannel.1").value(), *created);

  // Restart: same spec, another MAC asked for; the device and its MAC stay.
  ASSERT_TRUE(this->k().setLinkUp(created->index));
  VxlanSpec again = this->vxlanSpec(u0);
  again.mac = mac("0e:2a:00:00:00:99");
  auto adopted = this->k().ensureVxlan(again);
  ASSERT_TRUE(adopted) << adopted.error().message;
  EXPECT_EQ(adopted->index, created->index);
  EXPECT_EQ(adopted->mac, created->mac);
  EXPECT_TRUE(adopted->up);
}

TYPED_TEST_P(KernelContract, CreatesVxlanWithTheRequestedMacPortAndGbp) {
  const int u0 = this->external();
  VxlanSpec spec = this->vxlanSpec(u0, 7);
  spec.name = "flannel.7";
  spec.mac = mac("0e:2a:5c:01:02:03");
  spec.port = 4789;
  spec.gbp = true;
  spec.learning = true;
  auto vx = this->k().ensureVxlan(spec);
  ASSERT_TRUE(vx) << vx.error().message;
  EXPECT_EQ(vx->mac, mac("0e:2a:5c:01:02:03"));
  ASSERT_TRUE(vx->vxlan.has_value());
  EXPECT_EQ(vx->vxlan->vni, 7u);
  EXPECT_EQ(vx->vxlan->port, 4789);
  EXPECT_TRUE(vx->vxlan->gbp);
  EXPECT_TRUE(vx->vxlan->learning);
}

TYPED_TEST_P(KernelContract, RecreatesVxlanWhenTheVniDiffers) {
  const int u0 = this->external();
  auto first = this->k().ensureVxlan(this->vxlanSpec(u0, 1));
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_TRUE(this->k().replaceAddress(
      Addr{.ifindex = first->index, .address = ip("10.5.92.0"), .prefix_len = 32}));
  auto second = this->k().ensureVxlan(this->vxlanSpec(u0, 2));
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_NE(second->index, first->index);
  EXPECT_EQ(second->vxlan.value().vni, 2u);
  EXPECT_EQ(this->k().linkByIndex(first->index).error().code, Errc::NotFound);
  EXPECT_TRUE(this->globalAddresses(second->index).empty());  // a new device, nothing on it
}

TYPED_TEST_P(KernelContract, RecreatesALinkOfAnotherKindThatHasTheName) {
  const int u0 = this->external();
  const int squatter = this->uplink("flannel.1");
  auto vx = this->k().ensureVxlan(this->vxlanSpec(u0));
  ASSERT_TRUE(vx) << vx.error().message;
  EXPECT_NE(vx->index, squatter);
  EXPECT_EQ(vx->kind, "vxlan");
}

TYPED_TEST_P(KernelContract, VxlanOnAnAbsentUnderlayFailsAndNamesTheDevice) {
  auto vx = this->k().ensureVxlan(this->vxlanSpec(4242));
  ASSERT_FALSE(vx);
  EXPECT_EQ(vx.error().code, Errc::NotFound);
  EXPECT_EQ(vx.error().sys_errno, ENODEV);
  EXPECT_NE(vx.error().message.find("vxlan device flannel.1"), std::string::npos)
      << vx.error().message;
  EXPECT_EQ(this->k().linkByName("flannel.1").error().code, Errc::NotFound);
}

TYPED_TEST_P(KernelContract, RejectsBadVxlanNamesAndVnis) {
  const int u0 = this->external();
  VxlanSpec long_name = this->vxlanSpec(u0);
  long_name.name = "flannel.1234567890";
  EXPECT_EQ(this->k().ensureVxlan(long_name).error().code, Errc::InvalidInput);
  EXPECT_EQ(this->k().ensureVxlan(this->vxlanSpec(u0, 1u << 24)).error().code, Errc::InvalidInput);
}

TYPED_TEST_P(KernelContract, SetsLinksUpAndMtuIdempotently) {
  const Link vx = this->upVxlan();
  EXPECT_TRUE(this->k().setLinkUp(vx.index));
  EXPECT_TRUE(this->k().linkByIndex(vx.index).value().up);
  ASSERT_TRUE(this->k().setMtu(vx.index, 1400));
  ASSERT_TRUE(this->k().setMtu(vx.index, 1400));
  EXPECT_EQ(this->k().linkByIndex(vx.index).value().mtu, 1400u);

  for (auto r : {this->k().setLinkUp(4242), this->k().setMtu(4242, 1400)}) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::NotFound);
    EXPECT_EQ(r.error().sys_errno, ENODEV);
    EXPECT_NE(r.error().message.find("ifindex 4242"), std::string::npos) << r.error().message;
  }
  auto bad = this->k().setMtu(vx.index, 10);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().sys_errno, EINVAL);
  EXPECT_NE(bad.error().message.find("flannel.1"), std::string::npos) << bad.error().message;
}

TYPED_TEST_P(KernelContract, DeletingALinkTwiceSucceeds) {
  const Link vx = this->upVxlan();
  EXPECT_TRUE(this->k().deleteLink(vx.index));
  EXPECT_TRUE(this->k().deleteLink(vx.index));
  EXPECT_EQ(this->k().linkByName("flannel.1").error().code, Errc::NotFound);
}

// --- addresses ----------------------------------------------------------------------------------

TYPED_TEST_P(KernelContract, AddressReplaceListDelete) {
  const Link vx = this->upVxlan();
  const Addr v4{.ifindex = vx.index, .address = ip("10.5.92.0"), .prefix_len = 32};
  const Addr v6{.ifindex = vx.index, .address = ip("fd55:0:0:36::"), .prefix_len = 128};
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(this->k().replaceAddress(v4));
    ASSERT_TRUE(this->k().replaceAddress(v6));
  }
  auto listed = this->globalAddresses(vx.index);
  std::sort(listed.begin(), listed.end(),
            [](const Addr& a, const Addr& b) { return a.address < b.address; });
  EXPECT_EQ(listed, (std::vector<Addr>{v4, v6}));
  auto all = this->k().allAddresses();
  ASSERT_TRUE(all);
  EXPECT_NE(std::find(all->begin(), all->end(), v4), all->end());

  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(this->k().deleteAddress(v4));
    ASSERT_TRUE(this->k().deleteAddress(v6));
  }
  EXPECT_TRUE(this->globalAddresses(vx.index).empty());

  auto absent =
      this->k().replaceAddress(Addr{.ifindex = 4242, .address = ip("10.5.92.0"), .prefix_len = 32});
  ASSERT_FALSE(absent);
  EXPECT_EQ(absent.error().code, Errc::NotFound);
  EXPECT_NE(absent.error().message.find("10.5.92.0/32"), std::string::npos);
  EXPECT_TRUE(
      this->k().deleteAddress(Addr{.ifindex = 4242, .address = ip("10.5.92.0"), .prefix_len = 32}));
}

// --- routes -------------------------------------------------------------------------------------

TYPED_TEST_P(KernelContract, OnlinkRouteViaVxlanReplaceTwiceIsOneRouteDeleteTwiceSucceeds) {
  const Link vx = this->upVxlan();
  const Route r{
      .dst = net("10.5.3.0/24"), .via = ip("10.5.3.0"), .ifindex = vx.index, .onlink = true};
  ASSERT_TRUE(this->k().replaceRoute(r));
  ASSERT_TRUE(this->k().replaceRoute(r));
  EXPECT_EQ(this->routesOn(vx.index, Family::V4), std::vector<Route>{r});

  // Same key, new gateway: overwritten, not added.
  Route moved = r;
  moved.via = ip("10.5.3.1");
  ASSERT_TRUE(this->k().replaceRoute(moved));
  EXPECT_EQ(this->routesOn(vx.index, Family::V4), std::vector<Route>{moved});

  ASSERT_TRUE(this->k().deleteRoute(moved));
  ASSERT_TRUE(this->k().deleteRoute(moved));
  EXPECT_TRUE(this->routesOn(vx.index, Family::V4).empty());
  // Deleting a route that differs from the installed one (other gateway) deletes nothing.
  ASSERT_TRUE(this->k().replaceRoute(r));
  ASSERT_TRUE(this->k().deleteRoute(moved));
  EXPECT_EQ(this->routesOn(vx.index, Family::V4), std::vector<Route>{r});
}

TYPED_TEST_P(KernelContract, Ipv6OnlinkRouteReadsBackWithTheDefaultMetricNormalised) {
  const Link vx = this->upVxlan();
  const Route r{.dst = net("fd55:0:0:3::/64"),
                .via = ip("fd55:0:0:3::"),
                .ifindex = vx.index,
                .onlink = true};
  ASSERT_TRUE(this->k().replaceRoute(r));
  ASSERT_TRUE(this->k().replaceRoute(r));
  EXPECT_EQ(this->routesOn(vx.index, Family::V6), std::vector<Route>{r});
  ASSERT_TRUE(this->k().deleteRoute(r));
  ASSERT_TRUE(this->k().deleteRoute(r));
  EXPECT_TRUE(this->routesOn(vx.index, Family::V6).empty());
}

TYPED_TEST_P(KernelContract, GatewayRouteWithoutDeviceResolvesThroughTheConnectedPrefix) {
  const int u0 = this->external();
  // host-gw / DirectRouting: `<peer subnet> via <peer PublicIP>`, no device.
  const Route r{.dst = net("10.5.37.0/24"), .via = ip("192.168.91.12")};
  ASSERT_TRUE(this->k().replaceRoute(r));
  Route expected = r;
  expected.ifindex = u0;
  EXPECT_EQ(this->routesOn(u0, Family::V4), std::vector<Route>{expected});
  ASSERT_TRUE(this->k().deleteRoute(r));
  EXPECT_TRUE(this->routesOn(u0, Family::V4).empty());
}

TYPED_TEST_P(KernelContract, RouteErrorsCarryErrnoAndNameTheObject) {
  const Link vx = this->upVxlan();
  auto absent = this->k().replaceRoute(
      Route{.dst = net("10.5.3.0/24"), .via = ip("10.5.3.0"), .ifindex = 4242, .onlink = true});
  ASSERT_FALSE(absent);
  EXPECT_EQ(absent.error().code, Errc::NotFound);
  EXPECT_EQ(absent.error().sys_errno, ENODEV);
  EXPECT_EQ(absent.error().message.rfind("replacing route 10.5.3.0/24 via 10.5.3.0 dev ifindex "
                                         "4242 onlink: No such device (errno 19)",
                                         0),
            0u)
      << absent.error().message;

  // A gateway that is not on a connected prefix.
  auto unreachable = this->k().replaceRoute(
      Route{.dst = net("10.5.38.0/24"), .via = ip("192.168.92.12"), .ifindex = vx.index});
  ASSERT_FALSE(unreachable);
  EXPECT_EQ(unreachable.error().sys_errno, ENETUNREACH) << unreachable.error().message;
  EXPECT_NE(unreachable.error().message.find("10.5.38.0/24 via 192.168.92.12 dev flannel.1"),
            std::string::npos)
      << unreachable.error().message;

  // A device that is down.
  VxlanSpec down = this->vxlanSpec(vx.vxlan.value().underlay_ifindex, 9);
  down.name = "flannel.9";
  auto vx9 = this->k().ensureVxlan(down);
  ASSERT_TRUE(vx9) << vx9.error().message;
  auto not_up = this->k().replaceRoute(Route{
      .dst = net("10.5.4.0/24"), .via = ip("10.5.4.0"), .ifindex = vx9->index, .onlink = true});
  ASSERT_FALSE(not_up);
  EXPECT_EQ(not_up.error().sys_errno, ENETDOWN) << not_up.error().message;
  EXPECT_EQ(not_up.error().code, Errc::Unavailable);
  EXPECT_NE(not_up.error().message.find("dev flannel.9"), std::string::npos);
}

TYPED_TEST_P(KernelContract, RouteGetFindsDeviceGatewayAndSource) {
  const int u0 = this->external();
  ASSERT_TRUE(
      this->k().replaceRoute(Route{.dst = net("10.5.37.0/24"), .via = ip("192.168.91.12")}));

  auto via_gw = this->k().routeGet(ip("10.5.37.4"));
  ASSERT_TRUE(via_gw) << via_gw.error().message;
  EXPECT_EQ(via_gw->dst, net("10.5.37.4/32"));
  EXPECT_EQ(via_gw->ifindex, u0);
  EXPECT_EQ(via_gw->via, ip("192.168.91.12"));
  EXPECT_EQ(via_gw->src, ip("192.168.91.11"));

  auto direct = this->k().routeGet(ip("192.168.91.12"));  // --iface-can-reach, DirectRouting
  ASSERT_TRUE(direct) << direct.error().message;
  EXPECT_EQ(direct->ifindex, u0);
  EXPECT_EQ(direct->via, std::nullopt);
  EXPECT_EQ(direct->src, ip("192.168.91.11"));
  EXPECT_EQ(direct->type, kRouteUnicast);

  auto local = this->k().routeGet(ip("192.168.91.11"));
  ASSERT_TRUE(local) << local.error().message;
  EXPECT_EQ(local->type, kRouteLocal);
  EXPECT_EQ(local->ifindex, 1);  // lo

  auto none = this->k().routeGet(ip("8.8.8.8"));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::Unavailable);
  EXPECT_EQ(none.error().sys_errno, ENETUNREACH);
  EXPECT_NE(none.error().message.find("8.8.8.8"), std::string::npos);
}

// --- neighbours and FDB -------------------------------------------------------------------------

TYPED_TEST_P(KernelContract, NeighbourReplaceListDelete) {
  const Link vx = this->upVxlan();
  for (const char* dst : {"10.5.99.0", "fd55:0:0:99::"}) {
    const Neigh first{.ifindex = vx.index, .dst = ip(dst), .lladdr = mac("3e:6b:00:00:00:0a")};
    Neigh second = first;
    second.lladdr = mac("3e:6b:00:00:00:0b");
    ASSERT_TRUE(this->k().replaceNeighbour(first));
    ASSERT_TRUE(this->k().replaceNeighbour(first));
    EXPECT_EQ(this->permanentNeighbours(vx.index), std::vector<Neigh>{first}) << dst;
    ASSERT_TRUE(this->k().replaceNeighbour(second));  // the peer's VtepMAC changed
    EXPECT_EQ(this->permanentNeighbours(vx.index), std::vector<Neigh>{second}) << dst;
    ASSERT_TRUE(this->k().deleteNeighbour(second));
    ASSERT_TRUE(this->k().deleteNeighbour(second));
    EXPECT_TRUE(this->permanentNeighbours(vx.index).empty()) << dst;
  }
  auto absent = this->k().replaceNeighbour(
      Neigh{.ifindex = 4242, .dst = ip("10.5.99.0"), .lladdr = mac("3e:6b:00:00:00:0a")});
  ASSERT_FALSE(absent);
  EXPECT_EQ(absent.error().code, Errc::NotFound);
  EXPECT_EQ(absent.error().sys_errno, ENODEV);
  EXPECT_NE(absent.error().message.find("replacing neighbour 10.5.99.0"), std::string::npos);
}

TYPED_TEST_P(KernelContract, FdbReplaceMovesTheMacInsteadOfDuplicatingIt) {
  const Link vx = this->upVxlan();
  const Fdb a{.ifindex = vx.index, .mac = mac("3e:6b:00:00:00:0a"), .dst = ip("192.168.91.12")};
  Fdb a_moved = a;
  a_moved.dst = ip("192.168.91.13");
  const Fdb b{.ifindex = vx.index, .mac = mac("3e:6b:00:00:00:0b"), .dst = ip("192.168.91.14")};
  auto sorted = [&] {
    auto entries = this->k().fdbEntries(vx.index);
    EXPECT_TRUE(entries) << entries.error().message;
    std::vector<Fdb> out = entries.value();
    std::sort(out.begin(), out.end(), [](const Fdb& x, const Fdb& y) { return x.mac < y.mac; });
    return out;
  };
  ASSERT_TRUE(this->k().replaceFdb(a));
  ASSERT_TRUE(this->k().replaceFdb(a));
  EXPECT_EQ(sorted(), std::vector<Fdb>{a});
  ASSERT_TRUE(this->k().replaceFdb(a_moved));  // the peer's PublicIP changed
  EXPECT_EQ(sorted(), std::vector<Fdb>{a_moved});
  ASSERT_TRUE(this->k().replaceFdb(b));
  EXPECT_EQ(sorted(), (std::vector<Fdb>{a_moved, b}));

  ASSERT_TRUE(this->k().deleteFdb(a));  // the old dst: already gone
  EXPECT_EQ(sorted(), (std::vector<Fdb>{a_moved, b}));
  ASSERT_TRUE(this->k().deleteFdb(a_moved));
  ASSERT_TRUE(this->k().deleteFdb(a_moved));
  EXPECT_EQ(sorted(), std::vector<Fdb>{b});

  // Other devices' FDB listings do not show it.
  EXPECT_TRUE(this->k().fdbEntries(vx.vxlan.value().underlay_ifindex).value().empty());
  auto absent = this->k().replaceFdb(Fdb{.ifindex = 4242, .mac = a.mac, .dst = a.dst});
  ASSERT_FALSE(absent);
  EXPECT_EQ(absent.error().code, Errc::NotFound);
  EXPECT_NE(absent.error().message.find("3e:6b:00:00:00:0a"), std::string::npos);
}

TYPED_TEST_P(KernelContract, DeletingTheDeviceDropsItsObjects) {
  const Link vx = this->upVxlan();
  ASSERT_TRUE(this->k().replaceAddress(
      Addr{.ifindex = vx.index, .address = ip("10.5.92.0"), .prefix_len = 32}));
  ASSERT_TRUE(this->k().replaceNeighbour(
      Neigh{.ifindex = vx.index, .dst = ip("10.5.99.0"), .lladdr = mac("3e:6b:00:00:00:0a")}));
  ASSERT_TRUE(this->k().replaceFdb(
      Fdb{.ifindex = vx.index, .mac = mac("3e:6b:00:00:00:0a"), .dst = ip("192.168.91.12")}));
  ASSERT_TRUE(this->k().replaceRoute(Route{
      .dst = net("10.5.99.0/24"), .via = ip("10.5.99.0"), .ifindex = vx.index, .onlink = true}));
  ASSERT_TRUE(this->k().deleteLink(vx.index));
  auto routes = this->k().routes(RouteFilter{});
  ASSERT_TRUE(routes);
  EXPECT_TRUE(std::none_of(routes->begin(), routes->end(),
                           [&](const Route& r) { return r.ifindex == vx.index; }));
  EXPECT_TRUE(this->k().neighbours(vx.index).value().empty());
  EXPECT_TRUE(this->k().fdbEntries(vx.index).value().empty());
  EXPECT_TRUE(this->k().addresses(vx.index).value().empty());
}

// --- sysctl
// ---------------------------------------------------------------------------------------

TYPED_TEST_P(KernelContract, SysctlRoundTripOnTheDevice) {
  const Link vx = this->upVxlan();
  const std::string key = "net/ipv6/conf/flannel.1/accept_ra";
  ASSERT_TRUE(this->k().setSysctl(key, "0"));
  EXPECT_EQ(this->k().sysctl(key).value(), "0");
  ASSERT_TRUE(this->k().setSysctl(key, "0"));  // idempotent

  auto absent = this->k().setSysctl("net/ipv6/conf/nosuchdev/accept_ra", "0");
  ASSERT_FALSE(absent);
  EXPECT_EQ(absent.error().code, Errc::NotFound);
  EXPECT_EQ(absent.error().sys_errno, ENOENT);
  EXPECT_NE(absent.error().message.find("net/ipv6/conf/nosuchdev/accept_ra"), std::string::npos);
  EXPECT_EQ(this->k().setSysctl("../../etc/passwd", "x").error().code, Errc::InvalidInput);
}

REGISTER_TYPED_TEST_SUITE_P(
    KernelContract, ListsLoopbackFirstAndLinksByNameAndIndex,
    CreatesVxlanThenAdoptsItAgainKeepingItsMac, CreatesVxlanWithTheRequestedMacPortAndGbp,
    RecreatesVxlanWhenTheVniDiffers, RecreatesALinkOfAnotherKindThatHasTheName,
    VxlanOnAnAbsentUnderlayFailsAndNamesTheDevice, RejectsBadVxlanNamesAndVnis,
    SetsLinksUpAndMtuIdempotently, DeletingALinkTwiceSucceeds, AddressReplaceListDelete,
    OnlinkRouteViaVxlanReplaceTwiceIsOneRouteDeleteTwiceSucceeds,
    Ipv6OnlinkRouteReadsBackWithTheDefaultMetricNormalised,
    GatewayRouteWithoutDeviceResolvesThroughTheConnectedPrefix,
    RouteErrorsCarryErrnoAndNameTheObject, RouteGetFindsDeviceGatewayAndSource,
    NeighbourReplaceListDelete, FdbReplaceMovesTheMacInsteadOfDuplicatingIt,
    DeletingTheDeviceDropsItsObjects, SysctlRoundTripOnTheDevice);

// gtest names: KernelContractFake/KernelContract/0.<Test> and
// KernelContractNetlinkPrivileged/KernelContract/0.<Test>; CTest shows them as
// KernelContractFake.<Test><0> and KernelContractNetlinkPrivileged.<Test><0>.
INSTANTIATE_TYPED_TEST_SUITE_P(KernelContractFake, KernelContract, FakeHarness);
INSTANTIATE_TYPED_TEST_SUITE_P(KernelContractNetlinkPrivileged, KernelContract, NetlinkHarness);

// Not part of the contract (the fake has nothing to race): NetlinkKernel repeats a dump that
// the kernel flags NLM_F_DUMP_INTR, so a listing taken while another thread keeps adding and
// removing addresses is still complete.
TEST(NetlinkKernelPrivileged, AddressDumpsStayCompleteUnderConcurrentChanges) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to create a network namespace";
  }
  NetlinkHarness h;
  struct TearDown {
    NetlinkHarness& h;
    ~TearDown() { h.tearDown(); }
  } tear_down{h};
  auto ready = h.setUp();
  ASSERT_TRUE(ready) << ready.error().message;
  auto u0 = h.addUplink("u0", 1500);
  ASSERT_TRUE(u0) << u0.error().message;
  constexpr int kStable = 1000;
  for (int i = 0; i < kStable; ++i) {
    const Addr a{.ifindex = *u0,
                 .address = Ip4::fromBytes(10, 1, static_cast<uint8_t>(i / 250),
                                           static_cast<uint8_t>(i % 250 + 1)),
                 .prefix_len = 32};
    ASSERT_TRUE(h.kernel().replaceAddress(a));
  }

  std::atomic<bool> stop{false};
  std::atomic<int> churned{0};
  const std::string ns_path = "/run/netns/" + h.netnsName();
  std::thread churn([&, ifindex = *u0] {
    const int fd = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      return;
    }
    ::close(fd);
    auto k = NetlinkKernel::open();
    if (!k) {
      return;
    }
    for (uint8_t n = 1; !stop.load(); n = static_cast<uint8_t>(n % 200 + 1)) {
      const Addr a{.ifindex = ifindex, .address = Ip4::fromBytes(10, 2, 0, n), .prefix_len = 32};
      if ((*k)->replaceAddress(a) && (*k)->deleteAddress(a)) {
        churned.fetch_add(1);
      }
      // Gaps let most dumps finish; a writer without pauses interrupts every attempt.
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  });

  int listings = 0;
  int complete = 0;
  for (; listings < 100; ++listings) {
    auto addrs = h.kernel().addresses(*u0);
    if (!addrs) {
      // Interrupted kDumpAttempts times in a row: allowed and reported, never torn.
      EXPECT_EQ(addrs.error().sys_errno, EINTR) << addrs.error().message;
      continue;
    }
    ++complete;
    const auto stable = std::count_if(addrs->begin(), addrs->end(), [](const Addr& a) {
      return a.address.is4() && (a.address.v4().toU32() >> 16) == 0x0a01;
    });
    ASSERT_EQ(stable, kStable) << "torn listing " << listings;
  }
  stop = true;
  churn.join();
  EXPECT_GT(churned.load(), 0);
  EXPECT_GT(complete, 0);
  std::cout << listings << " listings (" << complete << " complete), " << churned.load()
            << " concurrent add/delete pairs, " << h.netlink().interruptedDumps()
            << " interrupted dumps repeated\n";
}

}  // namespace
}  // namespace flannel::kernel
