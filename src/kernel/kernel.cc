#include "kernel/kernel.h"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/strings.h"

namespace flannel::kernel {

namespace {

std::string devPart(int ifindex, std::string_view dev) {
  if (!dev.empty()) {
    return fmt::format("dev {}", dev);
  }
  return fmt::format("dev ifindex {}", ifindex);
}

std::string_view routeTypeName(uint8_t type) {
  switch (type) {
    case kRouteUnicast:
      return "";
    case kRouteLocal:
      return "local";
    case 3:
      return "broadcast";
    case 4:
      return "anycast";
    case 5:
      return "multicast";
    case 6:
      return "blackhole";
    case 7:
      return "unreachable";
    case 8:
      return "prohibit";
    case 9:
      return "throw";
    default:
      return "type?";
  }
}

std::string optIp(const std::optional<IpAddr>& ip) {
  return ip ? ip->toString() : std::string("none");
}

}  // namespace

std::optional<std::string> vxlanIncompatibility(const Link& existing, const VxlanSpec& spec) {
  if (existing.kind != "vxlan" || !existing.vxlan) {
    return fmt::format("link {} is of kind {} (want vxlan)", existing.name,
                       existing.kind.empty() ? std::string("<none>") : existing.kind);
  }
  const VxlanInfo& v = *existing.vxlan;
  if (v.vni != spec.vni) {
    return fmt::format("VNI {} (want {})", v.vni, spec.vni);
  }
  if (v.underlay_ifindex != spec.underlay_ifindex) {
    return fmt::format("vtep device ifindex {} (want {})", v.underlay_ifindex,
                       spec.underlay_ifindex);
  }
  if (v.local != spec.local) {
    return fmt::format("local address {} (want {})", optIp(v.local), optIp(spec.local));
  }
  if (v.group) {
    return fmt::format("multicast group {} (want none)", v.group->toString());
  }
  if (v.l2miss) {
    return std::string("l2miss on (want off)");
  }
  if (v.port > 0 && spec.port > 0 && v.port != spec.port) {
    return fmt::format("port {} (want {})", v.port, spec.port);
  }
  if (v.gbp != spec.gbp) {
    return fmt::format("gbp {} (want {})", v.gbp ? "on" : "off", spec.gbp ? "on" : "off");
  }
  return std::nullopt;
}

std::string Addr::toString() const {
  return fmt::format("{}/{}", address.toString(), prefix_len);
}

uint32_t effectiveMetric(const Route& r) {
  if (r.metric) {
    return *r.metric;
  }
  return r.dst.is6() ? kIpv6DefaultMetric : 0;
}

Errc errcFromErrno(int err) noexcept {
  switch (err) {
    case ENOENT:
    case ESRCH:
    case ENODEV:
    case ENXIO:
    case EADDRNOTAVAIL:
      return Errc::NotFound;
    case EEXIST:
    case EBUSY:
    case EADDRINUSE:
    case ENOTEMPTY:
      return Errc::Conflict;
    case EINVAL:
    case ERANGE:
    case E2BIG:
    case EAFNOSUPPORT:
    case EOPNOTSUPP:
      return Errc::InvalidInput;
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
      return Errc::Unavailable;
    case ETIMEDOUT:
      return Errc::Timeout;
    default:
      return Errc::Kernel;
  }
}

Error kernelError(std::string_view what, int err, std::string_view extack) {
  std::string msg = fmt::format("{}: {} (errno {})", what, std::strerror(err), err);
  if (!extack.empty()) {
    msg += fmt::format(": {}", extack);
  }
  return makeError(errcFromErrno(err), std::move(msg), err);
}

std::string describe(const Route& r, std::string_view dev) {
  std::string out;
  if (auto type = routeTypeName(r.type); !type.empty()) {
    out = fmt::format("{} ", type);
  }
  out += r.dst.toString();
  if (r.via) {
    out += fmt::format(" via {}", r.via->toString());
  }
  if (r.ifindex != 0 || !dev.empty()) {
    out += " " + devPart(r.ifindex, dev);
  }
  if (r.table != kMainTable) {
    out += fmt::format(" table {}", r.table);
  }
  if (r.protocol != kProtoBoot) {
    out += fmt::format(" proto {}", r.protocol);
  }
  if (r.scope != kScopeUniverse) {
    out += fmt::format(" scope {}", r.scope);
  }
  if (r.src) {
    out += fmt::format(" src {}", r.src->toString());
  }
  if (r.metric) {
    out += fmt::format(" metric {}", *r.metric);
  }
  if (r.onlink) {
    out += " onlink";
  }
  return out;
}

std::string describe(const Addr& a, std::string_view dev) {
  return fmt::format("{} {}", a.toString(), devPart(a.ifindex, dev));
}

std::string describe(const Neigh& n, std::string_view dev) {
  return fmt::format("{} lladdr {} {}", n.dst.toString(), n.lladdr.toString(),
                     devPart(n.ifindex, dev));
}

std::string describe(const Fdb& f, std::string_view dev) {
  return fmt::format("{} {} dst {}", f.mac.toString(), devPart(f.ifindex, dev), f.dst.toString());
}

Result<void> validateSysctlPath(std::string_view path) {
  auto bad = [&](std::string_view why) {
    return invalidInput(fmt::format("sysctl path {}: {}", quoteForMessage(path), why));
  };
  if (path.empty()) {
    return bad("empty");
  }
  if (path.front() == '/') {
    return bad("must be relative to /proc/sys");
  }
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    const std::string_view part = path.substr(start, end - start);
    if (part.empty()) {
      return bad("empty component");
    }
    if (part == "." || part == "..") {
      return bad("\".\" and \"..\" are not allowed");
    }
    if (part.find('\0') != std::string_view::npos) {
      return bad("NUL byte");
    }
    start = end + 1;
  }
  return ok();
}

}  // namespace flannel::kernel
