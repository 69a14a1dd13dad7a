// The packet I/O contract (src/kernel/packet_io.h): the same checks on the in-memory twins
// (tests/support/channel_io.h) and on LinuxPacketIo, so the data path tests that run on the twins
// say something about the real thing.
//
//   PacketIoUdpContract/{Channel,Linux}       UDP batch sockets; the Linux half uses real sockets
//                                             on 127.0.0.1 (no root needed).
//   PacketIoTunContract/{Channel,LinuxPrivileged}  TUN queues; the Linux half needs root and
//                                             /dev/net/tun and runs in a network namespace of its
//                                             own (unshare(CLONE_NEWNET) on a dedicated thread),
//                                             which disappears with its last file descriptor.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "backend/udp/dataplane/packet.h"
#include "kernel/tun/linux_packet_io.h"
#include "support/channel_io.h"
#include "support/packet_builder.h"

namespace flannel::kernel {
namespace {

using test::Bytes;
using test::ip4;
using test::PacketBuilder;

bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

// --- UDP -------------------------------------------------------------------------------------

struct UdpPair {
  std::unique_ptr<UdpBatchSocket> a;
  std::unique_ptr<UdpBatchSocket> b;
  Endpoint ea{};
  Endpoint eb{};
  std::shared_ptr<void> keep{};  // whatever the sockets need to outlive
};

struct ChannelUdpFactory {
  static UdpPair make(bool offload_a, bool offload_b) {
    auto net = test::ChannelNet::create();
    UdpPair p;
    p.ea = {ip4("127.0.0.1"), 40001};
    p.eb = {ip4("127.0.0.1"), 40002};
    p.a = net->open(p.ea, {.gso = offload_a, .gro = offload_a});
    p.b = net->open(p.eb, {.gso = offload_b, .gro = offload_b});
    p.keep = net;
    return p;
  }
};

struct LinuxUdpFactory {
  static std::pair<std::unique_ptr<UdpBatchSocket>, Endpoint> open(bool offload) {
    LinuxPacketIo io;
    auto s = io.openUdp({.bind = {ip4("127.0.0.1"), 0}, .sockets = 1, .offload = offload});
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    if (!s) {
      return {};
    }
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    EXPECT_EQ(::getsockname((*s)[0]->pollFd(), reinterpret_cast<sockaddr*>(&sa), &len), 0);
    return {std::move((*s)[0]), Endpoint{ip4("127.0.0.1"), ntohs(sa.sin_port)}};
  }
  static UdpPair make(bool offload_a, bool offload_b) {
    UdpPair p;
    std::tie(p.a, p.ea) = open(offload_a);
    std::tie(p.b, p.eb) = open(offload_b);
    return p;
  }
};

struct Received {
  Bytes data;
  Endpoint from;
};

// Receives until `want` datagrams arrived (GRO slots split) or 2 s passed.
std::vector<Received> receive(UdpBatchSocket& s, size_t want, size_t slot_size = 65536) {
  std::vector<Received> out;
  std::vector<std::vector<std::byte>> bufs(8, std::vector<std::byte>(slot_size));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
    if (!readable(s.pollFd(), 100)) {
      continue;
    }
    std::vector<RecvSlot> slots(bufs.size());
    for (size_t i = 0; i < slots.size(); ++i) {
      slots[i].buf = bufs[i];
    }
    const int n = s.recv(slots);
    EXPECT_GE(n, 0);
    for (int i = 0; i < n; ++i) {
      const auto& sl = slots[static_cast<size_t>(i)];
      const size_t seg = sl.segment == 0 ? sl.len : sl.segment;
      for (size_t off = 0; off < sl.len; off += seg) {
        auto d = sl.buf.subspan(off, std::min(seg, sl.len - off));
        out.push_back({Bytes(d.begin(), d.end()), sl.from});
      }
    }
  }
  return out;
}

template <class F>
class PacketIoUdpContract : public ::testing::Test {};

class UdpNames {
 public:
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, ChannelUdpFactory> ? "Channel" : "Linux";
  }
};
using UdpFactories = ::testing::Types<ChannelUdpFactory, LinuxUdpFactory>;
TYPED_TEST_SUITE(PacketIoUdpContract, UdpFactories, UdpNames);

TYPED_TEST(PacketIoUdpContract, NothingWaitingMeansZeroAndNotReadable) {
  auto p = TypeParam::make(true, true);
  ASSERT_TRUE(p.a && p.b);
  EXPECT_FALSE(readable(p.b->pollFd(), 0));
  std::vector<std::byte> buf(100);
  RecvSlot slot{.buf = buf};
  EXPECT_EQ(p.b->recv({&slot, 1}), 0);
}

TYPED_TEST(PacketIoUdpContract, ABatchArrivesInOrderWithItsSource) {
  for (bool offload : {false, true}) {
    auto p = TypeParam::make(offload, offload);
    ASSERT_TRUE(p.a && p.b);
    const Bytes d1 = test::patternBytes(1, 1);
    const Bytes d2 = test::patternBytes(100, 2);
    const Bytes d3 = test::patternBytes(1400, 3);
    const Datagram out[] = {{p.eb, d1, 0}, {p.eb, d2, 0}, {p.eb, d3, 0}};
    ASSERT_EQ(p.a->send(out), 3);
    EXPECT_TRUE(readable(p.b->pollFd(), 2000));
    auto got = receive(*p.b, 3);
    ASSERT_EQ(got.size(), 3u) << "offload " << offload;
    EXPECT_EQ(got[0].data, d1);
    EXPECT_EQ(got[1].data, d2);
    EXPECT_EQ(got[2].data, d3);
    for (const auto& g : got) {
      EXPECT_EQ(g.from, p.ea) << "the sender's address and port";
    }
    EXPECT_FALSE(readable(p.b->pollFd(), 0)) << "drained";
  }
}

TYPED_TEST(PacketIoUdpContract, ManyDatagramsInSmallBatches) {
  auto p = TypeParam::make(false, false);
  ASSERT_TRUE(p.a && p.b);
  std::vector<Bytes> sent;
  std::vector<Datagram> out;
  for (size_t i = 0; i < 100; ++i) {
    sent.push_back(test::patternBytes(20 + i, static_cast<uint8_t>(i)));
  }
  for (const auto& s : sent) {
    out.push_back({p.eb, s, 0});
  }
  ASSERT_EQ(p.a->send(out), 100);
  auto got = receive(*p.b, 100);
  ASSERT_EQ(got.size(), 100u);
  for (size_t i = 0; i < 100; ++i) {
    EXPECT_EQ(got[i].data, sent[i]) << i;
  }
}

TYPED_TEST(PacketIoUdpContract, GsoSendsArriveAsSeparateDatagrams) {
  for (bool gro : {false, true}) {
    auto p = TypeParam::make(true, gro);
    ASSERT_TRUE(p.a && p.b);
    if (!p.a->gso()) {
      GTEST_SKIP() << "the kernel has no UDP_SEGMENT";
    }
    if (!gro) {
      EXPECT_FALSE(p.b->gro()) << "no offload asked, none given";
    }
    const Bytes run = test::patternBytes(2500, 9);
    const Datagram out[] = {{p.eb, run, 1000}};
    ASSERT_EQ(p.a->send(out), 1);
    auto got = receive(*p.b, 3);
    ASSERT_EQ(got.size(), 3u) << "gro " << gro;
    EXPECT_EQ(got[0].data, Bytes(run.begin(), run.begin() + 1000));
    EXPECT_EQ(got[1].data, Bytes(run.begin() + 1000, run.begin() + 2000));
    EXPECT_EQ(got[2].data, Bytes(run.begin() + 2000, run.end()));
    for (const auto& g : got) {
      EXPECT_EQ(g.from, p.ea);
    }
  }
}

TYPED_TEST(PacketIoUdpContract, ADatagramLongerThanTheSlotIsCut) {
  auto p = TypeParam::make(false, false);
  ASSERT_TRUE(p.a && p.b);
  const Bytes d = test::patternBytes(300, 4);
  const Datagram out[] = {{p.eb, d, 0}};
  ASSERT_EQ(p.a->send(out), 1);
  auto got = receive(*p.b, 1, 100);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, Bytes(d.begin(), d.begin() + 100));
}

TYPED_TEST(PacketIoUdpContract, AnOversizedFirstDatagramFailsTheSend) {
  auto p = TypeParam::make(false, false);
  ASSERT_TRUE(p.a && p.b);
  const Bytes big(65508);
  const Datagram out[] = {{p.eb, big, 0}};
  EXPECT_EQ(p.a->send(out), -EMSGSIZE);
}

// --- TUN -------------------------------------------------------------------------------------

constexpr uint16_t kPeerPort = 7777;

// One TUN queue plus the "kernel side": a UDP socket at 10.9.0.1 inside the device's namespace.
struct TunSide {
  TunQueue* q = nullptr;
  bool vnet = false;
  virtual ~TunSide() = default;
  // Makes the kernel route a UDP datagram carrying `payload` to 10.9.0.2:kPeerPort out of the
  // device (read() must return it).
  virtual void kernelSends(const Bytes& payload) = 0;
  // The payload of a datagram the kernel delivered to 10.9.0.1:port() after a write().
  virtual std::optional<Bytes> kernelReceived() = 0;
  virtual uint16_t port() const = 0;
};

struct ChannelTunFactory {
  struct Side final : TunSide {
    std::unique_ptr<test::ChannelTun> tun;
    void kernelSends(const Bytes& payload) override {
      tun->push(PacketBuilder::udp()
                    .src("10.9.0.1")
                    .dst("10.9.0.2")
                    .sport(port())
                    .dport(kPeerPort)
                    .payload(payload)
                    .build());
    }
    std::optional<Bytes> kernelReceived() override {
      auto w = tun->takeWritten();
      for (const auto& p : w) {
        auto info = backend::udp::parseIpv4(p.data);
        if (info && info->protocol == backend::udp::kProtoUdp && info->dst == ip4("10.9.0.1") &&
            test::get16(p.data, info->header_len + 2) == port() && test::l4ChecksumValid(p.data)) {
          auto pl = test::l4Payload(p.data);
          return Bytes(pl.begin(), pl.end());
        }
      }
      return std::nullopt;
    }
    uint16_t port() const override { return 5555; }
  };
  static std::unique_ptr<TunSide> make(bool offload) {
    auto s = std::make_unique<Side>();
    s->tun = std::make_unique<test::ChannelTun>(offload);
    s->q = s->tun.get();
    s->vnet = offload;
    return s;
  }
  static const char* skipReason() { return nullptr; }
};

struct LinuxTunFactory {
  struct Side final : TunSide {
    TunDevice dev;
    int sock = -1;
    uint16_t bound = 0;
    ~Side() override {
      if (sock >= 0) {
        ::close(sock);
      }
    }
    void kernelSends(const Bytes& payload) override {
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(kPeerPort);
      to.sin_addr.s_addr = htonl(ip4("10.9.0.2").toU32());
      EXPECT_EQ(::sendto(sock, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&to),
                         sizeof to),
                static_cast<ssize_t>(payload.size()))
          << std::strerror(errno);
    }
    std::optional<Bytes> kernelReceived() override {
      if (!readable(sock, 2000)) {
        return std::nullopt;
      }
      Bytes buf(65536);
      const ssize_t n = ::recv(sock, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0) {
        return std::nullopt;
      }
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    uint16_t port() const override { return bound; }
  };

  static const char* skipReason() {
    if (::geteuid() != 0) {
      return "needs root (CAP_NET_ADMIN, a network namespace of its own)";
    }
    if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
      return "needs /dev/net/tun";
    }
    return nullptr;
  }

  // Everything that must happen inside the namespace runs on a thread that unshare()s; the fds
  // keep the namespace alive after the thread is gone.
  static std::unique_ptr<TunSide> make(bool offload) {
    auto s = std::make_unique<Side>();
    std::string err;
    std::thread([&] {
      if (::unshare(CLONE_NEWNET) != 0) {
        err = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
        return;
      }
      // A quiet device: no IPv6 autoconfiguration traffic of its own.
      std::ofstream("/proc/sys/net/ipv6/conf/default/disable_ipv6") << "1";
      LinuxPacketIo io;
      auto dev = io.openTun({.name_template = "fct%d", .queues = 1, .offload = offload});
      if (!dev) {
        err = dev.error().message;
        return;
      }
      s->dev = std::move(*dev);
      s->sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      ifreq ifr{};
      std::strncpy(ifr.ifr_name, s->dev.name.c_str(), IFNAMSIZ - 1);
      auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
      sin->sin_family = AF_INET;
      sin->sin_addr.s_addr = htonl(ip4("10.9.0.1").toU32());
      if (::ioctl(s->sock, SIOCSIFADDR, &ifr) != 0) {
        err = std::string("SIOCSIFADDR: ") + std::strerror(errno);
        return;
      }
      sin->sin_addr.s_addr = htonl(ip4("255.255.255.0").toU32());
      if (::ioctl(s->sock, SIOCSIFNETMASK, &ifr) != 0) {
        err = std::string("SIOCSIFNETMASK: ") + std::strerror(errno);
        return;
      }
      ifr.ifr_flags = IFF_UP | IFF_RUNNING;
      if (::ioctl(s->sock, SIOCSIFFLAGS, &ifr) != 0) {
        err = std::string("SIOCSIFFLAGS: ") + std::strerror(errno);
        return;
      }
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(ip4("10.9.0.1").toU32());
      socklen_t len = sizeof sa;
      if (::bind(s->sock, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
          ::getsockname(s->sock, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
        err = std::string("bind: ") + std::strerror(errno);
        return;
      }
      s->bound = ntohs(sa.sin_port);
    }).join();
    EXPECT_EQ(err, "");
    if (!err.empty() || s->dev.queues.empty()) {
      return nullptr;
    }
    s->q = s->dev.queues[0].get();
    s->vnet = s->dev.vnet_hdr;
    EXPECT_EQ(s->vnet, offload) << "TUN offloads on this kernel";
    return s;
  }
};

// Reads the next IPv4 packet (other families skipped) within 2 s.
std::optional<Bytes> readIpv4(TunQueue& q, VirtioNetHdr& hdr) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  Bytes buf(65536);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!readable(q.pollFd(), 100)) {
      continue;
    }
    const long n = q.read(&hdr, buf);
    EXPECT_GE(n, 0);
    if (n > 0 && (std::to_integer<uint8_t>(buf[0]) >> 4) == 4) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
  }
  return std::nullopt;
}

template <class F>
class PacketIoTunContract : public ::testing::Test {
 protected:
  std::unique_ptr<TunSide> make(bool offload) {
    if (const char* why = F::skipReason()) {
      skip_ = why;
      return nullptr;
    }
    return F::make(offload);
  }
  std::string skip_;
};

class TunNames {
 public:
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, ChannelTunFactory> ? "Channel" : "LinuxPrivileged";
  }
};
using TunFactories = ::testing::Types<ChannelTunFactory, LinuxTunFactory>;
TYPED_TEST_SUITE(PacketIoTunContract, TunFactories, TunNames);

TYPED_TEST(PacketIoTunContract, ReadReturnsWhatTheKernelRoutedOut) {
  for (bool offload : {false, true}) {
    auto s = this->make(offload);
    if (!this->skip_.empty()) {
      GTEST_SKIP() << this->skip_;
    }
    ASSERT_TRUE(s);
    std::vector<std::byte> buf(100);
    VirtioNetHdr h;
    EXPECT_FALSE(readable(s->q->pollFd(), 0)) << "nothing waiting yet";
    EXPECT_EQ(s->q->read(&h, buf), 0);
    const Bytes payload = test::patternBytes(200, 7);
    s->kernelSends(payload);
    EXPECT_TRUE(readable(s->q->pollFd(), 2000));
    auto pkt = readIpv4(*s->q, h);
    ASSERT_TRUE(pkt) << "offload " << offload;
    EXPECT_EQ(test::ipSrc(*pkt), ip4("10.9.0.1"));
    EXPECT_EQ(test::ipDst(*pkt), ip4("10.9.0.2"));
    EXPECT_EQ(test::get16(*pkt, 22), kPeerPort);
    EXPECT_EQ(test::get16(*pkt, 20), s->port());
    if (s->vnet && (h.flags & VirtioNetHdr::kFlagNeedsCsum) != 0) {
      ASSERT_TRUE(backend::udp::completeChecksum(*pkt, h));
    }
    if (!s->vnet) {
      EXPECT_EQ(h.flags, 0) << "a plain device reports an empty header";
      EXPECT_EQ(h.gso_type, VirtioNetHdr::kGsoNone);
    }
    EXPECT_TRUE(test::ipv4HeaderValid(*pkt));
    EXPECT_TRUE(test::l4ChecksumValid(*pkt));
    auto pl = test::l4Payload(*pkt);
    EXPECT_EQ(Bytes(pl.begin(), pl.end()), payload);
  }
}

TYPED_TEST(PacketIoTunContract, AWrittenPacketReachesTheKernel) {
  for (bool offload : {false, true}) {
    auto s = this->make(offload);
    if (!this->skip_.empty()) {
      GTEST_SKIP() << this->skip_;
    }
    ASSERT_TRUE(s);
    const Bytes payload = test::patternBytes(300, 8);
    const Bytes pkt = PacketBuilder::udp()
                          .src("10.9.0.2")
                          .dst("10.9.0.1")
                          .sport(kPeerPort)
                          .dport(s->port())
                          .payload(payload)
                          .build();
    EXPECT_EQ(s->q->write(nullptr, pkt), 0);
    auto got = s->kernelReceived();
    ASSERT_TRUE(got) << "offload " << offload;
    EXPECT_EQ(*got, payload);
  }
}

// With offloads, the TUN takes what TcpCoalescer makes: a TCPV4 super packet with NEEDS_CSUM.
TYPED_TEST(PacketIoTunContract, ACoalescedTcpPacketIsAccepted) {
  auto s = this->make(true);
  if (!this->skip_.empty()) {
    GTEST_SKIP() << this->skip_;
  }
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->vnet);
  std::vector<std::byte> buf(65536);
  backend::udp::TcpCoalescer c(buf);
  auto seg = [&](uint32_t i) {
    return PacketBuilder::tcp()
        .src("10.9.0.2")
        .dst("10.9.0.1")
        .sport(kPeerPort)
        .dport(s->port())
        .seq(1000 + i * 1000)
        .id(static_cast<uint16_t>(i))
        .payload(1000, static_cast<uint8_t>(i))
        .build();
  };
  ASSERT_TRUE(c.start(seg(0)));
  ASSERT_TRUE(c.append(seg(1)));
  ASSERT_TRUE(c.append(seg(2)));
  VirtioNetHdr h;
  auto super = c.finish(h);
  EXPECT_EQ(s->q->write(&h, super), 0) << "the kernel refused our virtio header";
}

}  // namespace
}  // namespace flannel::kernel
