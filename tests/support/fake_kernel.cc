#include "support/fake_kernel.h"

#include <algorithm>
#include <cerrno>
#include <tuple>
#include <utility>

#include <fmt/format.h>

namespace flannel::test {

using kernel::Addr;
using kernel::Fdb;
using kernel::Link;
using kernel::Neigh;
using kernel::Route;
using kernel::RouteFilter;
using kernel::VxlanSpec;

namespace {

bool isMutation(FakeKernel::Op op) {
  using Op = FakeKernel::Op;
  switch (op) {
    case Op::EnsureVxlan:
    case Op::SetLinkUp:
    case Op::SetMtu:
    case Op::DeleteLink:
    case Op::ReplaceAddress:
    case Op::DeleteAddress:
    case Op::ReplaceRoute:
    case Op::DeleteRoute:
    case Op::ReplaceNeighbour:
    case Op::DeleteNeighbour:
    case Op::ReplaceFdb:
    case Op::DeleteFdb:
    case Op::SetSysctl:
      return true;
    default:
      return false;
  }
}

std::optional<std::string> confDevice(const std::string& path) {
  for (std::string_view prefix : {"net/ipv4/conf/", "net/ipv6/conf/"}) {
    if (path.rfind(prefix, 0) == 0) {
      const size_t end = path.find('/', prefix.size());
      if (end != std::string::npos) {
        return path.substr(prefix.size(), end - prefix.size());
      }
    }
  }
  return std::nullopt;
}

}  // namespace

std::string_view FakeKernel::opName(Op op) {
  switch (op) {
    case Op::Links:
      return "links";
    case Op::LinkByName:
      return "link";
    case Op::LinkByIndex:
      return "link";
    case Op::EnsureVxlan:
      return "ensure vxlan";
    case Op::SetLinkUp:
      return "set link up";
    case Op::SetMtu:
      return "set mtu";
    case Op::DeleteLink:
      return "delete link";
    case Op::Addresses:
    case Op::AllAddresses:
      return "addresses";
    case Op::ReplaceAddress:
      return "replace address";
    case Op::DeleteAddress:
      return "delete address";
    case Op::Routes:
      return "routes";
    case Op::ReplaceRoute:
      return "replace route";
    case Op::DeleteRoute:
      return "delete route";
    case Op::RouteGet:
      return "route get";
    case Op::Neighbours:
      return "neighbours";
    case Op::ReplaceNeighbour:
      return "replace neighbour";
    case Op::DeleteNeighbour:
      return "delete neighbour";
    case Op::FdbEntries:
      return "fdb";
    case Op::ReplaceFdb:
      return "replace fdb";
    case Op::DeleteFdb:
      return "delete fdb";
    case Op::SetSysctl:
      return "set sysctl";
    case Op::Sysctl:
      return "sysctl";
  }
  return "?";
}

FakeKernel::FakeKernel() {
  links_[1] = Link{.index = 1,
                   .name = "lo",
                   .kind = "",
                   .mac = Mac(),
                   .mtu = 65536,
                   .up = true,
                   .lower_up = true,
                   .vxlan = std::nullopt};
}

// --- test setup ---------------------------------------------------------------------------------

Link FakeKernel::addLink(const std::string& name, const std::string& kind, uint32_t mtu, bool up) {
  const int index = next_index_++;
  ++mac_counter_;
  Link link{.index = index,
            .name = name,
            .kind = kind,
            .mac = Mac::locallyAdministered({0x0e, 0x00, 0x00, 0x00,
                                             static_cast<uint8_t>(mac_counter_ >> 8),
                                             static_cast<uint8_t>(mac_counter_)}),
            .mtu = mtu,
            .up = up,
            .lower_up = up,
            .vxlan = std::nullopt};
  links_[index] = link;
  return link;
}

void FakeKernel::setLinkDown(int ifindex) {
  if (Link* l = find(ifindex)) {
    l->up = false;
    l->lower_up = false;
    flushRoutesVia(ifindex);
  }
}

void FakeKernel::presetSysctl(const std::string& path, const std::string& value) {
  sysctls_[path] = value;
}

void FakeKernel::failNext(Op op, int err, int times) {
  faults_[op] = Fault{.err = err, .times = times};
}

void FakeKernel::beforeNext(Op op, std::function<void()> hook) {
  hooks_[op] = std::move(hook);
}

std::vector<std::string> FakeKernel::mutations() const {
  std::vector<std::string> out;
  for (const Call& c : calls_) {
    if (c.err == 0 && isMutation(c.op)) {
      out.push_back(fmt::format("{} {}", opName(c.op), c.detail));
    }
  }
  return out;
}

// --- plumbing -----------------------------------------------------------------------------------

Error FakeKernel::fail(const std::string& what, int err) {
  calls_.back().err = err;
  return kernel::kernelError(what, err);
}

std::optional<Error> FakeKernel::enter(Op op, const std::string& detail, const std::string& what) {
  calls_.push_back(Call{.op = op, .detail = detail, .err = 0});
  if (auto it = faults_.find(op); it != faults_.end() && it->second.times > 0) {
    const int err = it->second.err;
    if (--it->second.times == 0) {
      faults_.erase(it);
    }
    calls_.back().err = err;
    return kernel::kernelError(what, err, "injected by FakeKernel");
  }
  if (auto it = hooks_.find(op); it != hooks_.end()) {
    auto hook = std::move(it->second);
    hooks_.erase(it);
    // The hook may call into the kernel; keep this call's log entry last-but-its-own.
    const size_t at = calls_.size() - 1;
    hook();
    Call mine = calls_[at];
    calls_.erase(calls_.begin() + static_cast<std::ptrdiff_t>(at));
    calls_.push_back(std::move(mine));
  }
  return std::nullopt;
}

Link* FakeKernel::find(int ifindex) {
  auto it = links_.find(ifindex);
  return it == links_.end() ? nullptr : &it->second;
}

Link* FakeKernel::findByName(const std::string& name) {
  for (auto& [index, link] : links_) {
    if (link.name == name) {
      return &link;
    }
  }
  return nullptr;
}

std::string FakeKernel::devName(int ifindex) const {
  auto it = links_.find(ifindex);
  return it == links_.end() ? std::string() : it->second.name;
}

std::vector<Route> FakeKernel::connectedRoutes() const {
  std::vector<Route> out;
  for (const Addr& a : addrs_) {
    auto link = links_.find(a.ifindex);
    if (link == links_.end() || !link->second.up ||
        a.prefix_len >= IpNet::maxPrefix(a.address.family())) {
      continue;
    }
    Route r;
    r.dst = a.network();
    r.ifindex = a.ifindex;
    r.protocol = kernel::kProtoKernel;
    if (a.address.is4()) {
      r.scope = kernel::kScopeLink;
      r.src = a.address;
    } else {
      r.metric = 256;
    }
    out.push_back(r);
  }
  return out;
}

void FakeKernel::flushRoutesVia(int ifindex) {
  std::erase_if(routes_, [&](const Route& r) { return r.ifindex == ifindex; });
}

void FakeKernel::removeLink(int ifindex) {
  const std::string name = devName(ifindex);
  links_.erase(ifindex);
  std::erase_if(addrs_, [&](const Addr& a) { return a.ifindex == ifindex; });
  flushRoutesVia(ifindex);
  std::erase_if(neighs_, [&](const Neigh& n) { return n.ifindex == ifindex; });
  std::erase_if(fdb_, [&](const Fdb& f) { return f.ifindex == ifindex; });
  std::erase_if(sysctls_, [&](const auto& kv) { return confDevice(kv.first) == name; });
}

// --- links --------------------------------------------------------------------------------------

Result<std::vector<Link>> FakeKernel::links() {
  if (auto e = enter(Op::Links, "", "listing links")) {
    return *e;
  }
  std::vector<Link> out;
  for (const auto& [index, link] : links_) {
    out.push_back(link);
  }
  return out;
}

Result<Link> FakeKernel::linkByName(const std::string& name) {
  const std::string what = "looking up link " + name;
  if (auto e = enter(Op::LinkByName, name, what)) {
    return *e;
  }
  if (const Link* l = findByName(name)) {
    return *l;
  }
  return fail(what, ENODEV);
}

Result<Link> FakeKernel::linkByIndex(int ifindex) {
  const std::string what = fmt::format("looking up link ifindex {}", ifindex);
  if (auto e = enter(Op::LinkByIndex, std::to_string(ifindex), what)) {
    return *e;
  }
  if (const Link* l = find(ifindex)) {
    return *l;
  }
  return fail(what, ENODEV);
}

Link FakeKernel::createVxlan(const VxlanSpec& spec, const Link* underlay) {
  const int index = next_index_++;
  ++mac_counter_;
  const bool v6 = spec.local && spec.local->is6();
  Link link{.index = index,
            .name = spec.name,
            .kind = "vxlan",
            .mac = spec.mac.value_or(Mac::locallyAdministered(
                {0x0e, 0x2a, 0x00, 0x00, static_cast<uint8_t>(mac_counter_ >> 8),
                 static_cast<uint8_t>(mac_counter_)})),
            .mtu = underlay != nullptr ? underlay->mtu - (v6 ? 70u : 50u) : 1500u,
            .up = false,
            .lower_up = false,
            .vxlan = kernel::VxlanInfo{
                .vni = spec.vni,
                .local = spec.local,
                .group = std::nullopt,
                .underlay_ifindex = spec.underlay_ifindex,
                .port = spec.port != 0 ? spec.port : kernel::kVxlanKernelDefaultPort,
                .learning = spec.learning,
                .gbp = spec.gbp,
                .l2miss = false,
            }};
  links_[index] = link;
  return link;
}

Result<Link> FakeKernel::ensureVxlan(const VxlanSpec& spec) {
  const std::string ctx = "ensuring vxlan device " + spec.name;
  if (auto e = enter(Op::EnsureVxlan, spec.name, ctx)) {
    return *e;
  }
  if (spec.name.empty() || spec.name.size() > kernel::kMaxIfNameLen ||
      spec.name.find_first_of("/ \t\n:") != std::string::npos) {
    return fail(ctx + ": not a valid interface name", EINVAL);
  }
  if (spec.vni > 0xffffff) {
    return fail(fmt::format("{}: VNI {} is larger than {}", ctx, spec.vni, 0xffffff), EINVAL);
  }
  if (const Link* existing = findByName(spec.name)) {
    if (!kernel::vxlanIncompatibility(*existing, spec)) {
      return *existing;
    }
    removeLink(existing->index);
  }
  const Link* underlay = nullptr;
  if (spec.underlay_ifindex != 0) {
    underlay = find(spec.underlay_ifindex);
    if (underlay == nullptr) {
      return fail(fmt::format("creating vxlan device {} (VNI {}, dev ifindex {})", spec.name,
                              spec.vni, spec.underlay_ifindex),
                  ENODEV);
    }
  }
  return createVxlan(spec, underlay);
}

Result<void> FakeKernel::setLinkUp(int ifindex) {
  const std::string dev = devName(ifindex);
  const std::string what =
      fmt::format("setting link {} up", dev.empty() ? fmt::format("ifindex {}", ifindex) : dev);
  if (auto e = enter(Op::SetLinkUp, dev.empty() ? std::to_string(ifindex) : dev, what)) {
    return *e;
  }
  Link* l = find(ifindex);
  if (l == nullptr) {
    return fail(what, ENODEV);
  }
  l->up = true;
  l->lower_up = true;
  return ok();
}

Result<void> FakeKernel::setMtu(int ifindex, uint32_t mtu) {
  const std::string dev = devName(ifindex);
  const std::string what = fmt::format("setting MTU of link {} to {}",
                                       dev.empty() ? fmt::format("ifindex {}", ifindex) : dev, mtu);
  if (auto e = enter(Op::SetMtu, fmt::format("{} {}", dev, mtu), what)) {
    return *e;
  }
  Link* l = find(ifindex);
  if (l == nullptr) {
    return fail(what, ENODEV);
  }
  if (mtu < 68 || mtu > 65535) {
    return fail(what, EINVAL);
  }
  l->mtu = mtu;
  return ok();
}

Result<void> FakeKernel::deleteLink(int ifindex) {
  const std::string dev = devName(ifindex);
  if (auto e = enter(Op::DeleteLink, dev.empty() ? std::to_string(ifindex) : dev,
                     "deleting link " + dev)) {
    return *e;
  }
  removeLink(ifindex);
  return ok();
}

// --- addresses ----------------------------------------------------------------------------------

Result<std::vector<Addr>> FakeKernel::addresses(int ifindex) {
  if (auto e = enter(Op::Addresses, devName(ifindex), "listing addresses")) {
    return *e;
  }
  std::vector<Addr> out;
  std::copy_if(addrs_.begin(), addrs_.end(), std::back_inserter(out),
               [&](const Addr& a) { return a.ifindex == ifindex; });
  return out;
}

Result<std::vector<Addr>> FakeKernel::allAddresses() {
  if (auto e = enter(Op::AllAddresses, "", "listing addresses")) {
    return *e;
  }
  return addrs_;
}

Result<void> FakeKernel::replaceAddress(const Addr& a) {
  const std::string detail = kernel::describe(a, devName(a.ifindex));
  const std::string what = "adding address " + detail;
  if (auto e = enter(Op::ReplaceAddress, detail, what)) {
    return *e;
  }
  if (find(a.ifindex) == nullptr) {
    return fail(what, ENODEV);
  }
  if (a.prefix_len > IpNet::maxPrefix(a.address.family())) {
    return fail(what, EINVAL);
  }
  if (std::find(addrs_.begin(), addrs_.end(), a) == addrs_.end()) {
    addrs_.push_back(a);
  }
  return ok();
}

Result<void> FakeKernel::deleteAddress(const Addr& a) {
  const std::string detail = kernel::describe(a, devName(a.ifindex));
  if (auto e = enter(Op::DeleteAddress, detail, "deleting address " + detail)) {
    return *e;
  }
  std::erase(addrs_, a);
  return ok();
}

// --- routes -------------------------------------------------------------------------------------

Result<std::vector<Route>> FakeKernel::routes(const RouteFilter& filter) {
  if (auto e = enter(Op::Routes, "", "listing routes")) {
    return *e;
  }
  std::vector<Route> all = connectedRoutes();
  all.insert(all.end(), routes_.begin(), routes_.end());
  std::vector<Route> out;
  for (const Route& r : all) {
    if ((!filter.family || r.dst.family() == *filter.family) &&
        (!filter.table || r.table == *filter.table) &&
        (!filter.ifindex || r.ifindex == *filter.ifindex)) {
      out.push_back(r);
    }
  }
  return out;
}

Result<void> FakeKernel::replaceRoute(const Route& r) {
  const std::string detail = kernel::describe(r, devName(r.ifindex));
  const std::string what = "replacing route " + detail;
  if (auto e = enter(Op::ReplaceRoute, detail, what)) {
    return *e;
  }
  Route stored = r;
  if (stored.metric == kernel::effectiveMetric(Route{.dst = r.dst})) {
    stored.metric.reset();  // listed the way the kernel lists it
  }
  if (r.via && r.via->family() != r.dst.family()) {
    return fail(what, EINVAL);
  }
  if (r.ifindex != 0) {
    const Link* l = find(r.ifindex);
    if (l == nullptr) {
      return fail(what, ENODEV);
    }
    if (!l->up) {
      return fail(what, ENETDOWN);
    }
  }
  if (r.onlink && r.ifindex == 0) {
    return fail(what, EINVAL);
  }
  if (!r.via && r.ifindex == 0) {
    return fail(what, EINVAL);
  }
  if (r.via && !r.onlink) {
    // The gateway must be on a connected prefix (of the given device, if any).
    std::optional<int> out_dev;
    for (const Route& c : connectedRoutes()) {
      if ((r.ifindex == 0 || c.ifindex == r.ifindex) && c.dst.contains(*r.via)) {
        out_dev = c.ifindex;
        break;
      }
    }
    if (!out_dev) {
      return fail(what, r.dst.is4() ? ENETUNREACH : EHOSTUNREACH);
    }
    stored.ifindex = *out_dev;
  }
  const auto key = [](const Route& x) {
    return std::tuple(x.table, x.dst, kernel::effectiveMetric(x));
  };
  auto it = std::find_if(routes_.begin(), routes_.end(),
                         [&](const Route& x) { return key(x) == key(stored); });
  if (it != routes_.end()) {
    *it = stored;
  } else {
    routes_.push_back(stored);
  }
  return ok();
}

Result<void> FakeKernel::deleteRoute(const Route& r) {
  const std::string detail = kernel::describe(r, devName(r.ifindex));
  if (auto e = enter(Op::DeleteRoute, detail, "deleting route " + detail)) {
    return *e;
  }
  // The kernel's matching: what the request names must match; what it leaves out matches all.
  auto it = std::find_if(routes_.begin(), routes_.end(), [&](const Route& x) {
    return x.table == r.table && x.dst == r.dst &&
           (!r.metric || kernel::effectiveMetric(x) == *r.metric) && (!r.via || x.via == r.via) &&
           (r.ifindex == 0 || x.ifindex == r.ifindex) && x.protocol == r.protocol &&
           x.type == r.type;
  });
  if (it != routes_.end()) {
    routes_.erase(it);
  }
  return ok();
}

Result<Route> FakeKernel::routeGet(const IpAddr& dst) {
  const std::string what = "looking up the route to " + dst.toString();
  if (auto e = enter(Op::RouteGet, dst.toString(), what)) {
    return *e;
  }
  const IpNet host = IpNet::masked(dst, IpNet::maxPrefix(dst.family()));
  for (const Addr& a : addrs_) {
    if (a.address == dst) {
      return Route{.dst = host,
                   .via = std::nullopt,
                   .ifindex = 1,
                   .onlink = false,
                   .table = kernel::kLocalTable,
                   .protocol = 0,
                   .scope = kernel::kScopeUniverse,
                   .type = kernel::kRouteLocal,
                   .metric = std::nullopt,
                   .src = dst};
    }
  }
  std::vector<Route> candidates = connectedRoutes();
  candidates.insert(candidates.end(), routes_.begin(), routes_.end());
  const Route* best = nullptr;
  for (const Route& r : candidates) {
    const Link* l = find(r.ifindex);
    if (r.table != kernel::kMainTable || r.type != kernel::kRouteUnicast || l == nullptr ||
        !l->up || !r.dst.contains(dst)) {
      continue;
    }
    if (best == nullptr || r.dst.prefix() > best->dst.prefix() ||
        (r.dst.prefix() == best->dst.prefix() &&
         kernel::effectiveMetric(r) < kernel::effectiveMetric(*best))) {
      best = &r;
    }
  }
  if (best == nullptr) {
    return fail(what, ENETUNREACH);
  }
  Route out{.dst = host,
            .via = best->via,
            .ifindex = best->ifindex,
            .onlink = best->onlink,
            .table = kernel::kMainTable,
            .protocol = 0,
            .scope = kernel::kScopeUniverse,
            .type = kernel::kRouteUnicast,
            .metric = std::nullopt,
            .src = best->src};
  if (!out.src) {
    for (const Addr& a : addrs_) {
      if (a.ifindex == best->ifindex && a.address.family() == dst.family()) {
        out.src = a.address;
        break;
      }
    }
  }
  return out;
}

// --- neighbours and FDB -------------------------------------------------------------------------

Result<std::vector<Neigh>> FakeKernel::neighbours(int ifindex) {
  if (auto e = enter(Op::Neighbours, devName(ifindex), "listing neighbours")) {
    return *e;
  }
  std::vector<Neigh> out;
  std::copy_if(neighs_.begin(), neighs_.end(), std::back_inserter(out),
               [&](const Neigh& n) { return n.ifindex == ifindex; });
  return out;
}

Result<void> FakeKernel::replaceNeighbour(const Neigh& n) {
  const std::string detail = kernel::describe(n, devName(n.ifindex));
  const std::string what = "replacing neighbour " + detail;
  if (auto e = enter(Op::ReplaceNeighbour, detail, what)) {
    return *e;
  }
  if (find(n.ifindex) == nullptr) {
    return fail(what, ENODEV);
  }
  Neigh stored = n;
  stored.permanent = true;
  auto it = std::find_if(neighs_.begin(), neighs_.end(),
                         [&](const Neigh& x) { return x.ifindex == n.ifindex && x.dst == n.dst; });
  if (it != neighs_.end()) {
    *it = stored;
  } else {
    neighs_.push_back(stored);
  }
  return ok();
}

Result<void> FakeKernel::deleteNeighbour(const Neigh& n) {
  const std::string detail = kernel::describe(n, devName(n.ifindex));
  if (auto e = enter(Op::DeleteNeighbour, detail, "deleting neighbour " + detail)) {
    return *e;
  }
  std::erase_if(neighs_, [&](const Neigh& x) { return x.ifindex == n.ifindex && x.dst == n.dst; });
  return ok();
}

Result<std::vector<Fdb>> FakeKernel::fdbEntries(int ifindex) {
  if (auto e = enter(Op::FdbEntries, devName(ifindex), "listing FDB entries")) {
    return *e;
  }
  std::vector<Fdb> out;
  std::copy_if(fdb_.begin(), fdb_.end(), std::back_inserter(out),
               [&](const Fdb& f) { return f.ifindex == ifindex; });
  return out;
}

Result<void> FakeKernel::replaceFdb(const Fdb& f) {
  const std::string detail = kernel::describe(f, devName(f.ifindex));
  const std::string what = "replacing fdb entry " + detail;
  if (auto e = enter(Op::ReplaceFdb, detail, what)) {
    return *e;
  }
  const Link* l = find(f.ifindex);
  if (l == nullptr) {
    return fail(what, ENODEV);
  }
  if (l->kind != "vxlan") {
    return fail(what, EOPNOTSUPP);
  }
  Fdb stored = f;
  stored.permanent = true;
  auto it = std::find_if(fdb_.begin(), fdb_.end(),
                         [&](const Fdb& x) { return x.ifindex == f.ifindex && x.mac == f.mac; });
  if (it != fdb_.end()) {
    *it = stored;  // NLM_F_REPLACE moves the MAC to the new dst
  } else {
    fdb_.push_back(stored);
  }
  return ok();
}

Result<void> FakeKernel::deleteFdb(const Fdb& f) {
  const std::string detail = kernel::describe(f, devName(f.ifindex));
  if (auto e = enter(Op::DeleteFdb, detail, "deleting fdb entry " + detail)) {
    return *e;
  }
  std::erase_if(fdb_, [&](const Fdb& x) {
    return x.ifindex == f.ifindex && x.mac == f.mac && x.dst == f.dst;
  });
  return ok();
}

// --- sysctl -------------------------------------------------------------------------------------

Result<void> FakeKernel::setSysctl(const std::string& path, const std::string& value) {
  const std::string what = fmt::format("setting sysctl {} to {}", path, value);
  if (auto e = enter(Op::SetSysctl, path + "=" + value, what)) {
    return *e;
  }
  if (auto valid = kernel::validateSysctlPath(path); !valid) {
    calls_.back().err = EINVAL;
    return valid.error();
  }
  if (auto dev = confDevice(path);
      dev && *dev != "all" && *dev != "default" && findByName(*dev) == nullptr) {
    return fail(what, ENOENT);
  }
  sysctls_[path] = value;
  return ok();
}

Result<std::string> FakeKernel::sysctl(const std::string& path) {
  const std::string what = "reading sysctl " + path;
  if (auto e = enter(Op::Sysctl, path, what)) {
    return *e;
  }
  if (auto valid = kernel::validateSysctlPath(path); !valid) {
    calls_.back().err = EINVAL;
    return valid.error();
  }
  auto it = sysctls_.find(path);
  if (it == sysctls_.end()) {
    return fail(what, ENOENT);
  }
  return it->second;
}

}  // namespace flannel::test
