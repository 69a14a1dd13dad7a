#include <cerrno>
#include <functional>

#include <gtest/gtest.h>

#include "kernel/kernel.h"

namespace flannel::kernel {
namespace {

IpAddr ip(std::string_view s) {
  return IpAddr::parse(s).value();
}
IpNet net(std::string_view s) {
  return IpNet::parse(s).value();
}

Link vxlanLink() {
  return Link{.index = 5,
              .name = "flannel.1",
              .kind = "vxlan",
              .mac = Mac::parse("3e:6b:00:a1:ff:02").value(),
              .mtu = 1450,
              .up = true,
              .lower_up = true,
              .vxlan = VxlanInfo{.vni = 1,
                                 .local = ip("192.168.91.11"),
                                 .group = std::nullopt,
                                 .underlay_ifindex = 2,
                                 .port = 8472,
                                 .learning = false,
                                 .gbp = false,
                                 .l2miss = false}};
}

VxlanSpec spec() {
  return VxlanSpec{.name = "flannel.1",
                   .vni = 1,
                   .local = ip("192.168.91.11"),
                   .underlay_ifindex = 2,
                   .port = 0,
                   .learning = false,
                   .gbp = false,
                   .mac = std::nullopt};
}

TEST(VxlanCompatibility, AdoptsAnIdenticalDeviceWhateverItsLearningAndMac) {
  EXPECT_EQ(vxlanIncompatibility(vxlanLink(), spec()), std::nullopt);
  Link learning = vxlanLink();
  learning.vxlan->learning = true;
  EXPECT_EQ(vxlanIncompatibility(learning, spec()), std::nullopt);  // SPEC §5.1: not compared
  VxlanSpec other_mac = spec();
  other_mac.mac = Mac::parse("02:00:00:00:00:01").value();
  EXPECT_EQ(vxlanIncompatibility(vxlanLink(), other_mac), std::nullopt);
  VxlanSpec same_port = spec();
  same_port.port = 8472;
  EXPECT_EQ(vxlanIncompatibility(vxlanLink(), same_port), std::nullopt);
}

TEST(VxlanCompatibility, RecreatesOnEveryComparedDifference) {
  struct Case {
    const char* name;
    std::function<void(Link&, VxlanSpec&)> change;
    const char* reason;
  };
  const Case cases[] = {
      {"kind",
       [](Link& l, VxlanSpec&) {
         l.kind = "bridge";
         l.vxlan.reset();
       },
       "kind bridge"},
      {"vni", [](Link&, VxlanSpec& s) { s.vni = 2; }, "VNI 1 (want 2)"},
      {"underlay", [](Link&, VxlanSpec& s) { s.underlay_ifindex = 3; }, "vtep device"},
      {"local", [](Link&, VxlanSpec& s) { s.local = ip("192.168.91.99"); }, "local address"},
      {"no local", [](Link&, VxlanSpec& s) { s.local.reset(); }, "local address"},
      {"group", [](Link& l, VxlanSpec&) { l.vxlan->group = ip("239.1.1.1"); }, "group"},
      {"l2miss", [](Link& l, VxlanSpec&) { l.vxlan->l2miss = true; }, "l2miss"},
      {"port", [](Link&, VxlanSpec& s) { s.port = 4789; }, "port 8472 (want 4789)"},
      {"gbp", [](Link&, VxlanSpec& s) { s.gbp = true; }, "gbp"},
  };
  for (const auto& c : cases) {
    Link l = vxlanLink();
    VxlanSpec s = spec();
    c.change(l, s);
    auto why = vxlanIncompatibility(l, s);
    ASSERT_TRUE(why.has_value()) << c.name;
    EXPECT_NE(why->find(c.reason), std::string::npos) << c.name << ": " << *why;
  }
}

TEST(RouteMetric, EffectiveMetricIsTheFamilyDefaultWhenUnset) {
  EXPECT_EQ(effectiveMetric(Route{.dst = net("10.5.3.0/24")}), 0u);
  EXPECT_EQ(effectiveMetric(Route{.dst = net("fd55:0:0:36::/64")}), kIpv6DefaultMetric);
  Route r{.dst = net("10.5.3.0/24")};
  r.metric = 100;
  EXPECT_EQ(effectiveMetric(r), 100u);
}

TEST(KernelError, NamesTheOperationAndCarriesErrnoAndCode) {
  Error e =
      kernelError("replacing route 10.5.3.0/24 via 10.5.3.0 dev flannel.1 onlink", ENETUNREACH);
  EXPECT_EQ(e.message,
            "replacing route 10.5.3.0/24 via 10.5.3.0 dev flannel.1 onlink: Network is "
            "unreachable (errno 101)");
  EXPECT_EQ(e.sys_errno, ENETUNREACH);
  EXPECT_EQ(e.code, Errc::Unavailable);
  EXPECT_EQ(kernelError("x", EINVAL, "Nexthop has invalid gateway").message,
            "x: Invalid argument (errno 22): Nexthop has invalid gateway");
}

TEST(KernelError, MapsErrnosToCodes) {
  struct Case {
    int err;
    Errc code;
  };
  for (auto c :
       {Case{ENODEV, Errc::NotFound}, Case{ENOENT, Errc::NotFound}, Case{ESRCH, Errc::NotFound},
        Case{EADDRNOTAVAIL, Errc::NotFound}, Case{EEXIST, Errc::Conflict},
        Case{EBUSY, Errc::Conflict}, Case{EINVAL, Errc::InvalidInput},
        Case{EOPNOTSUPP, Errc::InvalidInput}, Case{ENETUNREACH, Errc::Unavailable},
        Case{EHOSTUNREACH, Errc::Unavailable}, Case{ENETDOWN, Errc::Unavailable},
        Case{ETIMEDOUT, Errc::Timeout}, Case{EPERM, Errc::Kernel}, Case{ENOBUFS, Errc::Kernel}}) {
    EXPECT_EQ(errcFromErrno(c.err), c.code) << c.err;
  }
}

TEST(Describe, UsesIpSyntaxAndNamesTheDevice) {
  Route vx{.dst = net("10.5.3.0/24"), .via = ip("10.5.3.0"), .ifindex = 5, .onlink = true};
  EXPECT_EQ(describe(vx, "flannel.1"), "10.5.3.0/24 via 10.5.3.0 dev flannel.1 onlink");
  EXPECT_EQ(describe(vx), "10.5.3.0/24 via 10.5.3.0 dev ifindex 5 onlink");
  Route direct{.dst = net("10.5.58.0/24"), .via = ip("192.168.91.12")};
  EXPECT_EQ(describe(direct), "10.5.58.0/24 via 192.168.91.12");
  Route odd{.dst = net("10.5.0.0/16"), .ifindex = 7, .table = 100, .protocol = kProtoStatic};
  odd.metric = 5;
  odd.src = ip("10.5.31.0");
  odd.type = kRouteLocal;
  odd.scope = kScopeLink;
  EXPECT_EQ(describe(odd, "flannel0"),
            "local 10.5.0.0/16 dev flannel0 table 100 proto 4 scope 253 src 10.5.31.0 metric 5");
  EXPECT_EQ(describe(Addr{.ifindex = 5, .address = ip("10.5.92.0"), .prefix_len = 32}, "flannel.1"),
            "10.5.92.0/32 dev flannel.1");
  EXPECT_EQ(describe(Neigh{.ifindex = 5,
                           .dst = ip("10.5.99.0"),
                           .lladdr = Mac::parse("3e:6b:00:a1:ff:02").value(),
                           .permanent = true},
                     "flannel.1"),
            "10.5.99.0 lladdr 3e:6b:00:a1:ff:02 dev flannel.1");
  EXPECT_EQ(describe(Fdb{.ifindex = 5,
                         .mac = Mac::parse("3e:6b:00:a1:ff:02").value(),
                         .dst = ip("192.168.91.12"),
                         .permanent = true}),
            "3e:6b:00:a1:ff:02 dev ifindex 5 dst 192.168.91.12");
}

TEST(Addr, KeepsHostBitsAndKnowsItsNetwork) {
  Addr a{.ifindex = 2, .address = ip("192.168.91.11"), .prefix_len = 24};
  EXPECT_EQ(a.toString(), "192.168.91.11/24");
  EXPECT_EQ(a.network(), net("192.168.91.0/24"));
}

TEST(SysctlPath, AcceptsRelativeSlashPathsOnly) {
  EXPECT_TRUE(validateSysctlPath("net/ipv6/conf/flannel.1/accept_ra"));
  EXPECT_TRUE(validateSysctlPath("net/ipv4/ip_forward"));
  for (const char* bad : {"", "/proc/sys/net/ipv4/ip_forward", "net//ipv4", "net/ipv4/",
                          "net/../../etc/passwd", "net/./ipv4", ".."}) {
    auto r = validateSysctlPath(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::InvalidInput) << bad;
  }
}

}  // namespace
}  // namespace flannel::kernel
