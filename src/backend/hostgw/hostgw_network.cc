#include "backend/hostgw/hostgw_network.h"

#include <fmt/format.h>

#include "core/log.h"
#include "core/strings.h"

namespace flannel::backend::hostgw {

HostGwNetwork::HostGwNetwork(NetworkConfig config, kernel::ExternalInterface ext)
    : config_(std::move(config)), ext_(std::move(ext)) {}

Result<std::unique_ptr<Network>> HostGwNetwork::create(const Context& ctx) {
  const auto& e = ctx.ext;
  if (ctx.config.enable_ipv4 && e.ext_addr && e.iface_addr && *e.ext_addr != *e.iface_addr) {
    return invalidInput(fmt::format(
        "host-gw: the public IP {} differs from the interface address {} of {}; host-gw needs "
        "peers on one L2 segment and does not support NAT",
        e.ext_addr->toString(), e.iface_addr->toString(), e.link.name));
  }
  if (ctx.config.enable_ipv6 && e.ext_v6_addr && e.iface_v6_addr &&
      *e.ext_v6_addr != *e.iface_v6_addr) {
    return invalidInput(fmt::format(
        "host-gw: the public IPv6 {} differs from the interface address {} of {}; NAT is not "
        "supported",
        e.ext_v6_addr->toString(), e.iface_v6_addr->toString(), e.link.name));
  }
  return std::unique_ptr<Network>(new HostGwNetwork(ctx.config, ctx.ext));
}

LeaseAttrs HostGwNetwork::leaseAttrs() const {
  LeaseAttrs a;
  if (ext_.ext_addr && config_.enable_ipv4) {
    a.public_ip = *ext_.ext_addr;
  }
  if (ext_.ext_v6_addr && config_.enable_ipv6) {
    a.public_ipv6 = *ext_.ext_v6_addr;
  }
  a.backend_type = "host-gw";
  return a;
}

Result<void> HostGwNetwork::acceptPeer(const Lease& peer) const {
  if (peer.attrs.backend_type != "host-gw") {
    return invalidInput(
        fmt::format("BackendType {} is not host-gw", quoteForMessage(peer.attrs.backend_type)));
  }
  return {};
}

kernel::DesiredState HostGwNetwork::desiredState(const std::vector<Peer>& peers) const {
  kernel::DesiredState d;
  for (const auto& peer : peers) {
    const Lease& l = peer.lease;
    if (config_.enable_ipv4 && l.subnet.ipv4 && !l.attrs.public_ip.isUnspecified()) {
      if (peer.v4_on_link) {
        kernel::Route r;
        r.dst = *l.subnet.ipv4;
        r.via = l.attrs.public_ip;
        r.ifindex = ext_.link.index;
        d.routes.push_back(r);
      } else if (reported_.insert(l.attrs.public_ip.toString()).second) {
        logger("backend.host-gw")
            ->error(
                "peer {} ({}) is not on the L2 segment of {}: host-gw cannot route to it "
                "(use vxlan, with DirectRouting for the peers that are)",
                subnetKeyName(l.subnet), l.attrs.public_ip.toString(), ext_.link.name);
      }
    }
    if (config_.enable_ipv6 && l.subnet.ipv6 && l.attrs.public_ipv6) {
      if (peer.v6_on_link) {
        kernel::Route r;
        r.dst = *l.subnet.ipv6;
        r.via = *l.attrs.public_ipv6;
        r.ifindex = ext_.link.index;
        d.routes.push_back(r);
      } else if (reported_.insert(l.attrs.public_ipv6->toString()).second) {
        logger("backend.host-gw")
            ->error("peer {} ({}) is not on the L2 segment of {}: host-gw cannot route to it",
                    subnetKeyName(l.subnet), l.attrs.public_ipv6->toString(), ext_.link.name);
      }
    }
  }
  return d;
}

kernel::Ownership HostGwNetwork::ownership() const {
  kernel::Ownership o;
  if (config_.enable_ipv4 && config_.ruleNetwork()) {
    o.networks.push_back(*config_.ruleNetwork());
  }
  if (config_.enable_ipv6 && config_.ruleIPv6Network()) {
    o.networks.push_back(*config_.ruleIPv6Network());
  }
  return o;
}

}  // namespace flannel::backend::hostgw
