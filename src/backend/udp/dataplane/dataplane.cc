#include "backend/udp/dataplane/dataplane.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace flannel::backend::udp {

namespace {

constexpr size_t kSlotSize = 65536;     // any datagram or TUN packet fits
constexpr size_t kSegBufSize = 131072;  // a cut super packet (headers repeated)
constexpr size_t kMaxGsoSegments = 64;  // UDP_MAX_SEGMENTS on older kernels
constexpr size_t kMaxGsoBytes = 65000;  // below the 65507-byte UDP payload limit
constexpr size_t kGroSlots = 16;        // 64 KiB GRO receives per recvmmsg

constexpr int kTunToUdp = 1;
constexpr int kUdpToTun = 2;

enum Counter : size_t {
  kTunRxPackets,
  kTunRxBytes,
  kTunRxSuper,
  kUdpTxPackets,
  kUdpTxBytes,
  kUdpTxErrors,
  kUdpRxPackets,
  kUdpRxBytes,
  kTunTxPackets,
  kTunTxBytes,
  kTunTxCoalesced,
  kTunTxErrors,
  kIcmpUnreachable,
  kDropBase,
  kCounterCount = kDropBase + static_cast<size_t>(Drop::kCount)
};

std::unique_ptr<std::byte[]> rawBuffer(size_t n) {
  return std::unique_ptr<std::byte[]>(
      new std::byte[n]);  // not zeroed: untouched pages stay out of RSS
}

// The direction the calling thread is working in: selects the counter set.
thread_local int tls_dir = 0;

const RouteTable& emptyTable() {
  static const RouteTable t;
  return t;
}

}  // namespace

class Worker {
 public:
  Worker(kernel::TunQueue& tun, bool vnet, kernel::UdpBatchSocket& sock,
         const DataPlaneConfig& config, const TableSlot& table)
      : tun_(tun), vnet_(vnet), sock_(sock), config_(config), table_(table) {
    batch_ = std::clamp<size_t>(config.batch, 1, 256);
    udp_slot_count_ = sock_.gro() ? std::min(batch_, kGroSlots) : batch_;
    // One allocation for all buffers (a few MB of address space): the allocator writes one
    // header, and pages become resident only where packets land. One allocation per slot
    // touched a page per slot: ~0.6 MB of an idle daemon's RSS with two workers.
    arena_ = rawBuffer((batch_ + udp_slot_count_ + 2) * kSlotSize + kSegBufSize);
    std::byte* next = arena_.get();
    auto carve = [&](size_t n) {
      std::byte* p = next;
      next += n;
      return p;
    };
    tun_slots_.reserve(batch_);
    for (size_t i = 0; i < batch_; ++i) {
      tun_slots_.push_back(carve(kSlotSize));
    }
    for (size_t i = 0; i < udp_slot_count_; ++i) {
      udp_bufs_.push_back(carve(kSlotSize));
    }
    recv_slots_.resize(udp_slot_count_);
    out_.resize(batch_ + kMaxGsoSegments);
    landing_ = carve(kSlotSize);
    coalesce_buf_ = carve(kSlotSize);
    segbuf_ = carve(kSegBufSize);
    coalescer_ = TcpCoalescer({coalesce_buf_, kSlotSize});
  }

  // One non-blocking pass over both directions (one thread per queue, and pollOnce()).
  bool step() {
    const bool a = tunStep();
    const bool b = udpStep();
    return a || b;
  }

  // The thread's loop. `dirs`: which directions this thread serves (both, or one of them when
  // each direction of a queue has its own thread).
  void run(int stop_fd, const std::atomic<bool>& stopping, int dirs) {
    pollfd fds[3];
    nfds_t n = 0;
    if ((dirs & kTunToUdp) != 0) {
      fds[n++] = {tun_.pollFd(), POLLIN, 0};
    }
    if ((dirs & kUdpToTun) != 0) {
      fds[n++] = {sock_.pollFd(), POLLIN, 0};
    }
    fds[n++] = {stop_fd, POLLIN, 0};
    while (!stopping.load(std::memory_order_relaxed)) {
      const bool a = (dirs & kTunToUdp) != 0 && tunStep();
      const bool b = (dirs & kUdpToTun) != 0 && udpStep();
      if (a || b) {
        continue;
      }
      int r = ::poll(fds, n, -1);
      if (r < 0 && errno != EINTR) {
        return;
      }
      if ((fds[n - 1].revents & POLLIN) != 0) {
        return;
      }
    }
  }

  // The oldest epoch a direction of this worker is reading the table in, or kQuiescent.
  uint64_t readingEpoch() const { return std::min(reading_[0].load(), reading_[1].load()); }

  void addTo(DataPlaneCounters& c) const {
    auto v = [&](size_t i) {
      return counters_[0][i].load(std::memory_order_relaxed) +
             counters_[1][i].load(std::memory_order_relaxed);
    };
    c.tun_rx_packets += v(kTunRxPackets);
    c.tun_rx_bytes += v(kTunRxBytes);
    c.tun_rx_super += v(kTunRxSuper);
    c.udp_tx_packets += v(kUdpTxPackets);
    c.udp_tx_bytes += v(kUdpTxBytes);
    c.udp_tx_errors += v(kUdpTxErrors);
    c.udp_rx_packets += v(kUdpRxPackets);
    c.udp_rx_bytes += v(kUdpRxBytes);
    c.tun_tx_packets += v(kTunTxPackets);
    c.tun_tx_bytes += v(kTunTxBytes);
    c.tun_tx_coalesced += v(kTunTxCoalesced);
    c.tun_tx_errors += v(kTunTxErrors);
    c.icmp_unreachable += v(kIcmpUnreachable);
    for (size_t i = 0; i < c.drops.size(); ++i) {
      c.drops[i] += v(kDropBase + i);
    }
  }

 private:
  void add(size_t i, uint64_t n = 1) {
    // One writer per counter set (each direction has its own, see tls_dir): a relaxed load +
    // store is enough and cheaper than fetch_add.
    auto& c = counters_[tls_dir][i];
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  // Epoch-based reclamation: announce the epoch we read in, then take the current table; the
  // control thread frees a replaced table only once every reader is past it or quiescent.
  const RouteTable& enter(int dir) {
    tls_dir = dir;
    reading_[dir].store(table_.epoch.load());
    const RouteTable* snap = table_.current.load();
    return snap != nullptr ? *snap : emptyTable();
  }
  void leave(int dir) { reading_[dir].store(kQuiescent, std::memory_order_release); }
  // One batch of direction `dir` (0: TUN -> UDP, 1: UDP -> TUN) with the table held.
  bool inEpoch(int dir, bool (Worker::*batch)(const RouteTable&)) {
    const RouteTable& table = enter(dir);
    const bool moved = (this->*batch)(table);
    leave(dir);
    return moved;
  }
  void dropped(Drop d) { add(kDropBase + static_cast<size_t>(d)); }

  void writeTun(const kernel::VirtioNetHdr* hdr, std::span<const std::byte> pkt) {
    if (tun_.write(hdr, pkt) < 0) {
      add(kTunTxErrors);
      return;
    }
    add(kTunTxPackets);
    add(kTunTxBytes, pkt.size());
  }

  void sendNetUnreachable(std::span<const std::byte> pkt) {
    std::array<std::byte, kMaxIcmpErrorLen> icmp{};
    const size_t n = buildNetUnreachable(pkt, config_.tun_address, icmp);
    if (n > 0) {
      writeTun(nullptr, {icmp.data(), n});
      add(kIcmpUnreachable);
    }
  }

  void flushOut() {
    if (n_out_ == 0) {
      return;
    }
    std::span<const kernel::Datagram> all{out_.data(), n_out_};
    size_t packets = 0;
    size_t bytes = 0;
    for (const auto& d : all) {
      packets += d.segment == 0 ? 1 : (d.data.size() + d.segment - 1) / d.segment;
      bytes += d.data.size();
    }
    const int sent = sock_.send(all);
    if (sent < 0 || static_cast<size_t>(sent) < all.size()) {
      add(kUdpTxErrors, all.size() - static_cast<size_t>(std::max(sent, 0)));
    }
    add(kUdpTxPackets, packets);
    add(kUdpTxBytes, bytes);
    n_out_ = 0;
  }

  void queue(Ip4 peer, std::span<const std::byte> data, uint16_t segment) {
    if (n_out_ == out_.size()) {
      flushOut();
    }
    out_[n_out_++] = kernel::Datagram{
        .to = {.addr = peer, .port = config_.port}, .data = data, .segment = segment};
  }

  // One plain IPv4 packet from the TUN, in place.
  void encapOne(std::span<std::byte> pkt, const RouteTable& table) {
    auto r = encap(pkt, table);
    if (r.drop != Drop::None) {
      dropped(r.drop);
      if (r.drop == Drop::NoRoute) {
        sendNetUnreachable(pkt);
      }
      return;
    }
    queue(r.peer, pkt.first(r.length), 0);
  }

  // A TSO/USO super packet: cut, encapsulate each segment, send them as GSO runs.
  void encapSuper(std::span<std::byte> pkt, const kernel::VirtioNetHdr& hdr,
                  const RouteTable& table) {
    add(kTunRxSuper);
    auto segs = segmentSuper(pkt, hdr, {segbuf_, kSegBufSize});
    if (segs.count == 0) {
      dropped(Drop::Malformed);
      return;
    }
    // Every segment has the same addresses: one lookup decides for all.
    std::byte* base = segbuf_;
    auto first = encap({base, segs.count == 1 ? segs.last_len : segs.seg_len}, table);
    if (first.drop != Drop::None) {
      dropped(first.drop);
      if (first.drop == Drop::NoRoute) {
        sendNetUnreachable({base, segs.seg_len});
      }
      return;
    }
    for (size_t i = 1; i < segs.count; ++i) {
      const size_t len = i + 1 == segs.count ? segs.last_len : segs.seg_len;
      decrementTtl({base + i * segs.seg_len, len});  // TTL > 1: the first one passed
    }
    if (!sock_.gso() || segs.count == 1) {
      for (size_t i = 0; i < segs.count; ++i) {
        const size_t len = i + 1 == segs.count ? segs.last_len : segs.seg_len;
        queue(first.peer, {base + i * segs.seg_len, len}, 0);
      }
      return;
    }
    const size_t per_send =
        std::max<size_t>(1, std::min(kMaxGsoSegments, kMaxGsoBytes / segs.seg_len));
    for (size_t i = 0; i < segs.count; i += per_send) {
      const size_t n = std::min(per_send, segs.count - i);
      const size_t bytes =
          (i + n == segs.count) ? (n - 1) * segs.seg_len + segs.last_len : n * segs.seg_len;
      queue(first.peer, {base + i * segs.seg_len, bytes},
            n > 1 ? static_cast<uint16_t>(segs.seg_len) : 0);
    }
  }

  bool tunStep() { return inEpoch(0, &Worker::tunBatch); }

  bool tunBatch(const RouteTable& table) {
    size_t got = 0;
    for (size_t i = 0; i < batch_; ++i) {
      kernel::VirtioNetHdr hdr{};
      std::byte* dst = vnet_ ? landing_ : tun_slots_[i];
      const long r = tun_.read(&hdr, {dst, kSlotSize});
      if (r <= 0) {
        break;
      }
      ++got;
      add(kTunRxPackets);
      add(kTunRxBytes, static_cast<uint64_t>(r));
      std::span<std::byte> pkt{dst, static_cast<size_t>(r)};
      if (vnet_ && hdr.gso_type != kernel::VirtioNetHdr::kGsoNone) {
        flushOut();  // keep the order of what was queued before
        encapSuper(pkt, hdr, table);
        flushOut();  // the segment buffer is reused by the next super packet
        continue;
      }
      if (vnet_) {
        if ((hdr.flags & kernel::VirtioNetHdr::kFlagNeedsCsum) != 0 &&
            !completeChecksum(pkt, hdr)) {
          dropped(Drop::Malformed);
          continue;
        }
        std::memcpy(tun_slots_[i], dst, pkt.size());
        pkt = {tun_slots_[i], pkt.size()};
      }
      encapOne(pkt, table);
    }
    flushOut();
    return got > 0;
  }

  void flushCoalescer() {
    if (!coalescer_.active()) {
      return;
    }
    const size_t segments = coalescer_.segments();
    kernel::VirtioNetHdr hdr{};
    auto pkt = coalescer_.finish(hdr);
    writeTun(hdr.gso_type == kernel::VirtioNetHdr::kGsoNone ? nullptr : &hdr, pkt);
    if (segments > 1) {
      add(kTunTxCoalesced, segments);
    }
  }

  void decapOne(std::span<std::byte> dgram, Ip4 from, const RouteTable& table) {
    add(kUdpRxPackets);
    add(kUdpRxBytes, dgram.size());
    auto r = decap(dgram, from, table);
    if (r.drop != Drop::None) {
      dropped(r.drop);
      return;
    }
    auto pkt = dgram.first(r.length);
    if (vnet_) {
      if (coalescer_.active() && coalescer_.append(pkt)) {
        return;
      }
      flushCoalescer();
      if (coalescer_.start(pkt)) {
        return;
      }
    }
    writeTun(nullptr, pkt);
  }

  bool udpStep() { return inEpoch(1, &Worker::udpBatch); }

  bool udpBatch(const RouteTable& table) {
    for (size_t i = 0; i < udp_slot_count_; ++i) {
      recv_slots_[i] = kernel::RecvSlot{.buf = {udp_bufs_[i], kSlotSize}};
    }
    const int n = sock_.recv({recv_slots_.data(), udp_slot_count_});
    if (n <= 0) {
      return false;
    }
    for (int i = 0; i < n; ++i) {
      auto& s = recv_slots_[static_cast<size_t>(i)];
      std::span<std::byte> data = s.buf.first(std::min(s.len, s.buf.size()));
      if (s.segment == 0) {
        decapOne(data, s.from.addr, table);
        continue;
      }
      for (size_t off = 0; off < data.size(); off += s.segment) {
        decapOne(data.subspan(off, std::min<size_t>(s.segment, data.size() - off)), s.from.addr,
                 table);
      }
    }
    flushCoalescer();
    return true;
  }

  kernel::TunQueue& tun_;
  bool vnet_;
  kernel::UdpBatchSocket& sock_;
  DataPlaneConfig config_;
  const TableSlot& table_;
  std::array<std::atomic<uint64_t>, 2> reading_{kQuiescent, kQuiescent};  // per direction
  size_t batch_ = 64;
  std::unique_ptr<std::byte[]> arena_;  // every buffer below points into it
  std::vector<std::byte*> tun_slots_;
  std::vector<std::byte*> udp_bufs_;
  size_t udp_slot_count_ = 0;
  std::vector<kernel::RecvSlot> recv_slots_;
  std::vector<kernel::Datagram> out_;
  size_t n_out_ = 0;
  std::byte* landing_ = nullptr;
  std::byte* segbuf_ = nullptr;
  std::byte* coalesce_buf_ = nullptr;
  TcpCoalescer coalescer_{{}};
  // Per direction (0: TUN -> UDP, 1: UDP -> TUN), so each has a single writer.
  std::array<std::array<std::atomic<uint64_t>, kCounterCount>, 2> counters_{};
};

DataPlane::DataPlane(kernel::TunDevice tun,
                     std::vector<std::unique_ptr<kernel::UdpBatchSocket>> sockets,
                     DataPlaneConfig config)
    : tun_(std::move(tun)), sockets_(std::move(sockets)), config_(config) {
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

size_t DataPlane::workers() const {
  return std::min(tun_.queues.size(), sockets_.size());
}

void DataPlane::ensureWorkers() {
  if (!workers_.empty()) {
    return;
  }
  for (size_t i = 0; i < workers(); ++i) {
    workers_.push_back(
        std::make_unique<Worker>(*tun_.queues[i], tun_.vnet_hdr, *sockets_[i], config_, table_));
  }
}

DataPlane::~DataPlane() {
  stop();
  if (stop_fd_ >= 0) {
    ::close(stop_fd_);
  }
}

size_t DataPlane::setKernelGro(bool on) {
  size_t n = 0;
  for (auto& s : sockets_) {
    n += s->setKernelGro(on) ? 1 : 0;
  }
  return n;
}

void DataPlane::publish(std::shared_ptr<const RouteTable> table) {
  std::shared_ptr<const RouteTable> old = std::move(owned_);
  owned_ = std::move(table);
  table_.current.store(owned_.get());
  const uint64_t tag = table_.epoch.fetch_add(1) + 1;
  if (old) {
    retired_.emplace_back(tag, std::move(old));
  }
  reclaim();
}

void DataPlane::reclaim() {
  std::erase_if(retired_, [&](const auto& r) {
    for (const auto& w : workers_) {
      const uint64_t e = w->readingEpoch();
      if (e != kQuiescent && e < r.first) {
        return false;  // this worker may still be reading the old table
      }
    }
    return true;
  });
}

void DataPlane::start() {
  if (!threads_.empty()) {
    return;
  }
  ensureWorkers();
  stopping_.store(false);
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (!config_.thread_per_direction) {
      threads_.emplace_back([this, i] {
        const std::string name = "flannel-udp/" + std::to_string(i);
        pthread_setname_np(pthread_self(), name.c_str());
        workers_[i]->run(stop_fd_, stopping_, kTunToUdp | kUdpToTun);
      });
      continue;
    }
    for (int dir : {kTunToUdp, kUdpToTun}) {
      threads_.emplace_back([this, i, dir] {
        const std::string name =
            "flannel-udp/" + std::to_string(i) + (dir == kTunToUdp ? "t" : "r");
        pthread_setname_np(pthread_self(), name.c_str());
        workers_[i]->run(stop_fd_, stopping_, dir);
      });
    }
  }
}

void DataPlane::stop() {
  if (threads_.empty()) {
    return;
  }
  stopping_.store(true);
  const uint64_t one = 1;
  [[maybe_unused]] auto w = ::write(stop_fd_, &one, sizeof one);
  for (auto& t : threads_) {
    t.join();
  }
  threads_.clear();
  uint64_t drain = 0;
  [[maybe_unused]] auto r = ::read(stop_fd_, &drain, sizeof drain);
}

bool DataPlane::pollOnce() {
  ensureWorkers();
  bool moved = false;
  for (auto& w : workers_) {
    moved = w->step() || moved;
  }
  return moved;
}

DataPlaneCounters DataPlane::counters() const {
  DataPlaneCounters c;
  for (const auto& w : workers_) {
    w->addTo(c);
  }
  return c;
}

}  // namespace flannel::backend::udp
