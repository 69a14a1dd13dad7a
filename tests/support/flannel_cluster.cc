#include "support/flannel_cluster.h"

#include <fmt/format.h>
#include <csignal>
#include <fstream>
#include <sstream>

#include "support/poll.h"

namespace flannel::test {

FlannelCluster::~FlannelCluster() {
  for (auto& [i, p] : flanneld_) {
    if (p) {
      (void)p->stop(std::chrono::milliseconds(2000));
    }
  }
  flanneld_.clear();
  pods_.clear();
  etcd_.reset();
  topo_.reset();
  run_.reset();
}

Result<std::unique_ptr<FlannelCluster>> FlannelCluster::create(FlannelClusterSpec spec) {
  if (spec.flanneld_binary.empty()) {
    return invalidInput("FlannelCluster: flanneld_binary is required");
  }
  std::unique_ptr<FlannelCluster> c(new FlannelCluster());
  c->spec_ = spec;
  auto run = TestRun::create();
  if (!run) {
    return run.error();
  }
  c->run_ = std::move(*run);
  auto topo =
      Topology::create(*c->run_, TopologySpec{.hosts = spec.hosts, .etcd_nodes = 1, .mtu = 1500});
  if (!topo) {
    return topo.error();
  }
  c->topo_ = std::move(*topo);
  auto etcd = EtcdCluster::startOnTopology(*c->run_, *c->topo_);
  if (!etcd) {
    return etcd.error();
  }
  c->etcd_ = std::move(*etcd);
  auto put = c->etcd_->etcdctl({"put", "/coreos.com/network/config", spec.network_config});
  if (!put) {
    return put.error();
  }
  for (int i = 1; i <= spec.hosts; ++i) {
    // Hosts route between pods and the tunnel; flannel never sets this itself (SPEC.md §6.3).
    auto fwd = c->host(i).execChecked({"sysctl", "-q", "-w", "net.ipv4.ip_forward=1"});
    if (!fwd) {
      return fwd.error();
    }
  }
  return c;
}

std::filesystem::path FlannelCluster::subnetFile(int i) const {
  return run_->dir() / fmt::format("h{}-subnet.env", i);
}

Result<void> FlannelCluster::startFlanneld(int i, std::vector<std::string> extra,
                                           std::map<std::string, std::string> env) {
  ChildSpec spec;
  spec.argv = {spec_.flanneld_binary, "-subnet-file=" + subnetFile(i).string()};
  // Defaults that `extra` may replace (a test giving its own -iface or -etcd-endpoints).
  auto given = [&](std::string_view flag) {
    for (const auto& a : extra) {
      if (a.rfind(flag, 0) == 0) {
        return true;
      }
    }
    return false;
  };
  if (!given("-iface=")) {
    spec.argv.push_back("-iface=eth0");
  }
  if (!given("-etcd-endpoints=")) {
    spec.argv.push_back("-etcd-endpoints=" + etcd_->clientEndpoints());
  }
  spec.argv.insert(spec.argv.end(), spec_.flanneld_args.begin(), spec_.flanneld_args.end());
  spec.argv.insert(spec.argv.end(), extra.begin(), extra.end());
  spec.env_add = std::move(env);
  spec.log_path = run_->dir() / fmt::format("h{}-flanneld.log", i);
  spec.setns_only = spec_.setns_only;
  auto child = host(i).spawn(std::move(spec));
  if (!child) {
    return child.error();
  }
  flanneld_[i] = std::move(*child);
  ++starts_;
  return {};
}

Result<void> FlannelCluster::startAll() {
  for (int i = 1; i <= spec_.hosts; ++i) {
    if (auto r = startFlanneld(i); !r) {
      return r;
    }
  }
  return {};
}

ChildProcess* FlannelCluster::flanneld(int i) {
  auto it = flanneld_.find(i);
  return it == flanneld_.end() ? nullptr : it->second.get();
}

Result<ExitStatus> FlannelCluster::stopFlanneld(int i) {
  auto* p = flanneld(i);
  if (p == nullptr) {
    return invalidInput(fmt::format("flanneld on h{} was never started", i));
  }
  return p->stop(std::chrono::milliseconds(5000));
}

std::string FlannelCluster::flanneldLog(int i) {
  std::ifstream in(run_->dir() / fmt::format("h{}-flanneld.log", i));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Result<SubnetEnv> FlannelCluster::waitSubnetEnv(int i, std::chrono::milliseconds timeout) {
  std::optional<SubnetEnv> env;
  bool ok = pollUntil(
      [&] {
        auto r = readSubnetEnv(subnetFile(i).string());
        if (r && r->subnet) {
          env = *r;
          return true;
        }
        if (r && r->ipv6_subnet) {
          env = *r;
          return true;
        }
        return false;
      },
      timeout, std::chrono::milliseconds(20));
  if (!ok) {
    return makeError(Errc::Timeout, fmt::format("h{}: no subnet.env after {} ms; flanneld log:\n{}",
                                                i, timeout.count(), flanneldLog(i)));
  }
  return *env;
}

Result<std::string> FlannelCluster::addPod(int i) {
  auto env = readSubnetEnv(subnetFile(i).string());
  if (!env || !env->subnet) {
    return invalidInput(fmt::format("h{}: no IPv4 subnet in subnet.env yet", i));
  }
  auto pod = Netns::create(*run_, fmt::format("p{}", i));
  if (!pod) {
    return pod.error();
  }
  const IpNet subnet = *env->subnet;
  const std::string gw = subnet.host(1)->toString();
  const std::string ip = subnet.host(2)->toString();
  const std::string len = std::to_string(subnet.prefix());
  // The veth is created in the host and its peer moved into the pod namespace.
  auto batch =
      host(i).ipBatch(fmt::format("link add vpod type veth peer name eth0 netns {}\n"
                                  "addr add {}/{} dev vpod\n"
                                  "link set vpod up\n",
                                  (*pod)->name(), gw, len));
  if (!batch) {
    return batch.error();
  }
  auto inside =
      (*pod)->ipBatch(fmt::format("addr add {}/{} dev eth0\n"
                                  "link set eth0 mtu {}\n"
                                  "link set eth0 up\n"
                                  "route add default via {}\n",
                                  ip, len, env->mtu.value_or(1450), gw));
  if (!inside) {
    return inside.error();
  }
  pods_[i] = std::move(*pod);
  pod_ips_[i] = ip;
  return ip;
}

Result<std::map<int, IpNet>> FlannelCluster::startAllWithPods(
    std::chrono::milliseconds per_host_timeout) {
  if (auto r = startAll(); !r) {
    return r.error();
  }
  std::map<int, IpNet> subnets;
  for (int i = 1; i <= hosts(); ++i) {
    auto env = waitSubnetEnv(i, per_host_timeout);
    if (!env) {
      return env.error();
    }
    if (!env->subnet) {
      return invalidInput(fmt::format("h{}: subnet.env has no FLANNEL_SUBNET", i));
    }
    subnets[i] = *env->subnet;
    if (auto pod = addPod(i); !pod) {
      return pod.error();
    }
  }
  return subnets;
}

std::vector<std::string> FlannelCluster::meshFailures(std::chrono::milliseconds per_pair) {
  std::vector<std::string> failures;
  for (int i = 1; i <= hosts(); ++i) {
    for (int j = 1; j <= hosts(); ++j) {
      if (i == j) {
        continue;
      }
      if (auto r = pod(i).ping(podIp(j), per_pair); !r) {
        failures.push_back(fmt::format("pod {} -> pod {} ({}): {}\nh{} log:\n{}", i, j, podIp(j),
                                       r.error().message, i, flanneldLog(i)));
      }
    }
  }
  return failures;
}

bool FlannelCluster::waitRunningAgain(int i, std::chrono::milliseconds timeout) {
  return pollUntil(
      [&] {
        const auto log = flanneldLog(i);
        return log.find("flanneld is running") != log.rfind("flanneld is running");
      },
      timeout);
}

}  // namespace flannel::test
