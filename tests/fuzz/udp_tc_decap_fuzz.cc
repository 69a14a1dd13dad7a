// Fuzz target: the udp fast path's decap program (src/kernel/tun/bpf/udp_tc.bpf.c), run by the
// kernel (BPF_PROG_TEST_RUN; loaded once, never attached) on frames built from the input, and
// checked against user-space decap() with the same leases (tests/support/tc_decap_check.h): a
// frame the program takes must be one user space forwards, with the same bytes; a frame it
// leaves must come back unchanged. libFuzzer's coverage is of the user-space side, which steers
// the inputs through decap()'s cases; the program sees every one of them. Needs root (loading
// BPF programs): CI runs it as root; anywhere else it stops at once with a message.
//
// Input: [0: flags] [rest: the UDP payload, i.e. the inner packet]
//   flags & 0x03  sender: 0/1 a leased peer, 2 another leased peer, 3 an unleased address
//   flags & 0x04  UDP length 4 longer than the payload
//   flags & 0x08  outer total length 8 longer than the frame
//   flags & 0x10  outer fragment (MF)
//   flags & 0x20  another destination port
//   flags & 0xc0  0, 4, 10 or 60 bytes of Ethernet padding after the datagram
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "support/tc_decap_check.h"

namespace {

using flannel::Ip4;
namespace test = flannel::test;

struct Fixture {
  std::unique_ptr<flannel::kernel::TcPath> path;
  flannel::backend::udp::RouteTable table{
      Ip4::fromBytes(10, 5, 1, 0),
      24,
      {{Ip4::fromBytes(10, 5, 2, 0), 24, Ip4::fromBytes(192, 168, 91, 12)},
       {Ip4::fromBytes(10, 5, 3, 0), 24, Ip4::fromBytes(192, 168, 91, 13)}}};
};

Fixture& fixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    auto p = flannel::kernel::TcPath::load(
        {.local_ip = test::kTcLocal, .port = test::kTcPort, .ext_ifindex = 1, .tun_ifindex = 1});
    if (!p) {
      std::fprintf(stderr, "udp_tc_decap_fuzz: %s (run as root)\n", p.error().message.c_str());
      std::abort();
    }
    fx->path = std::move(*p);
    std::vector<flannel::kernel::UdpFastPathRoute> routes = {
        {.network = Ip4::fromBytes(10, 5, 2, 0),
         .prefix_len = 24,
         .peer = Ip4::fromBytes(192, 168, 91, 12)},
        {.network = Ip4::fromBytes(10, 5, 3, 0),
         .prefix_len = 24,
         .peer = Ip4::fromBytes(192, 168, 91, 13)}};
    if (!fx->path->enable(Ip4::fromBytes(10, 5, 1, 0), 24) || !fx->path->setPeers(routes)) {
      std::fprintf(stderr, "udp_tc_decap_fuzz: cannot fill the maps\n");
      std::abort();
    }
    return fx;
  }();
  return *f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 2000) {
    return 0;
  }
  const uint8_t flags = data[0];
  test::Frame inner(size - 1);
  for (size_t i = 1; i < size; ++i) {
    inner[i - 1] = std::byte{data[i]};
  }
  static const Ip4 senders[] = {Ip4::fromBytes(192, 168, 91, 12), Ip4::fromBytes(192, 168, 91, 12),
                                Ip4::fromBytes(192, 168, 91, 13), Ip4::fromBytes(192, 168, 91, 99)};
  test::Frame f = test::tcFrame(inner, senders[flags & 0x03]);
  if (flags & 0x04) {
    test::setBe16(f, 38, static_cast<uint16_t>(test::be16(f, 38) + 4));
  }
  if (flags & 0x08) {
    test::setBe16(f, 16, static_cast<uint16_t>(test::be16(f, 16) + 8));
  }
  if (flags & 0x10) {
    test::setBe16(f, 20, 0x2000);
  }
  if (flags & (0x08 | 0x10)) {
    test::fixIpv4Checksum(f, 14);
  }
  if (flags & 0x20) {
    test::setBe16(f, 36, 4789);
  }
  static const size_t padding[] = {0, 4, 10, 60};
  f.resize(f.size() + padding[flags >> 6], std::byte{0});
  const auto c = test::checkDecap(*fixture().path, fixture().table, f);
  if (!c.problem.empty()) {
    std::fprintf(stderr, "udp_tc_decap_fuzz: %s (tc action %d)\n", c.problem.c_str(), c.action);
    std::abort();
  }
  return 0;
}
