// flannel-demo: sets up a local cluster on this machine — a real etcd, N host namespaces on an
// underlay bridge, flanneld in each, a pod namespace per host — shows each host's subnet, pings
// every pod from every pod, measures pod-to-pod TCP with iperf3, and tears everything down.
//
//   flannel-demo [--hosts N] [--backend vxlan|host-gw|udp] [--seconds S]
//
// Needs root. Everything it creates lives in network namespaces named fct-<pid>-... and is
// removed on exit, on Ctrl-C, and (by the next run) even after a kill -9.
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "support/flannel_cluster.h"
#include "support/poll.h"

namespace {

using namespace flannel;
using namespace flannel::test;
using namespace std::chrono_literals;

int usage() {
  std::fprintf(stderr,
               "usage: flannel-demo [--hosts N] [--backend vxlan|host-gw|udp] [--seconds S]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int hosts = 3;
  std::string backend = "vxlan";
  int seconds = 3;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--hosts" && i + 1 < argc) {
      hosts = std::atoi(argv[++i]);
    } else if (a == "--backend" && i + 1 < argc) {
      backend = argv[++i];
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atoi(argv[++i]);
    } else {
      return usage();
    }
  }
  if (hosts < 2 || hosts > 20 || seconds < 1 || seconds > 60 ||
      (backend != "vxlan" && backend != "host-gw" && backend != "udp")) {
    return usage();
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "flannel-demo: run as root (it creates network namespaces)\n");
    return 1;
  }
  spdlog::set_level(spdlog::level::warn);
  FlannelClusterSpec spec;
  spec.hosts = hosts;
  spec.flanneld_binary = FLANNELD_BINARY;
  spec.network_config =
      fmt::format(R"({{"Network": "10.5.0.0/16", "Backend": {{"Type": "{}"}}}})", backend);
  spec.flanneld_args = {"-ip-masq"};
  std::printf("== creating %d hosts on underlay 192.168.91.0/24 with etcd on 192.168.91.2\n",
              hosts);
  auto cluster = FlannelCluster::create(spec);
  if (!cluster) {
    std::fprintf(stderr, "flannel-demo: %s\n", cluster.error().message.c_str());
    return 1;
  }
  auto& c = **cluster;
  std::printf("== network config (etcd key /coreos.com/network/config): %s\n",
              spec.network_config.c_str());
  auto t0 = std::chrono::steady_clock::now();
  if (auto r = c.startAll(); !r) {
    std::fprintf(stderr, "flannel-demo: %s\n", r.error().message.c_str());
    return 1;
  }
  for (int i = 1; i <= hosts; ++i) {
    auto env = c.waitSubnetEnv(i, 20s);
    if (!env) {
      std::fprintf(stderr, "flannel-demo: %s\n", env.error().message.c_str());
      return 1;
    }
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    std::printf("h%d (%s): FLANNEL_SUBNET=%s FLANNEL_MTU=%u   [subnet.env after %lld ms]\n", i,
                Topology::hostAddress(i).c_str(), env->subnet->toString().c_str(),
                env->mtu.value_or(0), static_cast<long long>(ms));
    auto pod = c.addPod(i);
    if (!pod) {
      std::fprintf(stderr, "flannel-demo: %s\n", pod.error().message.c_str());
      return 1;
    }
  }
  auto leases = c.etcd().etcdctl({"get", "--prefix", "/coreos.com/network/subnets"});
  if (leases) {
    std::printf("== leases in etcd:\n%s", leases->out.c_str());
  }
  if (auto routes = c.host(1).ip({"route"})) {
    std::printf("== routes on h1:\n%s", routes->out.c_str());
  }
  std::printf("== pod-to-pod ping matrix (pod i -> pod j):\n");
  int failures = 0;
  for (int i = 1; i <= hosts; ++i) {
    std::string row = fmt::format("  p{} ({:<10})", i, c.podIp(i));
    for (int j = 1; j <= hosts; ++j) {
      if (i == j) {
        row += "   -  ";
        continue;
      }
      bool ok = static_cast<bool>(c.pod(i).ping(c.podIp(j), 10s));
      failures += ok ? 0 : 1;
      row += ok ? "  ok  " : " FAIL ";
    }
    std::printf("%s\n", row.c_str());
  }
  std::printf("== iperf3 TCP p1 -> p2 for %d s:\n", seconds);
  ChildSpec server;
  server.argv = {"iperf3", "-s", "-1"};
  auto srv = c.pod(2).spawn(server);
  double gbits = 0;
  bool measured = srv && pollUntil(
                             [&] {
                               auto out = c.pod(1).exec({"iperf3", "-c", c.podIp(2), "-t",
                                                         std::to_string(seconds), "-J"},
                                                        std::chrono::seconds(seconds + 15));
                               if (!out || !out->success()) {
                                 return false;
                               }
                               auto j = nlohmann::json::parse(out->out, nullptr, false);
                               if (j.is_discarded()) {
                                 return false;
                               }
                               const auto* bps = &j;
                               for (const char* k : {"end", "sum_received", "bits_per_second"}) {
                                 if (!bps->is_object() || !bps->contains(k)) {
                                   return false;  // iperf3 reported an error: try again
                                 }
                                 bps = &(*bps)[k];
                               }
                               if (!bps->is_number()) {
                                 return false;
                               }
                               gbits = bps->get<double>() / 1e9;
                               return true;
                             },
                             std::chrono::seconds(seconds + 20), 500ms);
  if (measured) {
    std::printf("  %.2f Gbit/s pod to pod over %s\n", gbits, backend.c_str());
  } else {
    std::printf("  iperf3 failed\n");
    ++failures;
  }
  if (srv) {
    (void)(*srv)->stop(std::chrono::milliseconds(1000));
  }
  std::printf("== tearing down (flanneld, etcd, namespaces)\n");
  for (int i = 1; i <= hosts; ++i) {
    auto st = c.stopFlanneld(i);
    if (st && st->exit_code != 0) {
      std::printf("  h%d flanneld exited %d\n", i, st->exit_code);
    }
  }
  cluster->reset();
  std::printf("== %s\n",
              failures == 0 ? "demo OK: every pod reached every other pod" : "demo FAILED");
  return failures == 0 ? 0 : 1;
}
