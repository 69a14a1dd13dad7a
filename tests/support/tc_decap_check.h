// The differential check of the udp fast path's decap program (kernel/tun/bpf/udp_tc.bpf.c, run by
// the kernel through TcPath::testDecap()) against user-space decap()
// (backend/udp/dataplane/packet.h) with the same leases. Shared by the contract test
// (tests/contract/packet_io/udp_fast_path_test.cc) and the fuzz target
// (tests/fuzz/udp_tc_decap_fuzz.cc). The rules:
//   - a frame the program takes (TC_ACT_REDIRECT) is one user space accepts, and the program's
//     output is user space's, byte for byte: the Ethernet header, then the inner packet with its
//     TTL decremented and a valid header checksum (the checksum field may differ only in which
//     of the one's complement's two zeros it holds);
//   - a frame it leaves (TC_ACT_OK) comes back unchanged;
//   - nothing else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/udp/dataplane/packet.h"
#include "kernel/tun/tc_path.h"

namespace flannel::test {

using Frame = std::vector<std::byte>;

// What the frames are addressed to: 192.168.91.11:8285.
inline constexpr uint16_t kTcPort = 8285;
inline constexpr Ip4 kTcLocal = Ip4::fromBytes(192, 168, 91, 11);

void setBe16(Frame& b, size_t at, uint16_t v);
uint16_t be16(const Frame& b, size_t at);
// Recomputes the 20-byte IPv4 header checksum at `at`.
void fixIpv4Checksum(Frame& b, size_t at);

// An Ethernet frame carrying `inner` in flannel's udp format: outer IPv4 from `from` to
// kTcLocal (DF, TTL 64), UDP kTcPort -> kTcPort, checksum 0.
Frame tcFrame(const Frame& inner, Ip4 from);

struct DecapCheck {
  int action = -1;      // the program's tc action
  std::string problem;  // empty when the verdict follows the rules above
};
DecapCheck checkDecap(const kernel::TcPath& path, const backend::udp::RouteTable& table,
                      const Frame& frame);

}  // namespace flannel::test
