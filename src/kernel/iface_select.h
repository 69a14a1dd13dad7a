// DOC: choosing the external interface and the public addresses (SPEC.md §8).
//
// What it owns: the decision "which interface carries the overlay, with which local and external
// addresses", made once at start-up from -iface, -iface-regex, -iface-can-reach, -public-ip and
// -public-ipv6. The decision is a pure function over an InterfaceSnapshot (links, addresses and
// the default routes, read through the Kernel seam); only snapshotInterfaces() and the Kernel
// overload of selectExternalInterface() touch the kernel.
//
// Order (SPEC.md §8), first success wins:
//
//   no -iface, -iface-regex, -iface-can-reach?
//     ├─ -public-ip    ─▶ the interface carrying that IPv4 (not found: error, use -iface for NAT)
//     ├─ -public-ipv6  ─▶ the interface carrying that IPv6
//     └─ otherwise     ─▶ the interface of the default route (IPv4; IPv6 when IPv6-only; dual
//                         stack: both, and they must be the same interface)
//   each -iface, in order   ─▶ an IP literal: the interface owning it; else an interface name
//   each -iface-regex       ─▶ first interface (kernel order) with an address whose text matches
//                              (dual stack: a matching IPv4 and IPv6 on one interface); else the
//                              first interface whose name matches
//   -iface-can-reach        ─▶ the route's output device and preferred source
//   nothing                 ─▶ NotFound, naming every candidate tried and why
//
// A candidate interface fails (and the next one is tried) when its MTU is 0 or it has no usable
// address for an enabled family. Usable: global unicast first, then link-local, kernel order
// within each class; loopback, multicast and unspecified addresses never. Addresses found by the
// match itself (an -iface literal, a regex match, -public-ip, a route's preferred source) are
// kept as they are.
//
// Differences from flannel (deliberate, SPEC.md "be right"):
//   * dual stack with -iface given as an IPv6 literal selects that interface and picks its IPv4
//     address (flannel crashes); an IPv4 literal picks the IPv6 address too (flannel v0.20.2
//     leaves it unset without -public-ipv6);
//   * -iface-can-reach to one of our own addresses (the kernel answers with a local route via
//     `lo`) selects the interface carrying that address instead of `lo`;
//   * errors name every candidate and the reason, instead of "no interface found".
// Not done: flannel HEAD also skips deprecated and tentative IPv6 addresses and prefers
// permanent over temporary ones; kernel::Addr does not carry the IFA_F_* flags, so the kernel
// order decides within a class.
//
// Thread safety: pure functions are safe anywhere; the Kernel overloads follow the Kernel's rule
// (the control-plane thread).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ip.h"
#include "core/result.h"
#include "kernel/kernel.h"

namespace flannel::kernel {

// The selection flags (daemon::Options turned into values). At least one family must be
// enabled.
struct IfaceOptions {
  std::vector<std::string> ifaces{};   // -iface, tried in order (names or IP literals)
  std::vector<std::string> regexes{};  // -iface-regex, tried in order (ECMAScript, search)
  std::optional<IpAddr> can_reach{};   // -iface-can-reach
  std::optional<Ip4> public_ip{};      // -public-ip
  std::optional<Ip6> public_ipv6{};    // -public-ipv6
  bool ipv4 = true;                    // the network config enables IPv4
  bool ipv6 = false;                   // the network config enables IPv6
};

// The chosen interface. Addresses of a disabled family are unset; for an enabled family both the
// interface address and the external one are set.
struct ExternalInterface {
  Link link{};
  std::optional<Ip4> iface_addr{};     // IPv4 configured on the interface (IfaceAddr)
  std::optional<Ip4> ext_addr{};       // -public-ip, else iface_addr (ExtAddr)
  std::optional<Ip6> iface_v6_addr{};  // IPv6 configured on the interface (IfaceV6Addr)
  std::optional<Ip6> ext_v6_addr{};    // -public-ipv6, else iface_v6_addr (ExtV6Addr)
  uint32_t mtu() const { return link.mtu; }
  friend bool operator==(const ExternalInterface&, const ExternalInterface&) = default;
};

// Everything the selection looks at, read once.
struct InterfaceSnapshot {
  std::vector<Link> links{};  // kernel (ifindex) order
  std::vector<Addr> addrs{};  // every address, kernel order
  // The output device of the main table's default route with the lowest metric (the first in
  // kernel order among equals), per family; unset when there is none.
  std::optional<int> default_v4_ifindex{};
  std::optional<int> default_v6_ifindex{};
};

// Reads links, addresses and the default routes of the main table. A kernel without IPv6
// (EAFNOSUPPORT) has no IPv6 default route; other failures are returned with context.
Result<InterfaceSnapshot> snapshotInterfaces(Kernel& kernel);

// The decision, pure. `can_reach_route` is the kernel's answer to a route lookup for
// options.can_reach (nullopt when there is none or the lookup failed). Errors:
//   InvalidInput  no family enabled;
//   NotFound      nothing usable; the message names each candidate and why, e.g.
//                 "no usable external interface: -iface eth9: no such interface;
//                  -iface-regex ^ens: no interface matches"
//                 or, without selection flags, the missing default route / -public-ip owner.
Result<ExternalInterface> selectExternalInterface(const InterfaceSnapshot& snapshot,
                                                  const IfaceOptions& options,
                                                  const std::optional<Route>& can_reach_route);

// snapshotInterfaces() + routeGet(options.can_reach) (when given) + the pure decision. A failed
// route lookup becomes the can-reach candidate's reason. Candidates that failed before the one
// chosen are logged at info level (logger "kernel"), as flannel does.
Result<ExternalInterface> selectExternalInterface(Kernel& kernel, const IfaceOptions& options);

// "eth0 (ifindex 2, mtu 1500), IPv4 10.0.0.5, external 1.2.3.4, IPv6 fd00::5" for the log.
std::string describe(const ExternalInterface& ext);

}  // namespace flannel::kernel
