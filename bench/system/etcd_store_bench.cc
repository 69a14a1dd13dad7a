// etcd store benchmark: acquire latency and the time to list and watch 5,000 existing leases,
// against a real etcd started on loopback by the benchmark itself.
//
//   build/release/bench/etcd_store_bench [leases=5000] [rounds=20]
//
// Prints a markdown table for BENCHMARKS.md. Bounded: every wait has a deadline.
#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "contract/store/run_sync.h"
#include "store/etcd/etcd_store.h"
#include "support/etcd_cluster.h"
#include "support/test_run.h"

namespace {

using namespace flannel;
using namespace flannel::store;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

LeaseAttrs attrsFor(uint32_t n) {
  return LeaseAttrs{.public_ip = Ip4::fromU32(0x0a000000u + n),  // private test addresses
                    .public_ipv6 = std::nullopt,
                    .backend_type = "vxlan",
                    .backend_data = R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"})",
                    .backend_v6_data = ""};
}

template <class T>
T run(net::io_context& io, async::Awaitable<T> a) {
  auto r = test::runSync(io, std::move(a), 120s);
  if (!r) {
    throw std::runtime_error("benchmark step timed out");
  }
  return std::move(*r);
}

int bench(int leases, int rounds) {
  auto test_run = test::TestRun::create().value();
  auto cluster = test::EtcdCluster::startOnLoopback(*test_run, 1).value();
  net::io_context io;
  auto kv_options = etcd::EtcdOptions{.endpoints = {cluster->clientEndpoints()},
                                      .tls = {},
                                      .username = "",
                                      .password = "",
                                      .request_timeout = 10000ms};
  auto newStore = [&] {
    return std::make_unique<etcd::EtcdStore>(
        etcd::EtcdKv::create(io.get_executor(), kv_options).value(), etcd::EtcdStoreOptions{});
  };
  // 10.0.0.0/8 with /24 subnets: 65,534 candidates, room for the existing leases.
  auto raw = etcd::EtcdKv::create(io.get_executor(), kv_options).value();
  run(io, raw->put("/coreos.com/network/config", R"({"Network": "10.0.0.0/8"})")).value();
  auto fill_start = Clock::now();
  const int kBatch = 64;
  for (int base = 0; base < leases; base += kBatch) {
    std::vector<async::Awaitable<Result<int64_t>>> puts;
    std::vector<std::unique_ptr<etcd::EtcdKv>> clients;
    for (int i = base; i < std::min(leases, base + kBatch); ++i) {
      clients.push_back(etcd::EtcdKv::create(io.get_executor(), kv_options).value());
      SubnetKey key{.ipv4 = IpNet::masked(Ip4::fromU32(0x0a000000u + (uint32_t(i + 1) << 8)), 24),
                    .ipv6 = std::nullopt};
      puts.push_back(clients.back()->put("/coreos.com/network/subnets/" + subnetKeyName(key),
                                         encodeLeaseAttrs(attrsFor(uint32_t(i + 1)))));
    }
    for (auto& r : test::runAll(io, std::move(puts), 60s)) {
      if (!r || !*r) {
        throw std::runtime_error("filling etcd failed");
      }
    }
  }
  auto fill = Clock::now() - fill_start;

  auto cfg = run(io, newStore()->networkConfig()).value();
  std::vector<double> list_ms, acquire_ms, first_event_ms, open_event_ms;
  for (int r = 0; r < rounds; ++r) {
    auto watcher = newStore();
    auto t0 = Clock::now();
    auto snap = run(io, watcher->leases()).value();
    list_ms.push_back(ms(Clock::now() - t0));
    if (snap.leases.size() < static_cast<size_t>(leases)) {
      throw std::runtime_error("listing returned too few leases");
    }
    // Acquire for a new host: lists all leases, picks a free subnet, creates it.
    auto store = newStore();
    auto t1 = Clock::now();
    auto lease =
        run(io, store->acquireLease(cfg, AcquireRequest{.attrs = attrsFor(uint32_t(1000000 + r))}))
            .value();
    acquire_ms.push_back(ms(Clock::now() - t1));
    // The watcher learns about that lease: open the watch from the snapshot's revision.
    auto t2 = Clock::now();
    auto batch = run(io, watcher->nextEvents(snap.revision)).value();
    first_event_ms.push_back(ms(Clock::now() - t2));
    if (batch.events.empty() || !(batch.events.back().lease.subnet == lease.subnet)) {
      throw std::runtime_error("watch did not deliver the new lease");
    }
    // On the open (caught-up) stream: from a lease change to the event in the watcher.
    auto peer = newStore();
    auto t3 = Clock::now();
    auto next =
        run(io, peer->acquireLease(cfg, AcquireRequest{.attrs = attrsFor(uint32_t(2000000 + r))}))
            .value();
    auto t4 = Clock::now();
    auto batch2 = run(io, watcher->nextEvents(batch.revision)).value();
    open_event_ms.push_back(ms(Clock::now() - t4));
    (void)t3;
    if (batch2.events.empty() || !(batch2.events.back().lease.subnet == next.subnet)) {
      throw std::runtime_error("open watch did not deliver the second lease");
    }
  }
  std::printf("| leases in etcd | %d |\n", leases);
  std::printf("| fill (parallel puts, not a flannel path) | %.0f ms |\n", ms(fill));
  std::printf("| list all leases (`leases()`), median of %d | %.1f ms |\n", rounds,
              median(list_ms));
  std::printf("| acquire a new lease (list + pick + create txn + grant), median | %.1f ms |\n",
              median(acquire_ms));
  std::printf("| watch from the snapshot revision to the first event, median | %.1f ms |\n",
              median(first_event_ms));
  std::printf("| open watch: acquire finished to event delivered, median | %.2f ms |\n",
              median(open_event_ms));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int leases = argc > 1 ? std::atoi(argv[1]) : 5000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 20;
  spdlog::set_level(spdlog::level::warn);
  try {
    return bench(std::max(leases, 1), std::max(rounds, 1));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "etcd_store_bench: %s\n", e.what());
    return 1;
  }
}
