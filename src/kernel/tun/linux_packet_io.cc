#include "kernel/tun/linux_packet_io.h"

#include "core/unique_fd.h"
#include "kernel/kernel.h"
#include "kernel/tun/tc_path.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

namespace flannel::kernel {

namespace {

using Fd = UniqueFd;

Error sysError(std::string what, int err) {
  return makeError(errcFromErrno(err),
                   fmt::format("{}: {} (errno {})", what, std::strerror(err), err), err);
}

static_assert(sizeof(VirtioNetHdr) == kVirtioNetHdrLen);

class LinuxTunQueue final : public TunQueue {
 public:
  LinuxTunQueue(Fd fd, bool vnet) : fd_(std::move(fd)), vnet_(vnet) {}
  int pollFd() const override { return fd_.get(); }

  long read(VirtioNetHdr* hdr, std::span<std::byte> buf) override {
    ssize_t n;
    if (vnet_) {
      iovec iov[2] = {{hdr, kVirtioNetHdrLen}, {buf.data(), buf.size()}};
      n = ::readv(fd_.get(), iov, 2);
      if (n > 0) {
        n = n < static_cast<ssize_t>(kVirtioNetHdrLen) ? 0 : n - kVirtioNetHdrLen;
      }
    } else {
      *hdr = VirtioNetHdr{};
      n = ::read(fd_.get(), buf.data(), buf.size());
    }
    if (n < 0) {
      return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    }
    return n;
  }

  int write(const VirtioNetHdr* hdr, std::span<const std::byte> pkt) override {
    ssize_t n;
    if (vnet_) {
      static const VirtioNetHdr kNone{};
      iovec iov[2] = {{const_cast<VirtioNetHdr*>(hdr != nullptr ? hdr : &kNone), kVirtioNetHdrLen},
                      {const_cast<std::byte*>(pkt.data()), pkt.size()}};
      n = ::writev(fd_.get(), iov, 2);
    } else {
      n = ::write(fd_.get(), pkt.data(), pkt.size());
    }
    return n < 0 ? -errno : 0;
  }

 private:
  Fd fd_;
  bool vnet_;
};

// Opens one queue. `name` empty: the template; flags as given.
Result<Fd> openQueue(const std::string& name, short flags, std::string& assigned) {
  Fd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) {
    return sysError("opening /dev/net/tun", errno);
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = flags;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
    return sysError(fmt::format("creating TUN device {}", name), errno);
  }
  assigned = ifr.ifr_name;
  return fd;
}

constexpr size_t kMaxBatch = 256;
constexpr size_t kCmsgSpace = CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(int));

class LinuxUdpSocket final : public UdpBatchSocket {
 public:
  LinuxUdpSocket(Fd fd, bool gso, bool gro) : fd_(std::move(fd)), gso_(gso), gro_(gro) {}
  int pollFd() const override { return fd_.get(); }
  bool gso() const override { return gso_; }
  bool gro() const override { return gro_; }
  bool steered() const override { return steered_; }
  bool setKernelGro(bool on) override {
    const int v = on ? 1 : 0;
    return gro_ && ::setsockopt(fd_.get(), SOL_UDP, UDP_GRO, &v, sizeof v) == 0;
  }
  void setSteered(bool s) { steered_ = s; }

  int recv(std::span<RecvSlot> slots) override {
    const size_t n = std::min(slots.size(), kMaxBatch);
    for (size_t i = 0; i < n; ++i) {
      iov_[i] = {slots[i].buf.data(), slots[i].buf.size()};
      msgs_[i] = {};
      msgs_[i].msg_hdr.msg_name = &addrs_[i];
      msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
      msgs_[i].msg_hdr.msg_iov = &iov_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
      if (gro_) {
        msgs_[i].msg_hdr.msg_control = cmsg_[i].data();
        msgs_[i].msg_hdr.msg_controllen = cmsg_[i].size();
      }
    }
    const int got =
        ::recvmmsg(fd_.get(), msgs_.data(), static_cast<unsigned>(n), MSG_DONTWAIT, nullptr);
    if (got < 0) {
      return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    }
    for (int i = 0; i < got; ++i) {
      auto& s = slots[static_cast<size_t>(i)];
      auto& m = msgs_[static_cast<size_t>(i)];
      // A truncated datagram (MSG_TRUNC) reports its full length; decap sees the short buffer.
      s.len = std::min<size_t>(m.msg_len, s.buf.size());
      s.from.addr = Ip4::fromU32(ntohl(addrs_[static_cast<size_t>(i)].sin_addr.s_addr));
      s.from.port = ntohs(addrs_[static_cast<size_t>(i)].sin_port);
      s.segment = 0;
      if (gro_) {
        for (cmsghdr* c = CMSG_FIRSTHDR(&m.msg_hdr); c != nullptr; c = CMSG_NXTHDR(&m.msg_hdr, c)) {
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int seg = 0;
            std::memcpy(&seg, CMSG_DATA(c), sizeof seg);
            if (seg > 0 && static_cast<size_t>(seg) < s.len) {
              s.segment = static_cast<uint16_t>(seg);
            }
          }
        }
      }
    }
    return got;
  }

  int send(std::span<const Datagram> out) override {
    if (!gso_) {
      return sendSplit(out);
    }
    return sendBatch(out);
  }

 private:
  // Without GSO: a run (segment > 0) becomes one datagram per segment; the count returned is
  // of entries of `out` that went out whole.
  int sendSplit(std::span<const Datagram> out) {
    int ok = 0;
    size_t i = 0;
    while (i < out.size()) {
      const Datagram& d = out[i];
      if (d.segment == 0 || d.data.size() <= d.segment) {
        // A stretch of plain datagrams goes in one batch.
        size_t j = i;
        while (j < out.size() && (out[j].segment == 0 || out[j].data.size() <= out[j].segment)) {
          ++j;
        }
        const int r = sendBatch(out.subspan(i, j - i));
        if (r < 0 && i == 0) {
          return r;  // the first datagram failed: the caller gets the errno, as with GSO
        }
        ok += std::max(r, 0);
        i = j;
        continue;
      }
      ok += sendRunSplit(d) ? 1 : 0;
      ++i;
    }
    return ok;
  }

  // A run sent as one datagram per segment, without GSO. True if every one went out.
  bool sendRunSplit(const Datagram& d) {
    std::array<Datagram, 64> parts;
    bool whole = true;
    for (size_t off = 0; off < d.data.size();) {
      size_t n = 0;
      for (; n < parts.size() && off < d.data.size(); ++n) {
        const size_t len = std::min<size_t>(d.segment, d.data.size() - off);
        parts[n] = Datagram{.to = d.to, .data = d.data.subspan(off, len), .segment = 0};
        off += len;
      }
      whole = sendBatch({parts.data(), n}) == static_cast<int>(n) && whole;
    }
    return whole;
  }

  int sendBatch(std::span<const Datagram> out) {
    size_t done = 0;
    size_t refused = 0;
    while (done < out.size()) {
      const size_t n = std::min(out.size() - done, kMaxBatch);
      for (size_t i = 0; i < n; ++i) {
        const Datagram& d = out[done + i];
        iov_[i] = {const_cast<std::byte*>(d.data.data()), d.data.size()};
        addrs_[i] = {};
        addrs_[i].sin_family = AF_INET;
        addrs_[i].sin_port = htons(d.to.port);
        addrs_[i].sin_addr.s_addr = htonl(d.to.addr.toU32());
        msgs_[i] = {};
        msgs_[i].msg_hdr.msg_name = &addrs_[i];
        msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
        msgs_[i].msg_hdr.msg_iov = &iov_[i];
        msgs_[i].msg_hdr.msg_iovlen = 1;
        if (gso_ && d.segment > 0 && d.data.size() > d.segment) {
          msgs_[i].msg_hdr.msg_control = cmsg_[i].data();
          msgs_[i].msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
          cmsghdr* c = CMSG_FIRSTHDR(&msgs_[i].msg_hdr);
          c->cmsg_level = SOL_UDP;
          c->cmsg_type = UDP_SEGMENT;
          c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
          const uint16_t seg = d.segment;
          std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
        }
      }
      const int sent = ::sendmmsg(fd_.get(), msgs_.data(), static_cast<unsigned>(n), 0);
      if (sent < 0) {
        const int err = errno;
        if (err == EINTR) {
          continue;
        }
        const Datagram& failed = out[done];
        if ((err == EMSGSIZE || err == EINVAL) && gso_ && failed.segment > 0 &&
            failed.data.size() > failed.segment) {
          // The path to this peer has a smaller MTU than its segments (ICMP "fragmentation
          // needed" taught the kernel so), and GSO never fragments: these segments go as
          // single datagrams, which the kernel fragments (as for Go flannel's socket). Only
          // this run: other peers keep GSO.
          if (!sendRunSplit(failed)) {
            ++refused;
          }
          ++done;
          continue;
        }
        if (err == EIO && gso_) {
          // The route's device cannot checksum GSO segments: from now on runs are cut here and
          // sent one datagram each (sendSplit), starting with what is left of this batch.
          gso_ = false;
          const int rest = sendSplit(out.subspan(done));
          return static_cast<int>(done - refused) + std::max(rest, 0);
        }
        if (done == 0 && refused == 0 &&
            !(err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH)) {
          return -err;
        }
        // Skip the datagram the kernel refused (an ICMP error from one peer must not stop the
        // others) and carry on.
        ++done;
        ++refused;
        continue;
      }
      done += static_cast<size_t>(sent);
      if (sent == 0) {
        break;
      }
    }
    return static_cast<int>(done - refused);
  }

  Fd fd_;
  bool gso_;
  bool gro_;
  bool steered_ = false;
  std::array<mmsghdr, kMaxBatch> msgs_{};
  std::array<iovec, kMaxBatch> iov_{};
  std::array<sockaddr_in, kMaxBatch> addrs_{};
  std::array<std::array<char, kCmsgSpace>, kMaxBatch> cmsg_{};
};

// SO_ATTACH_REUSEPORT_CBPF program for a group of `n` sockets: picks the socket from the inner
// packet's flow (the UDP payload is a bare IPv4 packet), so the flows of one peer, which all
// arrive on one outer 4-tuple, still spread over the workers. The program sees the datagram
// from the UDP payload on. Index = ((src ^ dst ^ ports) * 2654435761 >> 16) % n; a packet too short
// for a load ends the program with 0 (socket 0).
std::vector<sock_filter> flowSteeringProgram(unsigned n) {
  return {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 12),  // A = inner source address
      BPF_STMT(BPF_ST, 0),                     // M[0] = A
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 16),  // A = inner destination address
      BPF_STMT(BPF_LDX | BPF_MEM, 0),          // X = M[0]
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),  // A ^= X
      BPF_STMT(BPF_ST, 1),                     // M[1] = A
      BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),  // X = IP header length
      BPF_STMT(BPF_LD | BPF_W | BPF_IND, 0),   // A = the 4 bytes after it (ports)
      BPF_STMT(BPF_LDX | BPF_MEM, 1),          // X = M[1]
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),  // A ^= X
      // Multiplicative mixing: connect() hands out ephemeral ports of one parity, so the low
      // bits of a plain XOR would send every flow of a host to the same socket.
      BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 2654435761u),
      BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),  // A >>= 16 (the well-mixed bits)
      BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, n),   // A %= n
      BPF_STMT(BPF_RET | BPF_A, 0),
  };
}

}  // namespace

Result<TunDevice> LinuxPacketIo::openTun(const TunOptions& opts) {
  TunDevice dev;
  const unsigned want = std::max(1u, opts.queues);
  auto attempt = [&](unsigned queues, bool offload) -> Result<TunDevice> {
    TunDevice d;
    short flags = IFF_TUN | IFF_NO_PI;
    if (queues > 1) {
      flags |= IFF_MULTI_QUEUE;
    }
    if (offload) {
      flags |= IFF_VNET_HDR;
    }
    std::string name = opts.name_template;
    std::vector<Fd> fds;
    for (unsigned q = 0; q < queues; ++q) {
      std::string assigned;
      auto fd = openQueue(name, flags, assigned);
      if (!fd) {
        return fd.error();
      }
      name = assigned;  // further queues attach to the device the first one created
      fds.push_back(std::move(*fd));
    }
    d.name = name;
    if (offload) {
      unsigned off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_USO4;
      bool uso = true;
      if (::ioctl(fds[0].get(), TUNSETOFFLOAD, off) < 0) {
        off = TUN_F_CSUM | TUN_F_TSO4;
        uso = false;
        if (::ioctl(fds[0].get(), TUNSETOFFLOAD, off) < 0) {
          return sysError(fmt::format("enabling TSO on TUN device {}", name), errno);
        }
      }
      d.vnet_hdr = true;
      d.uso = uso;
    }
    for (auto& fd : fds) {
      d.queues.push_back(std::make_unique<LinuxTunQueue>(std::move(fd), offload));
    }
    return d;
  };
  // Most capable first; each refusal drops one feature (multi-queue, then offloads).
  auto r = attempt(want, opts.offload);
  if (!r && opts.offload) {
    r = attempt(want, false);
  }
  if (!r && want > 1) {
    r = attempt(1, opts.offload);
    if (!r && opts.offload) {
      r = attempt(1, false);
    }
  }
  return r;
}

Result<std::vector<std::unique_ptr<UdpBatchSocket>>> LinuxPacketIo::openUdp(
    const UdpOptions& opts) {
  std::vector<std::unique_ptr<UdpBatchSocket>> out;
  steering_ = false;
  const unsigned n = std::max(1u, opts.sockets);
  const std::string where = fmt::format("{}:{}", opts.bind.addr.toString(), opts.bind.port);
  for (unsigned i = 0; i < n; ++i) {
    Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      return sysError("creating a UDP socket", errno);
    }
    const int one = 1;
    if (n > 1 && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
      return sysError(fmt::format("SO_REUSEPORT on UDP {}", where), errno);
    }
    // Bigger buffers ride out bursts; as root FORCE ignores rmem_max. Failure is harmless.
    const int bufsize = 4 << 20;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize) < 0) {
      ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
    }
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUFFORCE, &bufsize, sizeof bufsize) < 0) {
      ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
    }
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(opts.bind.port);
    sa.sin_addr.s_addr = htonl(opts.bind.addr.toU32());
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
      return sysError(fmt::format("binding UDP {}", where), errno);
    }
    bool gso = false;
    bool gro = false;
    if (opts.offload) {
      int seg = 0;
      socklen_t len = sizeof seg;
      gso = ::getsockopt(fd.get(), SOL_UDP, UDP_SEGMENT, &seg, &len) == 0;
      gro = ::setsockopt(fd.get(), SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
    }
    if (i == 0 && n > 1) {
      // Steering by inner flow; without it the kernel hashes the outer 4-tuple, which is the
      // same for everything one peer sends. Optional: a refusal only costs spreading.
      auto prog = flowSteeringProgram(n);
      sock_fprog fprog{static_cast<unsigned short>(prog.size()), prog.data()};
      steering_ =
          ::setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof fprog) == 0;
    }
    out.push_back(std::make_unique<LinuxUdpSocket>(std::move(fd), gso, gro));
  }
  for (auto& sock : out) {
    static_cast<LinuxUdpSocket&>(*sock).setSteered(steering_);
  }
  return out;
}

Result<std::unique_ptr<UdpFastPath>> LinuxPacketIo::attachUdpFastPath(
    const UdpFastPathOptions& opts) {
  auto path = TcPath::attach(opts);
  if (!path) {
    return path.error();
  }
  return std::unique_ptr<UdpFastPath>(std::move(*path));
}

}  // namespace flannel::kernel
