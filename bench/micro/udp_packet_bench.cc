// Micro-benchmarks of the udp backend's packet code on one core (issue #6): what one worker
// thread can do per packet when the system calls are left out.
//
//   build/release/bench/udp_packet_bench [--benchmark_filter=...]
//
// Packets are built once; each iteration restores the two bytes the previous one changed (TTL
// and header checksum) instead of copying the packet again, so the figures are the work itself.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "backend/udp/dataplane/packet.h"

namespace flannel::backend::udp {
namespace {

constexpr size_t kMtu = 1472;
constexpr size_t kMss = kMtu - 40;

void put16(std::byte* p, uint16_t v) {
  p[0] = std::byte(v >> 8);
  p[1] = std::byte(v & 0xff);
}
void put32(std::byte* p, uint32_t v) {
  put16(p, uint16_t(v >> 16));
  put16(p + 2, uint16_t(v & 0xffff));
}

// An IPv4/TCP packet 10.5.1.2:40000 -> 10.5.2.2:5201 with `payload` bytes and valid checksums.
std::vector<std::byte> tcpPacket(size_t payload, uint8_t ttl = 64) {
  std::vector<std::byte> p(40 + payload);
  p[0] = std::byte{0x45};
  put16(&p[2], uint16_t(p.size()));
  put16(&p[6], 0x4000);
  p[8] = std::byte{ttl};
  p[9] = std::byte{kProtoTcp};
  put32(&p[12], 0x0a050102);
  put32(&p[16], 0x0a050202);
  put16(&p[10], checksumFold(checksumAdd({p.data(), 20})));
  put16(&p[20], 40000);
  put16(&p[22], 5201);
  put32(&p[24], 1000);
  p[32] = std::byte{0x50};
  p[33] = std::byte{0x10};  // ACK
  for (size_t i = 0; i < payload; ++i) {
    p[40 + i] = std::byte(i * 7);
  }
  return p;
}

RouteTable table(size_t peers) {
  std::vector<RouteTable::Entry> e;
  for (size_t i = 0; i < peers; ++i) {
    e.push_back({.network = Ip4::fromU32(0x0a050000u + uint32_t((i + 2) << 8)),
                 .prefix_len = 24,
                 .peer = Ip4::fromU32(0xc0a85b00u + uint32_t(i % 250 + 2))});
  }
  return RouteTable(Ip4::fromU32(0x0a050100), 24, std::move(e));
}

void BM_Encap(benchmark::State& state) {
  const auto t = table(size_t(state.range(0)));
  auto pkt = tcpPacket(kMss);
  const std::byte ttl = pkt[8], c0 = pkt[10], c1 = pkt[11];
  for (auto _ : state) {
    pkt[8] = ttl;
    pkt[10] = c0;
    pkt[11] = c1;
    auto r = encap(pkt, t);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * int64_t(pkt.size()));
}
BENCHMARK(BM_Encap)->Arg(2)->Arg(5000);

void BM_Decap(benchmark::State& state) {
  const auto t = table(size_t(state.range(0)));
  // A datagram from peer 192.168.91.2 (lease 10.5.2.0/24) for our subnet 10.5.1.0/24.
  auto pkt = tcpPacket(kMss);
  put32(&pkt[12], 0x0a050202);
  put32(&pkt[16], 0x0a050102);
  pkt[10] = pkt[11] = std::byte{0};
  put16(&pkt[10], checksumFold(checksumAdd({pkt.data(), 20})));
  const std::byte ttl = pkt[8], c0 = pkt[10], c1 = pkt[11];
  const Ip4 from = Ip4::fromU32(0xc0a85b02);
  for (auto _ : state) {
    pkt[8] = ttl;
    pkt[10] = c0;
    pkt[11] = c1;
    auto r = decap(pkt, from, t);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * int64_t(pkt.size()));
}
BENCHMARK(BM_Decap)->Arg(2)->Arg(5000);

// A 64 KiB TSO super packet cut into MSS-sized segments with every checksum computed.
void BM_SegmentTso(benchmark::State& state) {
  auto super = tcpPacket(65535 - 40);
  kernel::VirtioNetHdr h{};
  h.gso_type = kernel::VirtioNetHdr::kGsoTcpV4;
  h.gso_size = uint16_t(kMss);
  std::vector<std::byte> out(131072);
  size_t segments = 0;
  for (auto _ : state) {
    auto s = segmentSuper(super, h, out);
    segments = s.count;
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * int64_t(segments));
  state.SetBytesProcessed(state.iterations() * int64_t(super.size()));
}
BENCHMARK(BM_SegmentTso);

// The receive side: consecutive segments of one flow merged into one super packet for the TUN.
void BM_CoalesceTcp(benchmark::State& state) {
  std::vector<std::vector<std::byte>> segs;
  for (uint32_t i = 0; i < 45; ++i) {
    auto p = tcpPacket(kMss);
    put32(&p[24], 1000 + i * uint32_t(kMss));
    segs.push_back(std::move(p));
  }
  std::vector<std::byte> buf(65536);
  TcpCoalescer c({buf.data(), buf.size()});
  size_t merged = 0;
  for (auto _ : state) {
    merged = 0;
    for (const auto& s : segs) {
      if (!(c.active() && c.append(s))) {
        if (c.active()) {
          kernel::VirtioNetHdr h{};
          benchmark::DoNotOptimize(c.finish(h));
        }
        c.start(s);
      }
      ++merged;
    }
    kernel::VirtioNetHdr h{};
    benchmark::DoNotOptimize(c.finish(h));
  }
  state.SetItemsProcessed(state.iterations() * int64_t(merged));
  state.SetBytesProcessed(state.iterations() * int64_t(merged * (kMss + 40)));
}
BENCHMARK(BM_CoalesceTcp);

void BM_Checksum64k(benchmark::State& state) {
  std::vector<std::byte> data(65536);
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = std::byte(i * 13);
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(checksumAdd(data));
  }
  state.SetBytesProcessed(state.iterations() * int64_t(data.size()));
}
BENCHMARK(BM_Checksum64k);

}  // namespace
}  // namespace flannel::backend::udp

BENCHMARK_MAIN();
