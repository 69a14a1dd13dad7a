#include "daemon/daemon.h"

#include <csignal>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "async/task_group.h"
#include "backend/backend.h"
#include "core/log.h"
#include "core/subnet_env.h"
#include "daemon/health.h"
#include "daemon/lease_keeper.h"
#include "daemon/metrics.h"
#include "daemon/network_runner.h"
#include "daemon/sd_notify.h"
#include "kernel/iface_select.h"
#include "kernel/netlink/netlink_kernel.h"
#include "kernel/tun/linux_packet_io.h"
#include "store/etcd/etcd_store.h"
#include "store/kube/client_config.h"
#include "store/kube/kube_client.h"
#include "store/kube/kube_store.h"
#include "traffic/iptables/iptables_rule_table.h"
#include "traffic/nft/nft_chain_reader.h"
#include "traffic/nft/nft_rule_table.h"
#include "traffic/plan.h"
#include "traffic/resync.h"

namespace flannel::daemon {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("daemon");
}

// Everything one run owns, destroyed in reverse order of declaration.
struct Daemon {
  explicit Daemon(const Options& o, net::io_context& ctx)
      : options(o),
        io(ctx),
        group(ctx.get_executor(), "flanneld",
              [this](const std::string& task, std::exception_ptr) {
                finish(1, fmt::format("task {} failed; stopping", task));
              }),
        stop(ctx) {}

  const Options& options;
  net::io_context& io;
  async::TaskGroup group;
  net::steady_timer stop;  // cancelled to end the run
  int exit_code = 0;
  bool stopping = false;

  std::shared_ptr<CommandRunner> runner = std::make_shared<SpawnCommandRunner>();
  std::unique_ptr<kernel::Kernel> kernel;
  kernel::LinuxPacketIo packet_io;
  std::unique_ptr<store::SubnetStore> store;
  store::kube::KubeStore* kube = nullptr;  // set in kube mode (same object as `store`)
  std::unique_ptr<backend::Network> network;
  std::unique_ptr<traffic::RuleTable> rules;
  std::unique_ptr<NetworkRunner> runner_loop;
  std::unique_ptr<LeaseKeeper> keeper;
  Metrics metrics;
  std::unique_ptr<HealthServer> health;

  void finish(int code, const std::string& why) {
    if (stopping) {
      return;
    }
    stopping = true;
    exit_code = code;
    if (code == 0) {
      log()->info("{}", why);
    } else {
      log()->error("{}", why);
    }
    // Expire rather than cancel: a cancel is lost when nobody waits yet (a start-up failure
    // can happen before runAll() waits), an expired timer completes any later wait at once.
    stop.expires_at(net::steady_timer::time_point::min());
  }
};

Result<std::unique_ptr<store::SubnetStore>> makeEtcdStore(const Options& o, net::io_context& io) {
  store::etcd::EtcdOptions eo;
  eo.endpoints = o.etcdEndpointList();
  // TLS client authentication only with both files, as flannel; a CA alone is honoured too.
  eo.tls.ca_file = o.etcd_cafile;
  if (!o.etcd_certfile.empty() && !o.etcd_keyfile.empty()) {
    eo.tls.cert_file = o.etcd_certfile;
    eo.tls.key_file = o.etcd_keyfile;
  } else if (!o.etcd_certfile.empty() || !o.etcd_keyfile.empty()) {
    log()->warn("-etcd-certfile and -etcd-keyfile must be given together; ignoring the one given");
  }
  eo.username = o.etcd_username;
  eo.password = o.etcd_password;
  auto kv = store::etcd::EtcdKv::create(io.get_executor(), std::move(eo));
  if (!kv) {
    return kv.error();
  }
  store::etcd::EtcdStoreOptions so;
  so.prefix = o.etcd_prefix;
  return std::unique_ptr<store::SubnetStore>(
      std::make_unique<store::etcd::EtcdStore>(std::move(*kv), so));
}

kernel::IfaceOptions ifaceOptions(const Options& o, const NetworkConfig& config) {
  kernel::IfaceOptions io;
  io.ifaces = o.iface;
  io.regexes = o.iface_regex;
  if (!o.iface_can_reach.empty()) {
    if (auto ip = IpAddr::parse(o.iface_can_reach)) {
      io.can_reach = *ip;
    }
  }
  if (!o.public_ip.empty()) {
    io.public_ip = Ip4::parse(o.public_ip).value();  // validated by the option parser
  }
  if (!o.public_ipv6.empty()) {
    io.public_ipv6 = Ip6::parse(o.public_ipv6).value();
  }
  io.ipv4 = config.enable_ipv4;
  io.ipv6 = config.enable_ipv6;
  return io;
}

SubnetEnv subnetEnvFor(const NetworkConfig& config, const Lease& lease, uint32_t mtu,
                       bool ip_masq) {
  SubnetEnv env;
  if (config.enable_ipv4) {
    env.network = config.network;
    env.subnet = lease.subnet.ipv4;
  }
  if (config.enable_ipv6) {
    env.ipv6_network = config.ipv6_network;
    env.ipv6_subnet = lease.subnet.ipv6;
  }
  env.mtu = mtu;
  env.ipmasq = ip_masq;
  return env;
}

async::Awaitable<void> sleepFor(std::chrono::milliseconds d) {
  net::steady_timer t(co_await net::this_coro::executor, d);
  co_await t.async_wait(async::use_awaitable);
}

// Sets up traffic rules (SPEC.md §1.4 step 11, §6): cleans the other mode's leftovers,
// recycles stale masquerade rules, installs ours. Returns the rules to keep in place.
Result<traffic::RuleSet> setUpRules(Daemon& d, const NetworkConfig& config, const Lease& lease,
                                    const SubnetEnv& previous) {
  const Options& o = d.options;
  if (!o.ip_masq && !o.iptables_forward_rules) {
    return traffic::RuleSet{};
  }
  std::vector<Family> families;
  if (config.enable_ipv4) {
    families.push_back(Family::V4);
  }
  if (config.enable_ipv6) {
    families.push_back(Family::V6);
  }
  if (config.enable_nftables) {
    auto t = traffic::nft::NftRuleTable::create();
    if (!t) {
      return t.error().context("nftables mode (EnableNFTables)");
    }
    d.rules = std::move(*t);
    if (auto other = traffic::iptables::IptablesRuleTable::create(d.runner); other) {
      for (auto f : families) {
        if (auto r = (*other)->removeAll(f); !r) {
          log()->warn("removing iptables rules left by an earlier run: {}", r.error().message);
        }
      }
    }
  } else {
    auto reader = traffic::nft::NftChainReader::create();
    auto t = traffic::iptables::IptablesRuleTable::create(d.runner, {},
                                                          reader ? std::move(*reader) : nullptr);
    if (!t) {
      return t.error().context("iptables mode");
    }
    d.rules = std::move(*t);
    if (auto other = traffic::nft::NftRuleTable::create(); other) {
      for (auto f : families) {
        if (auto r = (*other)->removeAll(f); !r) {
          log()->warn("removing nftables rules left by an earlier run: {}", r.error().message);
        }
      }
    }
  }
  if (o.ip_masq) {
    auto stale = traffic::staleMasqRules(previous, config, lease.subnet);
    if (auto r = d.rules->removeRules(stale); !r) {
      return r.error().context("recycling masquerade rules of the previous subnet");
    }
  }
  traffic::PlanOptions po;
  po.ip_masq = o.ip_masq;
  po.forward_rules = o.iptables_forward_rules;
  po.fully_random = !o.ip_masq_fully_random_disable && d.rules->supportsFullyRandom();
  auto rules = traffic::plan(config, lease.subnet, po);
  if (!rules) {
    return rules.error();
  }
  // After a restart our rules are usually all still there: checking is in-process, applying
  // forks iptables-restore, so only apply what is missing.
  if (auto drift = d.rules->missing(*rules); drift && !drift->any()) {
    log()->info("{} rules already in place (ip-masq {}, forward rules {})", d.rules->mechanism(),
                o.ip_masq ? "on" : "off", o.iptables_forward_rules ? "on" : "off");
    return rules;
  }
  if (auto r = d.rules->apply(*rules); !r) {
    return r.error().context(fmt::format("installing {} rules", d.rules->mechanism()));
  }
  log()->info("{} rules installed (ip-masq {}, forward rules {})", d.rules->mechanism(),
              o.ip_masq ? "on" : "off", o.iptables_forward_rules ? "on" : "off");
  return rules;
}

async::Awaitable<void> rulesResync(Daemon* d, traffic::RuleSet rules) {
  traffic::RuleResync resync(*d->rules, logger("traffic"));
  const auto period = std::chrono::seconds(d->options.iptables_resync);
  for (;;) {
    co_await sleepFor(period);
    resync.runOnce(rules);
  }
}

// -ip-blackhole-route (newest flannel): a blackhole route for our own pod subnet, so that its
// traffic never leaks to the default route while no pod (cni0) covers it. It carries a high
// metric so it never replaces the connected route of the pod bridge, and is re-ensured every
// -iptables-resync seconds, the first time after one period, as flannel does.
inline constexpr uint32_t kBlackholeMetric = 10000;

async::Awaitable<void> blackholeRoutes(Daemon* d, Lease lease) {
  const auto period = std::chrono::seconds(d->options.iptables_resync);
  bool logged = false;
  for (;;) {
    co_await sleepFor(period);
    for (const auto& subnet : {lease.subnet.ipv4, lease.subnet.ipv6}) {
      if (!subnet) {
        continue;
      }
      kernel::Route r;
      r.dst = *subnet;
      r.type = kernel::kRouteBlackhole;
      r.metric = kBlackholeMetric;
      if (auto ok = d->kernel->replaceRoute(r); !ok) {
        log()->error("blackhole route for {}: {}", subnet->toString(), ok.error().message);
      } else if (!logged) {
        log()->info("blackhole route for {} in place (metric {})", subnet->toString(),
                    kBlackholeMetric);
      }
    }
    logged = true;
  }
}

async::Awaitable<void> keepLease(Daemon* d) {
  auto lost = co_await d->keeper->run();
  d->finish(1,
            fmt::format("lease lost: {}; exiting so that a restart re-acquires one", lost.message));
}

async::Awaitable<void> runNetwork(Daemon* d) {
  auto lost = co_await d->runner_loop->run();
  d->finish(1,
            fmt::format("lease lost: {}; exiting so that a restart re-acquires one", lost.message));
}

async::Awaitable<void> start(Daemon* d) {
  const Options& o = d->options;
  auto fail = [d](const std::string& what) { d->finish(1, what); };

  auto previous = readSubnetEnv(o.subnet_file);
  if (!previous) {
    log()->warn("ignoring the previous subnet file: {}", previous.error().message);
    previous = SubnetEnv{};
  }
  if (o.kube_subnet_mgr) {
    store::kube::ClientConfigInputs inputs;
    inputs.kube_api_url = o.kube_api_url;
    inputs.kubeconfig_file = o.kubeconfig_file;
    auto client_config = store::kube::loadClientConfig(inputs);
    if (!client_config) {
      fail(fmt::format("Kubernetes client: {}", client_config.error().message));
      co_return;
    }
    auto client = store::kube::KubeClient::create(d->io.get_executor(), std::move(*client_config));
    if (!client) {
      fail(fmt::format("Kubernetes client: {}", client.error().message));
      co_return;
    }
    store::kube::KubeStoreOptions ko;
    ko.annotation_prefix = o.kube_annotation_prefix;
    ko.net_config_path = o.net_config_path;
    auto kube = co_await store::kube::KubeStore::create(std::move(*client), ko);
    if (!kube) {
      fail(kube.error().message);
      co_return;
    }
    d->kube = kube->get();
    d->store = std::move(*kube);
  } else {
    auto store = makeEtcdStore(o, d->io);
    if (!store) {
      fail(store.error().message);
      co_return;
    }
    d->store = std::move(*store);
  }

  auto config =
      co_await waitForNetworkConfig(*d->store, std::chrono::seconds(1), std::chrono::seconds(30));
  if (config.backend_defaulted) {
    log()->warn(
        "the network config has no Backend: using udp, as flannel does (set "
        "\"Backend\": {{\"Type\": \"vxlan\"}} for the kernel data path)");
  }
  auto iface_options = ifaceOptions(o, config);
  if (d->kube != nullptr) {
    // Newest flannel: the node's node-public-ip(-v6) annotations replace the flags.
    auto ips = co_await d->kube->nodePublicIps();
    if (!ips) {
      fail(ips.error().message);
      co_return;
    }
    if (ips->ipv4) {
      iface_options.public_ip = ips->ipv4;
    }
    if (ips->ipv6) {
      iface_options.public_ipv6 = ips->ipv6;
    }
  }
  auto kernel = kernel::NetlinkKernel::open();
  if (!kernel) {
    fail(kernel.error().message);
    co_return;
  }
  d->kernel = std::move(*kernel);
  auto ext = kernel::selectExternalInterface(*d->kernel, iface_options);
  if (!ext) {
    fail(fmt::format("choosing the external interface: {}", ext.error().message));
    co_return;
  }
  log()->info("using interface {} (index {}, MTU {}), external address {}{}", ext->link.name,
              ext->link.index, ext->mtu(),
              ext->ext_addr ? ext->ext_addr->toString() : std::string("-"),
              ext->ext_v6_addr ? " " + ext->ext_v6_addr->toString() : std::string());

  backend::Context ctx{.config = config,
                       .ext = *ext,
                       .kernel = d->kernel.get(),
                       .runner = d->runner.get(),
                       .packet_io = &d->packet_io};
  auto network = backend::createNetwork(ctx);
  if (!network) {
    fail(network.error().message);
    co_return;
  }
  d->network = std::move(*network);
  d->metrics.setCollector([d](Metrics& m) {
    if (!d->network) {
      return;
    }
    for (const auto& st : d->network->stats()) {
      if (st.counter) {
        m.counter(st.name, st.help, st.labels).setTotal(st.value);
      } else {
        m.gauge(st.name, st.help, st.labels).set(st.value);
      }
    }
  });

  store::AcquireRequest req{.attrs = d->network->leaseAttrs(),
                            .previous_subnet = previous->subnet,
                            .previous_ipv6_subnet = previous->ipv6_subnet};
  Lease lease;
  for (unsigned attempt = 0;; ++attempt) {
    auto acquired = co_await d->store->acquireLease(config, req);
    if (acquired) {
      lease = std::move(*acquired);
      break;
    }
    if (acquired.error().code != Errc::Unavailable && acquired.error().code != Errc::Timeout) {
      fail(fmt::format("acquiring a lease: {}", acquired.error().message));
      co_return;
    }
    log()->error("acquiring a lease: {}; retrying", acquired.error().message);
    co_await sleepFor(std::chrono::seconds(std::min(1u << std::min(attempt, 4u), 10u)));
  }
  log()->info("lease acquired: {}", subnetKeyName(lease.subnet));
  if (auto r = d->network->configure(lease); !r) {
    fail(r.error().message);
    co_return;
  }
  // subnet.env right after the lease, before the traffic rules (which may fork
  // iptables-restore): pods can be wired up sooner; readiness still waits for the rules.
  auto env = subnetEnvFor(config, lease, d->network->mtu(), o.ip_masq);
  if (auto w = writeSubnetEnv(o.subnet_file, env); !w) {
    log()->warn("writing {}: {}", o.subnet_file, w.error().message);
  } else {
    log()->info("wrote {}", o.subnet_file);
  }
  auto rules = setUpRules(*d, config, lease, *previous);
  if (!rules) {
    fail(rules.error().message);
    co_return;
  }
  d->runner_loop = std::make_unique<NetworkRunner>(*d->store, *d->network, *d->kernel, lease,
                                                   std::chrono::seconds(5));
  d->keeper = std::make_unique<LeaseKeeper>(*d->store, lease,
                                            std::chrono::minutes(o.subnet_lease_renew_margin));
  d->group.spawn("network", runNetwork(d));
  d->group.spawn("lease", keepLease(d));
  if (d->rules && !rules->families.empty()) {
    d->group.spawn("rules", rulesResync(d, *rules));
  }
  d->group.spawn("backend", d->network->run());
  if (o.ip_blackhole_route) {
    d->group.spawn("blackhole", blackholeRoutes(d, lease));
  }
  if (d->kube != nullptr && o.set_node_network_unavailable) {
    if (auto r = co_await d->kube->setNodeNetworkUnavailable(); !r) {
      log()->error("setting the node condition NetworkUnavailable=False: {}", r.error().message);
    }
  }
  notifyReady();
  if (d->health) {
    d->health->setReady(true);
  }
  log()->info("flanneld is running: subnet {}, MTU {}", subnetKeyName(lease.subnet),
              d->network->mtu());
}

async::Awaitable<void> waitForSignal(Daemon* d) {
  net::signal_set signals(co_await net::this_coro::executor, SIGINT, SIGTERM);
  auto [ec, sig] = co_await signals.async_wait(async::use_nothrow);
  if (!ec) {
    // A second signal kills at once (default disposition), as flannel does.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    d->finish(0, fmt::format("received {}; shutting down (the data plane stays in place)",
                             sig == SIGINT ? "SIGINT" : "SIGTERM"));
  }
}

async::Awaitable<void> runAll(Daemon* d) {
  if (!d->stopping) {
    d->stop.expires_at(net::steady_timer::time_point::max());
  }
  if (d->options.healthz_port > 0) {
    HealthOptions ho;
    ho.ip = d->options.healthz_ip;
    ho.port = static_cast<uint16_t>(d->options.healthz_port);
    auto h = HealthServer::listen(d->io.get_executor(), ho, d->metrics);
    if (!h) {
      d->finish(1, h.error().message);
      co_return;
    }
    d->health = std::move(*h);
    d->group.spawn("healthz", d->health->run());
  }
  d->group.spawn("start", start(d));
  auto [ec] = co_await d->stop.async_wait(async::use_nothrow);
  (void)ec;
  d->group.emit(net::cancellation_type::terminal);
  co_await d->group.asyncWait();
}

}  // namespace

int runDaemon(const Options& options) {
  net::io_context io(1);
  Daemon d(options, io);
  net::co_spawn(io, waitForSignal(&d), net::detached);
  bool done = false;
  net::co_spawn(io, runAll(&d), [&](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log()->critical("flanneld failed: {}", ex.what());
      }
      d.exit_code = 2;
    }
    done = true;
    io.stop();
  });
  io.run();
  (void)done;
  return d.exit_code;
}

}  // namespace flannel::daemon
