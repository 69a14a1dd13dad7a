// The udp backend's in-kernel fast path (kernel/tun/tc_path.h) against the user-space data path
// it stands in for: its decap program is run by the kernel on Ethernet frames
// (BPF_PROG_TEST_RUN; loaded, not attached, so nothing reaches any interface) and every verdict
// is checked against user-space decap() (backend/udp/dataplane/packet.h) with the same leases:
//
//   - a frame the program takes (TC_ACT_REDIRECT) is one user space would accept too, and the
//     program's output is exactly user space's: the Ethernet header, then the inner packet with
//     its TTL decremented and a valid header checksum;
//   - a frame it leaves (TC_ACT_OK) is unchanged, so user space sees what it would have seen;
//   - nothing else (no TC_ACT_SHOT), whatever the bytes.
//
// Crafted cases cover each reason to leave a frame to user space; 20,000 seeded random
// mutations of valid frames cover the rest. Needs root (loading BPF programs); labelled
// contract;privileged.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/udp/dataplane/packet.h"
#include "kernel/tun/tc_path.h"
#include "support/packet_builder.h"
#include "support/tc_decap_check.h"

namespace flannel::kernel {
namespace {

using backend::udp::RouteTable;
using test::Bytes;
using test::ip4;
using test::PacketBuilder;

constexpr uint16_t kPort = test::kTcPort;
const Ip4 kLocal = test::kTcLocal;
const Ip4 kPeer = ip4("192.168.91.12");
const Ip4 kOtherPeer = ip4("192.168.91.13");

// Frames from `from` (default: the leased peer) to kTcLocal:8285.
Bytes frame(const Bytes& inner, Ip4 from = kPeer) {
  return test::tcFrame(inner, from);
}
using test::be16;
using test::fixIpv4Checksum;
using test::setBe16;

class UdpFastPathPrivileged : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root: loads BPF programs (nothing is attached)";
    }
    auto p = TcPath::load({.local_ip = kLocal, .port = kPort, .ext_ifindex = 1, .tun_ifindex = 1});
    ASSERT_TRUE(p) << p.error().message;
    path = std::move(*p);
    ASSERT_TRUE(path->enable(ip4("10.5.1.0"), 24));
    routes = {{.network = ip4("10.5.2.0"), .prefix_len = 24, .peer = kPeer},
              {.network = ip4("10.5.3.0"), .prefix_len = 24, .peer = kOtherPeer}};
    ASSERT_TRUE(path->setPeers(routes));
  }

  RouteTable table() const {
    std::vector<RouteTable::Entry> e;
    for (const auto& r : routes) {
      e.push_back({.network = r.network, .prefix_len = r.prefix_len, .peer = r.peer});
    }
    return RouteTable(ip4("10.5.1.0"), 24, std::move(e));
  }

  // Runs `f` through the program and checks the verdict against user space
  // (support/tc_decap_check.h); returns the action.
  int check(const Bytes& f, const std::string& what) {
    const auto c = test::checkDecap(*path, table(), f);
    EXPECT_EQ(c.problem, "") << what;
    return c.action;
  }

  std::unique_ptr<TcPath> path;
  std::vector<UdpFastPathRoute> routes;
};

TEST_F(UdpFastPathPrivileged, TakesWhatUserSpaceWouldForwardAndLeavesTheRest) {
  const Bytes tcp = PacketBuilder::tcp().src("10.5.2.7").dst("10.5.1.9").payload(1400).build();
  EXPECT_EQ(check(frame(tcp), "tcp from a leased peer"), TC_ACT_REDIRECT);
  EXPECT_EQ(check(frame(PacketBuilder::icmp().src("10.5.3.7").dst("10.5.1.9").build(), kOtherPeer),
                  "icmp from the other peer"),
            TC_ACT_REDIRECT);
  // A peer may send for any source in the network but ours (user space does not tie inner
  // sources to the sender's subnet either).
  EXPECT_EQ(check(frame(PacketBuilder::udp().src("10.5.9.1").dst("10.5.1.9").build()),
                  "inner source in an unleased subnet"),
            TC_ACT_REDIRECT);
  // Ethernet padding after the datagram stays behind the inner packet.
  Bytes padded = frame(PacketBuilder::icmp().src("10.5.2.7").dst("10.5.1.9").build());
  padded.resize(padded.size() + 10, std::byte{0});
  EXPECT_EQ(check(padded, "padded frame"), TC_ACT_REDIRECT);

  struct Case {
    const char* what;
    Bytes f;
  };
  auto mutate = [&](auto fn) {
    Bytes f = frame(tcp);
    fn(f);
    return f;
  };
  const std::vector<Case> left = {
      {"unleased sender", frame(tcp, ip4("192.168.91.99"))},
      {"inner header checksum wrong",
       frame(PacketBuilder::tcp().src("10.5.2.7").dst("10.5.1.9").corruptIpChecksum().build())},
      {"inner destination not in our subnet",
       frame(PacketBuilder::tcp().src("10.5.2.7").dst("10.5.3.9").build())},
      {"inner source in our subnet",
       frame(PacketBuilder::tcp().src("10.5.1.7").dst("10.5.1.9").build())},
      {"inner TTL 1", frame(PacketBuilder::tcp().src("10.5.2.7").dst("10.5.1.9").ttl(1).build())},
      {"inner IP options", frame(PacketBuilder::tcp()
                                     .src("10.5.2.7")
                                     .dst("10.5.1.9")
                                     .ipOptions(std::vector<uint8_t>{1, 1, 1, 0})
                                     .build())},
      {"inner IPv6", frame(Bytes(60, std::byte{0x60}))},
      {"truncated inner header", frame(Bytes(19, std::byte{0x45}))},
      {"outer fragment (MF)", mutate([](Bytes& f) {
         setBe16(f, 20, 0x2000);
         fixIpv4Checksum(f, 14);
       })},
      {"outer fragment offset", mutate([](Bytes& f) {
         setBe16(f, 20, 0x0010);
         fixIpv4Checksum(f, 14);
       })},
      {"other UDP port", mutate([](Bytes& f) { setBe16(f, 36, 8472); })},
      {"other outer destination", mutate([](Bytes& f) {
         f[33] = std::byte{77};
         fixIpv4Checksum(f, 14);
       })},
      {"not UDP", mutate([](Bytes& f) {
         f[23] = std::byte{6};
         fixIpv4Checksum(f, 14);
       })},
      {"UDP length longer than the inner packet",
       mutate([](Bytes& f) { setBe16(f, 38, static_cast<uint16_t>(be16(f, 38) + 4)); })},
      {"inner length shorter than the datagram", mutate([](Bytes& f) {
         setBe16(f, 44, static_cast<uint16_t>(be16(f, 44) - 4));
         fixIpv4Checksum(f, 42);
       })},
      {"outer length beyond the frame", mutate([](Bytes& f) { f.resize(f.size() - 8); })},
      {"IPv6 ethertype", mutate([](Bytes& f) { setBe16(f, 12, 0x86dd); })},
      {"short frame", Bytes(30, std::byte{0x45})},
  };
  for (const auto& c : left) {
    EXPECT_EQ(check(c.f, c.what), TC_ACT_OK) << c.what;
  }
}

TEST_F(UdpFastPathPrivileged, FollowsLeaseChangesAndTakesNothingBeforeEnable) {
  const Bytes f = frame(PacketBuilder::tcp().src("10.5.2.7").dst("10.5.1.9").build());
  EXPECT_EQ(check(f, "leased"), TC_ACT_REDIRECT);
  routes.erase(routes.begin());  // kPeer leaves
  ASSERT_TRUE(path->setPeers(routes));
  EXPECT_EQ(check(f, "after the peer left"), TC_ACT_OK);
  routes.push_back({.network = ip4("10.5.4.0"), .prefix_len = 24, .peer = kPeer});
  ASSERT_TRUE(path->setPeers(routes));
  EXPECT_EQ(check(f, "the peer back with another subnet"), TC_ACT_REDIRECT);

  auto fresh =
      TcPath::load({.local_ip = kLocal, .port = kPort, .ext_ifindex = 1, .tun_ifindex = 1});
  ASSERT_TRUE(fresh) << fresh.error().message;
  ASSERT_TRUE((*fresh)->setPeers(routes));
  auto v = (*fresh)->testDecap(f);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(v->action, TC_ACT_OK) << "nothing is taken before enable()";
  EXPECT_EQ(v->frame, f);
}

TEST_F(UdpFastPathPrivileged, RandomMutationsAgreeWithUserSpace) {
  std::mt19937 rng(20261206);
  const std::vector<Bytes> bases = {
      frame(PacketBuilder::tcp().src("10.5.2.7").dst("10.5.1.9").payload(1400).build()),
      frame(PacketBuilder::icmp().src("10.5.3.7").dst("10.5.1.9").build(), kOtherPeer),
      frame(PacketBuilder::udp().src("10.5.2.7").dst("10.5.1.200").payload(40).build()),
      frame(PacketBuilder::tcp().src("10.5.2.7").dst("10.5.1.9").ttl(2).build())};
  int taken = 0;
  int left = 0;
  for (int i = 0; i < 20000 && !HasFailure(); ++i) {
    Bytes f = bases[rng() % bases.size()];
    const int changes = 1 + static_cast<int>(rng() % 3);
    for (int c = 0; c < changes; ++c) {
      if (f.size() < 62) {
        f.resize(62, std::byte{0});  // room for the fields the cases below touch
      }
      switch (rng() % 6) {
        case 0:  // a byte of the headers (Ethernet, outer, UDP, inner)
          f[rng() % 62] = std::byte(rng());
          break;
        case 1:  // a byte of the inner header, with the checksum made right again
          f[42 + rng() % 20] = std::byte(rng());
          if (rng() % 2) {
            fixIpv4Checksum(f, 42);
          }
          break;
        case 2:  // a shorter or longer frame
          f.resize(rng() % (f.size() + 40), std::byte(rng()));
          break;
        case 3:  // another sender
          f[29] = std::byte(rng() % 4 == 0 ? 12 : 10 + rng() % 6);
          fixIpv4Checksum(f, 14);
          break;
        case 4:  // another inner destination or source host byte
          f[42 + (rng() % 2 ? 16 : 12) + 2] = std::byte(rng() % 6);
          fixIpv4Checksum(f, 42);
          break;
        default:  // a lying length field (outer, UDP or inner)
          setBe16(f, std::vector<size_t>{16, 38, 44}[rng() % 3], static_cast<uint16_t>(rng()));
          fixIpv4Checksum(f, 42);
          fixIpv4Checksum(f, 14);
          break;
      }
      if (f.size() < 34) {
        f.resize(34, std::byte{0});  // the test run refuses IPv4 frames without an IP header
      }
    }
    const int action = check(f, "mutation " + std::to_string(i));
    (action == TC_ACT_REDIRECT ? taken : left)++;
  }
  // Both outcomes were exercised, many times.
  EXPECT_GT(taken, 1000);
  EXPECT_GT(left, 1000);
}

}  // namespace
}  // namespace flannel::kernel
