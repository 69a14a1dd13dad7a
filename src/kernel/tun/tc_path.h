// DOC: the udp backend's in-kernel fast path on Linux (kernel::UdpFastPath; config key TcBpf,
// default true, a flannel-cpp addition that Go flannel ignores). Two tc BPF programs
// (bpf/udp_tc.bpf.c) do what the user-space workers do, in the same wire format, for the
// packets that make up the bulk of the traffic: the egress program of the TUN device
// encapsulates packets for peers' subnets and sends them out of the device the routing table
// names for the peer; the ingress program of the external interface decapsulates datagrams from
// leased peers for our subnet and feeds them into the TUN device. Whatever they do not take (no
// lease, unknown senders, malformed or odd packets, ICMP errors to send) reaches the user-space
// data path unchanged, which then behaves as without them.
//
// The programs are attached with tcx links (Linux ≥ 6.6), which belong to this process: when
// flanneld exits or dies, the kernel detaches them, so nothing stale stays on the external
// interface. libbpf (Debian package libbpf1) is loaded with dlopen() to load and attach the
// programs and unloaded once they are attached with tcx links (map updates and reads are single
// bpf(2) commands after that; classic tc filters keep it loaded to remove them at stop); without
// it, without tcx, or without the right to load BPF programs, TcPath::attach fails with the reason
// and the backend runs on the user-space path alone.
//
// Thread safety: one control thread; the kernel reads the maps concurrently (each map element
// is replaced atomically).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "kernel/packet_io.h"

namespace flannel::kernel {

class TcPath final : public UdpFastPath {
 public:
  // Loads the programs and attaches them, taking nothing until enable(). Errors:
  // Errc::Unavailable naming what is missing (libbpf, tcx, permission, the kernel's verifier).
  static Result<std::unique_ptr<TcPath>> attach(const UdpFastPathOptions& options);
  // Loads without attaching: for testRun() (tests, benchmarks, diagnostics).
  static Result<std::unique_ptr<TcPath>> load(const UdpFastPathOptions& options);
  ~TcPath() override;
  TcPath(const TcPath&) = delete;
  TcPath& operator=(const TcPath&) = delete;

  Result<void> enable(Ip4 own_network, uint8_t own_prefix) override;
  Result<void> setPeers(const std::vector<UdpFastPathRoute>& routes) override;
  UdpFastPathStats stats() const override;
  Result<void> announce(Ip4 peer, std::span<const std::byte> datagram) override;

  // What the decap program does with one Ethernet frame (BPF_PROG_TEST_RUN, in the caller's
  // network namespace; nothing is sent): the tc action (TC_ACT_OK = left to user space,
  // TC_ACT_REDIRECT = taken and sent into the TUN device), the frame as the program left it,
  // and the kernel's mean time per run over `repeat` runs. (The encap program cannot be run
  // this way: test runs always hand over an Ethernet frame, while it sees the TUN device's bare
  // IP packets.)
  struct Verdict {
    int action = 0;
    std::vector<std::byte> frame;
    uint32_t ns_per_run = 0;
  };
  Result<Verdict> testDecap(std::span<const std::byte> frame, uint32_t repeat = 1) const;

 private:
  struct Impl;
  explicit TcPath(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  UdpFastPathOptions options_{};
  std::map<std::pair<uint32_t, uint8_t>, uint32_t> routes_{};  // (network, prefix) -> peer
  std::map<uint32_t, uint32_t> peers_{};                       // PublicIP -> leases
  int announce_fd_ = -1;  // UDP, SO_NO_CHECK, bound to local_ip; opened on first use
};

}  // namespace flannel::kernel
