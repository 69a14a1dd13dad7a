#include "kernel/iface_select.h"

#include <cerrno>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "core/log.h"
#include "core/regex.h"

namespace flannel::kernel {

namespace {

// Addresses an interface already has for each family, when the match itself fixed them.
struct Fixed {
  std::optional<Ip4> v4{};
  std::optional<Ip6> v6{};
};

Fixed fixedFrom(const IpAddr& a) {
  Fixed f;
  if (a.is4()) {
    f.v4 = a.v4();
  } else {
    f.v6 = a.v6();
  }
  return f;
}

// A failed candidate: "<what was tried>: <why>".
struct Attempt {
  std::string candidate{};
  std::string reason{};
  std::string text() const { return candidate + ": " + reason; }
};

// The outcome of one selection: the interface, or the error; plus the candidates that failed
// on the way (for the info log when a later one succeeded).
struct Outcome {
  Result<ExternalInterface> result = makeError(Errc::Internal, "no selection made");
  std::vector<Attempt> failed{};
};

class Selector {
 public:
  Selector(const InterfaceSnapshot& snapshot, const IfaceOptions& options)
      : snap_(snapshot), opts_(options) {}

  Outcome select(const std::optional<Route>& can_reach_route, std::string can_reach_failure);

 private:
  Result<ExternalInterface> byDefaults();
  Result<ExternalInterface> byDefaultRoute();
  Result<ExternalInterface> byIface(const std::string& value);
  Result<ExternalInterface> byRegex(const std::string& pattern);
  Result<ExternalInterface> byRoute(const std::optional<Route>& route, const std::string& failure);

  const Link* linkByIndex(int ifindex) const;
  const Link* linkByName(std::string_view name) const;
  const Link* ownerOf(const IpAddr& address) const;
  // Usable addresses of `ifindex` in `family`: global unicast first, then link-local.
  std::vector<IpAddr> usable(int ifindex, Family family) const;
  // Checks the MTU, fills in the addresses of every enabled family and the external ones.
  // The error message is the reason only (the caller names the candidate).
  Result<ExternalInterface> complete(const Link& link, Fixed fixed) const;

  const InterfaceSnapshot& snap_;
  const IfaceOptions& opts_;
};

Error reason(std::string text) {
  return makeError(Errc::NotFound, std::move(text));
}

const Link* Selector::linkByIndex(int ifindex) const {
  for (const Link& l : snap_.links) {
    if (l.index == ifindex) {
      return &l;
    }
  }
  return nullptr;
}

const Link* Selector::linkByName(std::string_view name) const {
  for (const Link& l : snap_.links) {
    if (l.name == name) {
      return &l;
    }
  }
  return nullptr;
}

const Link* Selector::ownerOf(const IpAddr& address) const {
  for (const Addr& a : snap_.addrs) {
    if (a.address == address) {
      if (const Link* l = linkByIndex(a.ifindex)) {
        return l;
      }
    }
  }
  return nullptr;
}

std::vector<IpAddr> Selector::usable(int ifindex, Family family) const {
  std::vector<IpAddr> global;
  std::vector<IpAddr> link_local;
  for (const Addr& a : snap_.addrs) {
    if (a.ifindex != ifindex || a.address.family() != family) {
      continue;
    }
    if (a.address.isGlobalUnicast()) {
      global.push_back(a.address);
    } else if (a.address.isLinkLocal()) {
      link_local.push_back(a.address);
    }
  }
  global.insert(global.end(), link_local.begin(), link_local.end());
  return global;
}

Result<ExternalInterface> Selector::complete(const Link& link, Fixed fixed) const {
  if (link.mtu == 0) {
    return reason("MTU is 0");
  }
  ExternalInterface ext{.link = link};
  if (opts_.ipv4) {
    if (!fixed.v4) {
      auto found = usable(link.index, Family::V4);
      if (found.empty()) {
        return reason("no usable IPv4 address");
      }
      fixed.v4 = found.front().v4();
    }
    ext.iface_addr = fixed.v4;
    ext.ext_addr = opts_.public_ip ? opts_.public_ip : fixed.v4;
  }
  if (opts_.ipv6) {
    if (!fixed.v6) {
      auto found = usable(link.index, Family::V6);
      if (found.empty()) {
        return reason("no usable IPv6 address");
      }
      fixed.v6 = found.front().v6();
    }
    ext.iface_v6_addr = fixed.v6;
    ext.ext_v6_addr = opts_.public_ipv6 ? opts_.public_ipv6 : fixed.v6;
  }
  return ext;
}

// Step 1 of SPEC.md §8: no selection flag given.
Result<ExternalInterface> Selector::byDefaults() {
  if (opts_.public_ip) {
    const IpAddr wanted = *opts_.public_ip;
    const Link* link = ownerOf(wanted);
    if (link == nullptr) {
      return reason(
          fmt::format("no interface has the address given by -public-ip {}; use -iface with "
                      "-public-ip for NAT",
                      wanted.toString()));
    }
    return withContext(
        complete(*link, fixedFrom(wanted)),
        fmt::format("interface {} (carrying -public-ip {})", link->name, wanted.toString()));
  }
  if (opts_.public_ipv6) {
    const IpAddr wanted = *opts_.public_ipv6;
    const Link* link = ownerOf(wanted);
    if (link == nullptr) {
      return reason(
          fmt::format("no interface has the address given by -public-ipv6 {}; use -iface with "
                      "-public-ipv6 for NAT",
                      wanted.toString()));
    }
    return withContext(
        complete(*link, fixedFrom(wanted)),
        fmt::format("interface {} (carrying -public-ipv6 {})", link->name, wanted.toString()));
  }
  return byDefaultRoute();
}

Result<ExternalInterface> Selector::byDefaultRoute() {
  constexpr std::string_view kHint =
      "choose the interface with -iface, -iface-regex or "
      "-iface-can-reach";
  std::optional<int> ifindex;
  if (opts_.ipv4) {
    if (!snap_.default_v4_ifindex) {
      return reason(fmt::format("no IPv4 default route; {}", kHint));
    }
    ifindex = snap_.default_v4_ifindex;
  }
  if (opts_.ipv6) {
    if (!snap_.default_v6_ifindex) {
      return reason(fmt::format(
          "no IPv6 default route{}; {}",
          opts_.ipv4 ? " (dual stack needs one, on the IPv4 default route's interface)" : "",
          kHint));
    }
    if (ifindex && *ifindex != *snap_.default_v6_ifindex) {
      auto name = [this](int index) {
        const Link* l = linkByIndex(index);
        return l != nullptr ? l->name : fmt::format("ifindex {}", index);
      };
      return reason(fmt::format(
          "dual stack needs one interface, but the IPv4 default route uses {} and the IPv6 "
          "default route uses {}; choose one with -iface",
          name(*ifindex), name(*snap_.default_v6_ifindex)));
    }
    ifindex = snap_.default_v6_ifindex;
  }
  const Link* link = linkByIndex(*ifindex);
  if (link == nullptr) {
    return reason(fmt::format("the default route's device (ifindex {}) does not exist", *ifindex));
  }
  return withContext(complete(*link, {}),
                     fmt::format("interface {} (of the default route)", link->name));
}

// Step 2: one -iface value, an IP literal or a name.
Result<ExternalInterface> Selector::byIface(const std::string& value) {
  if (auto literal = IpAddr::parse(value)) {
    const Link* link = ownerOf(*literal);
    if (link == nullptr) {
      return reason("no interface has this address");
    }
    return withContext(complete(*link, fixedFrom(*literal)), "interface " + link->name);
  }
  const Link* link = linkByName(value);
  if (link == nullptr) {
    return reason("no such interface");
  }
  return complete(*link, {});
}

// Step 3: one -iface-regex.
Result<ExternalInterface> Selector::byRegex(const std::string& pattern) {
  auto re = Regex::compile(pattern);
  if (!re) {
    return re.error();
  }
  auto first_match = [&](int ifindex, Family family) -> std::optional<IpAddr> {
    for (const IpAddr& a : usable(ifindex, family)) {
      if (re->search(a.toString())) {
        return a;
      }
    }
    return std::nullopt;
  };
  for (const Link& link : snap_.links) {
    Fixed fixed;
    bool found = true;
    if (opts_.ipv4) {
      auto a = first_match(link.index, Family::V4);
      found = found && a.has_value();
      if (a) {
        fixed.v4 = a->v4();
      }
    }
    if (opts_.ipv6) {
      auto a = first_match(link.index, Family::V6);
      found = found && a.has_value();
      if (a) {
        fixed.v6 = a->v6();
      }
    }
    if (found) {
      return withContext(complete(link, fixed),
                         fmt::format("interface {} (matched by address)", link.name));
    }
  }
  for (const Link& link : snap_.links) {
    if (re->search(link.name)) {
      return withContext(complete(link, {}),
                         fmt::format("interface {} (matched by name)", link.name));
    }
  }
  return reason("no interface matches");
}

// Step 4: -iface-can-reach, from the kernel's answer to the route lookup.
Result<ExternalInterface> Selector::byRoute(const std::optional<Route>& route,
                                            const std::string& failure) {
  if (!route) {
    return reason(failure.empty() ? std::string("no route") : failure);
  }
  const IpAddr target = *opts_.can_reach;
  // A local route means the target is one of our own addresses; the kernel names `lo` as the
  // device, but the interface carrying the address is the one meant.
  if (route->type == kRouteLocal) {
    if (const Link* owner = ownerOf(target)) {
      return withContext(complete(*owner, fixedFrom(target)),
                         fmt::format("interface {} (carrying the address)", owner->name));
    }
  }
  const Link* link = linkByIndex(route->ifindex);
  if (link == nullptr) {
    return reason(fmt::format("the route's device (ifindex {}) does not exist", route->ifindex));
  }
  Fixed fixed;
  if (route->src) {
    fixed = fixedFrom(*route->src);
  }
  return withContext(complete(*link, fixed),
                     fmt::format("interface {} (of the route)", link->name));
}

Outcome Selector::select(const std::optional<Route>& can_reach_route,
                         std::string can_reach_failure) {
  Outcome out;
  if (!opts_.ipv4 && !opts_.ipv6) {
    out.result = invalidInput("selecting the external interface: no IP family enabled");
    return out;
  }
  if (opts_.ifaces.empty() && opts_.regexes.empty() && !opts_.can_reach) {
    out.result = withContext(byDefaults(), "selecting the external interface");
    return out;
  }
  auto attempt = [&out](std::string candidate, Result<ExternalInterface> r) {
    if (r) {
      out.result = std::move(r);
      return true;
    }
    out.failed.push_back(
        Attempt{.candidate = std::move(candidate), .reason = std::move(r.error().message)});
    return false;
  };
  for (const std::string& value : opts_.ifaces) {
    if (attempt("-iface " + value, byIface(value))) {
      return out;
    }
  }
  for (const std::string& pattern : opts_.regexes) {
    if (attempt("-iface-regex " + pattern, byRegex(pattern))) {
      return out;
    }
  }
  if (opts_.can_reach) {
    if (attempt("-iface-can-reach " + opts_.can_reach->toString(),
                byRoute(can_reach_route, can_reach_failure))) {
      return out;
    }
  }
  std::string message = "no usable external interface: ";
  for (size_t i = 0; i < out.failed.size(); ++i) {
    if (i > 0) {
      message += "; ";
    }
    message += out.failed[i].text();
  }
  out.result = makeError(Errc::NotFound, std::move(message));
  return out;
}

std::optional<int> defaultRouteIfindex(const std::vector<Route>& routes) {
  const Route* best = nullptr;
  for (const Route& r : routes) {
    if (r.dst.prefix() != 0 || r.type != kRouteUnicast || r.ifindex == 0 || r.table != kMainTable) {
      continue;
    }
    if (best == nullptr || effectiveMetric(r) < effectiveMetric(*best)) {
      best = &r;
    }
  }
  if (best == nullptr) {
    return std::nullopt;
  }
  return best->ifindex;
}

}  // namespace

Result<InterfaceSnapshot> snapshotInterfaces(Kernel& kernel) {
  InterfaceSnapshot snap;
  auto links = kernel.links();
  if (!links) {
    return links.error().context("reading interfaces");
  }
  snap.links = std::move(*links);
  auto addrs = kernel.allAddresses();
  if (!addrs) {
    return addrs.error().context("reading interface addresses");
  }
  snap.addrs = std::move(*addrs);
  auto v4 = kernel.routes(RouteFilter{.family = Family::V4, .table = kMainTable, .ifindex = {}});
  if (!v4) {
    return v4.error().context("reading IPv4 routes");
  }
  snap.default_v4_ifindex = defaultRouteIfindex(*v4);
  auto v6 = kernel.routes(RouteFilter{.family = Family::V6, .table = kMainTable, .ifindex = {}});
  if (v6) {
    snap.default_v6_ifindex = defaultRouteIfindex(*v6);
  } else if (v6.error().sys_errno != EAFNOSUPPORT) {
    return v6.error().context("reading IPv6 routes");
  }
  return snap;
}

Result<ExternalInterface> selectExternalInterface(const InterfaceSnapshot& snapshot,
                                                  const IfaceOptions& options,
                                                  const std::optional<Route>& can_reach_route) {
  return Selector(snapshot, options).select(can_reach_route, {}).result;
}

Result<ExternalInterface> selectExternalInterface(Kernel& kernel, const IfaceOptions& options) {
  auto snap = snapshotInterfaces(kernel);
  if (!snap) {
    return snap.error().context("selecting the external interface");
  }
  std::optional<Route> route;
  std::string failure;
  if (options.can_reach) {
    auto got = kernel.routeGet(*options.can_reach);
    if (got) {
      route = std::move(*got);
    } else {
      failure = got.error().message;
    }
  }
  Outcome out = Selector(*snap, options).select(route, std::move(failure));
  if (out.result) {
    auto log = logger("kernel");
    for (const Attempt& a : out.failed) {
      log->info("could not use {}", a.text());
    }
  }
  return std::move(out.result);
}

std::string describe(const ExternalInterface& ext) {
  std::string text =
      fmt::format("{} (ifindex {}, mtu {})", ext.link.name, ext.link.index, ext.link.mtu);
  if (ext.iface_addr) {
    text += fmt::format(", IPv4 {}", ext.iface_addr->toString());
  }
  if (ext.ext_addr && ext.ext_addr != ext.iface_addr) {
    text += fmt::format(", external {}", ext.ext_addr->toString());
  }
  if (ext.iface_v6_addr) {
    text += fmt::format(", IPv6 {}", ext.iface_v6_addr->toString());
  }
  if (ext.ext_v6_addr && ext.ext_v6_addr != ext.iface_v6_addr) {
    text += fmt::format(", external IPv6 {}", ext.ext_v6_addr->toString());
  }
  return text;
}

}  // namespace flannel::kernel
