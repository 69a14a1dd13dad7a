#include "kernel/reconcile.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

namespace flannel::kernel {

namespace {

bool isOurDevice(int ifindex, const Ownership& own) {
  return ifindex != 0 &&
         std::find(own.devices.begin(), own.devices.end(), ifindex) != own.devices.end();
}

bool insideNetworks(const IpNet& dst, const Ownership& own) {
  return std::any_of(own.networks.begin(), own.networks.end(),
                     [&](const IpNet& n) { return n.family() == dst.family() && n.contains(dst); });
}

using RouteKey = std::tuple<uint32_t, IpNet, uint32_t>;  // table, dst, effective metric
using NeighKey = std::tuple<int, IpAddr>;                // ifindex, dst
using FdbKey = std::tuple<int, Mac, IpAddr>;             // ifindex, mac, dst
using AddrKey = std::tuple<int, IpAddr, uint8_t>;        // ifindex, address, prefix length

RouteKey keyOf(const Route& r) {
  return {r.table, r.dst, effectiveMetric(r)};
}
NeighKey keyOf(const Neigh& n) {
  return {n.ifindex, n.dst};
}
FdbKey keyOf(const Fdb& f) {
  return {f.ifindex, f.mac, f.dst};
}
AddrKey keyOf(const Addr& a) {
  return {a.ifindex, a.address, a.prefix_len};
}

// First occurrence of each key, in input order.
template <class T>
std::vector<const T*> unique(const std::vector<T>& items) {
  std::set<decltype(keyOf(std::declval<const T&>()))> seen;
  std::vector<const T*> out;
  out.reserve(items.size());
  for (const T& item : items) {
    if (seen.insert(keyOf(item)).second) {
      out.push_back(&item);
    }
  }
  return out;
}

template <class T>
auto indexByKey(const std::vector<T>& items) {
  std::map<decltype(keyOf(std::declval<const T&>())), const T*> index;
  for (const T& item : items) {
    index.emplace(keyOf(item), &item);
  }
  return index;
}

template <class T>
void push(std::vector<Op>& ops, Action action, const T& object) {
  ops.push_back(Op{.action = action, .object = object, .previous = std::nullopt});
}

}  // namespace

bool isOurs(const Route& r, const Ownership& own) {
  return r.table == own.route_table && r.protocol == own.route_protocol &&
         r.type == kRouteUnicast && (isOurDevice(r.ifindex, own) || insideNetworks(r.dst, own));
}

bool isOurs(const Addr& a, const Ownership& own) {
  return isOurDevice(a.ifindex, own) && !a.address.isLinkLocal();
}

bool isOurs(const Neigh& n, const Ownership& own) {
  return isOurDevice(n.ifindex, own) && n.permanent;
}

bool isOurs(const Fdb& f, const Ownership& own) {
  return isOurDevice(f.ifindex, own) && f.permanent;
}

bool routeSatisfies(const Route& d, const Route& o) {
  return d.dst == o.dst && d.via == o.via && (d.ifindex == 0 || d.ifindex == o.ifindex) &&
         d.onlink == o.onlink && d.table == o.table && d.protocol == o.protocol &&
         d.scope == o.scope && d.type == o.type && effectiveMetric(d) == effectiveMetric(o) &&
         (!d.src || d.src == o.src);
}

std::string describe(const Op& op) {
  const char* verb = op.action == Action::Replace ? "replace" : "delete";
  return std::visit(
      [&](const auto& obj) -> std::string {
        using T = std::decay_t<decltype(obj)>;
        const char* kind = std::is_same_v<T, Addr>    ? "address"
                           : std::is_same_v<T, Route> ? "route"
                           : std::is_same_v<T, Neigh> ? "neighbour"
                                                      : "fdb";
        std::string out = fmt::format("{} {} {}", verb, kind, kernel::describe(obj));
        if (op.previous) {
          if (const auto* prev = std::get_if<T>(&*op.previous)) {
            out += fmt::format(" (was {})", kernel::describe(*prev));
          }
        }
        return out;
      },
      op.object);
}

Plan diff(const DesiredState& desired, const ObservedState& observed, const Ownership& own) {
  const auto want_routes = unique(desired.routes);
  const auto want_neighs = unique(desired.neighbours);
  const auto want_fdb = unique(desired.fdb);
  const auto want_addrs = unique(desired.addresses);

  const auto have_routes = indexByKey(observed.routes);
  const auto have_neighs = indexByKey(observed.neighbours);
  const auto have_fdb = indexByKey(observed.fdb);
  const auto have_addrs = indexByKey(observed.addresses);

  std::set<RouteKey> wanted_route_keys;
  for (const Route* r : want_routes) {
    wanted_route_keys.insert(keyOf(*r));
  }
  std::set<NeighKey> wanted_neigh_keys;
  for (const Neigh* n : want_neighs) {
    wanted_neigh_keys.insert(keyOf(*n));
  }
  std::set<FdbKey> wanted_fdb_keys;
  for (const Fdb* f : want_fdb) {
    wanted_fdb_keys.insert(keyOf(*f));
  }
  std::set<AddrKey> wanted_addr_keys;
  for (const Addr* a : want_addrs) {
    wanted_addr_keys.insert(keyOf(*a));
  }

  // Routes to install: wanted and missing or different. An observed route with the same key is
  // overwritten in place (NLM_F_REPLACE), never deleted first; its gateway neighbour, if nobody
  // wants it any more, is "held" and deleted only after the overwrite, so the old route never
  // points at a missing neighbour (e.g. a peer switching to DirectRouting).
  std::vector<Op> route_replaces;
  std::set<NeighKey> held_vias;
  for (const Route* d : want_routes) {
    auto it = have_routes.find(keyOf(*d));
    if (it != have_routes.end() && routeSatisfies(*d, *it->second)) {
      continue;
    }
    Op op{.action = Action::Replace, .object = *d, .previous = std::nullopt};
    if (it != have_routes.end()) {
      op.previous = *it->second;
      if (it->second->via) {
        held_vias.insert({it->second->ifindex, *it->second->via});
      }
    }
    route_replaces.push_back(std::move(op));
  }

  Plan plan;
  auto& ops = plan.ops;
  std::vector<const Neigh*> held_neighs;
  std::set<std::tuple<int, Mac>> held_macs;

  // 1. Routes that are ours and whose key nobody wants.
  for (const Route& o : observed.routes) {
    if (isOurs(o, own) && !wanted_route_keys.contains(keyOf(o))) {
      push(ops, Action::Delete, o);
    }
  }
  // 2. Neighbours that are ours and unwanted, unless a route being overwritten still uses them.
  for (const Neigh& o : observed.neighbours) {
    if (!isOurs(o, own) || wanted_neigh_keys.contains(keyOf(o))) {
      continue;
    }
    if (held_vias.contains(keyOf(o))) {
      held_neighs.push_back(&o);
      held_macs.insert({o.ifindex, o.lladdr});
    } else {
      push(ops, Action::Delete, o);
    }
  }
  // 3. Addresses.
  for (const Addr& o : observed.addresses) {
    if (isOurs(o, own) && !wanted_addr_keys.contains(keyOf(o))) {
      push(ops, Action::Delete, o);
    }
  }
  // 4. Addresses that are missing.
  for (const Addr* d : want_addrs) {
    if (!have_addrs.contains(keyOf(*d))) {
      push(ops, Action::Replace, *d);
    }
  }
  // 5. FDB entries that are missing or not permanent.
  for (const Fdb* d : want_fdb) {
    auto it = have_fdb.find(keyOf(*d));
    if (it == have_fdb.end() || !it->second->permanent) {
      Fdb f = *d;
      f.permanent = true;
      push(ops, Action::Replace, f);
    }
  }
  // 6. Neighbours that are missing, point elsewhere or are not permanent.
  for (const Neigh* d : want_neighs) {
    auto it = have_neighs.find(keyOf(*d));
    if (it == have_neighs.end() || it->second->lladdr != d->lladdr || !it->second->permanent) {
      Neigh n = *d;
      n.permanent = true;
      Op op{.action = Action::Replace, .object = n, .previous = std::nullopt};
      if (it != have_neighs.end()) {
        op.previous = *it->second;
      }
      ops.push_back(std::move(op));
    }
  }
  // 7. FDB entries that are ours and unwanted, e.g. the old dst of a MAC that moved (step 5 has
  //    already pointed the MAC at its new dst, so this delete is usually of an absent entry),
  //    unless they belong to a held neighbour.
  std::vector<const Fdb*> held_fdb;
  for (const Fdb& o : observed.fdb) {
    if (!isOurs(o, own) || wanted_fdb_keys.contains(keyOf(o))) {
      continue;
    }
    if (held_macs.contains({o.ifindex, o.mac})) {
      held_fdb.push_back(&o);
    } else {
      push(ops, Action::Delete, o);
    }
  }
  // 8. Routes that are missing or different.
  ops.insert(ops.end(), route_replaces.begin(), route_replaces.end());
  // 9./10. What the overwritten routes used to point at.
  for (const Neigh* o : held_neighs) {
    push(ops, Action::Delete, *o);
  }
  for (const Fdb* o : held_fdb) {
    push(ops, Action::Delete, *o);
  }
  return plan;
}

Result<ObservedState> listObserved(Kernel& kernel, const Ownership& own) {
  ObservedState observed;
  auto routes = kernel.routes(
      RouteFilter{.family = std::nullopt, .table = own.route_table, .ifindex = std::nullopt});
  if (!routes) {
    return routes.error().context("listing kernel state");
  }
  observed.routes = std::move(*routes);
  for (int dev : own.devices) {
    auto addrs = kernel.addresses(dev);
    auto neighs = kernel.neighbours(dev);
    auto fdb = kernel.fdbEntries(dev);
    // A device that vanished between the caller's check and now has no objects; anything else
    // is a real failure.
    for (const Error& err : {addrs ? Error{} : addrs.error(), neighs ? Error{} : neighs.error(),
                             fdb ? Error{} : fdb.error()}) {
      if (!err.message.empty() && err.code != Errc::NotFound) {
        return err.context("listing kernel state");
      }
    }
    if (addrs) {
      observed.addresses.insert(observed.addresses.end(), addrs->begin(), addrs->end());
    }
    if (neighs) {
      observed.neighbours.insert(observed.neighbours.end(), neighs->begin(), neighs->end());
    }
    if (fdb) {
      observed.fdb.insert(observed.fdb.end(), fdb->begin(), fdb->end());
    }
  }
  return observed;
}

namespace {

Result<void> run(Kernel& kernel, const Op& op) {
  return std::visit(
      [&](const auto& obj) -> Result<void> {
        using T = std::decay_t<decltype(obj)>;
        const bool replace = op.action == Action::Replace;
        if constexpr (std::is_same_v<T, Addr>) {
          return replace ? kernel.replaceAddress(obj) : kernel.deleteAddress(obj);
        } else if constexpr (std::is_same_v<T, Route>) {
          return replace ? kernel.replaceRoute(obj) : kernel.deleteRoute(obj);
        } else if constexpr (std::is_same_v<T, Neigh>) {
          return replace ? kernel.replaceNeighbour(obj) : kernel.deleteNeighbour(obj);
        } else {
          return replace ? kernel.replaceFdb(obj) : kernel.deleteFdb(obj);
        }
      },
      op.object);
}

// What a failed (or skipped) operation makes unsafe to do later in the same plan.
struct Blocked {
  std::set<std::tuple<int, Mac>> fdb_replace;       // neighbours with this lladdr wait
  std::set<std::tuple<int, IpAddr>> neigh_replace;  // routes via this neighbour wait
  std::set<std::tuple<int, IpAddr>> route_delete;   // this neighbour must stay (route remains)
  std::set<std::tuple<int, Mac>> neigh_delete;      // FDB entries for this MAC must stay

  bool blocks(const Op& op) const {
    if (const auto* n = std::get_if<Neigh>(&op.object)) {
      if (op.action == Action::Replace) {
        return fdb_replace.contains({n->ifindex, n->lladdr});
      }
      return route_delete.contains({n->ifindex, n->dst});
    }
    if (const auto* r = std::get_if<Route>(&op.object)) {
      return op.action == Action::Replace && r->via &&
             neigh_replace.contains({r->ifindex, *r->via});
    }
    if (const auto* f = std::get_if<Fdb>(&op.object)) {
      return op.action == Action::Delete && neigh_delete.contains({f->ifindex, f->mac});
    }
    return false;
  }

  void record(const Op& op) {
    if (const auto* f = std::get_if<Fdb>(&op.object); f && op.action == Action::Replace) {
      fdb_replace.insert({f->ifindex, f->mac});
    } else if (const auto* n = std::get_if<Neigh>(&op.object)) {
      if (op.action == Action::Replace) {
        neigh_replace.insert({n->ifindex, n->dst});
      } else {
        neigh_delete.insert({n->ifindex, n->lladdr});
      }
    } else if (const auto* r = std::get_if<Route>(&op.object);
               r && op.action == Action::Delete && r->via) {
      route_delete.insert({r->ifindex, *r->via});
    } else if (r && op.action == Action::Replace && op.previous) {
      // The old route is still there, so is its use of its neighbour.
      if (const auto* prev = std::get_if<Route>(&*op.previous); prev && prev->via) {
        route_delete.insert({prev->ifindex, *prev->via});
      }
    }
  }
};

}  // namespace

ApplyReport apply(Kernel& kernel, const Plan& plan) {
  ApplyReport report;
  Blocked blocked;
  for (const Op& op : plan.ops) {
    if (blocked.blocks(op)) {
      blocked.record(op);  // what waits on a skipped step waits too
      report.skipped.push_back(op);
      continue;
    }
    if (auto done = run(kernel, op); done) {
      ++report.applied;
    } else {
      blocked.record(op);
      report.failures.push_back(OpFailure{.op = op, .error = done.error()});
    }
  }
  return report;
}

}  // namespace flannel::kernel
