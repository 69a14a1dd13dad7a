#include "support/channel_io.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace flannel::test {

EventFlag::EventFlag() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

EventFlag::~EventFlag() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

void EventFlag::set() {
  if (set_) {
    return;
  }
  const uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
  set_ = true;
}

void EventFlag::clear() {
  if (!set_) {
    return;
  }
  uint64_t v = 0;
  [[maybe_unused]] auto n = ::read(fd_, &v, sizeof v);
  set_ = false;
}

// --- ChannelTun ----------------------------------------------------------------------------

void ChannelTun::push(std::span<const std::byte> pkt, const kernel::VirtioNetHdr& hdr) {
  std::lock_guard lock(mu_);
  inbound_.push_back(TunPacket{.hdr = hdr, .data = {pkt.begin(), pkt.end()}});
  readable_.set();
}

size_t ChannelTun::pending() const {
  std::lock_guard lock(mu_);
  return inbound_.size();
}

std::vector<TunPacket> ChannelTun::takeWritten() {
  std::lock_guard lock(mu_);
  return std::exchange(written_, {});
}

size_t ChannelTun::writtenCount() const {
  std::lock_guard lock(mu_);
  return written_.size();
}

bool ChannelTun::waitWritten(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return written_cv_.wait_for(lock, timeout, [&] { return written_.size() >= n; });
}

void ChannelTun::failWrites(int err) {
  std::lock_guard lock(mu_);
  write_err_ = err;
}

long ChannelTun::read(kernel::VirtioNetHdr* hdr, std::span<std::byte> buf) {
  std::lock_guard lock(mu_);
  if (inbound_.empty()) {
    return 0;  // the real queue's EAGAIN
  }
  TunPacket p = std::move(inbound_.front());
  inbound_.pop_front();
  if (inbound_.empty()) {
    readable_.clear();
  }
  *hdr = vnet_ && p.hdr ? *p.hdr : kernel::VirtioNetHdr{};
  // Like a read(2) of a TUN queue with a short buffer: the packet is cut.
  const size_t n = std::min(buf.size(), p.data.size());
  if (n > 0) {
    std::memcpy(buf.data(), p.data.data(), n);
  }
  return static_cast<long>(n);
}

int ChannelTun::write(const kernel::VirtioNetHdr* hdr, std::span<const std::byte> pkt) {
  std::lock_guard lock(mu_);
  if (write_err_ != 0) {
    return -write_err_;
  }
  TunPacket p{.data = {pkt.begin(), pkt.end()}};
  if (vnet_) {
    // What the kernel sees: a header always (none given: all zero), none on a plain device.
    p.hdr = hdr != nullptr ? *hdr : kernel::VirtioNetHdr{};
  }
  written_.push_back(std::move(p));
  written_cv_.notify_all();
  return 0;
}

ChannelTunDevice makeChannelTun(const std::string& name, size_t queues, bool vnet) {
  ChannelTunDevice d;
  d.device.name = name;
  d.device.vnet_hdr = vnet;
  d.device.uso = vnet;
  for (size_t i = 0; i < queues; ++i) {
    auto q = std::make_unique<ChannelTun>(vnet);
    d.queues.push_back(q.get());
    d.device.queues.push_back(std::move(q));
  }
  return d;
}

// --- ChannelNet ----------------------------------------------------------------------------

std::shared_ptr<ChannelNet> ChannelNet::create() {
  return std::shared_ptr<ChannelNet>(new ChannelNet());
}

std::unique_ptr<ChannelUdp> ChannelNet::open(kernel::Endpoint self, SocketOptions opts) {
  std::lock_guard lock(mu_);
  auto& group = sockets_[key(self)];
  if (!group.empty() && !(opts.reuseport && group.front()->opts_.reuseport)) {
    return nullptr;
  }
  std::unique_ptr<ChannelUdp> s(new ChannelUdp(shared_from_this(), self, opts));
  group.push_back(s.get());
  return s;
}

void ChannelNet::detach(const ChannelUdp* s) {
  std::lock_guard lock(mu_);
  auto it = sockets_.find(key(s->self_));
  if (it == sockets_.end()) {
    return;
  }
  std::erase(it->second, s);
  if (it->second.empty()) {
    sockets_.erase(it);
  }
}

ChannelUdp* ChannelNet::find(kernel::Endpoint from, kernel::Endpoint to) {
  auto it = sockets_.find(key(to));
  if (it == sockets_.end() || it->second.empty()) {
    return nullptr;
  }
  const auto& group = it->second;
  const uint64_t h = (key(from) * 0x9e3779b97f4a7c15ull) >> 32;
  return group[h % group.size()];
}

bool ChannelNet::inject(kernel::Endpoint from, kernel::Endpoint to,
                        std::span<const std::byte> data) {
  std::lock_guard lock(mu_);
  ChannelUdp* r = find(from, to);
  if (r == nullptr) {
    ++lost_;
    return false;
  }
  r->deliver(from, data, 0);
  return true;
}

uint64_t ChannelNet::lost() const {
  std::lock_guard lock(mu_);
  return lost_;
}

// --- ChannelUdp ----------------------------------------------------------------------------

ChannelUdp::~ChannelUdp() {
  net_->detach(this);
}

size_t ChannelUdp::pending() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void ChannelUdp::failSends(int err, int times) {
  std::lock_guard lock(mu_);
  fail_err_ = err;
  fail_times_ = times;
}

void ChannelUdp::deliver(kernel::Endpoint from, std::span<const std::byte> data, uint16_t segment) {
  std::lock_guard lock(mu_);
  queue_.push_back(Queued{.from = from, .data = {data.begin(), data.end()}, .segment = segment});
  readable_.set();
}

int ChannelUdp::send(std::span<const kernel::Datagram> out) {
  {
    std::lock_guard lock(mu_);
    if (fail_times_ > 0 && !out.empty()) {
      --fail_times_;
      return -fail_err_;
    }
  }
  std::lock_guard net_lock(net_->mu_);
  int sent = 0;
  int refused = 0;
  for (const auto& d : out) {
    const bool split = opts_.gso && d.segment > 0 && d.data.size() > d.segment;
    int err = 0;
    if (split) {
      const size_t segments = (d.data.size() + d.segment - 1) / d.segment;
      // The kernel's limits: UDP_MAX_SEGMENTS and one IP packet's worth of payload in total.
      if (segments > kMaxSegments || d.data.size() > kMaxPayload || d.segment > kMaxPayload) {
        err = EINVAL;
      }
    } else if (d.data.size() > kMaxPayload) {
      err = EMSGSIZE;
    }
    if (err != 0) {
      // As LinuxUdpSocket: the first datagram failing fails the call, a later one is skipped.
      if (sent == 0 && refused == 0) {
        return -err;
      }
      ++refused;
      continue;
    }
    ++sent;
    ChannelUdp* r = net_->find(self_, d.to);
    if (r == nullptr) {
      ++net_->lost_;
      continue;
    }
    if (!split) {
      r->deliver(self_, d.data, 0);
    } else if (r->opts_.gro) {
      r->deliver(self_, d.data, d.segment);  // kept whole, as loopback GSO reaches a GRO socket
    } else {
      for (size_t off = 0; off < d.data.size(); off += d.segment) {
        r->deliver(self_, d.data.subspan(off, std::min<size_t>(d.segment, d.data.size() - off)), 0);
      }
    }
  }
  return sent;
}

int ChannelUdp::recv(std::span<kernel::RecvSlot> slots) {
  std::lock_guard lock(mu_);
  int filled = 0;
  for (auto& slot : slots) {
    if (queue_.empty()) {
      break;
    }
    Queued q = std::move(queue_.front());
    queue_.pop_front();
    size_t segment = q.segment;
    if (opts_.gro && segment == 0) {
      // NIC-style GRO: consecutive datagrams of this sender, none bigger than the first, a
      // shorter one ending the run.
      const size_t size = q.data.size();
      size_t count = 1;
      size_t last = size;
      while (!queue_.empty() && last == size && count < kMaxSegments) {
        const Queued& next = queue_.front();
        if (next.segment != 0 || !(next.from == q.from) || next.data.empty() ||
            next.data.size() > size || q.data.size() + next.data.size() > slot.buf.size()) {
          break;
        }
        q.data.insert(q.data.end(), next.data.begin(), next.data.end());
        last = next.data.size();
        ++count;
        queue_.pop_front();
      }
      if (count > 1) {
        segment = size;
      }
    }
    const size_t n = std::min(slot.buf.size(), q.data.size());
    if (n > 0) {
      std::memcpy(slot.buf.data(), q.data.data(), n);
    }
    slot.len = n;
    slot.from = q.from;
    slot.segment = segment > 0 && segment < n ? static_cast<uint16_t>(segment) : 0;
    ++filled;
  }
  if (queue_.empty()) {
    readable_.clear();
  }
  return filled;
}

// --- ChannelPacketIo -----------------------------------------------------------------------

Result<kernel::TunDevice> ChannelPacketIo::openTun(const kernel::TunOptions& opts) {
  tun_calls.push_back(opts);
  if (fail_tun) {
    return *fail_tun;
  }
  auto d = makeChannelTun(tun_name, std::max(1u, opts.queues), opts.offload && vnet_supported);
  tun_queues = d.queues;
  return std::move(d.device);
}

Result<std::vector<std::unique_ptr<kernel::UdpBatchSocket>>> ChannelPacketIo::openUdp(
    const kernel::UdpOptions& opts) {
  udp_calls.push_back(opts);
  if (fail_udp) {
    return *fail_udp;
  }
  std::vector<std::unique_ptr<kernel::UdpBatchSocket>> out;
  sockets.clear();
  const unsigned n = std::max(1u, opts.sockets);
  for (unsigned i = 0; i < n; ++i) {
    auto s = net_->open(opts.bind, {.gso = opts.offload && gso_supported,
                                    .gro = opts.offload && gro_supported,
                                    .reuseport = n > 1});
    if (!s) {
      return makeError(Errc::Conflict, "channel: endpoint in use");
    }
    sockets.push_back(s.get());
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace flannel::test
