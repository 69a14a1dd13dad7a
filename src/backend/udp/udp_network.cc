#include "backend/udp/udp_network.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <string_view>
#include <thread>
#include <tuple>

#include "core/json_util.h"
#include "core/log.h"

namespace flannel::backend::udp {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("backend.udp");
}

constexpr unsigned kMaxQueues = 8;

}  // namespace

Result<UdpConfig> parseUdpConfig(std::string_view backend_json) noexcept {
  try {
    auto doc = parseJsonObject(backend_json, "Backend");
    if (!doc) {
      return doc.error();
    }
    auto fail = [](const Error& e) { return e.context("udp backend config"); };
    UdpConfig c;
    auto port = getUint(*doc, "Port", "Backend.Port", 65535);
    if (!port) {
      return fail(port.error());
    }
    if (*port && **port != 0) {
      c.port = static_cast<uint16_t>(**port);
    }
    auto queues = getUint(*doc, "Queues", "Backend.Queues", kMaxQueues);
    if (!queues) {
      return fail(queues.error());
    }
    if (*queues) {
      c.queues = static_cast<unsigned>(**queues);
    }
    for (auto [name, field, dest] :
         {std::tuple{"Offload", "Backend.Offload", &c.offload},
          std::tuple{"ThreadPerDirection", "Backend.ThreadPerDirection", &c.thread_per_direction},
          std::tuple{"TcBpf", "Backend.TcBpf", &c.tc_bpf}}) {
      auto b = getBool(*doc, name, field);
      if (!b) {
        return fail(b.error());
      }
      if (*b) {
        *dest = **b;
      }
    }
    return c;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("udp backend config: {}", e.what()));
  }
}

UdpNetwork::UdpNetwork(NetworkConfig config, kernel::ExternalInterface ext, kernel::Kernel& kernel)
    : config_(std::move(config)), ext_(std::move(ext)), kernel_(kernel) {}

UdpNetwork::~UdpNetwork() {
  tc_.reset();  // detaches the programs
  if (dataplane_) {
    dataplane_->stop();
  }
}

Result<std::unique_ptr<Network>> UdpNetwork::create(const Context& ctx) {
  if (!ctx.config.enable_ipv4 || !ctx.config.ruleNetwork()) {
    return invalidInput("udp: the udp backend carries IPv4 only; the config needs Network");
  }
  if (ctx.config.enable_ipv6) {
    return invalidInput("udp: IPv6 (EnableIPv6) is not supported by the udp backend");
  }
  if (!ctx.ext.iface_addr || !ctx.ext.ext_addr) {
    return invalidInput(fmt::format("udp: interface {} has no IPv4 address to bind the socket to",
                                    ctx.ext.link.name));
  }
  if (ctx.packet_io == nullptr) {
    return makeError(Errc::Internal, "udp: no packet I/O available");
  }
  auto cfg = parseUdpConfig(ctx.config.backend_json);
  if (!cfg) {
    return cfg.error();
  }
  if (ctx.ext.mtu() <= kUdpOverhead + kIpv4MinHeader) {
    return invalidInput(
        fmt::format("udp: MTU {} of {} is too small", ctx.ext.mtu(), ctx.ext.link.name));
  }
  std::unique_ptr<UdpNetwork> net(new UdpNetwork(ctx.config, ctx.ext, *ctx.kernel));
  net->udp_ = *cfg;
  net->mtu_ = ctx.ext.mtu() - kUdpOverhead;
  unsigned queues = cfg->queues;
  if (queues == 0) {
    queues = std::clamp(std::thread::hardware_concurrency(), 1u, kMaxQueues);
  }
  auto tun = ctx.packet_io->openTun(
      kernel::TunOptions{.name_template = "flannel%d", .queues = queues, .offload = cfg->offload});
  if (!tun) {
    return tun.error().context("udp");
  }
  const std::string name = tun->name;
  auto sockets = ctx.packet_io->openUdp(
      kernel::UdpOptions{.bind = {.addr = *ctx.ext.iface_addr, .port = cfg->port},
                         .sockets = static_cast<unsigned>(tun->queues.size()),
                         .offload = cfg->offload});
  if (!sockets) {
    return sockets.error().context("udp");
  }
  auto link = ctx.kernel->linkByName(name);
  if (!link) {
    return link.error().context(fmt::format("udp: TUN device {}", name));
  }
  net->tun_index_ = link->index;
  net->tun_name_ = name;
  if (auto r = ctx.kernel->setMtu(link->index, net->mtu_); !r) {
    return r.error().context("udp");
  }
  const bool gso = !sockets->empty() && (*sockets)[0]->gso();
  const bool gro = !sockets->empty() && (*sockets)[0]->gro();
  const bool steered = !sockets->empty() && (*sockets)[0]->steered();
  log()->info(
      "udp: device {} (MTU {}), {} queue(s){}, UDP {}:{}; offloads: TUN TSO {}, USO {}, UDP GSO "
      "{}, GRO {}",
      name, net->mtu_, tun->queues.size(), steered ? " steered by inner flow" : "",
      ctx.ext.iface_addr->toString(), cfg->port, tun->vnet_hdr ? "on" : "off",
      tun->uso ? "on" : "off", gso ? "on" : "off", gro ? "on" : "off");
  // FLANNEL_UDP_TC_BPF=0 (or false) in flanneld's environment: this node stays on the user-space
  // path whatever the cluster's config says (a per-node escape hatch).
  if (const char* env = std::getenv("FLANNEL_UDP_TC_BPF");
      cfg->tc_bpf && env != nullptr &&
      (std::string_view(env) == "0" || std::string_view(env) == "false")) {
    log()->info("udp: in-kernel fast path off on this node (FLANNEL_UDP_TC_BPF={})", env);
    net->udp_.tc_bpf = false;
  } else if (cfg->tc_bpf) {
    // Attached by run(), after subnet.env is written: loading and verifying the programs takes
    // longer than all the rest of start-up.
    net->packet_io_ = ctx.packet_io;
    net->fast_path_options_ = kernel::UdpFastPathOptions{.local_ip = *ctx.ext.iface_addr,
                                                         .port = cfg->port,
                                                         .ext_ifindex = ctx.ext.link.index,
                                                         .tun_ifindex = link->index,
                                                         .virtual_ext = !ctx.ext.link.kind.empty()};
    // FLANNEL_UDP_TC_ATTACH=legacy: classic tc filters even where the kernel has tcx.
    if (const char* attach = std::getenv("FLANNEL_UDP_TC_ATTACH");
        attach != nullptr && std::string_view(attach) == "legacy") {
      net->fast_path_options_.legacy_tc = true;
    }
  }
  net->dataplane_ = std::make_unique<DataPlane>(
      std::move(*tun), std::move(*sockets),
      DataPlaneConfig{.port = cfg->port, .thread_per_direction = cfg->thread_per_direction});
  return std::unique_ptr<Network>(std::move(net));
}

LeaseAttrs UdpNetwork::leaseAttrs() const {
  LeaseAttrs a;
  a.public_ip = *ext_.ext_addr;  // PublicIP only: no BackendType, no BackendData (SPEC §5.3)
  return a;
}

Result<void> UdpNetwork::configure(const Lease& own) {
  if (!own.subnet.ipv4) {
    return invalidInput("udp: the lease has no IPv4 subnet");
  }
  own_ = own;
  // Our ICMP errors come out of the TUN with our own TUN address as source; the kernel drops
  // packets from a local address unless accept_local is on for the device. (decap() drops
  // datagrams whose inner source lies in our own subnet, so peers cannot use this to spoof.)
  if (auto r = kernel_.setSysctl(fmt::format("net/ipv4/conf/{}/accept_local", tun_name_), "1");
      !r) {
    log()->warn("udp: {}; ICMP net-unreachable errors will not reach local senders",
                r.error().message);
  }
  if (auto r = kernel_.setLinkUp(tun_index_); !r) {
    return r.error().context("udp");
  }
  publish();
  return {};
}

void UdpNetwork::announce() {
  if (!tc_ || !fast_path_options_.virtual_ext || !own_) {
    return;
  }
  const Ip4 self = own_->subnet.ipv4->addr().v4();
  std::map<Ip4, Ip4> to;  // PublicIP -> one of its subnets' network address
  for (const auto& [net, ip] : peers_) {
    to.emplace(ip, net.addr().v4());
  }
  for (const auto& [ip, subnet] : to) {
    if (auto r = tc_->announce(ip, buildAnnouncement(self, subnet)); !r) {
      log()->debug("udp: {} ({})", r.error().message, ip.toString());
    }
  }
}

void UdpNetwork::attachFastPath() {
  if (packet_io_ == nullptr || tc_ || !own_) {
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto tc = packet_io_->attachUdpFastPath(fast_path_options_);
  if (!tc) {
    log()->warn("udp: {}; all packets take the user-space path", tc.error().message);
    return;
  }
  const auto& own = *own_->subnet.ipv4;
  if (auto r = (*tc)->enable(own.addr().v4(), own.prefix()); !r) {
    log()->warn("udp: {}; detaching it, all packets take the user-space path", r.error().message);
    return;
  }
  tc_ = std::move(*tc);
  publish();  // the peers known so far
  // A NIC that merges our datagrams (GRO, which the sockets' UDP_GRO asks for) would hand the
  // decap program bundles it cannot take apart, all of which would go to user space: the
  // programs need them one by one.
  const size_t unmerged = dataplane_->setKernelGro(false);
  log()->info(
      "udp: in-kernel fast path attached in {} ms (tc BPF on {} egress, ifindex {} ingress); "
      "UDP GRO off on {} socket(s){}",
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count(),
      tun_name_, fast_path_options_.ext_ifindex, unmerged,
      fast_path_options_.virtual_ext
          ? "; the external interface is virtual: TCP/UDP go through the kernel only to peers "
            "that announce a kernel decap, to the others through user space, which completes "
            "their checksums"
          : "");
}

Result<void> UdpNetwork::acceptPeer(const Lease& peer) const {
  // No BackendType filter (SPEC §5.3); what we need is an IPv4 subnet and a PublicIP.
  if (!peer.subnet.ipv4) {
    return invalidInput("no IPv4 subnet (the udp backend is IPv4 only)");
  }
  if (peer.attrs.public_ip.isUnspecified()) {
    return invalidInput("no PublicIP");
  }
  return {};
}

kernel::DesiredState UdpNetwork::desiredState(const std::vector<Peer>& /*peers*/) const {
  kernel::DesiredState d;
  if (!own_) {
    return d;
  }
  d.addresses.push_back(
      kernel::Addr{.ifindex = tun_index_, .address = own_->subnet.ipv4->addr(), .prefix_len = 32});
  kernel::Route r;
  r.dst = *config_.ruleNetwork();
  r.ifindex = tun_index_;
  d.routes.push_back(r);
  return d;
}

kernel::Ownership UdpNetwork::ownership() const {
  kernel::Ownership o;
  o.devices.push_back(tun_index_);
  o.networks.push_back(*config_.ruleNetwork());
  return o;
}

void UdpNetwork::peersAdded(const std::vector<Lease>& added) {
  for (const auto& l : added) {
    if (l.subnet.ipv4) {
      peers_[*l.subnet.ipv4] = l.attrs.public_ip;
    }
  }
  publish();
}

void UdpNetwork::peersRemoved(const std::vector<Lease>& removed) {
  for (const auto& l : removed) {
    if (l.subnet.ipv4) {
      peers_.erase(*l.subnet.ipv4);
    }
  }
  publish();
}

void UdpNetwork::publish() {
  if (!own_) {
    return;
  }
  std::vector<RouteTable::Entry> entries;
  entries.reserve(peers_.size());
  for (const auto& [net, ip] : peers_) {
    entries.push_back({.network = net.addr().v4(), .prefix_len = net.prefix(), .peer = ip});
  }
  if (tc_) {
    // A failure leaves the entries in question to the user-space path; the next publish
    // retries them.
    std::vector<kernel::UdpFastPathRoute> routes;
    routes.reserve(entries.size());
    for (const auto& e : entries) {
      routes.push_back({.network = e.network, .prefix_len = e.prefix_len, .peer = e.peer});
    }
    if (auto r = tc_->setPeers(routes); !r) {
      log()->warn("udp: {}", r.error().message);
    }
  }
  announce();  // new peers learn at once that we decapsulate in the kernel
  const auto& own = *own_->subnet.ipv4;
  dataplane_->publish(
      std::make_shared<const RouteTable>(own.addr().v4(), own.prefix(), std::move(entries)));
}

async::Awaitable<void> UdpNetwork::run() {
  if (!own_) {
    co_return;
  }
  // The ICMP error source is our TUN address; set now that the lease is known.
  dataplane_->setTunAddress(own_->subnet.ipv4->addr().v4());
  dataplane_->start();
  attachFastPath();
  log()->info("udp data path running ({} queue(s), {} thread(s) each)", dataplane_->workers(),
              udp_.thread_per_direction ? 2 : 1);
  // Until cancelled; on a virtual link the fast path announces itself every second
  // (announce()): a peer that stops hearing it for 5 s sends TCP/UDP through user space again.
  // Elsewhere nothing wakes up.
  net::steady_timer timer(co_await net::this_coro::executor);
  const bool announcing = tc_ && fast_path_options_.virtual_ext;
  for (;;) {
    if (announcing) {
      timer.expires_after(std::chrono::seconds(1));
    } else {
      timer.expires_at(net::steady_timer::time_point::max());
    }
    auto [ec] = co_await timer.async_wait(async::use_nothrow);
    if (ec) {
      break;
    }
    announce();
  }
  dataplane_->stop();
  const auto c = dataplane_->counters();
  const auto k = tc_ ? tc_->stats() : kernel::UdpFastPathStats{};
  log()->info(
      "udp data path stopped: {} packets out, {} in ({} and {} of them in the kernel), {} dropped",
      c.udp_tx_packets + k.tx_packets, c.udp_rx_packets + k.rx_packets, k.tx_packets, k.rx_packets,
      [&] {
        uint64_t n = 0;
        for (auto d : c.drops) {
          n += d;
        }
        return n;
      }());
}

std::vector<Stat> UdpNetwork::stats() const {
  std::vector<Stat> out;
  const auto c = dataplane_->counters();
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    out.push_back(Stat{.name = name, .help = help, .labels = {}, .value = double(v)});
  };
  counter("flannel_udp_tun_rx_packets_total", "Packets read from the TUN device.",
          c.tun_rx_packets);
  counter("flannel_udp_tun_rx_bytes_total", "Bytes read from the TUN device.", c.tun_rx_bytes);
  counter("flannel_udp_tun_rx_super_packets_total",
          "TSO/USO super packets read from the TUN and cut into segments.", c.tun_rx_super);
  const auto k = tc_ ? tc_->stats() : kernel::UdpFastPathStats{};
  counter("flannel_udp_tx_packets_total", "Datagrams sent to peers (both paths).",
          c.udp_tx_packets + k.tx_packets);
  counter("flannel_udp_tx_bytes_total", "Bytes sent to peers (both paths).",
          c.udp_tx_bytes + k.tx_bytes);
  counter("flannel_udp_tx_errors_total", "Datagrams the kernel refused to send.", c.udp_tx_errors);
  counter("flannel_udp_rx_packets_total", "Datagrams received from peers (both paths).",
          c.udp_rx_packets + k.rx_packets);
  counter("flannel_udp_rx_bytes_total", "Bytes received from peers (both paths).",
          c.udp_rx_bytes + k.rx_bytes);
  out.push_back(Stat{.name = "flannel_udp_tc_bpf_active",
                     .help = "1 when the in-kernel fast path (tc BPF) is attached.",
                     .labels = {},
                     .value = tc_ ? 1.0 : 0.0});
  counter("flannel_udp_tc_tx_packets_total",
          "Datagrams encapsulated by the in-kernel fast path (part of flannel_udp_tx_packets).",
          k.tx_packets);
  counter("flannel_udp_tc_tx_bytes_total", "Bytes sent by the in-kernel fast path.", k.tx_bytes);
  counter("flannel_udp_tc_rx_packets_total",
          "Datagrams decapsulated by the in-kernel fast path (part of flannel_udp_rx_packets).",
          k.rx_packets);
  counter("flannel_udp_tc_rx_bytes_total", "Bytes received by the in-kernel fast path.",
          k.rx_bytes);
  counter("flannel_udp_tun_tx_packets_total", "Packets written to the TUN device.",
          c.tun_tx_packets);
  counter("flannel_udp_tun_tx_coalesced_total",
          "Received segments merged into super packets for the TUN.", c.tun_tx_coalesced);
  counter("flannel_udp_tun_tx_errors_total", "Packets the TUN device refused.", c.tun_tx_errors);
  counter("flannel_udp_icmp_unreachable_total",
          "ICMP net-unreachable errors returned for packets to unknown subnets.",
          c.icmp_unreachable);
  for (size_t i = 1; i < c.drops.size(); ++i) {
    out.push_back(Stat{.name = "flannel_udp_dropped_packets_total",
                       .help = "Packets dropped by the udp data path, by reason.",
                       .labels = {{"reason", dropName(static_cast<Drop>(i))}},
                       .value = double(c.drops[i])});
  }
  return out;
}

}  // namespace flannel::backend::udp
