// The udp data path end to end over the in-memory twins: two DataPlanes joined by a ChannelNet,
// each with ChannelTun queues (tests/support/channel_io.h), driven by pollOnce() (deterministic,
// no threads) and once by start()/stop(). Then UdpNetwork over FakeKernel + ChannelPacketIo.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <string>

#include "backend/udp/dataplane/dataplane.h"
#include "backend/udp/udp_network.h"
#include "support/channel_io.h"
#include "support/fake_kernel.h"
#include "support/packet_builder.h"
#include "support/poll.h"

namespace flannel::backend::udp {
namespace {

using kernel::Endpoint;
using kernel::VirtioNetHdr;
using test::Bytes;
using test::ChannelNet;
using test::ChannelTun;
using test::ChannelUdp;
using test::ip4;
using test::PacketBuilder;
using ::testing::HasSubstr;

constexpr uint16_t kPort = 8285;
constexpr std::array<uint8_t, 12> kTimestamps = {1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2};

uint64_t dropped(const DataPlaneCounters& c, Drop d) {
  return c.drops[static_cast<size_t>(d)];
}

// `p` with its TTL lowered by `n` and the header checksum recomputed from scratch. Both ends
// decrement (SPEC.md §5.3): the wire carries TTL − 1, the peer's TUN gets TTL − 2.
Bytes ttlMinus(Bytes p, uint8_t n) {
  p[8] = std::byte{static_cast<uint8_t>(test::ipTtl(p) - n)};
  test::put16(p, 10, 0);
  test::put16(p, 10, test::refChecksum(std::span<const std::byte>(p).first(test::ipHeaderLen(p))));
  return p;
}

struct Node {
  ChannelTun* tun = nullptr;
  ChannelUdp* sock = nullptr;
  std::unique_ptr<DataPlane> dp;
};

struct Opts {
  bool vnet = false;
  bool gso = false;
  bool gro = false;
  bool split = false;  // DataPlaneConfig::thread_per_direction
};

Node makeNode(const std::shared_ptr<ChannelNet>& net, const char* public_ip, const char* subnet,
              Opts o, std::vector<RouteTable::Entry> peers) {
  Node n;
  auto tun = test::makeChannelTun("flannel0", 1, o.vnet);
  n.tun = tun.queues[0];
  auto sock = net->open(Endpoint{ip4(public_ip), kPort}, {.gso = o.gso, .gro = o.gro});
  EXPECT_TRUE(sock);
  n.sock = sock.get();
  std::vector<std::unique_ptr<kernel::UdpBatchSocket>> socks;
  socks.push_back(std::move(sock));
  n.dp = std::make_unique<DataPlane>(
      std::move(tun.device), std::move(socks),
      DataPlaneConfig{.tun_address = ip4(subnet), .port = kPort, .thread_per_direction = o.split});
  n.dp->publish(std::make_shared<const RouteTable>(ip4(subnet), 24, std::move(peers)));
  return n;
}

RouteTable::Entry route(const char* net, const char* peer) {
  return {.network = ip4(net), .prefix_len = 24, .peer = ip4(peer)};
}

class TwoNodes {
 public:
  explicit TwoNodes(Opts oa = {}, Opts ob = {})
      : net_(ChannelNet::create()),
        a(makeNode(net_, "192.168.91.11", "10.5.1.0", oa, {route("10.5.2.0", "192.168.91.12")})),
        b(makeNode(net_, "192.168.91.12", "10.5.2.0", ob, {route("10.5.1.0", "192.168.91.11")})) {}
  // Runs both until nothing moves (bounded).
  void pump() {
    for (int i = 0; i < 100; ++i) {
      const bool x = a.dp->pollOnce();
      const bool y = b.dp->pollOnce();
      if (!x && !y) {
        return;
      }
    }
    ADD_FAILURE() << "the data paths never went idle";
  }
  ChannelNet& net() { return *net_; }

 private:
  std::shared_ptr<ChannelNet> net_;

 public:
  Node a;
  Node b;
};

PacketBuilder aToB() {
  return PacketBuilder::tcp().src("10.5.1.2").dst("10.5.2.3").ttl(64).payload(100);
}

// --- plain packets ---------------------------------------------------------------------------

class UdpDataPlaneModes : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(UdpDataPlaneModes, APacketCrossesWithTtlMinusOne) {
  const auto [vnet_a, vnet_b] = GetParam();
  TwoNodes t({.vnet = vnet_a}, {.vnet = vnet_b});
  const Bytes tcp = aToB().build();
  const Bytes udp =
      PacketBuilder::udp().src("10.5.2.7").dst("10.5.1.9").ttl(9).payload(1400, 5).build();
  t.a.tun->push(tcp);
  t.b.tun->push(udp);
  t.pump();
  auto at_b = t.b.tun->takeWritten();
  auto at_a = t.a.tun->takeWritten();
  ASSERT_EQ(at_b.size(), 1u);
  ASSERT_EQ(at_a.size(), 1u);
  EXPECT_EQ(at_b[0].data, ttlMinus(tcp, 2));
  EXPECT_EQ(at_a[0].data, ttlMinus(udp, 2));
  EXPECT_EQ(at_b[0].hdr.has_value(), vnet_b);
  if (vnet_b) {
    EXPECT_EQ(at_b[0].hdr->gso_type, VirtioNetHdr::kGsoNone);
    EXPECT_EQ(at_b[0].hdr->flags, 0) << "checksums are complete";
  }
  for (const auto* n : {&t.a, &t.b}) {
    const auto c = n->dp->counters();
    EXPECT_EQ(c.tun_rx_packets, 1u);
    EXPECT_EQ(c.udp_tx_packets, 1u);
    EXPECT_EQ(c.udp_rx_packets, 1u);
    EXPECT_EQ(c.tun_tx_packets, 1u);
    EXPECT_EQ(c.udp_tx_errors + c.tun_tx_errors, 0u);
  }
  EXPECT_EQ(t.a.dp->counters().tun_rx_bytes, tcp.size());
  EXPECT_EQ(t.a.dp->counters().udp_tx_bytes, tcp.size());
  EXPECT_EQ(t.a.dp->counters().tun_tx_bytes, udp.size());
}

TEST(UdpDataPlane, OnTheWireTheUdpPayloadIsTheBarePacketWithTtlMinusOne) {
  auto net = ChannelNet::create();
  Node a = makeNode(net, "192.168.91.11", "10.5.1.0", {}, {route("10.5.2.0", "192.168.91.12")});
  auto peer = net->open({ip4("192.168.91.12"), kPort});
  const Bytes p = aToB().build();
  a.tun->push(p);
  a.dp->pollOnce();
  std::vector<std::byte> buf(65536);
  std::array<kernel::RecvSlot, 4> slots{};
  slots[0].buf = buf;
  ASSERT_EQ(peer->recv(slots), 1);
  EXPECT_EQ(Bytes(buf.begin(), buf.begin() + static_cast<long>(slots[0].len)), ttlMinus(p, 1));
  EXPECT_EQ(slots[0].from, (Endpoint{ip4("192.168.91.11"), kPort}));
}

TEST_P(UdpDataPlaneModes, AnUnroutedPacketGetsNetUnreachableBackIntoTheTun) {
  const auto [vnet_a, vnet_b] = GetParam();
  TwoNodes t({.vnet = vnet_a}, {.vnet = vnet_b});
  const Bytes p = PacketBuilder::udp().src("10.5.1.2").dst("10.9.0.1").payload(30).build();
  t.a.tun->push(p);
  t.pump();
  auto back = t.a.tun->takeWritten();
  ASSERT_EQ(back.size(), 1u);
  const auto& e = back[0].data;
  ASSERT_EQ(e.size(), 28u + 28);
  EXPECT_TRUE(test::ipv4HeaderValid(e));
  EXPECT_TRUE(test::l4ChecksumValid(e));
  EXPECT_EQ(test::ipSrc(e), ip4("10.5.1.0"));
  EXPECT_EQ(test::ipDst(e), ip4("10.5.1.2"));
  EXPECT_EQ(test::ipTtl(e), 8);
  EXPECT_EQ(std::to_integer<int>(e[20]), 3);
  EXPECT_EQ(std::to_integer<int>(e[21]), 0);
  EXPECT_TRUE(std::equal(e.begin() + 28, e.end(), p.begin())) << "quotes the original";
  EXPECT_EQ(t.b.tun->writtenCount(), 0u);
  const auto c = t.a.dp->counters();
  EXPECT_EQ(c.icmp_unreachable, 1u);
  EXPECT_EQ(dropped(c, Drop::NoRoute), 1u);
  EXPECT_EQ(c.udp_tx_packets, 0u);
  EXPECT_EQ(c.tun_tx_packets, 1u);
}

INSTANTIATE_TEST_SUITE_P(PlainAndVnet, UdpDataPlaneModes,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));

TEST(UdpDataPlane, DatagramsFromUnleasedSourcesAreDroppedAndCounted) {
  TwoNodes t;
  const Bytes p = PacketBuilder::udp().src("10.5.1.2").dst("10.5.2.3").build();
  ASSERT_TRUE(t.net().inject({ip4("192.168.91.99"), kPort}, {ip4("192.168.91.12"), kPort}, p));
  ASSERT_TRUE(t.net().inject({ip4("192.168.91.11"), kPort}, {ip4("192.168.91.12"), kPort}, p));
  t.pump();
  ASSERT_EQ(t.b.tun->writtenCount(), 1u) << "only the leased sender's copy";
  const auto c = t.b.dp->counters();
  EXPECT_EQ(dropped(c, Drop::UnknownSource), 1u);
  EXPECT_EQ(c.udp_rx_packets, 2u);
  EXPECT_EQ(c.tun_tx_packets, 1u);
}

TEST(UdpDataPlane, BadDatagramsFromALeasedPeerAreCountedByReason) {
  TwoNodes t;
  const Endpoint from{ip4("192.168.91.11"), kPort};
  const Endpoint to{ip4("192.168.91.12"), kPort};
  auto in = [] { return PacketBuilder::udp().src("10.5.1.2").dst("10.5.2.3"); };
  const Bytes junk = {std::byte{1}, std::byte{2}, std::byte{3}};
  const Bytes v6(48, std::byte{0x60});
  for (const Bytes& d : {junk, v6, in().corruptIpChecksum().build(), Bytes{}}) {
    ASSERT_TRUE(t.net().inject(from, to, d));
  }
  ASSERT_TRUE(t.net().inject(from, to, in().dst("10.5.3.3").build()));
  ASSERT_TRUE(t.net().inject(from, to, in().src("10.5.2.77").build()));
  ASSERT_TRUE(t.net().inject(from, to, in().ttl(1).build()));
  t.pump();
  EXPECT_EQ(t.b.tun->writtenCount(), 0u);
  const auto c = t.b.dp->counters();
  EXPECT_EQ(dropped(c, Drop::Malformed), 3u);
  EXPECT_EQ(dropped(c, Drop::NotIpv4), 1u);
  EXPECT_EQ(dropped(c, Drop::NotOurSubnet), 1u);
  EXPECT_EQ(dropped(c, Drop::SpoofedSource), 1u);
  EXPECT_EQ(dropped(c, Drop::TtlExpired), 1u);
  EXPECT_EQ(c.udp_rx_packets, 7u);
  EXPECT_EQ(c.tun_tx_packets, 0u);
}

TEST(UdpDataPlane, MalformedPacketsFromTheTunAreCounted) {
  TwoNodes t({.vnet = true});
  t.a.tun->push(Bytes(10, std::byte{0x45}));
  // NEEDS_CSUM with offsets outside the packet.
  VirtioNetHdr bad;
  bad.flags = VirtioNetHdr::kFlagNeedsCsum;
  bad.csum_start = 20;
  bad.csum_offset = 5000;
  t.a.tun->push(aToB().build(), bad);
  // A TSO header on something that is not TCP.
  VirtioNetHdr tso;
  tso.gso_type = VirtioNetHdr::kGsoTcpV4;
  tso.gso_size = 100;
  t.a.tun->push(PacketBuilder::udp().src("10.5.1.2").dst("10.5.2.3").payload(500).build(), tso);
  t.a.tun->push(aToB().ttl(1).build());
  t.pump();
  EXPECT_EQ(t.b.tun->writtenCount(), 0u);
  const auto c = t.a.dp->counters();
  EXPECT_EQ(dropped(c, Drop::Malformed), 3u);
  EXPECT_EQ(dropped(c, Drop::TtlExpired), 1u);
  EXPECT_EQ(c.tun_rx_packets, 4u);
  EXPECT_EQ(c.tun_rx_super, 1u);
  EXPECT_EQ(c.udp_tx_packets, 0u);
}

TEST(UdpDataPlane, ChecksumsLeftPartialByTheKernelAreCompletedBeforeSending) {
  TwoNodes t({.vnet = true});
  const Bytes whole = aToB().build();
  Bytes partial = whole;
  test::put16(partial, 36, 0x1234);  // whatever the kernel left; completeChecksum redoes it
  // The field must hold the pseudo-header sum for the completion to come out right.
  uint32_t s = 0;
  for (size_t off = 12; off < 20; off += 2) {
    s += test::get16(whole, off);
  }
  s += 6 + static_cast<uint32_t>(whole.size() - 20);
  while (s > 0xffff) {
    s = (s & 0xffff) + (s >> 16);
  }
  test::put16(partial, 36, static_cast<uint16_t>(s));
  VirtioNetHdr h;
  h.flags = VirtioNetHdr::kFlagNeedsCsum;
  h.csum_start = 20;
  h.csum_offset = 16;
  t.a.tun->push(partial, h);
  t.pump();
  auto got = t.b.tun->takeWritten();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, ttlMinus(whole, 2));
  EXPECT_TRUE(test::l4ChecksumValid(got[0].data));
}

// --- super packets ---------------------------------------------------------------------------

PacketBuilder flow() {
  return PacketBuilder::tcp()
      .src("10.5.1.2")
      .dst("10.5.2.3")
      .sport(40000)
      .dport(5201)
      .id(0x100)
      .seq(1000)
      .ack(5000)
      .ttl(64)
      .tcpOptions(kTimestamps);
}

// The segments B must deliver for a super packet of `payload` bytes cut at `mss`.
std::vector<Bytes> expectedSegments(const Bytes& payload, size_t mss, uint8_t last_flags) {
  std::vector<Bytes> out;
  const size_t n = (payload.size() + mss - 1) / mss;
  for (size_t i = 0; i < n; ++i) {
    const size_t len = std::min(mss, payload.size() - i * mss);
    out.push_back(flow()
                      .id(static_cast<uint16_t>(0x100 + i))
                      .seq(static_cast<uint32_t>(1000 + i * mss))
                      .ttl(62)
                      .flags(i + 1 == n ? last_flags : test::kTcpAck)
                      .payload(std::span<const std::byte>(payload).subspan(i * mss, len))
                      .build());
  }
  return out;
}

VirtioNetHdr tsoHdr(uint16_t mss) {
  VirtioNetHdr h;
  h.flags = VirtioNetHdr::kFlagNeedsCsum;
  h.gso_type = VirtioNetHdr::kGsoTcpV4;
  h.gso_size = mss;
  h.hdr_len = 20 + 32;
  h.csum_start = 20;
  h.csum_offset = 16;
  return h;
}

// What the receiving kernel makes of the packets B wrote: super packets cut (TSO), partial
// checksums completed.
std::vector<Bytes> asTheKernelSeesThem(const std::vector<test::TunPacket>& written) {
  std::vector<Bytes> out;
  for (const auto& w : written) {
    if (w.hdr && w.hdr->gso_type != VirtioNetHdr::kGsoNone) {
      std::vector<std::byte> buf(200000);
      auto s = segmentSuper(w.data, *w.hdr, buf);
      EXPECT_GT(s.count, 0u) << "a super packet the kernel could not cut";
      for (size_t i = 0; i < s.count; ++i) {
        auto seg = std::span<const std::byte>(buf).subspan(
            i * s.seg_len, i + 1 == s.count ? s.last_len : s.seg_len);
        out.emplace_back(seg.begin(), seg.end());
      }
    } else {
      Bytes p = w.data;
      if (w.hdr && (w.hdr->flags & VirtioNetHdr::kFlagNeedsCsum) != 0) {
        EXPECT_TRUE(completeChecksum(p, *w.hdr));
      }
      out.push_back(std::move(p));
    }
  }
  return out;
}

class UdpDataPlaneSuper : public ::testing::TestWithParam<std::tuple<bool, bool, bool>> {};

TEST_P(UdpDataPlaneSuper, ATsoPacketArrivesAsItsSegments) {
  const auto [gso, gro, vnet_b] = GetParam();
  TwoNodes t({.vnet = true, .gso = gso}, {.vnet = vnet_b, .gro = gro});
  const Bytes payload = test::patternBytes(5 * 1000 + 234, 77);
  const uint8_t last = test::kTcpAck | test::kTcpPsh;
  t.a.tun->push(flow().flags(last).payload(payload).build(), tsoHdr(1000));
  t.pump();
  const auto want = expectedSegments(payload, 1000, last);
  ASSERT_EQ(want.size(), 6u);
  auto written = t.b.tun->takeWritten();
  if (vnet_b) {
    ASSERT_EQ(written.size(), 1u) << "coalesced into one super packet for B's TUN";
    ASSERT_TRUE(written[0].hdr);
    EXPECT_EQ(written[0].hdr->gso_type, VirtioNetHdr::kGsoTcpV4);
    EXPECT_EQ(written[0].hdr->gso_size, 1000);
    Bytes done = written[0].data;
    ASSERT_TRUE(completeChecksum(done, *written[0].hdr));
    EXPECT_TRUE(test::l4ChecksumValid(done));
  } else {
    ASSERT_EQ(written.size(), want.size());
  }
  const auto got = asTheKernelSeesThem(written);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << "segment " << i;
  }
  const auto ca = t.a.dp->counters();
  EXPECT_EQ(ca.tun_rx_packets, 1u);
  EXPECT_EQ(ca.tun_rx_super, 1u);
  EXPECT_EQ(ca.udp_tx_packets, 6u);
  EXPECT_EQ(ca.udp_tx_bytes, 5 * (52 + 1000) + 52 + 234u);
  const auto cb = t.b.dp->counters();
  EXPECT_EQ(cb.udp_rx_packets, 6u);
  EXPECT_EQ(cb.tun_tx_packets, vnet_b ? 1u : 6u);
  EXPECT_EQ(cb.tun_tx_coalesced, vnet_b ? 6u : 0u);
}

TEST_P(UdpDataPlaneSuper, AUsoPacketArrivesAsItsDatagrams) {
  const auto [gso, gro, vnet_b] = GetParam();
  TwoNodes t({.vnet = true, .gso = gso}, {.vnet = vnet_b, .gro = gro});
  const Bytes payload = test::patternBytes(3000, 1);
  auto base = [] { return PacketBuilder::udp().src("10.5.1.2").dst("10.5.2.3").id(9); };
  VirtioNetHdr h;
  h.flags = VirtioNetHdr::kFlagNeedsCsum;
  h.gso_type = VirtioNetHdr::kGsoUdpL4;
  h.gso_size = 1200;
  h.csum_start = 20;
  h.csum_offset = 6;
  t.a.tun->push(base().payload(payload).build(), h);
  t.pump();
  auto got = asTheKernelSeesThem(t.b.tun->takeWritten());
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const size_t len = i == 2 ? 600 : 1200;
    EXPECT_EQ(got[i], base()
                          .id(static_cast<uint16_t>(9 + i))
                          .ttl(62)
                          .payload(std::span<const std::byte>(payload).subspan(i * 1200, len))
                          .build())
        << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Offloads, UdpDataPlaneSuper,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(),
                                            ::testing::Bool()));

TEST(UdpDataPlane, AnUnroutedSuperPacketGetsOneIcmpError) {
  TwoNodes t({.vnet = true, .gso = true});
  t.a.tun->push(flow().dst("10.9.0.1").payload(test::patternBytes(3000, 1)).build(), tsoHdr(1000));
  t.pump();
  auto back = t.a.tun->takeWritten();
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(std::to_integer<int>(back[0].data[20]), 3);
  EXPECT_EQ(test::ipDst(back[0].data), ip4("10.5.1.2"));
  EXPECT_EQ(t.a.dp->counters().icmp_unreachable, 1u);
  EXPECT_EQ(dropped(t.a.dp->counters(), Drop::NoRoute), 1u);
}

TEST(UdpDataPlane, SegmentsInterleavedWithOtherTrafficKeepTheirOrder) {
  // B coalesces; an unrelated packet between two runs of one flow must end the first run.
  TwoNodes t({}, {.vnet = true});
  auto seg = [](size_t i) {
    return flow().id(static_cast<uint16_t>(i)).seq(static_cast<uint32_t>(1000 + i * 1000));
  };
  std::vector<Bytes> sent = {seg(0).payload(1000, 0).build(), seg(1).payload(1000, 1).build(),
                             PacketBuilder::icmp().src("10.5.1.2").dst("10.5.2.3").build(),
                             seg(2).payload(1000, 2).build(), seg(3).payload(1000, 3).build()};
  for (const auto& p : sent) {
    t.a.tun->push(p);
  }
  t.pump();
  auto written = t.b.tun->takeWritten();
  ASSERT_EQ(written.size(), 3u);
  auto got = asTheKernelSeesThem(written);
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(got[i], ttlMinus(sent[i], 2)) << i;
  }
  EXPECT_EQ(t.b.dp->counters().tun_tx_coalesced, 4u);
}

// --- routing changes, errors, counters -------------------------------------------------------

TEST(UdpDataPlane, ARepublishedTableTakesEffectForTheNextPacket) {
  TwoNodes t;
  t.a.tun->push(aToB().build());
  t.pump();
  EXPECT_EQ(t.b.tun->takeWritten().size(), 1u);
  // B's lease goes away: the next packet bounces.
  t.a.dp->publish(
      std::make_shared<const RouteTable>(ip4("10.5.1.0"), 24, std::vector<RouteTable::Entry>{}));
  t.a.tun->push(aToB().build());
  t.pump();
  EXPECT_EQ(t.b.tun->writtenCount(), 0u);
  EXPECT_EQ(t.a.tun->takeWritten().size(), 1u) << "ICMP";
  // It comes back with a new PublicIP that B does not use: the datagram is lost on the wire.
  t.a.dp->publish(std::make_shared<const RouteTable>(
      ip4("10.5.1.0"), 24, std::vector{route("10.5.2.0", "192.168.91.99")}));
  t.a.tun->push(aToB().build());
  t.pump();
  EXPECT_EQ(t.b.tun->writtenCount(), 0u);
  EXPECT_EQ(t.net().lost(), 1u);
  // And B stops accepting A's datagrams once A's lease is gone from B's table.
  t.b.dp->publish(
      std::make_shared<const RouteTable>(ip4("10.5.2.0"), 24, std::vector<RouteTable::Entry>{}));
  t.a.dp->publish(std::make_shared<const RouteTable>(
      ip4("10.5.1.0"), 24, std::vector{route("10.5.2.0", "192.168.91.12")}));
  t.a.tun->push(aToB().build());
  t.pump();
  EXPECT_EQ(t.b.tun->writtenCount(), 0u);
  EXPECT_EQ(dropped(t.b.dp->counters(), Drop::UnknownSource), 1u);
}

TEST(UdpDataPlane, RefusedSendsAndTunWritesAreCounted) {
  TwoNodes t;
  t.a.sock->failSends(ENOBUFS);
  t.a.tun->push(aToB().build());
  t.pump();
  EXPECT_EQ(t.a.dp->counters().udp_tx_errors, 1u);
  EXPECT_EQ(t.b.tun->writtenCount(), 0u);
  t.b.tun->failWrites(EIO);
  t.a.tun->push(aToB().build());
  t.pump();
  EXPECT_EQ(t.b.dp->counters().tun_tx_errors, 1u);
  EXPECT_EQ(t.b.dp->counters().tun_tx_packets, 0u);
  t.b.tun->failWrites(0);
  t.a.tun->push(aToB().build());
  t.pump();
  EXPECT_EQ(t.b.tun->writtenCount(), 1u);
}

TEST(UdpDataPlane, ABatchLargerThanTheBatchSizeIsAllForwardedInOrder) {
  TwoNodes t;
  std::vector<Bytes> sent;
  for (size_t i = 0; i < 300; ++i) {
    sent.push_back(aToB().id(static_cast<uint16_t>(i)).payload(i + 1).build());
    t.a.tun->push(sent.back());
  }
  t.pump();
  auto got = t.b.tun->takeWritten();
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    ASSERT_EQ(got[i].data, ttlMinus(sent[i], 2)) << i;
  }
}

// The threaded loop: workers sleep in poll() and wake on the twins' eventfds; the routing table
// flips while packets flow; afterwards every packet is accounted for.
void threadsForwardWhileTheTableIsRepublished(bool split) {
  TwoNodes t({.vnet = true, .gso = true, .split = split},
             {.vnet = true, .gro = true, .split = split});
  const auto with_b = std::make_shared<const RouteTable>(
      ip4("10.5.1.0"), 24, std::vector{route("10.5.2.0", "192.168.91.12")});
  const auto without_b =
      std::make_shared<const RouteTable>(ip4("10.5.1.0"), 24, std::vector<RouteTable::Entry>{});
  t.a.dp->start();
  t.b.dp->start();
  // Phases of 50 packets with the table flipped between them (waiting for each to drain makes
  // the split exact); in the last phase the table flips while its packets are in flight.
  size_t pushed = 0;
  size_t want_delivered = 0;
  size_t want_bounced = 0;
  auto push = [&](size_t n) {
    for (size_t i = 0; i < n; ++i, ++pushed) {
      t.a.tun->push(PacketBuilder::udp()
                        .src("10.5.1.2")
                        .dst("10.5.2.3")
                        .id(static_cast<uint16_t>(pushed))
                        .build());
    }
  };
  auto settled = [&] {
    return test::pollUntil(
        [&] { return t.b.tun->writtenCount() + t.a.tun->writtenCount() == pushed; },
        std::chrono::seconds(10), std::chrono::milliseconds(2));
  };
  for (int phase = 0; phase < 6; ++phase) {
    const bool routed = phase % 2 == 1;
    t.a.dp->publish(routed ? with_b : without_b);
    push(50);
    (routed ? want_delivered : want_bounced) += 50;
    ASSERT_TRUE(settled()) << "phase " << phase;
    EXPECT_EQ(t.b.tun->writtenCount(), want_delivered) << "phase " << phase;
    EXPECT_EQ(t.a.tun->writtenCount(), want_bounced) << "phase " << phase;
  }
  for (int i = 0; i < 10; ++i) {
    push(20);
    t.a.dp->publish(i % 2 == 0 ? with_b : without_b);
  }
  const bool done = settled();
  t.a.dp->stop();
  t.b.dp->stop();
  ASSERT_TRUE(done) << t.b.tun->writtenCount() << " delivered, " << t.a.tun->writtenCount()
                    << " bounced of " << pushed;
  const uint64_t total = pushed;
  const auto ca = t.a.dp->counters();
  const auto cb = t.b.dp->counters();
  EXPECT_EQ(ca.tun_rx_packets, total);
  EXPECT_EQ(ca.udp_tx_packets + dropped(ca, Drop::NoRoute), total);
  EXPECT_EQ(ca.icmp_unreachable, dropped(ca, Drop::NoRoute));
  EXPECT_EQ(ca.tun_tx_packets, ca.icmp_unreachable);
  EXPECT_EQ(cb.udp_rx_packets, ca.udp_tx_packets);
  EXPECT_EQ(cb.tun_tx_packets, ca.udp_tx_packets);
  EXPECT_GE(ca.udp_tx_packets, want_delivered);
  EXPECT_GE(ca.icmp_unreachable, want_bounced);
  // Stopped workers no longer move packets; a restart picks up where they left off.
  t.a.tun->push(aToB().build());
  EXPECT_EQ(t.a.tun->pending(), 1u);
  t.a.dp->publish(with_b);
  t.a.dp->start();
  t.b.dp->start();
  EXPECT_TRUE(test::pollUntil([&] { return t.b.tun->writtenCount() == cb.tun_tx_packets + 1; },
                              std::chrono::seconds(5), std::chrono::milliseconds(5)));
}

TEST(UdpDataPlane, ThreadsForwardWhileTheTableIsRepublished) {
  threadsForwardWhileTheTableIsRepublished(false);
}

// The same with a thread per direction per queue (both threads of a worker read the table and
// count, each into its own counter set).
TEST(UdpDataPlane, ThreadPerDirectionForwardsWhileTheTableIsRepublished) {
  threadsForwardWhileTheTableIsRepublished(true);
}

TEST(UdpDataPlane, OneWorkerPerQueueEachWithItsOwnSocket) {
  auto net = ChannelNet::create();
  auto tun = test::makeChannelTun("flannel0", 3, false);
  std::vector<std::unique_ptr<kernel::UdpBatchSocket>> socks;
  for (int i = 0; i < 3; ++i) {
    socks.push_back(net->open({ip4("192.168.91.11"), kPort}, {.reuseport = true}));
    ASSERT_TRUE(socks.back());
  }
  auto peer = net->open({ip4("192.168.91.12"), kPort});
  DataPlane dp(std::move(tun.device), std::move(socks), DataPlaneConfig{.port = kPort});
  dp.publish(std::make_shared<const RouteTable>(ip4("10.5.1.0"), 24,
                                                std::vector{route("10.5.2.0", "192.168.91.12")}));
  EXPECT_EQ(dp.workers(), 3u);
  for (auto* q : tun.queues) {
    q->push(aToB().build());
  }
  dp.pollOnce();
  EXPECT_EQ(peer->pending(), 3u);
  EXPECT_EQ(dp.counters().udp_tx_packets, 3u) << "summed over the workers";
}

// --- UdpNetwork ------------------------------------------------------------------------------

NetworkConfig udpConfig(const char* backend = R"({"Type":"udp"})") {
  return loadNetworkConfig(std::string(R"({"Network":"10.5.0.0/16","Backend":)") + backend + "}")
      .value();
}

kernel::ExternalInterface eth0() {
  kernel::ExternalInterface e;
  e.link.index = 2;
  e.link.name = "eth0";
  e.link.mtu = 1500;
  e.iface_addr = ip4("192.168.91.11");
  e.ext_addr = ip4("203.0.113.11");
  return e;
}

Lease lease(const char* subnet, const char* public_ip, std::string type = "") {
  Lease l;
  l.subnet.ipv4 = IpNet::parse(subnet).value();
  l.attrs.public_ip = ip4(public_ip);
  l.attrs.backend_type = std::move(type);
  return l;
}

class UdpNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override { tun_index = kernel.addLink("flannel0", "tun", 1500).index; }
  Result<std::unique_ptr<Network>> create(NetworkConfig cfg) {
    return UdpNetwork::create(
        Context{.config = std::move(cfg), .ext = eth0(), .kernel = &kernel, .packet_io = &io});
  }
  UdpNetwork& make(const char* backend = R"({"Type":"udp"})") {
    auto n = create(udpConfig(backend));
    EXPECT_TRUE(n) << (n ? "" : n.error().message);
    network = std::move(n.value());
    return static_cast<UdpNetwork&>(*network);
  }
  test::FakeKernel kernel;
  std::shared_ptr<ChannelNet> net = ChannelNet::create();
  test::ChannelPacketIo io{net};
  int tun_index = 0;
  std::unique_ptr<Network> network;
};

TEST_F(UdpNetworkTest, OpensTheTunAndSocketsAsConfigured) {
  auto& n = make(R"({"Type":"udp","Port":9000,"Queues":2})");
  ASSERT_EQ(io.tun_calls.size(), 1u);
  EXPECT_EQ(io.tun_calls[0].name_template, "flannel%d");
  EXPECT_EQ(io.tun_calls[0].queues, 2u);
  EXPECT_TRUE(io.tun_calls[0].offload);
  ASSERT_EQ(io.udp_calls.size(), 1u);
  EXPECT_EQ(io.udp_calls[0].bind, (Endpoint{ip4("192.168.91.11"), 9000})) << "IfaceAddr:Port";
  EXPECT_EQ(io.udp_calls[0].sockets, 2u);
  EXPECT_EQ(n.mtu(), 1472u);
  EXPECT_EQ(n.tunIndex(), tun_index);
  EXPECT_EQ(n.dataPlane().workers(), 2u);
  EXPECT_THAT(kernel.mutations(), ::testing::Contains(HasSubstr("1472")));
}

TEST_F(UdpNetworkTest, DesiredStateIsTheSubnetAddressAndTheNetworkRoute) {
  auto& n = make();
  EXPECT_TRUE(n.desiredState({}).addresses.empty()) << "nothing before the lease";
  ASSERT_TRUE(n.configure(lease("10.5.31.0/24", "203.0.113.11")));
  const auto d = n.desiredState({});
  ASSERT_EQ(d.addresses.size(), 1u);
  EXPECT_EQ(d.addresses[0],
            (kernel::Addr{.ifindex = tun_index, .address = ip4("10.5.31.0"), .prefix_len = 32}));
  ASSERT_EQ(d.routes.size(), 1u);
  EXPECT_EQ(d.routes[0].dst, IpNet::parse("10.5.0.0/16").value());
  EXPECT_EQ(d.routes[0].ifindex, tun_index);
  EXPECT_FALSE(d.routes[0].via);
  EXPECT_TRUE(d.neighbours.empty());
  EXPECT_TRUE(d.fdb.empty());
  EXPECT_EQ(n.ownership().devices, std::vector<int>{tun_index});
  EXPECT_EQ(n.ownership().networks, std::vector<IpNet>{IpNet::parse("10.5.0.0/16").value()});
}

TEST_F(UdpNetworkTest, LeaseAttrsArePublicIpOnly) {
  auto& n = make();
  const auto a = n.leaseAttrs();
  EXPECT_EQ(a.public_ip, ip4("203.0.113.11")) << "ExtAddr";
  EXPECT_EQ(a.backend_type, "");
  EXPECT_EQ(a.backend_data, "");
}

TEST_F(UdpNetworkTest, AcceptsPeersOfAnyTypeWithSubnetAndPublicIp) {
  auto& n = make();
  EXPECT_TRUE(n.acceptPeer(lease("10.5.2.0/24", "192.168.91.12", "vxlan")));
  EXPECT_TRUE(n.acceptPeer(lease("10.5.2.0/24", "192.168.91.12", "")));
  Lease v6only = lease("10.5.2.0/24", "192.168.91.12");
  v6only.subnet.ipv4.reset();
  EXPECT_FALSE(n.acceptPeer(v6only));
  EXPECT_FALSE(n.acceptPeer(lease("10.5.2.0/24", "0.0.0.0")));
}

TEST_F(UdpNetworkTest, PeerEventsRepublishTheForwardingTable) {
  auto& n = make(R"({"Type":"udp","Queues":1})");
  ASSERT_TRUE(n.configure(lease("10.5.1.0/24", "203.0.113.11")));
  auto peer = net->open({ip4("192.168.91.12"), kPort});
  n.peersAdded({lease("10.5.2.0/24", "192.168.91.12"), lease("10.5.3.0/24", "192.168.91.13")});
  auto table = n.dataPlane().table();
  ASSERT_TRUE(table);
  EXPECT_EQ(table->size(), 2u);
  EXPECT_TRUE(table->isOwn(ip4("10.5.1.9")));
  ASSERT_EQ(io.tun_queues.size(), 1u);
  io.tun_queues[0]->push(aToB().build());
  n.dataPlane().pollOnce();
  EXPECT_EQ(peer->pending(), 1u);
  n.peersRemoved({lease("10.5.2.0/24", "192.168.91.12")});
  EXPECT_EQ(n.dataPlane().table()->size(), 1u);
  EXPECT_EQ(n.dataPlane().table()->lookup(ip4("10.5.2.3")), nullptr);
  // The counters reach /metrics.
  const auto stats = n.stats();
  auto find = [&](const std::string& name) {
    return std::find_if(stats.begin(), stats.end(), [&](const Stat& s) { return s.name == name; });
  };
  ASSERT_NE(find("flannel_udp_tx_packets_total"), stats.end());
  EXPECT_EQ(find("flannel_udp_tx_packets_total")->value, 1.0);
  EXPECT_EQ(
      std::count_if(stats.begin(), stats.end(),
                    [](const Stat& s) { return s.name == "flannel_udp_dropped_packets_total"; }),
      static_cast<long>(Drop::kCount) - 1);
}

// The in-kernel fast path, through the PacketIo seam: asked for with the socket's address and
// port and both devices, enabled with our subnet once the lease is known, kept in step with
// every peer change, its counters part of /metrics; detached with the network.
TEST_F(UdpNetworkTest, FastPathIsAttachedEnabledAndFollowsThePeers) {
  auto state = std::make_shared<test::RecordingFastPathState>();
  io.fast_path = [&](const kernel::UdpFastPathOptions&) {
    return Result<std::unique_ptr<kernel::UdpFastPath>>(
        std::make_unique<test::RecordingFastPath>(state));
  };
  auto& n = make(R"({"Type":"udp","Port":9000,"Queues":1})");
  n.attachFastPath();
  EXPECT_TRUE(io.fast_path_calls.empty()) << "not before the lease is known";
  ASSERT_TRUE(n.configure(lease("10.5.1.0/24", "203.0.113.11")));
  n.peersAdded({lease("10.5.4.0/24", "192.168.91.14")});
  EXPECT_TRUE(io.fast_path_calls.empty()) << "not before run(): start-up goes first";
  n.attachFastPath();
  ASSERT_EQ(io.fast_path_calls.size(), 1u);
  EXPECT_EQ(io.fast_path_calls[0].local_ip, ip4("192.168.91.11")) << "IfaceAddr";
  EXPECT_EQ(io.fast_path_calls[0].port, 9000);
  EXPECT_EQ(io.fast_path_calls[0].tun_ifindex, tun_index);
  EXPECT_EQ(io.fast_path_calls[0].ext_ifindex, eth0().link.index);
  EXPECT_TRUE(n.tcPathActive());
  ASSERT_TRUE(state->enabled);
  EXPECT_EQ(state->enabled->first, ip4("10.5.1.0"));
  EXPECT_EQ(state->enabled->second, 24);
  ASSERT_EQ(state->peer_sets.size(), 1u) << "the peers known when it was attached";
  EXPECT_EQ(state->peer_sets[0],
            (std::vector<kernel::UdpFastPathRoute>{
                {.network = ip4("10.5.4.0"), .prefix_len = 24, .peer = ip4("192.168.91.14")}}));
  n.peersRemoved({lease("10.5.4.0/24", "192.168.91.14")});
  n.peersAdded({lease("10.5.2.0/24", "192.168.91.12"), lease("10.5.3.0/24", "192.168.91.13")});
  ASSERT_FALSE(state->peer_sets.empty());
  EXPECT_EQ(state->peer_sets.back(),
            (std::vector<kernel::UdpFastPathRoute>{
                {.network = ip4("10.5.2.0"), .prefix_len = 24, .peer = ip4("192.168.91.12")},
                {.network = ip4("10.5.3.0"), .prefix_len = 24, .peer = ip4("192.168.91.13")}}));
  n.peersRemoved({lease("10.5.2.0/24", "192.168.91.12")});
  EXPECT_EQ(state->peer_sets.back(),
            (std::vector<kernel::UdpFastPathRoute>{
                {.network = ip4("10.5.3.0"), .prefix_len = 24, .peer = ip4("192.168.91.13")}}));
  state->stats = {.tx_packets = 40, .tx_bytes = 60000, .rx_packets = 7, .rx_bytes = 700};
  const auto stats = n.stats();
  auto value = [&](const std::string& name) {
    auto it =
        std::find_if(stats.begin(), stats.end(), [&](const Stat& s) { return s.name == name; });
    return it == stats.end() ? -1.0 : it->value;
  };
  EXPECT_EQ(value("flannel_udp_tc_bpf_active"), 1.0);
  EXPECT_EQ(value("flannel_udp_tc_tx_packets_total"), 40.0);
  EXPECT_EQ(value("flannel_udp_tc_rx_bytes_total"), 700.0);
  EXPECT_EQ(value("flannel_udp_tx_packets_total"), 40.0) << "totals include the kernel's share";
  EXPECT_EQ(value("flannel_udp_rx_packets_total"), 7.0);
  network.reset();
  EXPECT_TRUE(state->destroyed) << "detached with the network";
}

TEST_F(UdpNetworkTest, WithoutAFastPathOrWithTcBpfOffUserSpaceCarriesEverything) {
  // The default PacketIo has none: create() still succeeds, on the user-space path.
  auto& plain = make();
  ASSERT_TRUE(plain.configure(lease("10.5.1.0/24", "203.0.113.11")));
  plain.attachFastPath();
  EXPECT_FALSE(plain.tcPathActive());
  ASSERT_EQ(io.fast_path_calls.size(), 1u);
  network.reset();
  // TcBpf false: not even asked for.
  io.fast_path = [&](const kernel::UdpFastPathOptions&) {
    return Result<std::unique_ptr<kernel::UdpFastPath>>(std::make_unique<test::RecordingFastPath>(
        std::make_shared<test::RecordingFastPathState>()));
  };
  auto& off = make(R"({"Type":"udp","TcBpf":false})");
  ASSERT_TRUE(off.configure(lease("10.5.1.0/24", "203.0.113.11")));
  off.attachFastPath();
  EXPECT_FALSE(off.tcPathActive());
  EXPECT_EQ(io.fast_path_calls.size(), 1u);
  const auto stats = off.stats();
  auto active = std::find_if(stats.begin(), stats.end(),
                             [](const Stat& s) { return s.name == "flannel_udp_tc_bpf_active"; });
  ASSERT_NE(active, stats.end());
  EXPECT_EQ(active->value, 0.0);
}

// On a virtual external interface (Link::kind set) the fast path is told so, and the backend
// announces it to every peer (one datagram per PublicIP) whenever the peers change; on a
// physical one it announces nothing.
TEST_F(UdpNetworkTest, OnAVirtualLinkTheFastPathIsAnnouncedToEveryPeer) {
  for (const char* kind : {"veth", ""}) {
    SCOPED_TRACE(std::string("kind: ") + kind);
    auto state = std::make_shared<test::RecordingFastPathState>();
    io.fast_path = [&](const kernel::UdpFastPathOptions&) {
      return Result<std::unique_ptr<kernel::UdpFastPath>>(
          std::make_unique<test::RecordingFastPath>(state));
    };
    io.fast_path_calls.clear();
    auto ext = eth0();
    ext.link.kind = kind;
    auto created = UdpNetwork::create(Context{.config = udpConfig(R"({"Type":"udp","Queues":1})"),
                                              .ext = ext,
                                              .kernel = &kernel,
                                              .packet_io = &io});
    ASSERT_TRUE(created) << created.error().message;
    network = std::move(*created);
    auto& n = static_cast<UdpNetwork&>(*network);
    ASSERT_TRUE(n.configure(lease("10.5.1.0/24", "203.0.113.11")));
    n.attachFastPath();
    ASSERT_EQ(io.fast_path_calls.size(), 1u);
    EXPECT_EQ(io.fast_path_calls[0].virtual_ext, std::string(kind) == "veth");
    n.peersAdded({lease("10.5.2.0/24", "192.168.91.12"), lease("10.5.3.0/24", "192.168.91.13"),
                  lease("10.5.4.0/24", "192.168.91.13")});
    if (std::string(kind).empty()) {
      EXPECT_TRUE(state->announced.empty());
      continue;
    }
    ASSERT_EQ(state->announced.size(), 2u) << "one per PublicIP";
    EXPECT_EQ(state->announced[0].first, ip4("192.168.91.12"));
    EXPECT_EQ(state->announced[1].first, ip4("192.168.91.13"));
    const auto want = buildAnnouncement(ip4("10.5.1.0"), ip4("10.5.2.0"));
    EXPECT_EQ(state->announced[0].second, std::vector<std::byte>(want.begin(), want.end()));
    n.announce();
    EXPECT_EQ(state->announced.size(), 4u);
    network.reset();
  }
}

TEST_F(UdpNetworkTest, AFastPathThatCannotBeEnabledIsDetached) {
  auto state = std::make_shared<test::RecordingFastPathState>();
  state->fail_enable = makeError(Errc::Kernel, "config map: permission denied");
  io.fast_path = [&](const kernel::UdpFastPathOptions&) {
    return Result<std::unique_ptr<kernel::UdpFastPath>>(
        std::make_unique<test::RecordingFastPath>(state));
  };
  auto& n = make(R"({"Type":"udp","Queues":1})");
  ASSERT_TRUE(n.configure(lease("10.5.1.0/24", "203.0.113.11")));
  n.attachFastPath();
  EXPECT_FALSE(n.tcPathActive());
  EXPECT_TRUE(state->destroyed);
  // And user space carries the packets.
  auto peer = net->open({ip4("192.168.91.12"), kPort});
  n.peersAdded({lease("10.5.2.0/24", "192.168.91.12")});
  io.tun_queues[0]->push(aToB().build());
  n.dataPlane().pollOnce();
  EXPECT_EQ(peer->pending(), 1u);
}

TEST_F(UdpNetworkTest, RefusesIpv6AndMissingPieces) {
  auto v6 = create(
      loadNetworkConfig(
          R"({"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"udp"}})")
          .value());
  ASSERT_FALSE(v6);
  EXPECT_THAT(v6.error().message, HasSubstr("IPv6"));
  auto no_io = UdpNetwork::create(Context{.config = udpConfig(), .ext = eth0(), .kernel = &kernel});
  EXPECT_FALSE(no_io);
  io.fail_tun = makeError(Errc::Kernel, "opening /dev/net/tun: no such device");
  auto no_tun = create(udpConfig());
  ASSERT_FALSE(no_tun);
  EXPECT_THAT(no_tun.error().message, HasSubstr("/dev/net/tun"));
}

TEST(UdpConfig, DefaultsAndFields) {
  const auto d = parseUdpConfig(R"({"Type":"udp"})").value();
  EXPECT_EQ(d.port, 8285);
  EXPECT_EQ(d.queues, 0u);
  EXPECT_TRUE(d.offload);
  EXPECT_FALSE(d.thread_per_direction);
  const auto c =
      parseUdpConfig(
          R"({"Type":"udp","Port":9000,"Queues":4,"Offload":false,"ThreadPerDirection":true})")
          .value();
  EXPECT_EQ(c.port, 9000);
  EXPECT_EQ(c.queues, 4u);
  EXPECT_FALSE(c.offload);
  EXPECT_TRUE(c.thread_per_direction);
  EXPECT_TRUE(c.tc_bpf) << "the in-kernel fast path is on unless switched off";
  EXPECT_FALSE(parseUdpConfig(R"({"TcBpf":false})").value().tc_bpf);
  EXPECT_TRUE(parseUdpConfig(R"({"TcBpf":true})").value().tc_bpf);
  EXPECT_EQ(parseUdpConfig(R"({"Port":0})").value().port, 8285) << "0 means the default";
}

TEST(UdpConfig, ErrorsNameTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"Port":"8285"})", "Backend.Port"},
      {R"({"Port":65536})", "Backend.Port"},
      {R"({"Port":-1})", "Backend.Port"},
      {R"({"Port":1.5})", "Backend.Port"},
      {R"({"Queues":9})", "Backend.Queues"},
      {R"({"Queues":"2"})", "Backend.Queues"},
      {R"({"Offload":"yes"})", "Backend.Offload"},
      {R"({"Offload":1})", "Backend.Offload"},
      {R"({"ThreadPerDirection":"no"})", "Backend.ThreadPerDirection"},
      {R"({"TcBpf":"off"})", "Backend.TcBpf"},
      {R"({"TcBpf":0})", "Backend.TcBpf"},
  };
  for (const auto& [json, field] : cases) {
    auto r = parseUdpConfig(json);
    ASSERT_FALSE(r) << json;
    EXPECT_THAT(r.error().message, HasSubstr(field)) << json;
  }
  EXPECT_FALSE(parseUdpConfig("not json"));
  EXPECT_FALSE(parseUdpConfig("[]"));
}

}  // namespace
}  // namespace flannel::backend::udp
