// DOC: the in-memory twins of the packet I/O seam (src/kernel/packet_io.h, DESIGN.md seam 6):
//
//   ChannelTun  : kernel::TunQueue.  The test push()es what "the kernel" hands to read() and
//                 takeWritten() what the data path wrote. pollFd() is an eventfd that is readable
//                 exactly while pushed packets wait, so a worker's poll() loop runs on it.
//   ChannelNet  : a "network" joining ChannelUdp endpoints by Endpoint (address:port); a datagram
//                 to an endpoint nobody opened is lost (counted), as UDP is.
//   ChannelUdp  : kernel::UdpBatchSocket on a ChannelNet. gso()/gro() are chosen when opening:
//                 with gso on, a Datagram with segment > 0 is split into datagrams of that size
//                 like the kernel does; with gro on, the receiver gets a GSO send as one slot
//                 (RecvSlot::segment set) and consecutive equal-sized datagrams of one sender are
//                 merged into one slot, as NIC GRO does. pollFd() readable while datagrams wait.
//   ChannelPacketIo: kernel::PacketIo handing out the two above (for UdpNetwork tests).
//
// tests/contract/packet_io/packet_io_contract_test.cc runs the same checks on these and on
// LinuxPacketIo; that suite is why the twins can be trusted.
//
// Thread safety: every method may be called from any thread (a DataPlane worker thread on one
// side, the test thread on the other); each object guards its queues with its own mutex.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernel/packet_io.h"

namespace flannel::test {

// A non-blocking eventfd used as a level flag: readable while set.
class EventFlag {
 public:
  EventFlag();
  ~EventFlag();
  EventFlag(const EventFlag&) = delete;
  EventFlag& operator=(const EventFlag&) = delete;
  int fd() const { return fd_; }
  void set();    // idempotent
  void clear();  // idempotent
 private:
  int fd_ = -1;
  bool set_ = false;
};

struct TunPacket {
  std::optional<kernel::VirtioNetHdr> hdr{};  // what write() got (nullptr: none)
  std::vector<std::byte> data{};
};

class ChannelTun final : public kernel::TunQueue {
 public:
  explicit ChannelTun(bool vnet = false) : vnet_(vnet) {}

  // --- the test's side ---------------------------------------------------------------------
  // Queues a packet for read(); with vnet on, read() also returns `hdr`.
  void push(std::span<const std::byte> pkt, const kernel::VirtioNetHdr& hdr = {});
  size_t pending() const;
  // Everything written so far, oldest first; empties the list.
  std::vector<TunPacket> takeWritten();
  size_t writtenCount() const;
  // Blocks until at least `n` packets were written (and not taken) or `timeout` passed.
  bool waitWritten(size_t n, std::chrono::milliseconds timeout) const;
  // Further writes fail with -err (0: succeed again).
  void failWrites(int err);
  bool vnet() const { return vnet_; }

  // --- kernel::TunQueue --------------------------------------------------------------------
  int pollFd() const override { return readable_.fd(); }
  long read(kernel::VirtioNetHdr* hdr, std::span<std::byte> buf) override;
  int write(const kernel::VirtioNetHdr* hdr, std::span<const std::byte> pkt) override;

 private:
  const bool vnet_;
  mutable std::mutex mu_;
  mutable std::condition_variable written_cv_;
  EventFlag readable_;
  std::deque<TunPacket> inbound_;  // pushed by the test, for read()
  std::vector<TunPacket> written_;
  int write_err_ = 0;
};

// A TunDevice made of ChannelTun queues; `queues` points at them (owned by `device`).
struct ChannelTunDevice {
  kernel::TunDevice device{};
  std::vector<ChannelTun*> queues{};
};
ChannelTunDevice makeChannelTun(const std::string& name, size_t queues, bool vnet);

class ChannelUdp;

class ChannelNet : public std::enable_shared_from_this<ChannelNet> {
 public:
  static std::shared_ptr<ChannelNet> create();
  struct SocketOptions {
    bool gso = false;
    bool gro = false;
    bool reuseport = false;  // may share its endpoint with other reuseport sockets
  };
  // An endpoint on this network; nullptr when `self` is taken (EADDRINUSE) and not both sides
  // asked for reuseport. A reuseport group spreads senders over its sockets by a hash of the
  // sender's endpoint, so one sender always reaches the same socket.
  std::unique_ptr<ChannelUdp> open(kernel::Endpoint self, SocketOptions opts);
  std::unique_ptr<ChannelUdp> open(kernel::Endpoint self) { return open(self, SocketOptions{}); }
  // Delivers `data` to `to` as if sent from `from` (a source nobody opened, junk, ...). False
  // when nobody listens at `to`.
  bool inject(kernel::Endpoint from, kernel::Endpoint to, std::span<const std::byte> data);
  // Datagrams sent to an endpoint nobody opened.
  uint64_t lost() const;

 private:
  friend class ChannelUdp;
  ChannelNet() = default;
  static uint64_t key(kernel::Endpoint e) { return (uint64_t{e.addr.toU32()} << 16) | e.port; }
  void detach(const ChannelUdp* s);
  // Under mu_: the receiver at `to` for datagrams from `from`, or nullptr.
  ChannelUdp* find(kernel::Endpoint from, kernel::Endpoint to);

  mutable std::mutex mu_;
  std::map<uint64_t, std::vector<ChannelUdp*>> sockets_;
  uint64_t lost_ = 0;
};

class ChannelUdp final : public kernel::UdpBatchSocket {
 public:
  ~ChannelUdp() override;

  kernel::Endpoint self() const { return self_; }
  // Datagrams waiting for recv() (a GSO send to a GRO receiver counts once).
  size_t pending() const;
  // The next `times` send() calls fail for their first datagram with -err.
  void failSends(int err, int times = 1);

  // --- kernel::UdpBatchSocket --------------------------------------------------------------
  int pollFd() const override { return readable_.fd(); }
  int recv(std::span<kernel::RecvSlot> slots) override;
  int send(std::span<const kernel::Datagram> out) override;
  bool gso() const override { return opts_.gso; }
  bool gro() const override { return opts_.gro; }

  // The largest UDP payload over IPv4 and the kernel's UDP_MAX_SEGMENTS.
  static constexpr size_t kMaxPayload = 65507;
  static constexpr size_t kMaxSegments = 64;

 private:
  friend class ChannelNet;
  struct Queued {
    kernel::Endpoint from{};
    std::vector<std::byte> data{};
    uint16_t segment = 0;  // a GSO run kept whole for a GRO receiver
  };
  ChannelUdp(std::shared_ptr<ChannelNet> net, kernel::Endpoint self, ChannelNet::SocketOptions o)
      : net_(std::move(net)), self_(self), opts_(o) {}
  // Called with the net's mutex held.
  void deliver(kernel::Endpoint from, std::span<const std::byte> data, uint16_t segment);

  std::shared_ptr<ChannelNet> net_;
  const kernel::Endpoint self_;
  const ChannelNet::SocketOptions opts_;
  mutable std::mutex mu_;
  EventFlag readable_;
  std::deque<Queued> queue_;
  int fail_err_ = 0;
  int fail_times_ = 0;
};

// PacketIo over the twins: openTun() makes ChannelTun queues (vnet when asked and
// `vnet_supported`), openUdp() opens ChannelUdp endpoints on `net`. Records what it was asked.
class ChannelPacketIo final : public kernel::PacketIo {
 public:
  explicit ChannelPacketIo(std::shared_ptr<ChannelNet> net) : net_(std::move(net)) {}
  bool vnet_supported = true;
  bool gso_supported = true;
  bool gro_supported = true;
  std::optional<Error> fail_tun{};
  std::optional<Error> fail_udp{};
  std::string tun_name = "flannel0";

  std::vector<kernel::TunOptions> tun_calls{};
  std::vector<kernel::UdpOptions> udp_calls{};
  std::vector<ChannelTun*> tun_queues{};  // of the last openTun()
  std::vector<ChannelUdp*> sockets{};     // of the last openUdp()

  // attachUdpFastPath(): the PacketIo default (Errc::Unavailable) unless `fast_path` is set.
  std::function<Result<std::unique_ptr<kernel::UdpFastPath>>(const kernel::UdpFastPathOptions&)>
      fast_path{};
  std::vector<kernel::UdpFastPathOptions> fast_path_calls{};

  Result<kernel::TunDevice> openTun(const kernel::TunOptions& opts) override;
  Result<std::vector<std::unique_ptr<kernel::UdpBatchSocket>>> openUdp(
      const kernel::UdpOptions& opts) override;
  Result<std::unique_ptr<kernel::UdpFastPath>> attachUdpFastPath(
      const kernel::UdpFastPathOptions& opts) override {
    fast_path_calls.push_back(opts);
    return fast_path ? fast_path(opts) : PacketIo::attachUdpFastPath(opts);
  }

 private:
  std::shared_ptr<ChannelNet> net_;
};

// A UdpFastPath that records what it is told (for the backend's unit tests; the real one,
// kernel/tun/tc_path.h, is shown by the udp e2e tests). Shared state so that the test keeps a
// view after the backend took ownership.
struct RecordingFastPathState {
  std::optional<std::pair<Ip4, uint8_t>> enabled{};
  std::vector<std::vector<kernel::UdpFastPathRoute>> peer_sets{};
  kernel::UdpFastPathStats stats{};
  std::optional<Error> fail_enable{};
  std::vector<std::pair<Ip4, std::vector<std::byte>>> announced{};
  bool destroyed = false;
};

class RecordingFastPath final : public kernel::UdpFastPath {
 public:
  explicit RecordingFastPath(std::shared_ptr<RecordingFastPathState> state)
      : state_(std::move(state)) {}
  ~RecordingFastPath() override { state_->destroyed = true; }
  Result<void> enable(Ip4 own_network, uint8_t own_prefix) override {
    if (state_->fail_enable) {
      return *state_->fail_enable;
    }
    state_->enabled = std::pair{own_network, own_prefix};
    return {};
  }
  Result<void> setPeers(const std::vector<kernel::UdpFastPathRoute>& routes) override {
    state_->peer_sets.push_back(routes);
    return {};
  }
  kernel::UdpFastPathStats stats() const override { return state_->stats; }
  Result<void> announce(Ip4 peer, std::span<const std::byte> datagram) override {
    state_->announced.emplace_back(peer, std::vector<std::byte>(datagram.begin(), datagram.end()));
    return {};
  }

 private:
  std::shared_ptr<RecordingFastPathState> state_;
};

}  // namespace flannel::test
