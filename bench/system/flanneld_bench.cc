// flanneld system benchmarks (issue #4), on real namespaces with the release flanneld:
//
//   flanneld_bench startup [runs=20]        fork+setns+exec -> subnet.env, median (lease known)
//   flanneld_bench idle [seconds=20] [nftables] [ip-masq] [udp]
//                                           RSS and CPU of an idle flanneld; processes it forks
//   flanneld_bench converge [hosts=30]      N hosts started at once: last subnet.env -> every
//                                           host has a route to every other host
//   flanneld_bench throughput [seconds=5]   iperf3 TCP: underlay, vxlan pod-to-pod, host-gw
//
// Prints markdown rows for BENCHMARKS.md. Needs root. Bounded: every wait has a deadline.
#include <dirent.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/flannel_cluster.h"
#include "support/poll.h"

namespace {

using namespace flannel;
using namespace flannel::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::unique_ptr<FlannelCluster> makeCluster(int hosts, const std::string& backend,
                                            bool setns_only = false, bool nftables = false,
                                            std::vector<std::string> args = {}) {
  FlannelClusterSpec spec;
  spec.hosts = hosts;
  spec.setns_only = setns_only;
  spec.flanneld_binary = FLANNELD_BINARY;
  spec.flanneld_args = std::move(args);
  spec.network_config = fmt::format(
      R"({{"Network": "10.5.0.0/16", "EnableNFTables": {}, "Backend": {{"Type": "{}"}}}})",
      nftables ? "true" : "false", backend);
  auto c = FlannelCluster::create(spec);
  if (!c) {
    throw std::runtime_error(c.error().message);
  }
  return std::move(*c);
}

void check(const Result<void>& r) {
  if (!r) {
    throw std::runtime_error(r.error().message);
  }
}

// Polls (1 ms) until the subnet file of host i exists; returns when.
Clock::time_point waitFile(FlannelCluster& c, int i, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (::access(c.subnetFile(i).c_str(), F_OK) == 0) {
      return Clock::now();
    }
    std::this_thread::sleep_for(1ms);
  }
  throw std::runtime_error(fmt::format("h{}: no subnet.env; log:\n{}", i, c.flanneldLog(i)));
}

// The clock starts before the fork; the child setns()es into the host namespace and execs
// flanneld itself, so the figure is the daemon's own start (exec, dynamic linking, etcd, lease,
// subnet.env), not `ip netns exec`'s.
int startup(int runs) {
  auto c = makeCluster(1, "vxlan", /*setns_only=*/true);
  check(c->startFlanneld(1));
  waitFile(*c, 1, 20s);
  check(c->stopFlanneld(1).has_value() ? Result<void>{} : makeError(Errc::Internal, "stop"));
  std::vector<double> samples;
  for (int r = 0; r < runs; ++r) {
    std::filesystem::remove(c->subnetFile(1));
    auto t0 = Clock::now();
    check(c->startFlanneld(1));
    auto t1 = waitFile(*c, 1, 20s);
    samples.push_back(ms(t1 - t0));
    (void)c->stopFlanneld(1);
  }
  if (std::getenv("FLANNEL_BENCH_LOG") != nullptr) {
    std::fprintf(stderr, "%s", c->flanneldLog(1).c_str());
  }
  std::printf("| restart to subnet.env (vxlan, lease reused, %d runs), median | %.1f ms |\n", runs,
              median(samples));
  std::printf("| same, fastest / slowest | %.1f / %.1f ms |\n",
              *std::min_element(samples.begin(), samples.end()),
              *std::max_element(samples.begin(), samples.end()));
  return 0;
}

struct ProcStat {
  long rss_kb = 0;
  long pss_kb = 0;
  long private_kb = 0;
  double cpu_s = 0;
};

ProcStat procStat(pid_t pid) {
  ProcStat s;
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) {
      s.rss_kb = std::stol(line.substr(6));
    }
  }
  std::ifstream rollup(fmt::format("/proc/{}/smaps_rollup", pid));
  for (std::string line; std::getline(rollup, line);) {
    if (line.rfind("Pss:", 0) == 0) {
      s.pss_kb = std::stol(line.substr(4));
    } else if (line.rfind("Private_Clean:", 0) == 0 || line.rfind("Private_Dirty:", 0) == 0) {
      s.private_kb += std::stol(line.substr(line.find(':') + 1));
    }
  }
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string text((std::istreambuf_iterator<char>(stat)), {});
  auto close = text.rfind(')');
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  unsigned long utime = 0;
  unsigned long stime = 0;
  for (int i = 3; i <= 15; ++i) {
    rest >> field;
    if (i == 14) {
      utime = std::stoul(field);
    }
    if (i == 15) {
      stime = std::stoul(field);
    }
  }
  s.cpu_s = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return s;
}

std::set<pid_t> childrenOf(pid_t pid) {
  std::set<pid_t> out;
  std::string dir = fmt::format("/proc/{}/task", pid);
  if (DIR* d = ::opendir(dir.c_str())) {
    while (auto* e = ::readdir(d)) {
      if (e->d_name[0] == '.') {
        continue;
      }
      std::ifstream in(fmt::format("{}/{}/children", dir, e->d_name));
      for (pid_t c; in >> c;) {
        out.insert(c);
      }
    }
    ::closedir(d);
  }
  return out;
}

// `modes`: "nftables" (EnableNFTables), "ip-masq" (--ip-masq), "udp" (the udp backend instead of
// vxlan); default vxlan in iptables mode with the FORWARD rules only.
int idle(int seconds, const std::vector<std::string>& modes) {
  bool nftables = std::find(modes.begin(), modes.end(), "nftables") != modes.end();
  bool masq = std::find(modes.begin(), modes.end(), "ip-masq") != modes.end();
  const std::string backend =
      std::find(modes.begin(), modes.end(), "udp") != modes.end() ? "udp" : "vxlan";
  auto c = makeCluster(2, backend, false, nftables,
                       masq ? std::vector<std::string>{"-ip-masq"} : std::vector<std::string>{});
  check(c->startAll());
  waitFile(*c, 1, 20s);
  waitFile(*c, 2, 20s);
  std::this_thread::sleep_for(2s);  // let start-up work finish before measuring "idle"
  pid_t pid = c->flanneld(1)->pid();
  auto before = procStat(pid);
  std::set<pid_t> forked;
  auto end = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < end) {  // children are sampled every 2 ms; iptables-restore lives longer
    for (pid_t ch : childrenOf(pid)) {
      forked.insert(ch);
    }
    std::this_thread::sleep_for(2ms);
  }
  auto after = procStat(pid);
  if (std::getenv("FLANNEL_BENCH_LOG") != nullptr) {
    // Resident memory per mapping, to see where the RSS goes.
    std::ifstream smaps(fmt::format("/proc/{}/smaps", pid));
    std::string name;
    std::map<std::string, long> by_name;
    for (std::string line; std::getline(smaps, line);) {
      if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
          line.find('-') < 16) {
        auto last = line.find_last_of(' ');
        name = line.size() > 73 ? line.substr(73) : std::string("[anon]");
        (void)last;
      } else if (line.rfind("Rss:", 0) == 0) {
        by_name[name] += std::stol(line.substr(4));
      }
    }
    std::vector<std::pair<long, std::string>> top;
    for (auto& [n, kb] : by_name) {
      top.push_back({kb, n});
    }
    std::sort(top.rbegin(), top.rend());
    for (size_t i = 0; i < top.size() && i < 25; ++i) {
      std::fprintf(stderr, "%6ld kB  %s\n", top[i].first, top[i].second.c_str());
    }
  }
  std::printf("| idle flanneld RSS (%s, 1 peer, %s mode%s) | %.2f MB |\n", backend.c_str(),
              nftables ? "nftables" : "iptables", masq ? ", --ip-masq" : "",
              static_cast<double>(after.rss_kb) / 1024.0);
  std::printf(
      "| same, PSS (shared library pages divided among their users) / private | %.2f / "
      "%.2f MB |\n",
      static_cast<double>(after.pss_kb) / 1024.0, static_cast<double>(after.private_kb) / 1024.0);
  std::printf("| CPU used while idle for %d s | %.3f s (%.3f %%) |\n", seconds,
              after.cpu_s - before.cpu_s, 100.0 * (after.cpu_s - before.cpu_s) / seconds);
  std::printf("| processes forked while idle for %d s | %zu |\n", seconds, forked.size());
  return 0;
}

size_t peerRoutes(FlannelCluster& c, int i) {
  auto r = c.host(i).ip({"route", "show", "dev", "flannel.1"});
  if (!r) {
    return 0;
  }
  size_t n = 0;
  std::istringstream in(r->out);
  for (std::string line; std::getline(in, line);) {
    n += line.find(" onlink") != std::string::npos ? 1 : 0;
  }
  return n;
}

int converge(int hosts) {
  auto c = makeCluster(hosts, "vxlan");
  auto t0 = Clock::now();
  check(c->startAll());
  Clock::time_point last_env = t0;
  for (int i = 1; i <= hosts; ++i) {
    last_env = std::max(last_env, waitFile(*c, i, 60s));
  }
  std::vector<bool> done(hosts + 1, false);
  int remaining = hosts;
  Clock::time_point last_route = last_env;
  auto deadline = Clock::now() + 60s;
  while (remaining > 0 && Clock::now() < deadline) {
    for (int i = 1; i <= hosts; ++i) {
      if (!done[i] && peerRoutes(*c, i) == static_cast<size_t>(hosts - 1)) {
        done[i] = true;
        --remaining;
        last_route = Clock::now();
      }
    }
  }
  if (remaining > 0) {
    throw std::runtime_error(fmt::format("{} hosts never got every route", remaining));
  }
  std::printf("| %d hosts started at once: first start to last subnet.env | %.0f ms |\n", hosts,
              ms(last_env - t0));
  std::printf(
      "| last subnet.env to every host having all %d routes (poll resolution ~%d ms) | "
      "%.0f ms |\n",
      hosts - 1, hosts * 3, ms(last_route - last_env));
  return 0;
}

double iperf(Netns& from, Netns& to, const std::string& ip, int seconds) {
  ChildSpec server;
  server.argv = {"iperf3", "-s", "-1"};
  auto srv = to.spawn(server);
  if (!srv) {
    throw std::runtime_error(srv.error().message);
  }
  double gbits = -1;
  pollUntil(
      [&] {
        auto out = from.exec({"iperf3", "-c", ip, "-t", std::to_string(seconds), "-J"},
                             std::chrono::seconds(seconds + 15));
        if (!out || !out->success()) {
          return false;
        }
        auto j = nlohmann::json::parse(out->out, nullptr, false);
        if (j.is_discarded() || !j.contains("end") || !j["end"].contains("sum_received")) {
          return false;
        }
        gbits = j["end"]["sum_received"]["bits_per_second"].get<double>() / 1e9;
        return true;
      },
      std::chrono::seconds(seconds + 20), 300ms);
  (void)(*srv)->stop(1000ms);
  if (gbits < 0) {
    throw std::runtime_error("iperf3 failed");
  }
  return gbits;
}

int throughput(int seconds) {
  for (const char* backend : {"vxlan", "host-gw"}) {
    auto c = makeCluster(2, backend);
    check(c->startAll());
    waitFile(*c, 1, 20s);
    waitFile(*c, 2, 20s);
    for (int i = 1; i <= 2; ++i) {
      auto pod = c->addPod(i);
      if (!pod) {
        throw std::runtime_error(pod.error().message);
      }
    }
    if (std::string(backend) == "vxlan") {
      double raw = iperf(c->host(1), c->host(2), Topology::hostAddress(2), seconds);
      std::printf(
          "| iperf3 TCP host-to-host on the raw underlay (veth + bridge), 1 stream | "
          "%.2f Gbit/s |\n",
          raw);
    }
    double pods = iperf(c->pod(1), c->pod(2), c->podIp(2), seconds);
    std::printf("| iperf3 TCP pod-to-pod over %s, 1 stream | %.2f Gbit/s |\n", backend, pods);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || ::geteuid() != 0) {
    std::fprintf(stderr, "usage (as root): flanneld_bench startup|idle|converge|throughput [n]\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  std::string what = argv[1];
  int n = argc > 2 ? std::atoi(argv[2]) : 0;
  try {
    if (what == "startup") {
      return startup(n > 0 ? n : 20);
    }
    if (what == "idle") {
      return idle(n > 0 ? n : 20, std::vector<std::string>(argv + std::min(argc, 3), argv + argc));
    }
    if (what == "converge") {
      return converge(n > 1 ? n : 30);
    }
    if (what == "throughput") {
      return throughput(n > 0 ? n : 5);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flanneld_bench %s: %s\n", what.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "unknown benchmark %s\n", what.c_str());
  return 2;
}
