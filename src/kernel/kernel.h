// DOC: kernel::Kernel, the one door to the kernel's networking state (DESIGN.md seam 1).
//
// What it owns: links (listing, the flannel vxlan device, up/MTU/delete), interface addresses,
// routes (list/replace/delete and `ip route get`), IPv4/IPv6 neighbours, the vxlan forwarding
// database (AF_BRIDGE, NTF_SELF) and sysctls under /proc/sys. Everything is a plain value type
// with a defaulted operator==, so a backend can describe the state it wants as data and the
// reconciler (kernel/reconcile.h) can diff it against what the kernel reports.
//
// Contract shared by every method:
//   * Mutations are idempotent. replace* has NLM_F_CREATE|NLM_F_REPLACE semantics (create, or
//     overwrite the object with the same key); delete* of an object that is already absent
//     (ENOENT, ESRCH, ENODEV, EADDRNOTAVAIL) succeeds.
//   * Errors are Result values, never exceptions. An Error carries the errno (sys_errno), a code
//     from errcFromErrno() and a message naming the operation and the object, outermost first:
//       replacing route 10.5.3.0/24 via 10.5.3.0 dev flannel.1 onlink: Network is unreachable
//       (errno 101)
//     followed by the kernel's extended-ack text when the kernel sent one.
//   * Listings report what the kernel reports, normalised so that a value written by replace*
//     reads back equal (see Route::metric).
//   * Thread safety: none. One Kernel object belongs to one thread (the control-plane thread);
//     calls are synchronous, bounded request/ack exchanges (DESIGN.md "Threads").
//
// Implementations: NetlinkKernel (kernel/netlink, libnl-route-3, the only libnl user) and
// FakeKernel (tests/support). tests/contract/kernel runs one suite against both.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip.h"
#include "core/ip_net.h"
#include "core/mac.h"
#include "core/result.h"

namespace flannel::kernel {

// rtnetlink numbers used in the value types (linux/rtnetlink.h), spelled once here so that
// code above the seam never includes kernel headers.
inline constexpr uint32_t kMainTable = 254;    // RT_TABLE_MAIN
inline constexpr uint32_t kLocalTable = 255;   // RT_TABLE_LOCAL
inline constexpr uint8_t kProtoKernel = 2;     // RTPROT_KERNEL: connected routes
inline constexpr uint8_t kProtoBoot = 3;       // RTPROT_BOOT: the netlink default, flannel's
inline constexpr uint8_t kProtoStatic = 4;     // RTPROT_STATIC
inline constexpr uint8_t kScopeUniverse = 0;   // RT_SCOPE_UNIVERSE
inline constexpr uint8_t kScopeLink = 253;     // RT_SCOPE_LINK
inline constexpr uint8_t kScopeHost = 254;     // RT_SCOPE_HOST
inline constexpr uint8_t kRouteUnicast = 1;    // RTN_UNICAST
inline constexpr uint8_t kRouteLocal = 2;      // RTN_LOCAL
inline constexpr uint8_t kRouteBlackhole = 6;  // RTN_BLACKHOLE
// IPv6 routes added without a metric get this one (IP6_RT_PRIO_USER); IPv4 ones get 0.
inline constexpr uint32_t kIpv6DefaultMetric = 1024;
// The Linux vxlan driver's default UDP port (not IANA's 4789), used when VxlanSpec::port is 0.
inline constexpr uint16_t kVxlanKernelDefaultPort = 8472;
inline constexpr size_t kMaxIfNameLen = 15;  // IFNAMSIZ - 1

// The vxlan attributes of a link, as the kernel reports them.
struct VxlanInfo {
  uint32_t vni = 0;
  std::optional<IpAddr> local{};
  std::optional<IpAddr> group{};
  int underlay_ifindex = 0;  // IFLA_VXLAN_LINK; 0 = none
  uint16_t port = 0;         // destination UDP port
  bool learning = false;
  bool gbp = false;
  bool l2miss = false;
  friend bool operator==(const VxlanInfo&, const VxlanInfo&) = default;
};

struct Link {
  int index = 0;
  std::string name{};
  // IFLA_INFO_KIND: "vxlan", "bridge", "veth", "tun", "dummy", ...; "" for physical devices
  // and loopback.
  std::string kind{};
  Mac mac{};  // all zero when the device has no link-layer address (tun, loopback)
  uint32_t mtu = 0;
  bool up = false;                   // IFF_UP: administratively up
  bool lower_up = false;             // IFF_LOWER_UP: carrier
  std::optional<VxlanInfo> vxlan{};  // set for kind "vxlan"
  friend bool operator==(const Link&, const Link&) = default;
};

// The vxlan device a backend wants (SPEC.md §5.1).
struct VxlanSpec {
  std::string name{};  // e.g. "flannel.1"; at most kMaxIfNameLen characters
  uint32_t vni = 1;    // 0 .. 2^24-1
  std::optional<IpAddr> local{};
  int underlay_ifindex = 0;  // the external interface; 0 = none
  uint16_t port = 0;         // 0 = kernel default (kVxlanKernelDefaultPort); not sent
  bool learning = false;
  bool gbp = false;
  // MAC for a newly created device; a random locally administered one when unset. An adopted
  // device always keeps its MAC (SPEC.md §5.1: "reuse it, keeping its MAC").
  std::optional<Mac> mac{};
  friend bool operator==(const VxlanSpec&, const VxlanSpec&) = default;
};

// Why an existing vxlan link cannot be adopted for `spec`, or nullopt when it can (SPEC.md §5.1:
// type, VNI, vtep device, local address, group, l2miss, port when both > 0, GBP; learning is not
// compared). Pure; both implementations use it.
std::optional<std::string> vxlanIncompatibility(const Link& existing, const VxlanSpec& spec);

// An interface address: the address itself plus its prefix length, e.g. 10.5.92.0/32 or
// 192.168.91.11/24 (host bits kept, which is why this is not an IpNet).
struct Addr {
  int ifindex = 0;
  IpAddr address{};
  uint8_t prefix_len = 0;
  IpNet network() const { return IpNet::masked(address, prefix_len); }
  std::string toString() const;  // "10.5.92.0/32"
  friend bool operator==(const Addr&, const Addr&) = default;
};

// One single-nexthop route. The kernel's key for replace/delete is (table, dst, metric) (plus
// TOS, never used here); replaceRoute overwrites whatever route has that key.
struct Route {
  IpNet dst{};
  std::optional<IpAddr> via{};  // gateway
  int ifindex = 0;              // output device; 0 = let the kernel resolve `via` (replace only)
  bool onlink = false;          // RTNH_F_ONLINK: `via` is on-link even without a connected route
  uint32_t table = kMainTable;
  uint8_t protocol = kProtoBoot;
  uint8_t scope = kScopeUniverse;
  uint8_t type = kRouteUnicast;
  // Normalised: a listing reports nullopt for the family default (IPv4 0, IPv6 1024), so a
  // route written without a metric reads back equal. effectiveMetric() gives the number.
  std::optional<uint32_t> metric{};
  std::optional<IpAddr> src{};  // RTA_PREFSRC, the preferred source address
  friend bool operator==(const Route&, const Route&) = default;
};

uint32_t effectiveMetric(const Route& r);

struct RouteFilter {
  std::optional<Family> family;                // nullopt = IPv4 and IPv6
  std::optional<uint32_t> table = kMainTable;  // nullopt = every table
  std::optional<int> ifindex;                  // nullopt = any output device
  friend bool operator==(const RouteFilter&, const RouteFilter&) = default;
};

// An ARP (IPv4) or NDP (IPv6) entry.
struct Neigh {
  int ifindex = 0;
  IpAddr dst{};
  Mac lladdr{};           // all zero for entries without one (INCOMPLETE, FAILED)
  bool permanent = true;  // NUD_PERMANENT; replaceNeighbour always writes PERMANENT
  friend bool operator==(const Neigh&, const Neigh&) = default;
};

// A vxlan forwarding-database entry (AF_BRIDGE, NTF_SELF): frames for `mac` go to `dst`.
struct Fdb {
  int ifindex = 0;
  Mac mac{};
  IpAddr dst{};
  bool permanent = true;  // NUD_PERMANENT (learned entries are not)
  friend bool operator==(const Fdb&, const Fdb&) = default;
};

// Errc for an errno from the kernel: ENOENT/ESRCH/ENODEV/ENXIO/EADDRNOTAVAIL -> NotFound,
// EEXIST/EBUSY/EADDRINUSE/ENOTEMPTY -> Conflict, EINVAL/ERANGE/E2BIG/EAFNOSUPPORT/EOPNOTSUPP ->
// InvalidInput, ENETUNREACH/EHOSTUNREACH/ENETDOWN -> Unavailable, ETIMEDOUT -> Timeout,
// anything else -> Kernel.
Errc errcFromErrno(int err) noexcept;

// "<what>: <strerror> (errno N)[: <kernel extack text>]" with the code from errcFromErrno().
Error kernelError(std::string_view what, int err, std::string_view extack = {});

// Object descriptions for messages and logs, in `ip` syntax. `dev` is the device name, or empty
// to print "ifindex N".
std::string describe(const Route& r, std::string_view dev = {});
std::string describe(const Addr& a, std::string_view dev = {});
std::string describe(const Neigh& n, std::string_view dev = {});
std::string describe(const Fdb& f, std::string_view dev = {});

// Checks a sysctl path relative to /proc/sys in slash form ("net/ipv6/conf/flannel.1/accept_ra";
// the slash form is unambiguous for device names that contain dots). Rejects empty paths,
// absolute paths, empty components and "." / "..". InvalidInput on failure.
Result<void> validateSysctlPath(std::string_view path);

class Kernel {
 public:
  virtual ~Kernel() = default;

  // --- Links -----------------------------------------------------------------------------

  // Every link, in ifindex order.
  virtual Result<std::vector<Link>> links() = 0;
  // The link called `name`; Errc::NotFound (ENODEV) when there is none.
  virtual Result<Link> linkByName(const std::string& name) = 0;
  // The link with index `ifindex`; Errc::NotFound (ENODEV) when there is none.
  virtual Result<Link> linkByIndex(int ifindex) = 0;
  // Makes the vxlan device `spec.name` exist as described and returns it as the kernel reports
  // it. An existing compatible device (vxlanIncompatibility() == nullopt) is adopted unchanged,
  // keeping its MAC, MTU, addresses and up state; an incompatible one (or a non-vxlan link of
  // that name) is deleted and recreated, which drops its addresses, routes and neighbours. A
  // new device is created down, with the kernel's default MTU. Errors: NotFound (ENODEV) for an
  // absent underlay device, InvalidInput for a bad name or VNI.
  virtual Result<Link> ensureVxlan(const VxlanSpec& spec) = 0;
  // Sets IFF_UP. Idempotent. NotFound for an absent link.
  virtual Result<void> setLinkUp(int ifindex) = 0;
  // Sets the MTU. Idempotent. NotFound for an absent link, InvalidInput if out of range.
  virtual Result<void> setMtu(int ifindex, uint32_t mtu) = 0;
  // Deletes the link (and with it everything on it). An absent link is success.
  virtual Result<void> deleteLink(int ifindex) = 0;

  // --- Addresses ---------------------------------------------------------------------------

  // The addresses on `ifindex` (both families, kernel order); an absent link has none.
  virtual Result<std::vector<Addr>> addresses(int ifindex) = 0;
  // The addresses on every link.
  virtual Result<std::vector<Addr>> allAddresses() = 0;
  // Adds the address (scope global), or keeps it when present. NotFound for an absent link.
  virtual Result<void> replaceAddress(const Addr& a) = 0;
  // Removes exactly (address, prefix_len) from the link; absent (or absent link) is success.
  virtual Result<void> deleteAddress(const Addr& a) = 0;

  // --- Routes ------------------------------------------------------------------------------

  // Unicast and other routes matching `filter` (by default the main table); the IPv6 routing
  // cache and cloned routes are not included.
  virtual Result<std::vector<Route>> routes(const RouteFilter& filter) = 0;
  // Creates or overwrites the route with r's key. Errors: NotFound (ENODEV) for an absent
  // device, Unavailable (ENETDOWN) for a device that is down, Unavailable (ENETUNREACH /
  // EHOSTUNREACH) or InvalidInput (EINVAL) for a gateway that is not reachable on-link.
  virtual Result<void> replaceRoute(const Route& r) = 0;
  // Deletes the route matching r exactly (dst, table, gateway, device, protocol, metric when
  // given). Absent is success.
  virtual Result<void> deleteRoute(const Route& r) = 0;
  // The route the kernel would use for a packet to `dst` (`ip route get`): dst is the host
  // prefix of `dst`, ifindex the output device (loopback for a local address), via the gateway
  // if any, src the preferred source address. Unavailable (ENETUNREACH/EHOSTUNREACH) when
  // there is no route.
  virtual Result<Route> routeGet(const IpAddr& dst) = 0;

  // --- Neighbours (ARP / NDP) ----------------------------------------------------------------

  // The IPv4 and IPv6 neighbour entries on `ifindex`, whatever their state.
  virtual Result<std::vector<Neigh>> neighbours(int ifindex) = 0;
  // Writes a PERMANENT entry dst -> lladdr (n.permanent is ignored). NotFound for an absent
  // link.
  virtual Result<void> replaceNeighbour(const Neigh& n) = 0;
  // Deletes the entry for (ifindex, dst) whatever its lladdr. Absent is success.
  virtual Result<void> deleteNeighbour(const Neigh& n) = 0;

  // --- Forwarding database (vxlan) ------------------------------------------------------------

  // The FDB entries with a remote destination on `ifindex` (entries without one, such as the
  // MAC-list entries of ordinary devices, are skipped).
  virtual Result<std::vector<Fdb>> fdbEntries(int ifindex) = 0;
  // Writes a PERMANENT entry mac -> dst. An entry for the same MAC with another dst is
  // overwritten (NLM_F_REPLACE), never duplicated. NotFound for an absent link.
  virtual Result<void> replaceFdb(const Fdb& f) = 0;
  // Deletes the entry (ifindex, mac, dst). Absent (also: same MAC, other dst) is success.
  virtual Result<void> deleteFdb(const Fdb& f) = 0;

  // --- Sysctl ----------------------------------------------------------------------------------

  // Writes `value` to /proc/sys/<path> (see validateSysctlPath), e.g.
  // setSysctl("net/ipv6/conf/flannel.1/accept_ra", "0"). NotFound when the key does not exist.
  virtual Result<void> setSysctl(const std::string& path, const std::string& value) = 0;
  // Reads /proc/sys/<path>, without the trailing newline. NotFound when the key does not exist.
  virtual Result<std::string> sysctl(const std::string& path) = 0;
};

}  // namespace flannel::kernel
