// External interface selection (SPEC.md §8) against the real kernel: NetlinkKernel in a fresh
// network namespace with two veth uplinks, their addresses and default routes, made with `ip`.
//
// The test thread setns()es into the namespace for one test, opens the NetlinkKernel there and
// returns to its own namespace before the namespace is deleted; the host's interfaces are never
// touched. Root only (the tests skip otherwise); CTest labels contract;privileged.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernel/iface_select.h"
#include "kernel/netlink/netlink_kernel.h"
#include "support/netns.h"
#include "support/test_run.h"

namespace flannel::kernel {
namespace {

Ip4 ip4(std::string_view s) {
  return Ip4::parse(s).value();
}
Ip6 ip6(std::string_view s) {
  return Ip6::parse(s).value();
}

// Inside the namespace:
//   ext0 (veth, mtu 1400)  10.77.0.2/24  2001:db8:77::2/64   default routes (both families)
//   int0 (veth, mtu 9000)  192.168.77.2/24  fd00:77::2/64
class IfaceSelectPrivileged : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create a network namespace";
    }
    auto run = test::TestRun::create();
    ASSERT_TRUE(run) << run.error().message;
    run_ = std::move(*run);
    auto ns = test::Netns::create(*run_, "if");
    ASSERT_TRUE(ns) << ns.error().message;
    ns_ = std::move(*ns);
    auto built = ns_->ipBatch(
        "link add ext0 mtu 1400 type veth peer name ext0p\n"
        "link add int0 mtu 9000 type veth peer name int0p\n"
        "link set ext0p up\n"
        "link set int0p up\n"
        "link set ext0 up\n"
        "link set int0 up\n"
        "address add 10.77.0.2/24 dev ext0\n"
        "address add 2001:db8:77::2/64 dev ext0 nodad\n"
        "address add 192.168.77.2/24 dev int0\n"
        "address add fd00:77::2/64 dev int0 nodad\n"
        "route add default via 10.77.0.1 dev ext0\n"
        "route add default via 2001:db8:77::1 dev ext0\n");
    ASSERT_TRUE(built) << built.error().message;

    own_ns_fd_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(own_ns_fd_, 0) << std::strerror(errno);
    const std::string path = "/run/netns/" + ns_->name();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
    const int rc = ::setns(fd, CLONE_NEWNET);
    ::close(fd);
    ASSERT_EQ(rc, 0) << "setns into " << ns_->name() << ": " << std::strerror(errno);
    entered_ = true;
    auto kernel = NetlinkKernel::open();
    ASSERT_TRUE(kernel) << kernel.error().message;
    kernel_ = std::move(*kernel);
  }

  void TearDown() override {
    kernel_.reset();
    if (entered_) {
      // Back to our own namespace before the test one goes away.
      EXPECT_EQ(::setns(own_ns_fd_, CLONE_NEWNET), 0) << std::strerror(errno);
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

  Result<ExternalInterface> select(IfaceOptions options) {
    return selectExternalInterface(*kernel_, options);
  }

  std::unique_ptr<test::TestRun> run_;
  std::unique_ptr<test::Netns> ns_;
  std::unique_ptr<NetlinkKernel> kernel_;
  int own_ns_fd_ = -1;
  bool entered_ = false;
};

TEST_F(IfaceSelectPrivileged, SnapshotSeesTheNamespace) {
  auto snap = snapshotInterfaces(*kernel_);
  ASSERT_TRUE(snap) << snap.error().message;
  auto ext0 = kernel_->linkByName("ext0");
  ASSERT_TRUE(ext0) << ext0.error().message;
  EXPECT_EQ(snap->default_v4_ifindex, ext0->index);
  EXPECT_EQ(snap->default_v6_ifindex, ext0->index);
  EXPECT_EQ(snap->links.front().name, "lo");
  EXPECT_GE(snap->links.size(), 5u);  // lo, ext0, ext0p, int0, int0p
}

TEST_F(IfaceSelectPrivileged, DefaultRouteInterface) {
  auto got = select(IfaceOptions{});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "ext0");
  EXPECT_EQ(got->mtu(), 1400u);
  EXPECT_EQ(got->iface_addr, ip4("10.77.0.2"));
  EXPECT_EQ(got->ext_addr, ip4("10.77.0.2"));
  EXPECT_EQ(got->iface_v6_addr, std::nullopt);
}

// The kernel gave ext0 an fe80:: address too; the global one is chosen.
TEST_F(IfaceSelectPrivileged, DualStackDefaultRoutesPreferGlobalAddresses) {
  auto got = select(IfaceOptions{.ipv4 = true, .ipv6 = true});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "ext0");
  EXPECT_EQ(got->iface_addr, ip4("10.77.0.2"));
  EXPECT_EQ(got->iface_v6_addr, ip6("2001:db8:77::2"));
  EXPECT_EQ(got->ext_v6_addr, ip6("2001:db8:77::2"));
}

TEST_F(IfaceSelectPrivileged, DualStackDefaultRoutesOnTwoInterfacesIsAnError) {
  ASSERT_TRUE(
      ns_->ipBatch("route del default via 2001:db8:77::1 dev ext0\n"
                   "route add default via fd00:77::1 dev int0\n"));
  auto got = select(IfaceOptions{.ipv4 = true, .ipv6 = true});
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message.find(
                "the IPv4 default route uses ext0 and the IPv6 default route uses int0"),
            std::string::npos)
      << got.error().message;
}

TEST_F(IfaceSelectPrivileged, PublicIpFindsItsInterface) {
  auto got = select(IfaceOptions{.public_ip = ip4("192.168.77.2")});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "int0");
  auto nat = select(IfaceOptions{.public_ip = ip4("203.0.113.7")});
  ASSERT_FALSE(nat);
  EXPECT_NE(nat.error().message.find("use -iface with -public-ip for NAT"), std::string::npos);
}

TEST_F(IfaceSelectPrivileged, IfaceByNameWithPublicIpForNat) {
  auto got = select(IfaceOptions{.ifaces = {"nosuch0", "int0"}, .public_ip = ip4("203.0.113.7")});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "int0");
  EXPECT_EQ(got->mtu(), 9000u);
  EXPECT_EQ(got->iface_addr, ip4("192.168.77.2"));
  EXPECT_EQ(got->ext_addr, ip4("203.0.113.7"));
}

// Go flannel crashes on this one.
TEST_F(IfaceSelectPrivileged, IfaceIpv6LiteralInDualStack) {
  auto got = select(IfaceOptions{.ifaces = {"fd00:77::2"}, .ipv4 = true, .ipv6 = true});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "int0");
  EXPECT_EQ(got->iface_addr, ip4("192.168.77.2"));
  EXPECT_EQ(got->iface_v6_addr, ip6("fd00:77::2"));
}

TEST_F(IfaceSelectPrivileged, RegexByAddressAndByName) {
  auto by_addr = select(IfaceOptions{.regexes = {"^192\\.168\\.77\\."}});
  ASSERT_TRUE(by_addr) << by_addr.error().message;
  EXPECT_EQ(by_addr->link.name, "int0");
  auto by_name = select(IfaceOptions{.regexes = {"^ext0$"}, .ipv4 = true, .ipv6 = true});
  ASSERT_TRUE(by_name) << by_name.error().message;
  EXPECT_EQ(by_name->link.name, "ext0");
  EXPECT_EQ(by_name->iface_v6_addr, ip6("2001:db8:77::2"));
}

TEST_F(IfaceSelectPrivileged, CanReachUsesTheKernelsRoute) {
  auto got = select(IfaceOptions{.can_reach = IpAddr(ip4("192.168.77.50"))});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "int0");
  EXPECT_EQ(got->iface_addr, ip4("192.168.77.2"));
  // Off-link targets go through the default route.
  auto far = select(IfaceOptions{.can_reach = IpAddr(ip4("198.51.100.1"))});
  ASSERT_TRUE(far) << far.error().message;
  EXPECT_EQ(far->link.name, "ext0");
  EXPECT_EQ(far->iface_addr, ip4("10.77.0.2"));
}

TEST_F(IfaceSelectPrivileged, CanReachOwnAddressIsNotLoopback) {
  auto got = select(IfaceOptions{.can_reach = IpAddr(ip4("192.168.77.2"))});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "int0");
  EXPECT_EQ(got->iface_addr, ip4("192.168.77.2"));
}

TEST_F(IfaceSelectPrivileged, CanReachV6) {
  auto got =
      select(IfaceOptions{.can_reach = IpAddr(ip6("fd00:77::99")), .ipv4 = false, .ipv6 = true});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "int0");
  EXPECT_EQ(got->iface_v6_addr, ip6("fd00:77::2"));
}

TEST_F(IfaceSelectPrivileged, NothingUsableNamesEveryCandidate) {
  ASSERT_TRUE(ns_->ipBatch("route del default via 10.77.0.1 dev ext0\n"));
  auto got = select(IfaceOptions{
      .ifaces = {"nosuch0", "lo"}, .regexes = {"^zz"}, .can_reach = IpAddr(ip4("198.51.100.1"))});
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::NotFound);
  EXPECT_NE(got.error().message.find("no usable external interface: -iface nosuch0: no such "
                                     "interface; -iface lo: no usable IPv4 address; "
                                     "-iface-regex ^zz: no interface matches; "
                                     "-iface-can-reach 198.51.100.1: "),
            std::string::npos)
      << got.error().message;
}

TEST_F(IfaceSelectPrivileged, LowestMetricDefaultRouteWins) {
  ASSERT_TRUE(ns_->ipBatch("route add default via 192.168.77.1 dev int0 metric 5\n"));
  // Metric 0 (ext0) beats metric 5 (int0).
  auto got = select(IfaceOptions{});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "ext0");
  ASSERT_TRUE(
      ns_->ipBatch("route del default via 10.77.0.1 dev ext0\n"
                   "route add default via 10.77.0.1 dev ext0 metric 10\n"));
  got = select(IfaceOptions{});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "int0");
}

}  // namespace
}  // namespace flannel::kernel
