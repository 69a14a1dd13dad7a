// udp backend throughput next to kernel vxlan and the raw underlay, in one go so that the ratios
// are comparable (issue #6). Each case builds its own 2-host cluster (tests/support/
// flannel_cluster: etcd, host namespaces, a pod namespace per host), runs iperf3 TCP pod to pod
// (host to host for the underlay) with 1 and 4 streams, and reads the CPU time the whole machine
// and the two flanneld processes used during the run from /proc.
//
//   udp_bench [seconds=5] [filter]        as root; prints a Markdown table
//   udp_bench --paired [rounds=5] [seconds=5]
//                                         vxlan and udp side by side, alternating (see paired())
//
// `filter` keeps only the cases whose name contains it (e.g. "udp"). Everything started is
// stopped by PID and every namespace is deleted when a case ends.
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/flannel_cluster.h"
#include "support/link_counters.h"
#include "support/poll.h"

namespace flannel::test {
namespace {

using namespace std::chrono_literals;

struct Case {
  const char* name;
  const char* config;  // the network config; nullptr = raw underlay (vxlan cluster, host to host)
};

const Case kCases[] = {
    {"raw underlay (veth + bridge), host to host", nullptr},
    {"vxlan (kernel)", R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})"},
    {"udp (default: in-kernel tc BPF fast path)",
     R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp"}})"},
    {"udp user space (TcBpf off; all offloads, 1 queue per CPU)",
     R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "TcBpf": false}})"},
    {"udp user space (all offloads, 1 queue per CPU, thread per direction)",
     R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "TcBpf": false,
         "ThreadPerDirection": true}})"},
    {"udp user space (all offloads, 1 queue)",
     R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "TcBpf": false, "Queues": 1}})"},
    {"udp user space (no offloads: batched sendmmsg/recvmmsg only, 1 queue)",
     R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "TcBpf": false, "Offload": false,
         "Queues": 1}})"},
    {"udp user space (no offloads, 1 queue per CPU)",
     R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "TcBpf": false,
         "Offload": false}})"},
};

// Jiffies the machine spent busy (everything but idle and iowait), from /proc/stat.
double busySeconds() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  f >> cpu;
  std::vector<unsigned long long> v;
  unsigned long long x = 0;
  while (v.size() < 8 && f >> x) {
    v.push_back(x);
  }
  unsigned long long busy = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i != 3 && i != 4) {  // idle, iowait
      busy += v[i];
    }
  }
  return static_cast<double>(busy) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// utime + stime of a process (all threads), in seconds.
double processSeconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(f, line);
  const auto close = line.rfind(')');
  if (close == std::string::npos) {
    return 0;
  }
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  double ut = 0;
  double st = 0;
  for (int i = 3; rest >> field; ++i) {
    if (i == 14) {
      ut = std::stod(field);
    } else if (i == 15) {
      st = std::stod(field);
      break;
    }
  }
  return (ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// FLANNEL_BENCH_METRICS=1: packets and average packet size per interface during a run, which
// show where super packets are cut into segments.
std::map<std::string, LinkCounters> links(Netns& ns) {
  auto m = linkCounters(ns);
  if (!m) {
    std::fprintf(stderr, "  %s\n", m.error().message.c_str());
    return {};
  }
  return *m;
}

void printLinkDelta(int host, const std::map<std::string, LinkCounters>& before,
                    const std::map<std::string, LinkCounters>& after) {
  for (const auto& [name, a] : after) {
    LinkCounters b;
    if (auto it = before.find(name); it != before.end()) {
      b = it->second;
    }
    const double tp = a.tx_packets - b.tx_packets;
    const double rp = a.rx_packets - b.rx_packets;
    if (tp + rp < 1000) {
      continue;
    }
    std::fprintf(stderr, "  h%d %-12s tx %10.0f pkts avg %6.0f B   rx %10.0f pkts avg %6.0f B\n",
                 host, name.c_str(), tp, tp > 0 ? (a.tx_bytes - b.tx_bytes) / tp : 0, rp,
                 rp > 0 ? (a.rx_bytes - b.rx_bytes) / rp : 0);
  }
}

struct Run {
  double gbits = 0;
  double machine_cpu = 0;   // CPU seconds, whole machine
  double flanneld_cpu = 0;  // CPU seconds, both flanneld
  double seconds = 0;
};

Run iperf(FlannelCluster& c, Netns& from, Netns& to, const std::string& ip, int seconds,
          int streams) {
  ChildSpec server;
  server.argv = {"iperf3", "-s", "-1"};
  auto srv = to.spawn(server);
  if (!srv) {
    throw std::runtime_error(srv.error().message);
  }
  // Warm-up and reachability: a short run first (bounded retries while routes converge).
  const bool reachable = pollUntil(
      [&] {
        auto out = from.exec({"iperf3", "-c", ip, "-t", "1", "-J"}, 10s);
        return out && out->success();
      },
      20s, 300ms);
  (void)(*srv)->stop(1000ms);
  if (!reachable) {
    throw std::runtime_error("iperf3 never connected to " + ip);
  }
  auto srv2 = to.spawn(server);
  if (!srv2) {
    throw std::runtime_error(srv2.error().message);
  }
  auto flanneldCpu = [&] {
    double s = 0;
    for (int i = 1; i <= c.hosts(); ++i) {
      if (auto* p = c.flanneld(i); p != nullptr) {
        s += processSeconds(p->pid());
      }
    }
    return s;
  };
  ::usleep(200000);  // the server is listening
  Run r;
  const double m0 = busySeconds();
  const double f0 = flanneldCpu();
  const auto t0 = std::chrono::steady_clock::now();
  auto out = from.exec(
      {"iperf3", "-c", ip, "-t", std::to_string(seconds), "-P", std::to_string(streams), "-J"},
      std::chrono::seconds(seconds + 20));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.machine_cpu = busySeconds() - m0;
  r.flanneld_cpu = flanneldCpu() - f0;
  (void)(*srv2)->stop(1000ms);
  if (!out || !out->success()) {
    throw std::runtime_error("iperf3 failed: " + (out ? out->out + out->err : out.error().message));
  }
  auto j = nlohmann::json::parse(out->out, nullptr, false);
  if (j.is_discarded() || !j.contains("end") || !j["end"].contains("sum_received")) {
    throw std::runtime_error("iperf3 output without end.sum_received");
  }
  r.gbits = j["end"]["sum_received"]["bits_per_second"].get<double>() / 1e9;
  return r;
}

std::unique_ptr<FlannelCluster> makeCluster(const Case& k, bool diag) {
  FlannelClusterSpec spec;
  spec.hosts = 2;
  spec.network_config = k.config != nullptr
                            ? k.config
                            : R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})";
  spec.flanneld_binary = FLANNELD_BINARY;
  if (diag) {
    spec.flanneld_args = {"-healthz-port=9099"};
  }
  auto c = FlannelCluster::create(spec);
  if (!c) {
    throw std::runtime_error(c.error().message);
  }
  auto subnets = (*c)->startAllWithPods(20s);
  if (!subnets) {
    throw std::runtime_error(subnets.error().message);
  }
  return std::move(*c);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// `udp_bench --paired ROUNDS [seconds]`: the vxlan cluster and the udp (fast path) cluster are
// both up at once, and their iperf3 runs alternate (the order flips every round), so both see the
// same machine: on this shared 2-core machine the speed drifts by tens of percent within minutes,
// which made ratios of runs a minute apart meaningless for 4 streams. Prints every run, then the
// median, lowest and highest of the per-round ratios udp ÷ vxlan.
int paired(int rounds, int seconds) {
  const Case& vx = kCases[1];
  const Case& udp = kCases[2];
  auto cv = makeCluster(vx, false);
  auto cu = makeCluster(udp, false);
  std::printf(
      "| round | streams | vxlan Gbit/s | udp Gbit/s | udp ÷ vxlan | CPU s per Gbit vxlan / udp "
      "|\n|---|---|---|---|---|---|\n");
  std::fflush(stdout);
  std::map<int, std::vector<double>> ratios;
  for (int round = 1; round <= rounds; ++round) {
    for (int streams : {1, 4}) {
      Run rv;
      Run ru;
      auto once = [&](FlannelCluster& c) {
        return iperf(c, c.pod(1), c.pod(2), c.podIp(2), seconds, streams);
      };
      if (round % 2 == 1) {
        rv = once(*cv);
        ru = once(*cu);
      } else {
        ru = once(*cu);
        rv = once(*cv);
      }
      const double ratio = ru.gbits / rv.gbits;
      ratios[streams].push_back(ratio);
      std::printf("| %d | %d | %.2f | %.2f | %.2f | %.3f / %.3f |\n", round, streams, rv.gbits,
                  ru.gbits, ratio, rv.machine_cpu / (rv.gbits * rv.seconds),
                  ru.machine_cpu / (ru.gbits * ru.seconds));
      std::fflush(stdout);
    }
  }
  std::printf(
      "\n| streams | rounds | udp ÷ vxlan median | lowest | highest |\n|---|---|---|---|---|\n");
  for (auto& [streams, v] : ratios) {
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    std::printf("| %d | %zu | %.2f | %.2f | %.2f |\n", streams, v.size(), median(v), *lo, *hi);
  }
  return 0;
}

int run(int seconds, const std::string& filter) {
  std::printf(
      "| case | streams | Gbit/s | machine CPU (cores) | CPU s per Gbit | flanneld CPU "
      "(cores) |\n|---|---|---|---|---|---|\n");
  std::fflush(stdout);
  for (const auto& k : kCases) {
    if (!filter.empty() && std::string(k.name).find(filter) == std::string::npos) {
      continue;
    }
    const bool diag = std::getenv("FLANNEL_BENCH_METRICS") != nullptr;
    auto c = makeCluster(k, diag);
    for (int streams : {1, 4}) {
      std::map<std::string, LinkCounters> before[3];
      if (diag) {
        for (int h = 1; h <= 2; ++h) {
          before[h] = links(c->host(h));
        }
      }
      Run r = k.config == nullptr
                  ? iperf(*c, c->host(1), c->host(2), Topology::hostAddress(2), seconds, streams)
                  : iperf(*c, c->pod(1), c->pod(2), c->podIp(2), seconds, streams);
      const double cores = r.machine_cpu / r.seconds;
      std::printf("| %s | %d | %.2f | %.2f | %.3f | %.2f |\n", k.name, streams, r.gbits, cores,
                  r.machine_cpu / (r.gbits * r.seconds), r.flanneld_cpu / r.seconds);
      std::fflush(stdout);
      if (diag) {
        for (int h = 1; h <= 2; ++h) {
          printLinkDelta(h, before[h], links(c->host(h)));
        }
      }
      if (diag && k.config != nullptr) {
        // FLANNEL_BENCH_METRICS=1: the udp data path's counters on both hosts after the run.
        for (int h = 1; h <= 2; ++h) {
          auto m = c->host(h).exec({"curl", "-s", "http://127.0.0.1:9099/metrics"}, 5s);
          if (m && m->success()) {
            std::istringstream lines(m->out);
            std::string line;
            while (std::getline(lines, line)) {
              if (line.starts_with("flannel_udp") && !line.ends_with(" 0")) {
                std::fprintf(stderr, "  h%d %s\n", h, line.c_str());
              }
            }
          }
        }
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace flannel::test

int main(int argc, char** argv) {
  if (::geteuid() != 0) {
    std::fprintf(stderr, "udp_bench needs root (network namespaces)\n");
    return 2;
  }
  try {
    if (argc > 1 && std::string(argv[1]) == "--paired") {
      const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
      const int seconds = argc > 3 ? std::atoi(argv[3]) : 5;
      return flannel::test::paired(rounds > 0 ? rounds : 5, seconds > 0 ? seconds : 5);
    }
    const int seconds = argc > 1 ? std::atoi(argv[1]) : 5;
    const std::string filter = argc > 2 ? argv[2] : "";
    return flannel::test::run(seconds > 0 ? seconds : 5, filter);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "udp_bench: %s\n", e.what());
    return 1;
  }
}
