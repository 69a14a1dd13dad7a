#include "backend/vxlan/vxlan_network.h"

#include <fmt/format.h>

#include "core/json_util.h"
#include "core/log.h"
#include "core/strings.h"

namespace flannel::backend::vxlan {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("backend.vxlan");
}

std::string deviceName(bool v6, uint32_t vni) {
  return fmt::format("{}.{}", v6 ? "flannel-v6" : "flannel", vni);
}

}  // namespace

Result<VxlanConfig> parseVxlanConfig(std::string_view backend_json) noexcept {
  try {
    auto doc = parseJsonObject(backend_json, "Backend");
    if (!doc) {
      return doc.error();
    }
    VxlanConfig c;
    auto fail = [](const Error& e) { return e.context("vxlan backend config"); };
    auto vni = getUint(*doc, "VNI", "Backend.VNI", (1u << 24) - 1);
    if (!vni) {
      return fail(vni.error());
    }
    if (*vni) {
      c.vni = static_cast<uint32_t>(**vni);
    }
    auto port = getUint(*doc, "Port", "Backend.Port", 65535);
    if (!port) {
      return fail(port.error());
    }
    if (*port) {
      c.port = static_cast<uint16_t>(**port);
    }
    for (auto [name, field, dest] :
         {std::tuple{"GBP", "Backend.GBP", &c.gbp},
          std::tuple{"Learning", "Backend.Learning", &c.learning},
          std::tuple{"DirectRouting", "Backend.DirectRouting", &c.direct_routing}}) {
      auto b = getBool(*doc, name, field);
      if (!b) {
        return fail(b.error());
      }
      if (*b) {
        *dest = **b;
      }
    }
    auto mtu = getUint(*doc, "MTU", "Backend.MTU", 65535);
    if (!mtu) {
      return fail(mtu.error());
    }
    if (*mtu) {
      c.mtu = static_cast<uint32_t>(**mtu);
    }
    return c;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("vxlan backend config: {}", e.what()));
  }
}

std::string encodeVxlanData(uint32_t vni, const Mac& mac) {
  return fmt::format(R"({{"VNI":{},"VtepMAC":"{}"}})", vni, mac.toString());
}

Result<Mac> decodeVtepMac(std::string_view backend_data) noexcept {
  try {
    auto doc = parseJsonObject(backend_data, "BackendData");
    if (!doc) {
      return doc.error();
    }
    auto mac_text = getString(*doc, "VtepMAC", "BackendData.VtepMAC");
    if (!mac_text) {
      return mac_text.error();
    }
    if (!*mac_text) {
      return invalidInput("BackendData.VtepMAC: missing");
    }
    auto mac = Mac::parse(**mac_text);
    if (!mac) {
      return invalidInput(
          fmt::format("BackendData.VtepMAC {} is not a MAC address", quoteForMessage(**mac_text)));
    }
    return *mac;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("BackendData: {}", e.what()));
  }
}

VxlanNetwork::VxlanNetwork(NetworkConfig config, VxlanConfig cfg, kernel::ExternalInterface ext,
                           std::optional<kernel::Link> dev4, std::optional<kernel::Link> dev6,
                           kernel::Kernel* kernel)
    : config_(std::move(config)),
      cfg_(cfg),
      ext_(std::move(ext)),
      dev4_(std::move(dev4)),
      dev6_(std::move(dev6)),
      kernel_(kernel) {}

Result<std::unique_ptr<Network>> VxlanNetwork::create(const Context& ctx) {
  auto cfg = parseVxlanConfig(ctx.config.backend_json);
  if (!cfg) {
    return cfg.error();
  }
  if (cfg->mtu == 0) {
    cfg->mtu = ctx.ext.mtu();
  }
  std::optional<kernel::Link> dev[2];
  for (int v6 = 0; v6 < 2; ++v6) {
    bool enabled = v6 ? ctx.config.enable_ipv6 : ctx.config.enable_ipv4;
    if (!enabled) {
      continue;
    }
    std::optional<IpAddr> local;
    if (v6) {
      if (!ctx.ext.iface_v6_addr) {
        return invalidInput(fmt::format("vxlan: interface {} has no IPv6 address for flannel-v6.{}",
                                        ctx.ext.link.name, cfg->vni));
      }
      local = *ctx.ext.iface_v6_addr;
    } else {
      if (!ctx.ext.iface_addr) {
        return invalidInput(fmt::format("vxlan: interface {} has no IPv4 address for flannel.{}",
                                        ctx.ext.link.name, cfg->vni));
      }
      local = *ctx.ext.iface_addr;
    }
    kernel::VxlanSpec spec;
    spec.name = deviceName(v6, cfg->vni);
    spec.vni = cfg->vni;
    spec.local = local;
    spec.underlay_ifindex = ctx.ext.link.index;
    spec.port = cfg->port;
    spec.learning = cfg->learning;
    spec.gbp = cfg->gbp;
    auto link = ctx.kernel->ensureVxlan(spec);
    if (!link) {
      return link.error().context(fmt::format("creating vxlan device {}", spec.name));
    }
    uint32_t overhead = v6 ? kVxlanOverheadV6 : kVxlanOverheadV4;
    if (cfg->mtu <= overhead + 68) {
      return invalidInput(
          fmt::format("vxlan: MTU {} leaves no room for the {} byte overhead", cfg->mtu, overhead));
    }
    if (auto r = ctx.kernel->setMtu(link->index, cfg->mtu - overhead); !r) {
      return r.error();
    }
    link->mtu = cfg->mtu - overhead;
    // The device must not configure itself from router advertisements (SPEC.md §5.1).
    if (auto r = ctx.kernel->setSysctl(fmt::format("net/ipv6/conf/{}/accept_ra", spec.name), "0");
        !r) {
      log()->warn("{}: {}", spec.name, r.error().message);
    }
    log()->info("vxlan device {} (VNI {}, local {}, dev {}, MAC {}) ready", spec.name, spec.vni,
                local->toString(), ctx.ext.link.name, link->mac.toString());
    dev[v6] = *link;
  }
  return std::unique_ptr<Network>(
      new VxlanNetwork(ctx.config, *cfg, ctx.ext, dev[0], dev[1], ctx.kernel));
}

LeaseAttrs VxlanNetwork::leaseAttrs() const {
  LeaseAttrs a;
  if (ext_.ext_addr && config_.enable_ipv4) {
    a.public_ip = *ext_.ext_addr;
  }
  if (ext_.ext_v6_addr && config_.enable_ipv6) {
    a.public_ipv6 = *ext_.ext_v6_addr;
  }
  a.backend_type = "vxlan";
  if (dev4_) {
    a.backend_data = encodeVxlanData(cfg_.vni, dev4_->mac);
  }
  if (dev6_) {
    a.backend_v6_data = encodeVxlanData(cfg_.vni, dev6_->mac);
  }
  return a;
}

uint32_t VxlanNetwork::mtu() const {
  // Pods use one MTU for both families: the smaller tunnel's.
  return cfg_.mtu - (dev6_ ? kVxlanOverheadV6 : kVxlanOverheadV4);
}

Result<void> VxlanNetwork::configure(const Lease& own) {
  own_ = own;
  for (const auto* dev : {&dev4_, &dev6_}) {
    if (*dev && kernel_ != nullptr) {
      if (auto r = kernel_->setLinkUp((*dev)->index); !r) {
        return r.error().context(fmt::format("bringing up {}", (*dev)->name));
      }
    }
  }
  return {};
}

Result<void> VxlanNetwork::acceptPeer(const Lease& peer) const {
  if (peer.attrs.backend_type != "vxlan") {
    return invalidInput(
        fmt::format("BackendType {} is not vxlan", quoteForMessage(peer.attrs.backend_type)));
  }
  if (dev4_ && peer.subnet.ipv4) {
    auto mac = decodeVtepMac(peer.attrs.backend_data);
    if (!mac) {
      return mac.error();
    }
  }
  if (dev6_ && peer.subnet.ipv6) {
    if (!peer.attrs.public_ipv6) {
      return invalidInput("it has an IPv6 subnet but no PublicIPv6");
    }
    auto mac = decodeVtepMac(peer.attrs.backend_v6_data);
    if (!mac) {
      return mac.error().context("BackendV6Data");
    }
  }
  return {};
}

kernel::DesiredState VxlanNetwork::desiredState(const std::vector<Peer>& peers) const {
  kernel::DesiredState d;
  if (own_) {
    if (dev4_ && own_->subnet.ipv4) {
      d.addresses.push_back({dev4_->index, own_->subnet.ipv4->addr(), 32});
    }
    if (dev6_ && own_->subnet.ipv6) {
      d.addresses.push_back({dev6_->index, own_->subnet.ipv6->addr(), 128});
    }
  }
  for (const auto& peer : peers) {
    const Lease& l = peer.lease;
    struct Side {
      const std::optional<kernel::Link>& dev;
      const std::optional<IpNet>& subnet;
      std::optional<IpAddr> public_ip;
      const std::string& data;
      bool on_link;
    };
    std::optional<IpAddr> pub4;
    if (!l.attrs.public_ip.isUnspecified()) {
      pub4 = l.attrs.public_ip;
    }
    std::optional<IpAddr> pub6;
    if (l.attrs.public_ipv6) {
      pub6 = *l.attrs.public_ipv6;
    }
    for (const Side& s :
         {Side{dev4_, l.subnet.ipv4, pub4, l.attrs.backend_data, peer.v4_on_link},
          Side{dev6_, l.subnet.ipv6, pub6, l.attrs.backend_v6_data, peer.v6_on_link}}) {
      if (!s.dev || !s.subnet || !s.public_ip) {
        continue;
      }
      if (cfg_.direct_routing && s.on_link) {
        kernel::Route r;
        r.dst = *s.subnet;
        r.via = *s.public_ip;
        d.routes.push_back(r);
        continue;
      }
      auto mac = decodeVtepMac(s.data);
      if (!mac) {
        continue;  // rejected by acceptPeer() already
      }
      const IpAddr next_hop = s.subnet->addr();
      d.fdb.push_back({s.dev->index, *mac, *s.public_ip, true});
      d.neighbours.push_back({s.dev->index, next_hop, *mac, true});
      kernel::Route r;
      r.dst = *s.subnet;
      r.via = next_hop;
      r.ifindex = s.dev->index;
      r.onlink = true;
      d.routes.push_back(r);
    }
  }
  return d;
}

kernel::Ownership VxlanNetwork::ownership() const {
  kernel::Ownership o;
  for (const auto* dev : {&dev4_, &dev6_}) {
    if (*dev) {
      o.devices.push_back((*dev)->index);
    }
  }
  if (config_.enable_ipv4 && config_.ruleNetwork()) {
    o.networks.push_back(*config_.ruleNetwork());
  }
  if (config_.enable_ipv6 && config_.ruleIPv6Network()) {
    o.networks.push_back(*config_.ruleIPv6Network());
  }
  return o;
}

}  // namespace flannel::backend::vxlan
