// The udp backend's pure packet logic (src/backend/udp/dataplane/packet.h), checked against the
// independent reference checksums and field readers of tests/support/packet_builder.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <random>
#include <set>
#include <string>

#include "backend/udp/dataplane/packet.h"
#include "support/packet_builder.h"

namespace flannel::backend::udp {
namespace {

using kernel::VirtioNetHdr;
using test::Bytes;
using test::get16;
using test::ip4;
using test::PacketBuilder;

constexpr std::array<uint8_t, 12> kTimestamps = {1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2};

Bytes slice(std::span<const std::byte> s, size_t off, size_t len) {
  auto sub = s.subspan(off, len);
  return {sub.begin(), sub.end()};
}

// --- parseIpv4 -------------------------------------------------------------------------------

TEST(UdpParseIpv4, RejectsWhatIsNotAWholeIpv4Packet) {
  const Bytes good = PacketBuilder::udp().payload(10).build();  // 38 bytes
  ASSERT_TRUE(parseIpv4(good)) << "the unmutated fixture must parse";
  auto with = [&](auto f) {
    Bytes b = good;
    f(b);
    return b;
  };
  struct Case {
    const char* name;
    Bytes pkt;
  };
  const Case cases[] = {
      {"empty", {}},
      {"19 bytes", slice(good, 0, 19)},
      {"version 6", with([](Bytes& b) { b[0] = std::byte{0x65}; })},
      {"version 0", with([](Bytes& b) { b[0] = std::byte{0x05}; })},
      {"IHL 4", with([](Bytes& b) { b[0] = std::byte{0x44}; })},
      {"IHL 0", with([](Bytes& b) { b[0] = std::byte{0x40}; })},
      {"total length beyond the buffer", with([](Bytes& b) { test::put16(b, 2, 39); })},
      {"buffer cut short", slice(good, 0, good.size() - 1)},
      {"total length below IHL", with([](Bytes& b) { test::put16(b, 2, 19); })},
      {"IHL beyond the total length", with([](Bytes& b) { b[0] = std::byte{0x4f}; })},
      {"total length 0", with([](Bytes& b) { test::put16(b, 2, 0); })},
  };
  for (const auto& c : cases) {
    EXPECT_FALSE(parseIpv4(c.pkt)) << c.name;
  }
}

TEST(UdpParseIpv4, ReadsTheHeaderFields) {
  const std::array<uint8_t, 8> opts = {0x94, 0x04, 0, 0, 1, 1, 1, 1};  // router alert + NOPs
  Bytes p = PacketBuilder::tcp()
                .src("10.5.1.2")
                .dst("10.5.2.3")
                .ttl(9)
                .ipOptions(opts)
                .payload(5)
                .build();
  p.resize(p.size() + 6);  // link-layer padding after the packet is not part of it
  auto info = parseIpv4(p);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->header_len, 28u);
  EXPECT_EQ(info->total_len, 28u + 20 + 5);
  EXPECT_EQ(info->protocol, kProtoTcp);
  EXPECT_EQ(info->ttl, 9);
  EXPECT_TRUE(info->first_fragment);
  EXPECT_EQ(info->src, ip4("10.5.1.2"));
  EXPECT_EQ(info->dst, ip4("10.5.2.3"));

  auto later = parseIpv4(PacketBuilder::udp().df(false).mf(true).fragOffset(3).build());
  ASSERT_TRUE(later);
  EXPECT_FALSE(later->first_fragment);
  auto first = parseIpv4(PacketBuilder::udp().df(false).mf(true).build());
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->first_fragment) << "MF with offset 0 is the first fragment";
}

// --- checksums -------------------------------------------------------------------------------

TEST(UdpChecksum, MatchesTheReferenceForAnyLength) {
  for (size_t n : {0, 1, 2, 3, 4, 5, 6, 7, 19, 20, 21, 1499, 1500, 65535}) {
    for (uint8_t seed : {0, 0x5a, 0xff}) {
      Bytes d = test::patternBytes(n, seed);
      EXPECT_EQ(checksumFold(checksumAdd(d)), test::refChecksum(d)) << n << " bytes seed " << +seed;
      EXPECT_EQ(checksumFold(checksumAdd(d, 0x1fffe)), test::refChecksum(d, 0x1fffe))
          << n << " bytes with an initial sum";
    }
  }
  // Carries everywhere: 64 KiB of 0xff.
  Bytes ones(65535, std::byte{0xff});
  EXPECT_EQ(checksumFold(checksumAdd(ones)), test::refChecksum(ones));
  // Sums chain over even-length pieces.
  Bytes a = test::patternBytes(64, 3);
  Bytes b = test::patternBytes(33, 9);
  Bytes ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  EXPECT_EQ(checksumFold(checksumAdd(b, checksumAdd(a))), test::refChecksum(ab));
  EXPECT_EQ(checksumFold(0), 0xffff);
  EXPECT_EQ(checksumFold(0xffff), 0);
  EXPECT_EQ(checksumFold(0x1fffe), 0);  // 0xfffe + 1 = 0xffff
}

TEST(UdpChecksum, HeaderCheckAcceptsGoodAndRefusesDamagedHeaders) {
  const std::array<uint8_t, 4> opts = {1, 1, 1, 0};
  Bytes p = PacketBuilder::tcp().ipOptions(opts).payload(3).build();
  EXPECT_TRUE(ipv4HeaderChecksumOk(std::span<const std::byte>(p).first(24)));
  Bytes bad = PacketBuilder::tcp().corruptIpChecksum().build();
  EXPECT_FALSE(ipv4HeaderChecksumOk(std::span<const std::byte>(bad).first(20)));
  p[15] ^= std::byte{0x01};  // a flipped address bit
  EXPECT_FALSE(ipv4HeaderChecksumOk(std::span<const std::byte>(p).first(24)));
}

// --- decrementTtl ----------------------------------------------------------------------------

// The header checksum a full recomputation gives.
uint16_t recomputed(std::span<const std::byte> pkt) {
  Bytes h = slice(pkt, 0, test::ipHeaderLen(pkt));
  test::put16(h, 10, 0);
  return test::refChecksum(h);
}

void expectDecremented(Bytes p, const std::string& what) {
  const Bytes before = p;
  ASSERT_TRUE(decrementTtl(p)) << what;
  EXPECT_EQ(test::ipTtl(p), test::ipTtl(before) - 1) << what;
  EXPECT_TRUE(test::ipv4HeaderValid(p)) << what << ": checksum " << get16(p, 10);
  for (size_t i = 0; i < p.size(); ++i) {
    if (i != 8 && i != 10 && i != 11) {
      ASSERT_EQ(p[i], before[i]) << what << ": byte " << i << " changed";
    }
  }
}

TEST(UdpDecrementTtl, MatchesAFullRecomputation) {
  const std::array<uint8_t, 4> opts = {1, 1, 1, 0};
  for (uint8_t ttl : {2, 3, 64, 128, 255}) {
    for (uint16_t id : {0x0000, 0x0001, 0x1234, 0x8000, 0xfeff, 0xffff}) {
      for (bool with_opts : {false, true}) {
        auto b = PacketBuilder::udp().ttl(ttl).id(id).payload(7);
        if (with_opts) {
          b.ipOptions(opts);
        }
        Bytes p = b.build();
        const std::string what = "ttl " + std::to_string(ttl) + " id " + std::to_string(id);
        expectDecremented(p, what);
        ASSERT_TRUE(decrementTtl(p));
        EXPECT_EQ(get16(p, 10), recomputed(p)) << what;
      }
    }
  }
}

// The id that makes the header's correct checksum 0x0000 (its words sum to 0xffff).
uint16_t idForZeroChecksum(Bytes p) {
  for (uint32_t id = 0; id <= 0xffff; ++id) {
    test::put16(p, 4, static_cast<uint16_t>(id));
    if (recomputed(p) == 0) {
      return static_cast<uint16_t>(id);
    }
  }
  ADD_FAILURE() << "no id gives a zero checksum";
  return 0;
}

TEST(UdpDecrementTtl, HandlesTheZeroAndFfffChecksumEdges) {
  // (1) The stored checksum is 0x0000, and (2) its other form 0xffff (both verify, RFC 1624 §3).
  Bytes p = PacketBuilder::udp().ttl(64).build();
  test::put16(p, 4, idForZeroChecksum(p));
  test::put16(p, 10, 0x0000);
  ASSERT_TRUE(test::ipv4HeaderValid(p));
  expectDecremented(p, "checksum 0x0000");
  Bytes q = p;
  test::put16(q, 10, 0xffff);
  ASSERT_TRUE(test::ipv4HeaderValid(q));
  expectDecremented(q, "checksum 0xffff");
  // (3) The checksum after the decrement is 0x0000: RFC 1624 eqn. 3 gives +0, never -0 (0xffff).
  Bytes r = PacketBuilder::udp().ttl(63).build();
  test::put16(r, 4, idForZeroChecksum(r));
  r[8] = std::byte{64};
  test::put16(r, 10, recomputed(r));
  ASSERT_TRUE(decrementTtl(r));
  EXPECT_EQ(test::ipTtl(r), 63);
  EXPECT_EQ(get16(r, 10), 0x0000);
  EXPECT_TRUE(test::ipv4HeaderValid(r));
}

TEST(UdpDecrementTtl, RefusesTtlOneAndZeroAndLeavesThePacketAlone) {
  for (uint8_t ttl : {0, 1}) {
    Bytes p = PacketBuilder::tcp().ttl(ttl).build();
    const Bytes before = p;
    EXPECT_FALSE(decrementTtl(p)) << "ttl " << +ttl;
    EXPECT_EQ(p, before);
  }
}

// --- buildAnnouncement -----------------------------------------------------------------------

// The fast path's announcement is a valid packet in flannel's format that decap() forwards (a
// Go flannel peer writes it to its TUN the same way) and the peer's kernel ignores: an ICMP echo
// reply between the two TUN addresses, id 0x666c, "flannel!".
TEST(UdpAnnouncement, IsAnEchoReplyBetweenTheTunAddressesThatDecapForwards) {
  const auto a = buildAnnouncement(ip4("10.5.1.0"), ip4("10.5.2.0"));
  std::span<const std::byte> p(a);
  EXPECT_TRUE(test::ipv4HeaderValid(p));
  EXPECT_TRUE(test::l4ChecksumValid(p));
  EXPECT_EQ(test::ipTotalLen(p), kAnnouncementLen);
  EXPECT_EQ(std::to_integer<int>(p[8]), 64) << "TTL";
  EXPECT_EQ(std::to_integer<int>(p[9]), 1) << "ICMP";
  EXPECT_EQ(std::to_integer<int>(p[20]), 0) << "echo reply";
  EXPECT_EQ(std::to_integer<int>(p[21]), 0);
  EXPECT_EQ(test::get16(p, 24), 0x666c);
  EXPECT_EQ(std::memcmp(p.data() + 28, "flannel!", 8), 0);
  // The receiving side (10.5.2.0/24) forwards it from the sender's PublicIP.
  RouteTable table(ip4("10.5.2.0"), 24, {{ip4("10.5.1.0"), 24, ip4("192.168.91.11")}});
  Bytes copy(a.begin(), a.end());
  const auto r = decap(copy, ip4("192.168.91.11"), table);
  EXPECT_EQ(r.drop, Drop::None);
  EXPECT_EQ(r.length, kAnnouncementLen);
}

// --- buildNetUnreachable ---------------------------------------------------------------------

TEST(UdpNetUnreachable, IsType3Code0FromTheTunAddressQuotingHeaderAndEightBytes) {
  const std::array<uint8_t, 4> opts = {1, 1, 1, 0};
  const Bytes pkt =
      PacketBuilder::tcp().src("10.5.1.2").dst("10.9.9.9").ipOptions(opts).payload(100).build();
  std::array<std::byte, kMaxIcmpErrorLen> out{};
  const size_t n = buildNetUnreachable(pkt, ip4("10.5.1.0"), out);
  const size_t quoted = 24 + 8;
  ASSERT_EQ(n, 28 + quoted);
  std::span<const std::byte> e(out.data(), n);
  // The whole error, byte for byte (checksums from the reference implementation).
  Bytes want(n);
  const uint8_t head[] = {
      0x45, 0, 0, static_cast<uint8_t>(n), 0, 0, 0, 0, 8, 1, 0, 0, 10, 5, 1, 0, 10, 5, 1, 2};
  for (size_t i = 0; i < 20; ++i) {
    want[i] = std::byte{head[i]};
  }
  test::put16(want, 10, test::refChecksum(std::span<const std::byte>(want).first(20)));
  want[20] = std::byte{3};
  want[21] = std::byte{0};
  std::memcpy(want.data() + 28, pkt.data(), quoted);
  test::put16(want, 22, test::refChecksum(std::span<const std::byte>(want).subspan(20)));
  EXPECT_EQ(Bytes(e.begin(), e.end()), want);
  EXPECT_TRUE(test::ipv4HeaderValid(e));
  EXPECT_TRUE(test::l4ChecksumValid(e));
}

TEST(UdpNetUnreachable, QuotesAShortPacketWhole) {
  const Bytes pkt = PacketBuilder::raw(47).payload(3).build();  // 23 bytes
  std::array<std::byte, kMaxIcmpErrorLen> out{};
  const size_t n = buildNetUnreachable(pkt, ip4("10.5.1.0"), out);
  ASSERT_EQ(n, 28u + 23);
  EXPECT_EQ(slice({out.data(), n}, 28, 23), pkt);
  EXPECT_TRUE(test::l4ChecksumValid({out.data(), n}));
}

TEST(UdpNetUnreachable, NoneForIcmpLaterFragmentsJunkOrASmallBuffer) {
  std::array<std::byte, kMaxIcmpErrorLen> out{};
  const Ip4 src = ip4("10.5.1.0");
  EXPECT_EQ(buildNetUnreachable(PacketBuilder::icmp().build(), src, out), 0u) << "ICMP";
  EXPECT_EQ(buildNetUnreachable(PacketBuilder::icmp().icmpType(3, 1).build(), src, out), 0u);
  EXPECT_EQ(buildNetUnreachable(PacketBuilder::udp().df(false).mf(true).fragOffset(185).build(),
                                src, out),
            0u)
      << "a non-first fragment";
  EXPECT_GT(buildNetUnreachable(PacketBuilder::udp().df(false).mf(true).build(), src, out), 0u)
      << "the first fragment gets one";
  EXPECT_EQ(buildNetUnreachable(Bytes(40, std::byte{0x60}), src, out), 0u) << "IPv6";
  EXPECT_EQ(buildNetUnreachable(Bytes(10), src, out), 0u) << "short";
  std::array<std::byte, kMaxIcmpErrorLen - 1> small{};
  EXPECT_EQ(buildNetUnreachable(PacketBuilder::udp().build(), src, small), 0u);
}

// --- RouteTable ------------------------------------------------------------------------------

RouteTable::Entry entry(const char* net, uint8_t len, const char* peer) {
  return {.network = ip4(net), .prefix_len = len, .peer = ip4(peer)};
}

TEST(UdpRouteTable, LooksUpUnsortedNestedAndUnmaskedEntries) {
  const RouteTable t(ip4("10.5.1.0"), 24,
                     {
                         entry("10.5.3.0", 24, "192.168.91.13"),
                         entry("10.5.2.128", 25, "192.168.91.99"),  // nested in 10.5.2.0/24
                         entry("10.6.0.0", 16, "192.168.91.20"),
                         entry("10.5.2.0", 24, "192.168.91.12"),
                         entry("10.7.0.5", 16, "192.168.91.50"),  // host bits set
                         entry("10.8.1.1", 32, "192.168.91.60"),
                     });
  EXPECT_EQ(t.size(), 5u) << "the nested entry is dropped";
  const std::pair<const char*, const char*> hits[] = {
      {"10.5.2.0", "192.168.91.12"},   {"10.5.2.1", "192.168.91.12"},
      {"10.5.2.200", "192.168.91.12"}, {"10.5.2.255", "192.168.91.12"},
      {"10.5.3.0", "192.168.91.13"},   {"10.5.3.255", "192.168.91.13"},
      {"10.6.0.0", "192.168.91.20"},   {"10.6.255.255", "192.168.91.20"},
      {"10.7.9.9", "192.168.91.50"},   {"10.7.0.0", "192.168.91.50"},
      {"10.8.1.1", "192.168.91.60"},
  };
  for (const auto& [dst, peer] : hits) {
    const Ip4* p = t.lookup(ip4(dst));
    ASSERT_NE(p, nullptr) << dst;
    EXPECT_EQ(*p, ip4(peer)) << dst;
  }
  for (const char* miss : {"10.5.1.7", "10.5.4.1", "10.5.1.255", "10.4.255.255", "10.8.1.0",
                           "10.8.1.2", "10.5.0.0", "0.0.0.0", "255.255.255.255", "10.8.0.0"}) {
    EXPECT_EQ(t.lookup(ip4(miss)), nullptr) << miss;
  }
  for (const char* p :
       {"192.168.91.12", "192.168.91.13", "192.168.91.20", "192.168.91.50", "192.168.91.60"}) {
    EXPECT_TRUE(t.isPeer(ip4(p))) << p;
  }
  EXPECT_FALSE(t.isPeer(ip4("192.168.91.99"))) << "the dropped entry's peer may not send";
  EXPECT_FALSE(t.isPeer(ip4("192.168.91.11")));
  EXPECT_TRUE(t.isOwn(ip4("10.5.1.0")));
  EXPECT_TRUE(t.isOwn(ip4("10.5.1.255")));
  EXPECT_FALSE(t.isOwn(ip4("10.5.2.0")));
  EXPECT_FALSE(t.isOwn(ip4("10.5.0.255")));
}

TEST(UdpRouteTable, TheLargerOfTwoOverlappingEntriesWinsWhateverTheOrder) {
  for (bool big_first : {true, false}) {
    std::vector<RouteTable::Entry> e = {entry("10.8.0.0", 16, "1.1.1.1"),
                                        entry("10.0.0.0", 8, "2.2.2.2")};
    if (big_first) {
      std::swap(e[0], e[1]);
    }
    const RouteTable t(ip4("10.250.0.0"), 24, e);
    EXPECT_EQ(t.size(), 1u);
    ASSERT_NE(t.lookup(ip4("10.8.1.1")), nullptr);
    EXPECT_EQ(*t.lookup(ip4("10.8.1.1")), ip4("2.2.2.2"));
    EXPECT_FALSE(t.isPeer(ip4("1.1.1.1")));
  }
}

TEST(UdpRouteTable, SlashZeroCoversEverything) {
  const RouteTable t(ip4("10.5.1.0"), 24,
                     {entry("10.5.2.0", 24, "1.1.1.1"), entry("0.0.0.0", 0, "9.9.9.9")});
  for (const char* a : {"0.0.0.0", "10.5.2.1", "255.255.255.255", "1.2.3.4"}) {
    ASSERT_NE(t.lookup(ip4(a)), nullptr) << a;
    EXPECT_EQ(*t.lookup(ip4(a)), ip4("9.9.9.9")) << a;
  }
  EXPECT_EQ(t.size(), 1u);
  const RouteTable own_all(ip4("0.0.0.0"), 0, {});
  EXPECT_TRUE(own_all.isOwn(ip4("200.1.2.3")));
}

TEST(UdpRouteTable, AnEmptyTableKnowsNothing) {
  const RouteTable t;
  EXPECT_EQ(t.lookup(ip4("10.5.1.1")), nullptr);
  EXPECT_FALSE(t.isPeer(ip4("10.5.1.1")));
  EXPECT_FALSE(t.isOwn(ip4("0.0.0.0")));
  EXPECT_EQ(t.size(), 0u);
}

TEST(UdpRouteTable, AgreesWithALinearScanOnRandomDisjointTables) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 20; ++round) {
    // Disjoint /16../28 subnets carved from 10.0.0.0/8 at random, like leases.
    std::vector<RouteTable::Entry> entries;
    for (int i = 0; i < 200; ++i) {
      const uint8_t len = static_cast<uint8_t>(16 + rng() % 13);
      const uint32_t mask = ~uint32_t{0} << (32 - len);
      const uint32_t net = (0x0a000000u | (rng() & 0x00ffffffu)) & mask;
      bool overlaps = false;
      for (const auto& e : entries) {
        const uint32_t m2 = ~uint32_t{0} << (32 - e.prefix_len);
        const uint32_t m = std::min(mask, m2);  // the shorter prefix
        overlaps = overlaps || (net & m) == (e.network.toU32() & m);
      }
      if (!overlaps) {
        entries.push_back({.network = Ip4::fromU32(net),
                           .prefix_len = len,
                           .peer = Ip4::fromU32(0xc0a80000u + static_cast<uint32_t>(i))});
      }
    }
    std::vector<RouteTable::Entry> shuffled = entries;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    const RouteTable t(ip4("10.255.255.0"), 24, shuffled);
    ASSERT_EQ(t.size(), entries.size());
    for (int q = 0; q < 2000; ++q) {
      // Half the probes near an entry's edges, half anywhere in 10/8.
      uint32_t a = 0x0a000000u | (rng() & 0x00ffffffu);
      if (q % 2 == 0) {
        const auto& e = entries[rng() % entries.size()];
        const uint32_t size = uint32_t{1} << (32 - e.prefix_len);
        const uint32_t edges[] = {e.network.toU32(), e.network.toU32() + size - 1,
                                  e.network.toU32() - 1, e.network.toU32() + size};
        a = edges[q % 4 == 0 ? rng() % 4 : (q / 2) % 4];
      }
      const Ip4* want = nullptr;
      for (const auto& e : entries) {
        const uint32_t m = ~uint32_t{0} << (32 - e.prefix_len);
        if ((a & m) == e.network.toU32()) {
          want = &e.peer;
        }
      }
      const Ip4* got = t.lookup(Ip4::fromU32(a));
      ASSERT_EQ(got == nullptr, want == nullptr) << Ip4::fromU32(a).toString();
      if (got != nullptr) {
        ASSERT_EQ(*got, *want) << Ip4::fromU32(a).toString();
      }
    }
  }
}

// --- encap / decap ---------------------------------------------------------------------------

const RouteTable& table() {
  static const RouteTable t(
      ip4("10.5.1.0"), 24,
      {entry("10.5.2.0", 24, "192.168.91.12"), entry("10.5.3.0", 24, "192.168.91.13")});
  return t;
}

TEST(UdpEncap, VerdictsForEveryCase) {
  struct Case {
    const char* name;
    Bytes pkt;
    Drop drop;
    const char* peer;
  };
  Bytes padded = PacketBuilder::tcp().dst("10.5.3.4").payload(10).build();
  padded.resize(padded.size() + 4);
  const Case cases[] = {
      {"routed", PacketBuilder::tcp().dst("10.5.2.3").payload(10).build(), Drop::None,
       "192.168.91.12"},
      {"routed with padding", padded, Drop::None, "192.168.91.13"},
      {"routed icmp", PacketBuilder::icmp().dst("10.5.3.1").build(), Drop::None, "192.168.91.13"},
      {"no lease", PacketBuilder::udp().dst("10.9.0.1").build(), Drop::NoRoute, nullptr},
      {"to our own subnet", PacketBuilder::udp().dst("10.5.1.9").build(), Drop::NoRoute, nullptr},
      {"no route wins over ttl", PacketBuilder::udp().dst("10.9.0.1").ttl(1).build(), Drop::NoRoute,
       nullptr},
      {"ttl 1", PacketBuilder::udp().dst("10.5.2.3").ttl(1).build(), Drop::TtlExpired, nullptr},
      {"ttl 0", PacketBuilder::udp().dst("10.5.2.3").ttl(0).build(), Drop::TtlExpired, nullptr},
      {"ipv6", Bytes(60, std::byte{0x60}), Drop::NotIpv4, nullptr},
      {"short", Bytes(12, std::byte{0x45}), Drop::Malformed, nullptr},
  };
  for (const auto& c : cases) {
    Bytes p = c.pkt;
    auto r = encap(p, table());
    EXPECT_EQ(r.drop, c.drop) << c.name << ": " << dropName(r.drop);
    if (c.drop == Drop::None) {
      EXPECT_EQ(r.peer, ip4(c.peer)) << c.name;
      EXPECT_EQ(r.length, test::ipTotalLen(c.pkt)) << c.name;
      EXPECT_EQ(test::ipTtl(p), test::ipTtl(c.pkt) - 1) << c.name;
      EXPECT_TRUE(test::ipv4HeaderValid(p)) << c.name;
      EXPECT_TRUE(test::l4ChecksumValid(p)) << c.name << ": TTL is not in the L4 checksum";
    } else {
      EXPECT_EQ(p, c.pkt) << c.name << ": a dropped packet is left alone (for the ICMP quote)";
    }
  }
}

TEST(UdpDecap, VerdictsForEveryCase) {
  const Ip4 peer = ip4("192.168.91.12");
  struct Case {
    const char* name;
    Bytes pkt;
    Ip4 from;
    Drop drop;
  };
  auto in = [] { return PacketBuilder::tcp().src("10.5.2.3").dst("10.5.1.2").payload(20); };
  const Case cases[] = {
      {"delivered", in().build(), peer, Drop::None},
      {"from the other peer, for another host", in().dst("10.5.1.200").build(),
       ip4("192.168.91.13"), Drop::None},
      {"source address not leased", in().build(), ip4("192.168.91.99"), Drop::UnknownSource},
      {"source address not leased, junk", Bytes(3), ip4("192.168.91.99"), Drop::UnknownSource},
      {"bad header checksum", in().corruptIpChecksum().build(), peer, Drop::Malformed},
      {"short", Bytes(19, std::byte{0x45}), peer, Drop::Malformed},
      {"ipv6", Bytes(60, std::byte{0x60}), peer, Drop::NotIpv4},
      {"for another subnet", in().dst("10.5.3.1").build(), peer, Drop::NotOurSubnet},
      {"for outside the network", in().dst("8.8.8.8").build(), peer, Drop::NotOurSubnet},
      {"source in our own subnet", in().src("10.5.1.7").build(), peer, Drop::SpoofedSource},
      {"ttl 1", in().ttl(1).build(), peer, Drop::TtlExpired},
      {"ttl 0", in().ttl(0).build(), peer, Drop::TtlExpired},
  };
  std::set<Drop> seen;
  for (const auto& c : cases) {
    Bytes p = c.pkt;
    auto r = decap(p, c.from, table());
    EXPECT_EQ(r.drop, c.drop) << c.name << ": " << dropName(r.drop);
    seen.insert(r.drop);
    if (c.drop == Drop::None) {
      EXPECT_EQ(r.length, c.pkt.size()) << c.name;
      EXPECT_EQ(test::ipTtl(p), test::ipTtl(c.pkt) - 1) << c.name;
      EXPECT_TRUE(test::ipv4HeaderValid(p)) << c.name;
    }
  }
  // Every reason but encap's NoRoute came up (plus None).
  EXPECT_EQ(seen.size(), static_cast<size_t>(Drop::kCount) - 1);
}

TEST(UdpDrop, EveryReasonHasItsOwnMetricName) {
  std::set<std::string> names;
  for (size_t i = 0; i < static_cast<size_t>(Drop::kCount); ++i) {
    const std::string n = dropName(static_cast<Drop>(i));
    EXPECT_NE(n, "unknown") << i;
    names.insert(n);
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(Drop::kCount));
  EXPECT_STREQ(dropName(Drop::NoRoute), "no_route");
  EXPECT_STREQ(dropName(Drop::Malformed), "malformed");
}

// --- completeChecksum ------------------------------------------------------------------------

// What the kernel hands over with NEEDS_CSUM: the pseudo-header sum (folded, not complemented)
// in the checksum field.
Bytes partial(Bytes p, size_t field) {
  const size_t ihl = test::ipHeaderLen(p);
  const size_t l4 = test::ipTotalLen(p) - ihl;
  uint32_t s = 0;
  for (size_t off = 12; off < 20; off += 2) {
    s += get16(p, off);
  }
  s += std::to_integer<uint8_t>(p[9]) + static_cast<uint32_t>(l4);
  while (s > 0xffff) {
    s = (s & 0xffff) + (s >> 16);
  }
  test::put16(p, ihl + field, static_cast<uint16_t>(s));
  return p;
}

TEST(UdpCompleteChecksum, FinishesWhatTheKernelLeftPartial) {
  const std::array<uint8_t, 4> opts = {1, 1, 1, 0};
  struct Case {
    const char* name;
    Bytes pkt;
    uint16_t offset;
  };
  const Case cases[] = {
      {"tcp", PacketBuilder::tcp().payload(1001).build(), 16},
      {"tcp with options", PacketBuilder::tcp().tcpOptions(kTimestamps).payload(7).build(), 16},
      {"tcp with ip options", PacketBuilder::tcp().ipOptions(opts).payload(7).build(), 16},
      {"udp", PacketBuilder::udp().payload(333).build(), 6},
  };
  for (const auto& c : cases) {
    Bytes p = partial(c.pkt, c.offset);
    ASSERT_NE(p, c.pkt) << c.name;
    VirtioNetHdr h;
    h.flags = VirtioNetHdr::kFlagNeedsCsum;
    h.csum_start = static_cast<uint16_t>(test::ipHeaderLen(p));
    h.csum_offset = c.offset;
    ASSERT_TRUE(completeChecksum(p, h)) << c.name;
    EXPECT_TRUE(test::l4ChecksumValid(p)) << c.name;
    EXPECT_EQ(p, c.pkt) << c.name;
  }
}

TEST(UdpCompleteChecksum, RefusesOffsetsOutsideThePacket) {
  Bytes p = PacketBuilder::udp().payload(4).build();  // 32 bytes
  const Bytes before = p;
  VirtioNetHdr h;
  h.csum_start = 32;
  h.csum_offset = 0;
  EXPECT_FALSE(completeChecksum(p, h)) << "start at the end";
  h.csum_start = 20;
  h.csum_offset = 11;  // field at 31..32
  EXPECT_FALSE(completeChecksum(p, h)) << "field past the end";
  h.csum_offset = 10;  // field at 30..31: fits
  EXPECT_TRUE(completeChecksum(p, h));
  EXPECT_NE(p, before);
  Bytes q = before;
  h.csum_start = 0xffff;
  h.csum_offset = 0xffff;
  EXPECT_FALSE(completeChecksum(q, h));
  EXPECT_EQ(q, before);
}

// --- segmentSuper ----------------------------------------------------------------------------

VirtioNetHdr gsoHdr(uint8_t type, uint16_t size, uint16_t csum_offset) {
  VirtioNetHdr h;
  h.flags = VirtioNetHdr::kFlagNeedsCsum;
  h.gso_type = type;
  h.gso_size = size;
  h.csum_start = 20;
  h.csum_offset = csum_offset;
  return h;
}

struct TcpSegCase {
  const char* name;
  size_t payload;
  uint16_t mss;
  size_t want_count;
  size_t want_last_payload;
};

TEST(UdpSegmentSuper, CutsTcpIntoValidSegments) {
  const TcpSegCase cases[] = {
      {"three full and a short one", 3500, 1000, 4, 500},
      {"an exact multiple", 3000, 1000, 3, 1000},
      {"smaller than one mss", 700, 1000, 1, 700},
      {"no payload", 0, 1000, 1, 0},
      {"64 KiB in 1448s", 65535 - 52, 1448, 46, (65535 - 52) % 1448},
      {"one byte mss", 5, 1, 5, 1},
  };
  const uint32_t seq0 = 0xfffffc00u;  // wraps within the packet
  const uint16_t id0 = 0xfffe;        // wraps too
  const uint8_t flags = test::kTcpAck | test::kTcpPsh | test::kTcpFin | test::kTcpCwr;
  for (const auto& c : cases) {
    const Bytes super = partial(PacketBuilder::tcp()
                                    .src("10.5.1.2")
                                    .dst("10.5.2.3")
                                    .id(id0)
                                    .seq(seq0)
                                    .flags(flags)
                                    .tcpOptions(kTimestamps)
                                    .payload(c.payload, 11)
                                    .build(),
                                16);
    const Bytes pay = [&] {
      auto s = test::l4Payload(super);
      return Bytes(s.begin(), s.end());
    }();
    std::vector<std::byte> out(200000);
    for (uint8_t ecn : {uint8_t{0}, VirtioNetHdr::kGsoEcn}) {
      const auto segs = segmentSuper(
          super, gsoHdr(static_cast<uint8_t>(VirtioNetHdr::kGsoTcpV4 | ecn), c.mss, 16), out);
      ASSERT_EQ(segs.count, c.want_count) << c.name;
      const size_t hl = 20 + 32;
      EXPECT_EQ(segs.seg_len, hl + std::min<size_t>(c.mss, c.payload)) << c.name;
      EXPECT_EQ(segs.last_len, hl + c.want_last_payload) << c.name;
      size_t total = 0;
      for (size_t i = 0; i < segs.count; ++i) {
        const bool last = i + 1 == segs.count;
        const size_t len = last ? segs.last_len : segs.seg_len;
        std::span<const std::byte> s(out.data() + i * segs.seg_len, len);
        const std::string what = std::string(c.name) + " segment " + std::to_string(i);
        total += len;
        ASSERT_EQ(test::ipTotalLen(s), len) << what;
        EXPECT_TRUE(test::ipv4HeaderValid(s)) << what;
        EXPECT_TRUE(test::l4ChecksumValid(s)) << what;
        EXPECT_EQ(test::ipId(s), static_cast<uint16_t>(id0 + i)) << what;
        EXPECT_EQ(test::tcpSeq(s), static_cast<uint32_t>(seq0 + i * c.mss)) << what;
        uint8_t want = test::kTcpAck;
        if (i == 0) {
          want |= test::kTcpCwr;
        }
        if (last) {
          want |= test::kTcpPsh | test::kTcpFin;
        }
        EXPECT_EQ(test::tcpFlags(s), want) << what;
        EXPECT_EQ(test::ipTtl(s), 64) << what;
        EXPECT_EQ(test::ipSrc(s), ip4("10.5.1.2")) << what;
        EXPECT_EQ(test::ipDst(s), ip4("10.5.2.3")) << what;
        EXPECT_EQ(slice(s, 20, 4), slice(super, 20, 4)) << what << ": ports";
        EXPECT_EQ(slice(s, 28, 5), slice(super, 28, 5)) << what << ": ack, data offset";
        EXPECT_EQ(slice(s, 34, 2), slice(super, 34, 2)) << what << ": window";
        EXPECT_EQ(slice(s, 38, 14), slice(super, 38, 14)) << what << ": urgent, options";
        auto p = test::l4Payload(s);
        ASSERT_EQ(Bytes(p.begin(), p.end()), slice(pay, i * c.mss, p.size())) << what;
      }
      EXPECT_EQ(segs.total(), total) << c.name;
    }
  }
}

TEST(UdpSegmentSuper, CutsUdpIntoValidDatagrams) {
  const Bytes super =
      partial(PacketBuilder::udp().sport(5000).dport(6000).id(7).payload(2500, 3).build(), 6);
  const auto pay = test::l4Payload(super);
  std::vector<std::byte> out(10000);
  const auto segs = segmentSuper(super, gsoHdr(VirtioNetHdr::kGsoUdpL4, 1200, 6), out);
  ASSERT_EQ(segs.count, 3u);
  EXPECT_EQ(segs.seg_len, 28u + 1200);
  EXPECT_EQ(segs.last_len, 28u + 100);
  for (size_t i = 0; i < 3; ++i) {
    const size_t len = i == 2 ? segs.last_len : segs.seg_len;
    std::span<const std::byte> s(out.data() + i * segs.seg_len, len);
    EXPECT_EQ(test::ipTotalLen(s), len) << i;
    EXPECT_EQ(get16(s, 24), len - 20) << i << ": UDP length";
    EXPECT_EQ(get16(s, 20), 5000) << i;
    EXPECT_EQ(get16(s, 22), 6000) << i;
    EXPECT_EQ(test::ipId(s), 7 + i) << i;
    EXPECT_TRUE(test::ipv4HeaderValid(s)) << i;
    EXPECT_TRUE(test::l4ChecksumValid(s)) << i;
    auto p = test::l4Payload(s);
    EXPECT_TRUE(std::equal(p.begin(), p.end(), pay.begin() + static_cast<long>(i * 1200))) << i;
  }
}

TEST(UdpSegmentSuper, RefusesMalformedInputAndShortBuffers) {
  const Bytes tcp = PacketBuilder::tcp().payload(3000).build();
  const Bytes udp = PacketBuilder::udp().payload(3000).build();
  std::vector<std::byte> out(100000);
  const auto tso = gsoHdr(VirtioNetHdr::kGsoTcpV4, 1000, 16);
  const auto uso = gsoHdr(VirtioNetHdr::kGsoUdpL4, 1000, 6);
  ASSERT_EQ(segmentSuper(tcp, tso, out).count, 3u) << "the fixture itself is fine";
  ASSERT_EQ(segmentSuper(udp, uso, out).count, 3u);
  auto with = [](Bytes b, auto f) {
    f(b);
    return b;
  };
  struct Case {
    const char* name;
    Bytes pkt;
    VirtioNetHdr hdr;
    size_t out;
  };
  VirtioNetHdr zero_size = tso;
  zero_size.gso_size = 0;
  VirtioNetHdr none = tso;
  none.gso_type = VirtioNetHdr::kGsoNone;
  VirtioNetHdr unknown = tso;
  unknown.gso_type = 3;  // VIRTIO_NET_HDR_GSO_UDP (UFO)
  const size_t need = 3 * (40 + 1000);
  const Case cases[] = {
      {"gso size 0", tcp, zero_size, out.size()},
      {"gso none", tcp, none, out.size()},
      {"ufo", udp, unknown, out.size()},
      {"tso header on udp", udp, tso, out.size()},
      {"uso header on tcp", tcp, uso, out.size()},
      {"not ipv4", with(tcp, [](Bytes& b) { b[0] = std::byte{0x65}; }), tso, out.size()},
      {"tcp data offset 4", with(tcp, [](Bytes& b) { b[32] = std::byte{0x40}; }), tso, out.size()},
      {"tcp header past the end", slice(PacketBuilder::tcp().build(), 0, 30), tso, out.size()},
      {"tcp data offset past the end",
       with(PacketBuilder::tcp().payload(8).build(), [](Bytes& b) { b[32] = std::byte{0xf0}; }),
       tso, out.size()},
      {"truncated ip header field",
       with(PacketBuilder::tcp().build(), [](Bytes& b) { test::put16(b, 2, 30); }), tso,
       out.size()},
      {"udp header past the end", PacketBuilder::raw(kProtoUdp).payload(4).build(), uso,
       out.size()},
      {"output one byte short", tcp, tso, need - 1},
  };
  for (const auto& c : cases) {
    const auto s = segmentSuper(c.pkt, c.hdr, std::span<std::byte>(out).first(c.out));
    EXPECT_EQ(s.count, 0u) << c.name;
    EXPECT_EQ(s.total(), 0u) << c.name;
  }
  EXPECT_EQ(segmentSuper(tcp, tso, std::span<std::byte>(out).first(need)).count, 3u)
      << "exactly enough room";
}

// --- TcpCoalescer ----------------------------------------------------------------------------

constexpr uint32_t kSeq0 = 0xfffff000u;  // wraps during the run

PacketBuilder segment(size_t i, size_t len = 1000) {
  return PacketBuilder::tcp()
      .src("10.5.2.3")
      .dst("10.5.1.2")
      .sport(443)
      .dport(51000)
      .ttl(63)
      .id(static_cast<uint16_t>(0xfffe + i))
      .seq(static_cast<uint32_t>(kSeq0 + i * 1000))
      .ack(777)
      .tcpOptions(kTimestamps)
      .payload(len, static_cast<uint8_t>(i * 31));
}

struct Coalesce {
  std::vector<std::byte> buf = std::vector<std::byte>(65536);
  TcpCoalescer c{buf};
};

TEST(UdpTcpCoalescer, MergesARunAndResegmentsToTheOriginals) {
  for (bool psh_last : {false, true}) {
    std::vector<Bytes> segs;
    for (size_t i = 0; i < 4; ++i) {
      segs.push_back(segment(i).build());
    }
    segs.push_back(segment(4, 300).flags(test::kTcpAck | (psh_last ? test::kTcpPsh : 0)).build());
    Coalesce k;
    ASSERT_TRUE(k.c.start(segs[0]));
    for (size_t i = 1; i < segs.size(); ++i) {
      ASSERT_TRUE(k.c.append(segs[i])) << i;
    }
    EXPECT_EQ(k.c.segments(), 5u);
    EXPECT_FALSE(k.c.append(segment(5).build())) << "a short segment ends the run";
    VirtioNetHdr h;
    h.gso_size = 99;
    auto out = k.c.finish(h);
    EXPECT_FALSE(k.c.active());
    EXPECT_EQ(k.c.segments(), 0u);
    const size_t hl = 20 + 32;
    ASSERT_EQ(out.size(), hl + 4300);
    EXPECT_EQ(h.flags, VirtioNetHdr::kFlagNeedsCsum);
    EXPECT_EQ(h.gso_type, VirtioNetHdr::kGsoTcpV4);
    EXPECT_EQ(h.gso_size, 1000);
    EXPECT_EQ(h.hdr_len, hl);
    EXPECT_EQ(h.csum_start, 20);
    EXPECT_EQ(h.csum_offset, 16);
    EXPECT_EQ(test::ipTotalLen(out), out.size());
    EXPECT_TRUE(test::ipv4HeaderValid(out));
    EXPECT_EQ(test::ipId(out), 0xfffe);
    EXPECT_EQ(test::tcpSeq(out), kSeq0);
    EXPECT_EQ(test::tcpFlags(out), test::kTcpAck | (psh_last ? test::kTcpPsh : 0));
    // NEEDS_CSUM: the field holds the pseudo-header sum; completing it gives a valid packet.
    Bytes done(out.begin(), out.end());
    EXPECT_EQ(get16(done, 36), get16(partial(done, 16), 36));
    ASSERT_TRUE(completeChecksum(done, h));
    EXPECT_TRUE(test::l4ChecksumValid(done));
    // What the kernel's TSO would make of it: the original segments, byte for byte.
    std::vector<std::byte> cut(100000);
    auto s = segmentSuper(out, h, cut);
    ASSERT_EQ(s.count, segs.size());
    for (size_t i = 0; i < segs.size(); ++i) {
      EXPECT_EQ(slice(cut, i * s.seg_len, i + 1 == s.count ? s.last_len : s.seg_len), segs[i])
          << "segment " << i << (psh_last ? " (psh)" : "");
    }
  }
}

TEST(UdpTcpCoalescer, RefusesWhatDoesNotContinueTheFlow) {
  struct Case {
    const char* name;
    Bytes seg;
  };
  auto next = [] { return segment(1); };
  const std::array<uint8_t, 12> other_ts = {1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 2};
  const std::array<uint8_t, 4> ip_opts = {1, 1, 1, 0};
  const Case cases[] = {
      {"a gap", next().seq(kSeq0 + 1001).build()},
      {"a retransmission", next().seq(kSeq0).build()},
      {"another source port", next().sport(444).build()},
      {"another destination port", next().dport(51001).build()},
      {"another source", next().src("10.5.2.4").build()},
      {"another destination", next().dst("10.5.1.3").build()},
      {"another ack number", next().ack(778).build()},
      {"another window", next().window(503).build()},
      {"other option bytes", next().tcpOptions(other_ts).build()},
      {"no options", next().tcpOptions({}).build()},
      {"SYN", next().flags(test::kTcpAck | test::kTcpSyn).build()},
      {"FIN", next().flags(test::kTcpAck | test::kTcpFin).build()},
      {"RST", next().flags(test::kTcpAck | test::kTcpRst).build()},
      {"URG", next().flags(test::kTcpAck | test::kTcpUrg).build()},
      {"ECE", next().flags(test::kTcpAck | test::kTcpEce).build()},
      {"CWR", next().flags(test::kTcpAck | test::kTcpCwr).build()},
      {"no ACK", next().flags(test::kTcpPsh).build()},
      {"another TTL", next().ttl(62).build()},
      {"another TOS", next().tos(4).build()},
      {"DF cleared", next().df(false).build()},
      {"IP options", next().ipOptions(ip_opts).build()},
      {"a bigger segment", next().payload(1001).build()},
      {"no payload", next().payload(0).build()},
      {"udp", PacketBuilder::udp().src("10.5.2.3").dst("10.5.1.2").payload(1000).build()},
      {"junk", Bytes(100, std::byte{0x45})},
  };
  for (const auto& c : cases) {
    Coalesce k;
    ASSERT_TRUE(k.c.start(segment(0).build()));
    EXPECT_FALSE(k.c.append(c.seg)) << c.name;
    EXPECT_EQ(k.c.segments(), 1u) << c.name;
  }
  // The control: the same builder unchanged is accepted.
  Coalesce k;
  ASSERT_TRUE(k.c.start(segment(0).build()));
  EXPECT_TRUE(k.c.append(next().build()));
  // Nothing to append to.
  Coalesce idle;
  EXPECT_FALSE(idle.c.append(segment(0).build()));
}

TEST(UdpTcpCoalescer, PshEndsARun) {
  Coalesce k;
  ASSERT_TRUE(k.c.start(segment(0).build()));
  ASSERT_TRUE(k.c.append(segment(1).flags(test::kTcpAck | test::kTcpPsh).build()));
  EXPECT_FALSE(k.c.append(segment(2).build()));
  // A run may not start with PSH either: it starts, and takes nothing more.
  Coalesce p;
  ASSERT_TRUE(p.c.start(segment(0).flags(test::kTcpAck | test::kTcpPsh).build()));
  EXPECT_FALSE(p.c.append(segment(1).build()));
}

TEST(UdpTcpCoalescer, RefusesToStartOnWhatCannotBeMerged) {
  const std::array<uint8_t, 4> ip_opts = {1, 1, 1, 0};
  struct Case {
    const char* name;
    Bytes seg;
  };
  const Case cases[] = {
      {"SYN", segment(0).flags(test::kTcpSyn | test::kTcpAck).build()},
      {"FIN", segment(0).flags(test::kTcpFin | test::kTcpAck).build()},
      {"RST", segment(0).flags(test::kTcpRst | test::kTcpAck).build()},
      {"URG", segment(0).flags(test::kTcpUrg | test::kTcpAck).build()},
      {"ECE", segment(0).flags(test::kTcpEce | test::kTcpAck).build()},
      {"CWR", segment(0).flags(test::kTcpCwr | test::kTcpAck).build()},
      {"no ACK", segment(0).flags(0).build()},
      {"no payload", segment(0, 0).build()},
      {"IP options", segment(0).ipOptions(ip_opts).build()},
      {"more fragments", segment(0).df(false).mf(true).build()},
      {"a later fragment", segment(0).df(false).fragOffset(100).build()},
      {"udp", PacketBuilder::udp().payload(100).build()},
      {"junk", Bytes(60, std::byte{0x45})},
      {"bigger than the buffer", segment(0, 1500).build()},
  };
  for (const auto& c : cases) {
    std::vector<std::byte> buf(1200);
    TcpCoalescer k(buf);
    EXPECT_FALSE(k.start(c.seg)) << c.name;
    EXPECT_FALSE(k.active()) << c.name;
  }
  std::vector<std::byte> buf(1200);
  TcpCoalescer k(buf);
  EXPECT_TRUE(k.start(segment(0).build())) << "the control fits";
}

TEST(UdpTcpCoalescer, ASingleSegmentComesBackUnchanged) {
  Coalesce k;
  const Bytes s = segment(0).build();
  ASSERT_TRUE(k.c.start(s));
  VirtioNetHdr h;
  h.flags = 7;
  h.gso_type = 9;
  auto out = k.c.finish(h);
  EXPECT_EQ(Bytes(out.begin(), out.end()), s);
  EXPECT_EQ(h.flags, 0);
  EXPECT_EQ(h.gso_type, VirtioNetHdr::kGsoNone);
  EXPECT_EQ(h.gso_size, 0);
}

TEST(UdpTcpCoalescer, StopsBelowTheIpv4LengthLimit) {
  // 1448-byte segments with 32 bytes of options: 45 fit in 65535 bytes, the 46th does not.
  auto seg = [](size_t i) {
    return segment(0, 1448).id(static_cast<uint16_t>(i)).seq(static_cast<uint32_t>(i * 1448));
  };
  Coalesce k;
  ASSERT_TRUE(k.c.start(seg(0).build()));
  size_t n = 1;
  while (k.c.append(seg(n).build())) {
    ++n;
    ASSERT_LE(n, 100u);
  }
  EXPECT_EQ(n, (65535 - 52) / 1448);
  VirtioNetHdr h;
  auto out = k.c.finish(h);
  EXPECT_LE(out.size(), 65535u);
  EXPECT_EQ(test::ipTotalLen(out), out.size());
}

}  // namespace
}  // namespace flannel::backend::udp
