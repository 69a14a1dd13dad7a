// DOC: the udp backend (SPEC.md §5.3): a TUN device flannel%d (IFF_TUN|IFF_NO_PI, MTU ext − 28,
// address = own subnet's network address /32, route <Network> dev flannel0) and a UDP socket on
// IfaceAddr:Port; the raw IPv4 packet is the UDP payload, so Go flannel nodes on udp interoperate.
//
// Lease attributes: PublicIP only (no BackendType, no BackendData); peers are not filtered by
// type. The kernel part (address, route) goes through desiredState() and the reconciler like any
// backend; the forwarding table lives in the data path (dataplane.h), republished on every peer
// change. run() starts the worker threads and stops them when cancelled; the TUN device is not
// persistent, so it (and its route) goes away with the process, as with Go flannel.
//
// Backend config (the Backend object): Port (default 8285), plus two flannel-cpp additions that
// Go flannel ignores: Queues (worker threads / TUN queues; 0 = one per CPU, at most 8) and
// Offload (default true: TSO/GRO on the TUN, GSO/GRO on the socket, each used only where the
// kernel has it) and ThreadPerDirection (default false: one thread serves both directions of a
// queue; true gives each direction its own thread — on 2 cores no reliable gain for one flow
// and 5-15 % less with four, see BENCHMARKS.md) and TcBpf (default true: the in-kernel fast
// path, PacketIo::attachUdpFastPath(), on Linux tc BPF (kernel/tun/tc_path.h), carries the bulk
// of the traffic where the kernel allows it; the user-space workers still run and take
// everything it leaves to them).
#pragma once

#include <map>
#include <memory>

#include "backend/backend.h"
#include "backend/udp/dataplane/dataplane.h"

namespace flannel::backend::udp {

inline constexpr uint16_t kDefaultPort = 8285;

struct UdpConfig {
  uint16_t port = kDefaultPort;
  unsigned queues = 0;  // 0 = auto
  bool offload = true;
  bool thread_per_direction = false;  // two threads per queue (TUN -> UDP, UDP -> TUN)
  bool tc_bpf = true;                 // the in-kernel fast path where available
};

Result<UdpConfig> parseUdpConfig(std::string_view backend_json) noexcept;

class UdpNetwork final : public Network {
 public:
  static Result<std::unique_ptr<Network>> create(const Context& ctx);
  ~UdpNetwork() override;

  LeaseAttrs leaseAttrs() const override;
  uint32_t mtu() const override { return mtu_; }
  Result<void> configure(const Lease& own) override;
  Result<void> acceptPeer(const Lease& peer) const override;
  kernel::DesiredState desiredState(const std::vector<Peer>& peers) const override;
  kernel::Ownership ownership() const override;
  void peersAdded(const std::vector<Lease>& added) override;
  void peersRemoved(const std::vector<Lease>& removed) override;
  async::Awaitable<void> run() override;
  std::vector<Stat> stats() const override;

  DataPlane& dataPlane() { return *dataplane_; }
  int tunIndex() const { return tun_index_; }
  bool tcPathActive() const { return tc_ != nullptr; }
  // With TcBpf on and the lease known: attaches and enables the in-kernel fast path (run() calls
  // it once the data path runs, after subnet.env is written). Logs and carries on without it when
  // that fails.
  void attachFastPath();
  // On a virtual link: tells every peer that our kernel decapsulates (UdpFastPath::announce());
  // run() calls it every second, publish() on every peer change.
  void announce();

 private:
  UdpNetwork(NetworkConfig config, kernel::ExternalInterface ext, kernel::Kernel& kernel);
  void publish();

  NetworkConfig config_;
  kernel::ExternalInterface ext_;
  kernel::Kernel& kernel_;
  UdpConfig udp_{};
  uint32_t mtu_ = 0;
  int tun_index_ = 0;
  std::string tun_name_{};
  std::optional<Lease> own_{};
  std::map<IpNet, Ip4> peers_{};  // peer subnet -> PublicIP
  std::unique_ptr<DataPlane> dataplane_{};
  kernel::PacketIo* packet_io_ = nullptr;  // set when TcBpf is on
  kernel::UdpFastPathOptions fast_path_options_{};
  std::unique_ptr<kernel::UdpFastPath> tc_{};  // null: user space carries everything
};

}  // namespace flannel::backend::udp
