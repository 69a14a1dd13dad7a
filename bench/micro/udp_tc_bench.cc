// The tc BPF fast path's decap program on one core, run by the kernel (BPF_PROG_TEST_RUN: the
// kernel's own time for each run, averaged; the program is loaded, never attached):
//
//   udp_tc_bench [runs=200000]     as root; prints a Markdown table
//
// Cases: a 1448-byte TCP segment from a leased peer (taken: decapsulated, TTL decremented,
// redirect decided; the redirect itself, netif_rx into the TUN device, is not part of a test
// run), a datagram from an unleased sender (left to user space), and a TCP packet that is not
// flannel's at all (what every other packet on the external interface pays). The encap program
// cannot be run this way (test runs hand over Ethernet frames; it sees the TUN device's bare IP
// packets); udp_bench measures both programs end to end.
#include <arpa/inet.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernel/tun/tc_path.h"
#include "support/packet_builder.h"
#include "support/tc_decap_check.h"

namespace {

using flannel::Ip4;
using Bytes = std::vector<std::byte>;

// Ethernet + outer IPv4/UDP 8285 from `from` + inner IPv4/TCP with `payload` bytes.
Bytes flannelFrame(Ip4 from, size_t payload) {
  return flannel::test::tcFrame(
      flannel::test::PacketBuilder::tcp().src("10.5.2.7").dst("10.5.1.9").payload(payload).build(),
      from);
}

// An Ethernet frame with a TCP packet between the two hosts (not flannel's).
Bytes plainTcpFrame() {
  Bytes f(14, std::byte{0});
  flannel::test::setBe16(f, 12, 0x0800);
  const Bytes tcp = flannel::test::PacketBuilder::tcp()
                        .src("192.168.91.12")
                        .dst("192.168.91.11")
                        .payload(1448)
                        .build();
  f.insert(f.end(), tcp.begin(), tcp.end());
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const uint32_t runs =
      argc > 1 ? static_cast<uint32_t>(std::strtoul(argv[1], nullptr, 10)) : 200000;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "udp_tc_bench: run as root (loads BPF programs)\n");
    return 1;
  }
  auto path = flannel::kernel::TcPath::load({.local_ip = Ip4::fromBytes(192, 168, 91, 11),
                                             .port = 8285,
                                             .ext_ifindex = 1,
                                             .tun_ifindex = 1});
  if (!path) {
    std::fprintf(stderr, "udp_tc_bench: %s\n", path.error().message.c_str());
    return 1;
  }
  if (!(*path)->enable(Ip4::fromBytes(10, 5, 1, 0), 24) ||
      !(*path)->setPeers({{.network = Ip4::fromBytes(10, 5, 2, 0),
                           .prefix_len = 24,
                           .peer = Ip4::fromBytes(192, 168, 91, 12)}})) {
    std::fprintf(stderr, "udp_tc_bench: cannot fill the maps\n");
    return 1;
  }
  struct Case {
    const char* name;
    Bytes frame;
    int expect;
  };
  const Case cases[] = {
      {"1448-byte TCP segment from a leased peer (taken)",
       flannelFrame(Ip4::fromBytes(192, 168, 91, 12), 1448), TC_ACT_REDIRECT},
      {"datagram from an unleased sender (left to user space)",
       flannelFrame(Ip4::fromBytes(192, 168, 91, 99), 1448), TC_ACT_OK},
      {"other traffic on the interface (TCP, not flannel's)", plainTcpFrame(), TC_ACT_OK},
  };
  std::printf("| decap program case | ns per packet | packets/s on one core |\n|---|---|---|\n");
  // A test run with `repeat` runs the program again and again on the same packet, which the
  // taken case changes on the first run; so each case is run once per call, `runs` calls, and
  // the kernel's time for each run (not the system call around it) is averaged.
  // The cases the program leaves alone do not change the packet: one call with `repeat` runs
  // gives the kernel's mean without the per-call timer overhead (shown too, for the taken case's
  // figure to be read against).
  for (const auto& c : cases) {
    if (c.expect == TC_ACT_OK) {
      auto v = (*path)->testDecap(c.frame, runs);
      if (!v || v->action != c.expect) {
        std::fprintf(stderr, "udp_tc_bench: %s: failed\n", c.name);
        return 1;
      }
      std::printf("| %s (%u runs in one call) | %u | %.1f M |\n", c.name, runs, v->ns_per_run,
                  v->ns_per_run > 0 ? 1e3 / v->ns_per_run : 0.0);
    }
    uint64_t total_ns = 0;
    for (uint32_t i = 0; i < runs; ++i) {
      auto v = (*path)->testDecap(c.frame, 1);
      if (!v) {
        std::fprintf(stderr, "udp_tc_bench: %s\n", v.error().message.c_str());
        return 1;
      }
      if (v->action != c.expect) {
        std::fprintf(stderr, "udp_tc_bench: %s: action %d, expected %d\n", c.name, v->action,
                     c.expect);
        return 1;
      }
      total_ns += v->ns_per_run;
    }
    const double ns = static_cast<double>(total_ns) / runs;
    std::printf("| %s (one run per call) | %.0f | %.1f M |\n", c.name, ns, ns > 0 ? 1e3 / ns : 0.0);
  }
  return 0;
}
