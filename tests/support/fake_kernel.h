// DOC: FakeKernel, the in-memory twin of kernel::Kernel for unit tests (DESIGN.md seam 1).
//
// Tables follow the kernel's rules as far as tests/contract/kernel checks them, which is what
// makes the fake trustworthy:
//   * ifindex allocation: "lo" is 1 and up; new links get 2, 3, ... and indexes are never reused.
//   * ensureVxlan adopts a compatible device (keeping its MAC) and recreates an incompatible one;
//     a new vxlan device is down, with MTU = underlay MTU - 50 (- 70 for an IPv6 local address)
//     or 1500 without an underlay, and port 8472 when the spec says 0.
//   * replace* creates or overwrites the object with the same key; delete* of an absent object
//     succeeds; deleting a link drops its addresses, routes, neighbours, FDB entries and
//     conf sysctls.
//   * a route needs an existing (ENODEV) and up (ENETDOWN) device; a gateway that is not onlink
//     must lie in a connected prefix (IPv4: ENETUNREACH, IPv6: EHOSTUNREACH); onlink needs a
//     device (EINVAL). Connected routes (proto kernel) of addresses on up links are listed like
//     the kernel's, and routeGet() does a longest-prefix match over both.
//   * FDB entries exist only on vxlan links (EOPNOTSUPP otherwise, a simplification), one dst per
//     MAC, and replacing an entry for a known MAC moves it (NLM_F_REPLACE).
//   * sysctls are a map; keys under net/ipv{4,6}/conf/<dev>/ need the device (ENOENT), and
//     reading a key never written is ENOENT.
// Not modelled: IPv6 link-local addresses and fe80::/64 routes, the local table, veth peers,
// multipath, learning.
//
// Errors have the same message shape as NetlinkKernel's ("replacing route ... dev flannel.1
// onlink: No such device (errno 19)").
//
// For assertions every call is logged (calls(), mutations()); failNext(op, errno) makes the next
// call(s) of `op` fail with that errno without touching state (Seastar-style fault injection),
// and beforeNext(op, hook) runs a hook just before the next call of `op`, to stage races (a link
// vanishing between a listing and a replace).
//
// Thread safety: none; one test thread owns a FakeKernel.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/kernel.h"

namespace flannel::test {

class FakeKernel final : public kernel::Kernel {
 public:
  enum class Op {
    Links,
    LinkByName,
    LinkByIndex,
    EnsureVxlan,
    SetLinkUp,
    SetMtu,
    DeleteLink,
    Addresses,
    AllAddresses,
    ReplaceAddress,
    DeleteAddress,
    Routes,
    ReplaceRoute,
    DeleteRoute,
    RouteGet,
    Neighbours,
    ReplaceNeighbour,
    DeleteNeighbour,
    FdbEntries,
    ReplaceFdb,
    DeleteFdb,
    SetSysctl,
    Sysctl,
  };
  static std::string_view opName(Op op);

  struct Call {
    Op op = Op::Links;
    std::string detail{};  // the object, e.g. "10.5.3.0/24 via 10.5.3.0 dev flannel.1 onlink"
    int err = 0;           // errno of the outcome; 0 = success
  };

  FakeKernel();

  // --- test setup (not part of the seam; not logged) -------------------------------------------

  // Adds a link as `ip link add` would (down unless `up`), returning it.
  kernel::Link addLink(const std::string& name, const std::string& kind = "veth",
                       uint32_t mtu = 1500, bool up = false);
  // Takes a link down; like the kernel, this flushes the routes through it.
  void setLinkDown(int ifindex);
  // Sets a sysctl directly (e.g. a default the code under test reads).
  void presetSysctl(const std::string& path, const std::string& value);

  // The next `times` calls of `op` fail with `err` and change nothing.
  void failNext(Op op, int err, int times = 1);
  // Runs `hook` once, right before the next call of `op` (after fault injection is checked).
  void beforeNext(Op op, std::function<void()> hook);

  const std::vector<Call>& calls() const { return calls_; }
  // Successful mutations in order, as "<verb> <object>": "replace route 10.5.3.0/24 via
  // 10.5.3.0 dev flannel.1 onlink", "delete neighbour ...", "ensure vxlan flannel.1", ...
  std::vector<std::string> mutations() const;
  void clearCalls() { calls_.clear(); }

  // --- kernel::Kernel ----------------------------------------------------------------------

  Result<std::vector<kernel::Link>> links() override;
  Result<kernel::Link> linkByName(const std::string& name) override;
  Result<kernel::Link> linkByIndex(int ifindex) override;
  Result<kernel::Link> ensureVxlan(const kernel::VxlanSpec& spec) override;
  Result<void> setLinkUp(int ifindex) override;
  Result<void> setMtu(int ifindex, uint32_t mtu) override;
  Result<void> deleteLink(int ifindex) override;

  Result<std::vector<kernel::Addr>> addresses(int ifindex) override;
  Result<std::vector<kernel::Addr>> allAddresses() override;
  Result<void> replaceAddress(const kernel::Addr& a) override;
  Result<void> deleteAddress(const kernel::Addr& a) override;

  Result<std::vector<kernel::Route>> routes(const kernel::RouteFilter& filter) override;
  Result<void> replaceRoute(const kernel::Route& r) override;
  Result<void> deleteRoute(const kernel::Route& r) override;
  Result<kernel::Route> routeGet(const IpAddr& dst) override;

  Result<std::vector<kernel::Neigh>> neighbours(int ifindex) override;
  Result<void> replaceNeighbour(const kernel::Neigh& n) override;
  Result<void> deleteNeighbour(const kernel::Neigh& n) override;

  Result<std::vector<kernel::Fdb>> fdbEntries(int ifindex) override;
  Result<void> replaceFdb(const kernel::Fdb& f) override;
  Result<void> deleteFdb(const kernel::Fdb& f) override;

  Result<void> setSysctl(const std::string& path, const std::string& value) override;
  Result<std::string> sysctl(const std::string& path) override;

 private:
  struct Fault {
    int err = 0;
    int times = 0;
  };

  // Logs the call; returns the injected error if one is pending for `op`, after running a
  // pending hook.
  std::optional<Error> enter(Op op, const std::string& detail, const std::string& what);
  Error fail(const std::string& what, int err);

  kernel::Link* find(int ifindex);
  kernel::Link* findByName(const std::string& name);
  std::string devName(int ifindex) const;
  std::vector<kernel::Route> connectedRoutes() const;
  void removeLink(int ifindex);
  void flushRoutesVia(int ifindex);
  kernel::Link createVxlan(const kernel::VxlanSpec& spec, const kernel::Link* underlay);

  std::map<int, kernel::Link> links_;
  std::vector<kernel::Addr> addrs_;
  std::vector<kernel::Route> routes_;  // routes written through the seam
  std::vector<kernel::Neigh> neighs_;
  std::vector<kernel::Fdb> fdb_;
  std::map<std::string, std::string> sysctls_;
  int next_index_ = 2;
  uint64_t mac_counter_ = 0;

  std::map<Op, Fault> faults_;
  std::map<Op, std::function<void()>> hooks_;
  std::vector<Call> calls_;
};

}  // namespace flannel::test
