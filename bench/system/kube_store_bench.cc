// Kubernetes store benchmark (issue #7): a 5,000-node list, then a stream of node updates,
// against the test API server (tests/support/kube) on loopback.
//
//   build/release/bench/kube_store_bench [nodes=5000] [updates=1000]
//
// Measures: time from KubeStore creation to the first full lease listing ("first ready"),
// client-side CPU per 1,000 update events (the control thread's CPU clock; the API server runs
// on its own thread and is not counted), and the process RSS the store adds. Bounded waits.
#include <time.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "contract/store/run_sync.h"
#include "store/kube/kube_store.h"
#include "support/kube/kube_api_server.h"

namespace {

using namespace flannel;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double threadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

long rssKb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return 0;
}

std::map<std::string, std::string> annotations(int i) {
  const std::string p = "flannel.alpha.coreos.com/";
  return {{p + "kube-subnet-manager", "true"},
          {p + "backend-type", "vxlan"},
          {p + "backend-data", R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"})"},
          {p + "public-ip", fmt::format("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256)}};
}

int bench(int nodes, int updates) {
  auto server = test::KubeApiServer::start({}).value();
  std::vector<test::KubeNodeSpec> specs;
  for (int i = 0; i < nodes; ++i) {
    specs.push_back({.name = fmt::format("n{}", i),
                     .annotations = annotations(i),
                     .pod_cidrs = {fmt::format("10.{}.{}.0/24", 64 + i / 256, i % 256)},
                     .labels = {},
                     .internal_ip = ""});
  }
  server->putNodes(std::move(specs));
  const std::string conf = "/tmp/kube_store_bench_net_conf.json";
  std::ofstream(conf) << R"({"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}})";

  net::io_context io;
  const long rss_before = rssKb();
  store::kube::ClientConfigInputs inputs;
  inputs.kube_api_url = server->url();
  auto client = store::kube::KubeClient::create(io.get_executor(),
                                                store::kube::loadClientConfig(inputs).value())
                    .value();
  store::kube::KubeStoreOptions options;
  options.node_name = "n0";
  options.net_config_path = conf;
  auto t0 = Clock::now();
  auto store = test::runSync(io, store::kube::KubeStore::create(std::move(client), options), 60s)
                   .value()
                   .value();
  auto snap = test::runSync(io, store->leases(), 120s).value().value();
  auto ready = Clock::now() - t0;
  const long rss_after = rssKb();

  // A stream of updates: each changes one node's public-ip annotation.
  size_t seen = 0;
  auto revision = snap.revision;
  const double cpu0 = threadCpuSeconds();
  auto s0 = Clock::now();
  for (int u = 0; u < updates; ++u) {
    auto a = annotations(u % nodes + 1);
    a["flannel.alpha.coreos.com/public-ip"] = fmt::format("10.200.{}.{}", u / 256 % 256, u % 256);
    server->setAnnotations(fmt::format("n{}", u % (nodes - 1) + 1), a);
  }
  auto deadline = Clock::now() + 120s;
  while (seen < static_cast<size_t>(updates) && Clock::now() < deadline) {
    auto batch = test::runSync(io, store->nextEvents(revision), 30s);
    if (!batch || !*batch) {
      break;
    }
    seen += (*batch)->events.size();
    revision = (*batch)->revision;
  }
  const double cpu = threadCpuSeconds() - cpu0;
  auto stream = Clock::now() - s0;
  std::printf("| nodes listed | %zu |\n", snap.leases.size());
  std::printf("| KubeStore creation to the first full listing (\"first ready\") | %.0f ms |\n",
              std::chrono::duration<double, std::milli>(ready).count());
  std::printf("| %d node updates: events received | %zu in %.0f ms |\n", updates, seen,
              std::chrono::duration<double, std::milli>(stream).count());
  std::printf("| client CPU per 1,000 events (control thread) | %.1f ms |\n",
              seen ? 1000.0 * cpu / static_cast<double>(seen) * 1000.0 : 0.0);
  std::printf("| RSS added by the store with %d nodes known | %.1f MB |\n", nodes,
              static_cast<double>(rss_after - rss_before) / 1024.0);
  return seen >= static_cast<size_t>(updates) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int nodes = argc > 1 ? std::atoi(argv[1]) : 5000;
  int updates = argc > 2 ? std::atoi(argv[2]) : 1000;
  spdlog::set_level(spdlog::level::warn);
  try {
    return bench(std::max(nodes, 2), std::max(updates, 1));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kube_store_bench: %s\n", e.what());
    return 1;
  }
}
