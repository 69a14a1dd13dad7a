// DOC: kernel::reconcile, desired state -> minimal idempotent operations (DESIGN.md seam 2).
//
// A backend describes the addresses, routes, neighbours and FDB entries it wants for the
// current lease set (DesiredState). The caller lists what the kernel has (ObservedState), and
// diff() computes the Plan: replace what is wanted and missing or different, delete what is
// ours and no longer wanted, keep what matches, and never touch what is not ours. apply() runs
// the Plan against a Kernel. Start-up (adopt, don't flush), lease events, kernel events and the
// periodic scan all take this one path, the way BIRD's krt_got_route()/krt_prune() and
// wireguard-tools' sync_conf() do.
//
//   lease set --backend.desiredState()--> DesiredState --+
//                                                       +--diff()--> Plan --apply()--> ApplyReport
//   Kernel --listObserved()--> ObservedState -----------+
//
// Ownership (an object the kernel reports is "ours" only if one of these holds; anything else is
// alien and never deleted, BIRD's KRT_SRC_ALIEN):
//   * route:     in Ownership::route_table, with Ownership::route_protocol, of type unicast, and
//                either out of one of our devices or with a destination inside one of the
//                cluster networks. So `10.5.3.0/24 via 192.168.91.12 dev eth0` is ours when the
//                Network is 10.5.0.0/16 (host-gw), while kernel-made routes (proto kernel: the
//                connected route of cni0 10.5.92.0/24, fe80::/64) and routes in other tables
//                are never ours, even inside the Network.
//   * address:   on one of our devices and not link-local (the kernel's own fe80:: addresses).
//   * neighbour: on one of our devices and PERMANENT (the kernel's own dynamic entries are not).
//   * FDB entry: on one of our devices and PERMANENT (learned entries are not).
// A desired object that is not ours by these rules is still installed, but it will not be
// removed when it stops being wanted; backends only want objects that are ours.
//
// Matching: objects are keyed the way the kernel keys them (route: table, dst, metric;
// neighbour: device, dst; FDB: device, MAC, dst; address: device, address, prefix length). A
// desired route with ifindex 0 (kernel resolves the device) or without src matches whatever the
// kernel picked.
//
// Order of a Plan, so that no route ever points at a missing neighbour (SPEC.md §5.1):
//   1. delete routes        5. replace FDB entries   9. delete held neighbours
//   2. delete neighbours    6. replace neighbours   10. delete held FDB entries
//   3. delete addresses     7. delete FDB entries
//   4. replace addresses    8. replace routes
// A peer that goes away loses its route before its neighbour and FDB entry; a new peer gets its
// FDB entry and neighbour before its route. FDB entries are written before neighbours (SPEC.md
// lists the neighbour first; either order is fine for a new peer) so that a peer whose VtepMAC
// changed is reachable under the new MAC before its neighbour entry switches to it, and stale
// FDB entries go after that for the same reason. A route that is overwritten rather than
// deleted (same key, e.g. a peer switching to DirectRouting) keeps using its old neighbour until
// step 8, so that neighbour and its FDB entry are "held" and deleted last (steps 9 and 10).
//
// apply() carries on past single failures (DESIGN.md rule 5) but skips what depends on a failed
// step: a route to a peer whose neighbour (or whose neighbour's FDB entry) could not be written,
// and the neighbour (and its FDB entry) that a route which could not be deleted or overwritten
// still uses. Everything skipped or failed is in the report, for the caller's retry and metrics.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/error.h"
#include "core/ip_net.h"
#include "kernel/kernel.h"

namespace flannel::kernel {

struct DesiredState {
  std::vector<Addr> addresses{};
  std::vector<Route> routes{};
  std::vector<Neigh> neighbours{};
  std::vector<Fdb> fdb{};
  friend bool operator==(const DesiredState&, const DesiredState&) = default;
};

struct ObservedState {
  std::vector<Addr> addresses{};
  std::vector<Route> routes{};
  std::vector<Neigh> neighbours{};
  std::vector<Fdb> fdb{};
  friend bool operator==(const ObservedState&, const ObservedState&) = default;
};

struct Ownership {
  std::vector<int> devices{};     // ifindexes of our devices (flannel.1, flannel-v6.1, flannel0)
  std::vector<IpNet> networks{};  // the cluster Network(s); routes inside them are ours
  uint32_t route_table = kMainTable;
  uint8_t route_protocol = kProtoBoot;
  friend bool operator==(const Ownership&, const Ownership&) = default;
};

bool isOurs(const Route& r, const Ownership& own);
bool isOurs(const Addr& a, const Ownership& own);
bool isOurs(const Neigh& n, const Ownership& own);
bool isOurs(const Fdb& f, const Ownership& own);

// True when observed route `o` satisfies desired route `d` (see "Matching" above).
bool routeSatisfies(const Route& d, const Route& o);

enum class Action { Replace, Delete };
using Object = std::variant<Addr, Route, Neigh, Fdb>;

struct Op {
  Action action = Action::Replace;
  Object object{};
  // For a replace: the observed object with the same key that it overwrites (routes and
  // neighbours), for logs and for apply()'s dependency tracking.
  std::optional<Object> previous{};
  friend bool operator==(const Op&, const Op&) = default;
};

// "replace route 10.5.3.0/24 via 10.5.3.0 dev ifindex 5 onlink", "delete fdb ...".
std::string describe(const Op& op);

struct Plan {
  std::vector<Op> ops;  // in the order apply() runs them
  bool empty() const { return ops.empty(); }
  friend bool operator==(const Plan&, const Plan&) = default;
};

// Pure. Duplicate desired objects (same key) count once; the first one wins.
Plan diff(const DesiredState& desired, const ObservedState& observed, const Ownership& own);

// Lists what diff() needs from the kernel: the addresses, neighbours and FDB entries of our
// devices and the routes of our table (both families). A device that vanished contributes
// nothing.
Result<ObservedState> listObserved(Kernel& kernel, const Ownership& own);

struct OpFailure {
  Op op{};
  Error error{};
};

struct ApplyReport {
  size_t applied = 0;                 // operations that succeeded
  std::vector<OpFailure> failures{};  // operations the kernel refused
  std::vector<Op> skipped{};          // not attempted: something they depend on failed
  bool clean() const { return failures.empty() && skipped.empty(); }
};

// Runs `plan` in order, continuing past failures (see the DOC above). Thread: the Kernel's.
ApplyReport apply(Kernel& kernel, const Plan& plan);

}  // namespace flannel::kernel
