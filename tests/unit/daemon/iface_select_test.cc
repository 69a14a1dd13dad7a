// External interface selection (SPEC.md §8): the pure decision against hand-built snapshots,
// one table row per branch and error, plus the Kernel overload against FakeKernel.
#include "kernel/iface_select.h"

#include <cerrno>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/fake_kernel.h"

namespace flannel::kernel {
namespace {

IpAddr ip(std::string_view s) {
  return IpAddr::parse(s).value();
}

Addr addr(int ifindex, std::string_view cidr) {
  const size_t slash = cidr.find('/');
  return Addr{.ifindex = ifindex,
              .address = ip(cidr.substr(0, slash)),
              .prefix_len = static_cast<uint8_t>(std::stoi(std::string(cidr.substr(slash + 1))))};
}

Link link(int index, std::string name, uint32_t mtu) {
  return Link{.index = index, .name = std::move(name), .mtu = mtu, .up = true, .lower_up = true};
}

constexpr int kLo = 1;
constexpr int kEth0 = 2;
constexpr int kEth1 = 3;
constexpr int kEns3 = 4;
constexpr int kWg0 = 5;
constexpr int kLl0 = 6;

// A host with both families on eth0 (the default routes) and eth1, IPv4 only on ens3, MTU 0 on
// wg0 and only link-local addresses on ll0. Kernel order puts a link-local address before the
// global ones on eth0, so the preference order is visible.
InterfaceSnapshot host() {
  InterfaceSnapshot s;
  s.links = {link(kLo, "lo", 65536),    link(kEth0, "eth0", 1500), link(kEth1, "eth1", 9000),
             link(kEns3, "ens3", 1450), link(kWg0, "wg0", 0),      link(kLl0, "ll0", 1500)};
  s.addrs = {
      addr(kLo, "127.0.0.1/8"),      addr(kLo, "::1/128"),           addr(kEth0, "169.254.1.1/16"),
      addr(kEth0, "10.0.0.5/24"),    addr(kEth0, "10.0.0.6/24"),     addr(kEth0, "fe80::1/64"),
      addr(kEth0, "2001:db8::5/64"), addr(kEth1, "192.168.1.10/24"), addr(kEth1, "fe80::3/64"),
      addr(kEth1, "fd00:1::10/64"),  addr(kEns3, "172.16.0.3/16"),   addr(kWg0, "10.9.0.1/24"),
      addr(kLl0, "169.254.7.7/16"),  addr(kLl0, "fe80::7/64"),
  };
  s.default_v4_ifindex = kEth0;
  s.default_v6_ifindex = kEth0;
  return s;
}

Route routeVia(int ifindex, std::optional<std::string_view> src,
               std::string_view dst = "0.0.0.0/0") {
  Route r{.dst = IpNet::parse(dst).value(), .ifindex = ifindex};
  if (src) {
    r.src = ip(*src);
  }
  return r;
}

IfaceOptions v4() {
  return IfaceOptions{};
}
IfaceOptions v6only() {
  return IfaceOptions{.ipv4 = false, .ipv6 = true};
}
IfaceOptions dual() {
  return IfaceOptions{.ipv4 = true, .ipv6 = true};
}
template <class F>
IfaceOptions with(IfaceOptions o, F f) {
  f(o);
  return o;
}

struct Case {
  std::string name;
  IfaceOptions options{};
  std::function<void(InterfaceSnapshot&)> tweak{};
  std::optional<Route> route{};
  // Expected success: link name and the four addresses ("" = unset).
  std::string link{};
  std::string v4{};
  std::string ext4{};
  std::string v6{};
  std::string ext6{};
  // Expected failure: the exact message (when `exact`) or a part of it, and the code.
  std::string error{};
  bool exact = false;
  Errc code = Errc::NotFound;
};

std::string text(const std::optional<Ip4>& a) {
  return a ? a->toString() : "";
}
std::string text(const std::optional<Ip6>& a) {
  return a ? a->toString() : "";
}

class IfaceSelect : public ::testing::TestWithParam<Case> {};

TEST_P(IfaceSelect, Decides) {
  const Case& c = GetParam();
  InterfaceSnapshot snap = host();
  if (c.tweak) {
    c.tweak(snap);
  }
  auto got = selectExternalInterface(snap, c.options, c.route);
  if (!c.error.empty()) {
    ASSERT_FALSE(got) << "chose " << describe(*got);
    EXPECT_EQ(got.error().code, c.code) << got.error().message;
    if (c.exact) {
      EXPECT_EQ(got.error().message, c.error);
    } else {
      EXPECT_NE(got.error().message.find(c.error), std::string::npos)
          << "message: " << got.error().message << "\nwanted: " << c.error;
    }
    return;
  }
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, c.link);
  EXPECT_EQ(text(got->iface_addr), c.v4);
  EXPECT_EQ(text(got->ext_addr), c.ext4);
  EXPECT_EQ(text(got->iface_v6_addr), c.v6);
  EXPECT_EQ(text(got->ext_v6_addr), c.ext6);
  EXPECT_EQ(got->mtu(), got->link.mtu);
}

constexpr std::string_view kCtx = "selecting the external interface: ";

const Case kCases[] = {
    // --- 1. no selection flag: -public-ip, -public-ipv6, default route ----------------------
    {.name = "DefaultRouteV4PrefersGlobalOverLinkLocal",
     .options = v4(),
     .link = "eth0",
     .v4 = "10.0.0.5",
     .ext4 = "10.0.0.5"},
    {.name = "DefaultRouteV6Only",
     .options = v6only(),
     .link = "eth0",
     .v6 = "2001:db8::5",
     .ext6 = "2001:db8::5"},
    {.name = "DefaultRouteDualStack",
     .options = dual(),
     .link = "eth0",
     .v4 = "10.0.0.5",
     .ext4 = "10.0.0.5",
     .v6 = "2001:db8::5",
     .ext6 = "2001:db8::5"},
    {.name = "DefaultRouteV6OnlyUsesTheV6Table",
     .options = v6only(),
     .tweak = [](InterfaceSnapshot& s) { s.default_v4_ifindex.reset(); },
     .link = "eth0",
     .v6 = "2001:db8::5",
     .ext6 = "2001:db8::5"},
    {.name = "DefaultRouteDualStackOnTwoInterfaces",
     .options = dual(),
     .tweak = [](InterfaceSnapshot& s) { s.default_v6_ifindex = kEth1; },
     .error = std::string(kCtx) +
              "dual stack needs one interface, but the IPv4 default route uses eth0 and the "
              "IPv6 default route uses eth1; choose one with -iface",
     .exact = true},
    {.name = "NoV4DefaultRoute",
     .options = v4(),
     .tweak = [](InterfaceSnapshot& s) { s.default_v4_ifindex.reset(); },
     .error = std::string(kCtx) +
              "no IPv4 default route; choose the interface with -iface, -iface-regex or "
              "-iface-can-reach",
     .exact = true},
    {.name = "NoV6DefaultRouteV6Only",
     .options = v6only(),
     .tweak = [](InterfaceSnapshot& s) { s.default_v6_ifindex.reset(); },
     .error = std::string(kCtx) +
              "no IPv6 default route; choose the interface with -iface, -iface-regex or "
              "-iface-can-reach",
     .exact = true},
    {.name = "NoV6DefaultRouteDualStack",
     .options = dual(),
     .tweak = [](InterfaceSnapshot& s) { s.default_v6_ifindex.reset(); },
     .error = "no IPv6 default route (dual stack needs one, on the IPv4 default route's "
              "interface)"},
    {.name = "DefaultRouteDeviceMissing",
     .options = v4(),
     .tweak = [](InterfaceSnapshot& s) { s.default_v4_ifindex = 42; },
     .error = "the default route's device (ifindex 42) does not exist"},
    {.name = "DefaultRouteInterfaceWithMtuZero",
     .options = v4(),
     .tweak = [](InterfaceSnapshot& s) { s.default_v4_ifindex = kWg0; },
     .error = std::string(kCtx) + "interface wg0 (of the default route): MTU is 0",
     .exact = true},
    {.name = "DefaultRouteInterfaceWithoutV6Address",
     .options = dual(),
     .tweak =
         [](InterfaceSnapshot& s) {
           s.default_v4_ifindex = kEns3;
           s.default_v6_ifindex = kEns3;
         },
     .error = "interface ens3 (of the default route): no usable IPv6 address"},
    {.name = "DefaultRouteLinkLocalOnlyFallsBackToLinkLocal",
     .options = dual(),
     .tweak =
         [](InterfaceSnapshot& s) {
           s.default_v4_ifindex = kLl0;
           s.default_v6_ifindex = kLl0;
         },
     .link = "ll0",
     .v4 = "169.254.7.7",
     .ext4 = "169.254.7.7",
     .v6 = "fe80::7",
     .ext6 = "fe80::7"},
    {.name = "PublicIpSelectsTheInterfaceCarryingIt",
     .options = with(v4(), [](auto& o) { o.public_ip = Ip4::parse("192.168.1.10").value(); }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10"},
    {.name = "PublicIpNotLocal",
     .options = with(v4(), [](auto& o) { o.public_ip = Ip4::parse("203.0.113.9").value(); }),
     .error = std::string(kCtx) +
              "no interface has the address given by -public-ip 203.0.113.9; use -iface with "
              "-public-ip for NAT",
     .exact = true},
    {.name = "PublicIpDualStackTakesTheV6AddressOfThatInterface",
     .options = with(dual(), [](auto& o) { o.public_ip = Ip4::parse("192.168.1.10").value(); }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10",
     .v6 = "fd00:1::10",
     .ext6 = "fd00:1::10"},
    {.name = "PublicIpDualStackInterfaceWithoutV6",
     .options = with(dual(), [](auto& o) { o.public_ip = Ip4::parse("172.16.0.3").value(); }),
     .error = std::string(kCtx) +
              "interface ens3 (carrying -public-ip 172.16.0.3): no usable IPv6 address",
     .exact = true},
    {.name = "PublicIpWinsOverPublicIpv6",
     .options = with(dual(),
                     [](auto& o) {
                       o.public_ip = Ip4::parse("192.168.1.10").value();
                       o.public_ipv6 = Ip6::parse("2001:db8::5").value();
                     }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10",
     .v6 = "fd00:1::10",
     .ext6 = "2001:db8::5"},
    {.name = "PublicIpv6SelectsTheInterfaceCarryingIt",
     .options = with(v6only(), [](auto& o) { o.public_ipv6 = Ip6::parse("fd00:1::10").value(); }),
     .link = "eth1",
     .v6 = "fd00:1::10",
     .ext6 = "fd00:1::10"},
    {.name = "PublicIpv6NotLocal",
     .options = with(v6only(), [](auto& o) { o.public_ipv6 = Ip6::parse("2001:db8::99").value(); }),
     .error = std::string(kCtx) +
              "no interface has the address given by -public-ipv6 2001:db8::99; use -iface "
              "with -public-ipv6 for NAT",
     .exact = true},
    {.name = "NoFamilyEnabled",
     .options = IfaceOptions{.ipv4 = false, .ipv6 = false},
     .error = "selecting the external interface: no IP family enabled",
     .exact = true,
     .code = Errc::InvalidInput},

    // --- 2. -iface, in order ---------------------------------------------------------------
    {.name = "IfaceByName",
     .options = with(v4(), [](auto& o) { o.ifaces = {"eth1"}; }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10"},
    {.name = "IfaceFirstSuccessWins",
     .options = with(v4(),
                     [](auto& o) {
                       o.ifaces = {"eth9", "wg0", "eth1", "eth0"};
                     }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10"},
    {.name = "IfaceByIpv4LiteralKeepsThatAddress",
     .options = with(v4(), [](auto& o) { o.ifaces = {"10.0.0.6"}; }),
     .link = "eth0",
     .v4 = "10.0.0.6",
     .ext4 = "10.0.0.6"},
    {.name = "IfaceIpv4LiteralDualStackPicksTheV6Address",
     .options = with(dual(), [](auto& o) { o.ifaces = {"10.0.0.5"}; }),
     .link = "eth0",
     .v4 = "10.0.0.5",
     .ext4 = "10.0.0.5",
     .v6 = "2001:db8::5",
     .ext6 = "2001:db8::5"},
    // Go flannel dereferences nil here and crashes.
    {.name = "IfaceIpv6LiteralDualStackWorks",
     .options = with(dual(), [](auto& o) { o.ifaces = {"fd00:1::10"}; }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10",
     .v6 = "fd00:1::10",
     .ext6 = "fd00:1::10"},
    {.name = "IfaceIpv6LiteralV4Only",
     .options = with(v4(), [](auto& o) { o.ifaces = {"2001:db8::5"}; }),
     .link = "eth0",
     .v4 = "10.0.0.5",
     .ext4 = "10.0.0.5"},
    {.name = "IfaceLiteralNotOwned",
     .options = with(v4(), [](auto& o) { o.ifaces = {"10.1.1.1"}; }),
     .error = "no usable external interface: -iface 10.1.1.1: no interface has this address",
     .exact = true},
    {.name = "IfaceMtuZero",
     .options = with(v4(), [](auto& o) { o.ifaces = {"wg0"}; }),
     .error = "no usable external interface: -iface wg0: MTU is 0",
     .exact = true},
    {.name = "IfaceLiteralOnInterfaceWithMtuZero",
     .options = with(v4(), [](auto& o) { o.ifaces = {"10.9.0.1"}; }),
     .error = "no usable external interface: -iface 10.9.0.1: interface wg0: MTU is 0",
     .exact = true},
    {.name = "IfaceWithoutAddressOfAnEnabledFamily",
     .options = with(dual(), [](auto& o) { o.ifaces = {"ens3"}; }),
     .error = "no usable external interface: -iface ens3: no usable IPv6 address",
     .exact = true},
    {.name = "IfaceLoopbackHasNoUsableAddress",
     .options = with(v4(), [](auto& o) { o.ifaces = {"lo"}; }),
     .error = "-iface lo: no usable IPv4 address"},
    {.name = "IfaceWithPublicIpForNat",
     .options = with(v4(),
                     [](auto& o) {
                       o.ifaces = {"eth1"};
                       o.public_ip = Ip4::parse("203.0.113.9").value();
                     }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "203.0.113.9"},
    {.name = "IfaceWithPublicIpv6",
     .options = with(dual(),
                     [](auto& o) {
                       o.ifaces = {"eth1"};
                       o.public_ipv6 = Ip6::parse("2001:db8:ffff::1").value();
                     }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10",
     .v6 = "fd00:1::10",
     .ext6 = "2001:db8:ffff::1"},
    {.name = "IfaceIgnoresTheDefaultRoute",
     .options = with(v4(), [](auto& o) { o.ifaces = {"ens3"}; }),
     .tweak = [](InterfaceSnapshot& s) { s.default_v4_ifindex.reset(); },
     .link = "ens3",
     .v4 = "172.16.0.3",
     .ext4 = "172.16.0.3"},

    // --- 3. -iface-regex, in order -----------------------------------------------------------
    {.name = "RegexMatchesAnAddress",
     .options = with(v4(), [](auto& o) { o.regexes = {"^192\\.168\\."}; }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10"},
    {.name = "RegexKeepsTheMatchingAddress",
     .options = with(v4(), [](auto& o) { o.regexes = {"\\.6$"}; }),
     .link = "eth0",
     .v4 = "10.0.0.6",
     .ext4 = "10.0.0.6"},
    {.name = "RegexMatchesAName",
     .options = with(v4(), [](auto& o) { o.regexes = {"^ens"}; }),
     .link = "ens3",
     .v4 = "172.16.0.3",
     .ext4 = "172.16.0.3"},
    {.name = "RegexAddressMatchBeatsNameMatch",
     .options = with(v4(), [](auto& o) { o.regexes = {"eth1|^10\\.0\\.0\\.5$"}; }),
     .link = "eth0",
     .v4 = "10.0.0.5",
     .ext4 = "10.0.0.5"},
    {.name = "RegexMatchesLinkLocalWhenNothingElseDoes",
     .options = with(v4(), [](auto& o) { o.regexes = {"^169\\.254\\.7\\."}; }),
     .link = "ll0",
     .v4 = "169.254.7.7",
     .ext4 = "169.254.7.7"},
    {.name = "RegexGlobalAddressPreferredWithinAnInterface",
     .options = with(v4(), [](auto& o) { o.regexes = {"^1"}; }),
     .link = "eth0",
     .v4 = "10.0.0.5",
     .ext4 = "10.0.0.5"},
    {.name = "RegexNeverMatchesLoopbackAddresses",
     .options = with(v4(), [](auto& o) { o.regexes = {"^127\\."}; }),
     .error = "-iface-regex ^127\\.: no interface matches"},
    {.name = "RegexDualStackNeedsBothFamiliesOnOneInterface",
     .options = with(dual(), [](auto& o) { o.regexes = {"^(192\\.168\\.1\\.10|fd00:1::10)$"}; }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10",
     .v6 = "fd00:1::10",
     .ext6 = "fd00:1::10"},
    {.name = "RegexDualStackOneFamilyMatchingIsNotEnough",
     .options = with(dual(), [](auto& o) { o.regexes = {"^192\\.168\\."}; }),
     .error = "no usable external interface: -iface-regex ^192\\.168\\.: no interface matches",
     .exact = true},
    {.name = "RegexDualStackNameMatchChoosesBothAddresses",
     .options = with(dual(), [](auto& o) { o.regexes = {"^eth1$"}; }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10",
     .v6 = "fd00:1::10",
     .ext6 = "fd00:1::10"},
    {.name = "RegexV6OnlyMatchesV6Addresses",
     .options = with(v6only(), [](auto& o) { o.regexes = {"^2001:"}; }),
     .link = "eth0",
     .v6 = "2001:db8::5",
     .ext6 = "2001:db8::5"},
    {.name = "RegexInvalidIsThatEntrysFailure",
     .options = with(v4(),
                     [](auto& o) {
                       o.regexes = {"(", "^eth1$"};
                     }),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10"},
    {.name = "RegexInvalidNamesTheRegex",
     .options = with(v4(), [](auto& o) { o.regexes = {"(eth"}; }),
     .error = "no usable external interface: -iface-regex (eth: invalid regular expression: "},
    {.name = "RegexNameMatchWithMtuZero",
     .options = with(v4(), [](auto& o) { o.regexes = {"^wg"}; }),
     .error = "no usable external interface: -iface-regex ^wg: interface wg0 (matched by name): "
              "MTU is 0",
     .exact = true},
    {.name = "RegexAfterEveryIface",
     .options = with(v4(),
                     [](auto& o) {
                       o.ifaces = {"eth9"};
                       o.regexes = {"^ens"};
                     }),
     .link = "ens3",
     .v4 = "172.16.0.3",
     .ext4 = "172.16.0.3"},

    // --- 4. -iface-can-reach ---------------------------------------------------------------
    {.name = "CanReachUsesTheRouteDeviceAndSource",
     .options = with(v4(), [](auto& o) { o.can_reach = ip("192.168.7.1"); }),
     .route = routeVia(kEth1, "192.168.1.10", "192.168.7.1/32"),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10"},
    {.name = "CanReachSourceIsKeptEvenIfNotFirst",
     .options = with(v4(), [](auto& o) { o.can_reach = ip("10.0.0.99"); }),
     .route = routeVia(kEth0, "10.0.0.6", "10.0.0.99/32"),
     .link = "eth0",
     .v4 = "10.0.0.6",
     .ext4 = "10.0.0.6"},
    {.name = "CanReachWithoutSourceChoosesAnAddress",
     .options = with(v4(), [](auto& o) { o.can_reach = ip("10.0.0.99"); }),
     .route = routeVia(kEth0, std::nullopt, "10.0.0.99/32"),
     .link = "eth0",
     .v4 = "10.0.0.5",
     .ext4 = "10.0.0.5"},
    {.name = "CanReachV4DualStackPicksTheV6Address",
     .options = with(dual(), [](auto& o) { o.can_reach = ip("192.168.7.1"); }),
     .route = routeVia(kEth1, "192.168.1.10", "192.168.7.1/32"),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10",
     .v6 = "fd00:1::10",
     .ext6 = "fd00:1::10"},
    {.name = "CanReachV6",
     .options = with(v6only(), [](auto& o) { o.can_reach = ip("2001:db8:1::1"); }),
     .route = routeVia(kEth0, "2001:db8::5", "2001:db8:1::1/128"),
     .link = "eth0",
     .v6 = "2001:db8::5",
     .ext6 = "2001:db8::5"},
    {.name = "CanReachOwnAddressMeansTheInterfaceCarryingIt",
     .options = with(v4(), [](auto& o) { o.can_reach = ip("192.168.1.10"); }),
     .route =
         [] {
           Route r = routeVia(kLo, "192.168.1.10", "192.168.1.10/32");
           r.type = kRouteLocal;
           r.table = kLocalTable;
           return r;
         }(),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10"},
    {.name = "CanReachNoRoute",
     .options = with(v4(), [](auto& o) { o.can_reach = ip("8.8.8.8"); }),
     .error = "no usable external interface: -iface-can-reach 8.8.8.8: no route",
     .exact = true},
    {.name = "CanReachRouteDeviceMissing",
     .options = with(v4(), [](auto& o) { o.can_reach = ip("8.8.8.8"); }),
     .route = routeVia(42, "10.0.0.5", "8.8.8.8/32"),
     .error = "-iface-can-reach 8.8.8.8: the route's device (ifindex 42) does not exist"},
    {.name = "CanReachRouteDeviceWithMtuZero",
     .options = with(v4(), [](auto& o) { o.can_reach = ip("10.9.0.7"); }),
     .route = routeVia(kWg0, "10.9.0.1", "10.9.0.7/32"),
     .error = "-iface-can-reach 10.9.0.7: interface wg0 (of the route): MTU is 0"},
    {.name = "CanReachAfterIfacesAndRegexes",
     .options = with(v4(),
                     [](auto& o) {
                       o.ifaces = {"eth9"};
                       o.regexes = {"^nothing$"};
                       o.can_reach = ip("192.168.7.1");
                     }),
     .route = routeVia(kEth1, "192.168.1.10", "192.168.7.1/32"),
     .link = "eth1",
     .v4 = "192.168.1.10",
     .ext4 = "192.168.1.10"},
    {.name = "EveryCandidateIsNamedWithItsReason",
     .options = with(dual(),
                     [](auto& o) {
                       o.ifaces = {"eth9", "ens3", "10.1.1.1"};
                       o.regexes = {"^zz", "["};
                       o.can_reach = ip("8.8.8.8");
                     }),
     .error = "no usable external interface: -iface eth9: no such interface; -iface ens3: no "
              "usable IPv6 address; -iface 10.1.1.1: no interface has this address; "
              "-iface-regex ^zz: no interface matches; -iface-regex [: invalid regular "
              "expression: "},
};

INSTANTIATE_TEST_SUITE_P(Table, IfaceSelect, ::testing::ValuesIn(kCases),
                         [](const auto& p) { return p.param.name; });

TEST(IfaceSelect, ErrorEndsWithTheCanReachCandidate) {
  IfaceOptions o = dual();
  o.ifaces = {"eth9"};
  o.can_reach = ip("8.8.8.8");
  auto got = selectExternalInterface(host(), o, std::nullopt);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().message,
            "no usable external interface: -iface eth9: no such interface; -iface-can-reach "
            "8.8.8.8: no route");
}

TEST(IfaceSelect, DescribeNamesInterfaceAndAddresses) {
  IfaceOptions o = dual();
  o.ifaces = {"eth1"};
  o.public_ip = Ip4::parse("203.0.113.9").value();
  auto got = selectExternalInterface(host(), o, std::nullopt);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(describe(*got),
            "eth1 (ifindex 3, mtu 9000), IPv4 192.168.1.10, external 203.0.113.9, IPv6 "
            "fd00:1::10");
}

// --- the Kernel overload, against FakeKernel -----------------------------------------------

class IfaceSelectKernel : public ::testing::Test {
 protected:
  void SetUp() override {
    eth0_ = k_.addLink("eth0", "veth", 1500, /*up=*/true).index;
    eth1_ = k_.addLink("eth1", "veth", 9000, /*up=*/true).index;
    ASSERT_TRUE(k_.replaceAddress(addr(eth0_, "10.0.0.5/24")));
    ASSERT_TRUE(k_.replaceAddress(addr(eth1_, "192.168.1.10/24")));
    ASSERT_TRUE(k_.replaceAddress(addr(eth1_, "fd00:1::10/64")));
  }
  Result<void> defaultRoute(int ifindex, std::string_view via, std::optional<uint32_t> metric) {
    Route r{.dst = IpNet::parse(ip(via).is4() ? "0.0.0.0/0" : "::/0").value(),
            .via = ip(via),
            .ifindex = ifindex,
            .metric = metric};
    return k_.replaceRoute(r);
  }

  test::FakeKernel k_;
  int eth0_ = 0;
  int eth1_ = 0;
};

TEST_F(IfaceSelectKernel, SnapshotReadsLinksAddressesAndDefaultRoutes) {
  ASSERT_TRUE(defaultRoute(eth0_, "10.0.0.1", std::nullopt));
  ASSERT_TRUE(defaultRoute(eth1_, "fd00:1::1", std::nullopt));
  auto snap = snapshotInterfaces(k_);
  ASSERT_TRUE(snap) << snap.error().message;
  EXPECT_EQ(snap->links.size(), 3u);  // lo, eth0, eth1
  EXPECT_EQ(snap->addrs.size(), 3u);
  EXPECT_EQ(snap->default_v4_ifindex, eth0_);
  EXPECT_EQ(snap->default_v6_ifindex, eth1_);
}

TEST_F(IfaceSelectKernel, SnapshotTakesTheDefaultRouteWithTheLowestMetric) {
  ASSERT_TRUE(defaultRoute(eth0_, "10.0.0.1", 200));
  ASSERT_TRUE(defaultRoute(eth1_, "192.168.1.1", 100));
  auto snap = snapshotInterfaces(k_);
  ASSERT_TRUE(snap) << snap.error().message;
  EXPECT_EQ(snap->default_v4_ifindex, eth1_);
  EXPECT_EQ(snap->default_v6_ifindex, std::nullopt);
}

TEST_F(IfaceSelectKernel, SnapshotWithoutIpv6SupportHasNoV6DefaultRoute) {
  // The first routes() call (IPv4) arms a failure for the second (IPv6).
  k_.beforeNext(test::FakeKernel::Op::Routes,
                [this] { k_.failNext(test::FakeKernel::Op::Routes, EAFNOSUPPORT); });
  ASSERT_TRUE(defaultRoute(eth0_, "10.0.0.1", std::nullopt));
  auto snap = snapshotInterfaces(k_);
  ASSERT_TRUE(snap) << snap.error().message;
  EXPECT_EQ(snap->default_v4_ifindex, eth0_);
  EXPECT_EQ(snap->default_v6_ifindex, std::nullopt);
}

TEST_F(IfaceSelectKernel, SnapshotFailuresCarryContext) {
  k_.failNext(test::FakeKernel::Op::AllAddresses, EIO);
  auto got = selectExternalInterface(k_, IfaceOptions{});
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().sys_errno, EIO);
  EXPECT_TRUE(got.error().message.starts_with(
      "selecting the external interface: reading interface addresses: "))
      << got.error().message;
}

TEST_F(IfaceSelectKernel, DefaultRouteInterface) {
  ASSERT_TRUE(defaultRoute(eth0_, "10.0.0.1", std::nullopt));
  auto got = selectExternalInterface(k_, IfaceOptions{});
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "eth0");
  EXPECT_EQ(got->link.index, eth0_);
  EXPECT_EQ(got->iface_addr, Ip4::parse("10.0.0.5").value());
  EXPECT_EQ(got->mtu(), 1500u);
}

TEST_F(IfaceSelectKernel, CanReachAsksTheKernel) {
  ASSERT_TRUE(defaultRoute(eth0_, "10.0.0.1", std::nullopt));
  IfaceOptions o;
  o.can_reach = ip("192.168.1.77");
  auto got = selectExternalInterface(k_, o);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->link.name, "eth1");
  EXPECT_EQ(got->iface_addr, Ip4::parse("192.168.1.10").value());
}

TEST_F(IfaceSelectKernel, CanReachLookupFailureIsTheCandidatesReason) {
  k_.failNext(test::FakeKernel::Op::RouteGet, ENETUNREACH);
  IfaceOptions o;
  o.can_reach = ip("8.8.8.8");
  auto got = selectExternalInterface(k_, o);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::NotFound);
  EXPECT_TRUE(got.error().message.starts_with(
      "no usable external interface: -iface-can-reach 8.8.8.8: looking up the route to "
      "8.8.8.8: "))
      << got.error().message;
}

TEST_F(IfaceSelectKernel, NoRouteLookupWithoutCanReach) {
  ASSERT_TRUE(defaultRoute(eth0_, "10.0.0.1", std::nullopt));
  k_.clearCalls();
  IfaceOptions o;
  o.ifaces = {"eth1"};
  ASSERT_TRUE(selectExternalInterface(k_, o));
  for (const auto& call : k_.calls()) {
    EXPECT_NE(call.op, test::FakeKernel::Op::RouteGet);
  }
}

}  // namespace
}  // namespace flannel::kernel
