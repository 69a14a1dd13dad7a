// DOC: the udp backend's packet loop: one worker thread per TUN queue, each with its own UDP
// socket of the SO_REUSEPORT group, reading both without blocking and poll()ing when idle.
//
//   worker i:  TunQueue[i] ──read, segment (TSO/USO), encap──▶ UdpBatchSocket[i] (sendmmsg, GSO)
//              UdpBatchSocket[i] ──recvmmsg (GRO), decap, coalesce──▶ TunQueue[i]
//
// The routing snapshot (RouteTable) is published by the control thread as an atomic pointer and
// read once per batch by each worker, with epoch-based reclamation (a worker announces the epoch
// it read in; a replaced table is freed once every worker is past that epoch or idle): lease
// changes never stall traffic and the workers take no lock and allocate nothing. (libstdc++'s
// std::atomic<std::shared_ptr> would do, but takes an internal spin lock on every load.) All
// buffers are allocated when the worker starts; a packet costs no allocation. Counters are per
// worker (relaxed atomics, one writer) and summed on read.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "backend/udp/dataplane/packet.h"
#include "kernel/packet_io.h"

namespace flannel::backend::udp {

struct DataPlaneCounters {
  uint64_t tun_rx_packets = 0;  // packets read from the TUN (a super packet counts once)
  uint64_t tun_rx_bytes = 0;
  uint64_t tun_rx_super = 0;    // TSO/USO super packets cut into segments
  uint64_t udp_tx_packets = 0;  // datagrams handed to the kernel (GSO segments counted)
  uint64_t udp_tx_bytes = 0;
  uint64_t udp_tx_errors = 0;   // datagrams the kernel refused
  uint64_t udp_rx_packets = 0;  // datagrams received (GRO segments counted)
  uint64_t udp_rx_bytes = 0;
  uint64_t tun_tx_packets = 0;  // packets written to the TUN (a coalesced one counts once)
  uint64_t tun_tx_bytes = 0;
  uint64_t tun_tx_coalesced = 0;  // segments merged into super packets on the way in
  uint64_t tun_tx_errors = 0;
  uint64_t icmp_unreachable = 0;  // ICMP net-unreachable written back for unrouted packets
  std::array<uint64_t, static_cast<size_t>(Drop::kCount)> drops{};
};

struct DataPlaneConfig {
  Ip4 tun_address{};     // our subnet's network address, the ICMP error source
  uint16_t port = 8285;  // peers' port (flannel assumes it equals ours)
  size_t batch = 64;     // packets per read/send batch
  // Two threads per queue (TUN -> UDP and UDP -> TUN) instead of one serving both.
  bool thread_per_direction = false;
};

class Worker;

inline constexpr uint64_t kQuiescent = ~uint64_t{0};

// What the workers read: the current table and the epoch counter (see the DOC above).
struct TableSlot {
  std::atomic<const RouteTable*> current{nullptr};
  std::atomic<uint64_t> epoch{1};
};

class DataPlane {
 public:
  // One worker per pair; tun.queues.size() must equal sockets.size().
  DataPlane(kernel::TunDevice tun, std::vector<std::unique_ptr<kernel::UdpBatchSocket>> sockets,
            DataPlaneConfig config);
  ~DataPlane();
  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  // Control thread: a new routing snapshot for every worker.
  void publish(std::shared_ptr<const RouteTable> table);
  // Control thread: the kernel's UDP GRO on every socket (UdpBatchSocket::setKernelGro());
  // returns how many sockets switched.
  size_t setKernelGro(bool on);
  // Control thread: the table last published.
  std::shared_ptr<const RouteTable> table() const { return owned_; }
  // Control thread: replaced tables still waiting for the workers to move on.
  size_t retiredTables() const { return retired_.size(); }

  // Starts one thread per worker; stop() (or the destructor) joins them.
  void start();
  void stop();
  // Tests: one non-blocking pass of every worker on the calling thread (no threads started).
  // Returns true when any packet moved.
  bool pollOnce();

  // Before start(): the source address of the ICMP errors (our TUN address).
  void setTunAddress(Ip4 a) { config_.tun_address = a; }

  DataPlaneCounters counters() const;
  size_t workers() const;
  const kernel::TunDevice& tun() const { return tun_; }

 private:
  void ensureWorkers();  // buffers are allocated here, on first start()/pollOnce()
  void reclaim();

  kernel::TunDevice tun_;
  std::vector<std::unique_ptr<kernel::UdpBatchSocket>> sockets_;
  DataPlaneConfig config_;
  TableSlot table_;
  std::shared_ptr<const RouteTable> owned_;  // keeps table_.current alive
  std::vector<std::pair<uint64_t, std::shared_ptr<const RouteTable>>> retired_;  // (epoch, table)
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  int stop_fd_ = -1;  // eventfd, readable once stop() was called
  std::atomic<bool> stopping_{false};
};

}  // namespace flannel::backend::udp
