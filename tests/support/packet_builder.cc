#include "support/packet_builder.h"

#include <cstdio>
#include <cstdlib>

namespace flannel::test {

namespace {

constexpr uint8_t kIcmp = 1;
constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;

uint8_t byteAt(std::span<const std::byte> p, size_t off) {
  return std::to_integer<uint8_t>(p[off]);
}

void padTo4(std::vector<uint8_t>& v) {
  while (v.size() % 4 != 0) {
    v.push_back(0);
  }
}

// Sum of the pseudo-header words for TCP/UDP over IPv4 (unfolded).
uint32_t pseudoHeaderSum(std::span<const std::byte> pkt, uint8_t proto, size_t l4_len) {
  uint32_t s = 0;
  for (size_t off = 12; off < 20; off += 2) {
    s += get16(pkt, off);
  }
  return s + proto + static_cast<uint32_t>(l4_len);
}

}  // namespace

Ip4 ip4(std::string_view dotted) {
  auto r = Ip4::parse(dotted);
  if (!r) {
    std::fprintf(stderr, "packet_builder: bad IPv4 fixture %.*s\n", static_cast<int>(dotted.size()),
                 dotted.data());
    std::abort();
  }
  return *r;
}

PacketBuilder PacketBuilder::tcp() {
  return PacketBuilder(kTcp, false);
}
PacketBuilder PacketBuilder::udp() {
  return PacketBuilder(kUdp, false);
}
PacketBuilder PacketBuilder::icmp() {
  return PacketBuilder(kIcmp, false);
}
PacketBuilder PacketBuilder::raw(uint8_t protocol) {
  return PacketBuilder(protocol, true);
}

PacketBuilder& PacketBuilder::src(Ip4 a) {
  src_ = a;
  return *this;
}
PacketBuilder& PacketBuilder::dst(Ip4 a) {
  dst_ = a;
  return *this;
}
PacketBuilder& PacketBuilder::tos(uint8_t v) {
  tos_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::ttl(uint8_t v) {
  ttl_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::id(uint16_t v) {
  id_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::df(bool on) {
  df_ = on;
  return *this;
}
PacketBuilder& PacketBuilder::mf(bool on) {
  mf_ = on;
  return *this;
}
PacketBuilder& PacketBuilder::fragOffset(uint16_t units_of_8) {
  frag_ = units_of_8 & 0x1fff;
  return *this;
}
PacketBuilder& PacketBuilder::ipOptions(std::span<const uint8_t> opts) {
  ip_opts_.assign(opts.begin(), opts.end());
  padTo4(ip_opts_);
  return *this;
}
PacketBuilder& PacketBuilder::sport(uint16_t v) {
  sport_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::dport(uint16_t v) {
  dport_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::seq(uint32_t v) {
  seq_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::ack(uint32_t v) {
  ack_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::flags(uint8_t tcp_flags) {
  flags_ = tcp_flags;
  return *this;
}
PacketBuilder& PacketBuilder::window(uint16_t v) {
  window_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::urgent(uint16_t v) {
  urgent_ = v;
  return *this;
}
PacketBuilder& PacketBuilder::tcpOptions(std::span<const uint8_t> opts) {
  tcp_opts_.assign(opts.begin(), opts.end());
  padTo4(tcp_opts_);
  return *this;
}
PacketBuilder& PacketBuilder::icmpType(uint8_t type, uint8_t code) {
  icmp_type_ = type;
  icmp_code_ = code;
  return *this;
}
PacketBuilder& PacketBuilder::payload(std::span<const std::byte> p) {
  payload_.assign(p.begin(), p.end());
  return *this;
}
PacketBuilder& PacketBuilder::payload(size_t n, uint8_t seed) {
  payload_ = patternBytes(n, seed);
  return *this;
}
PacketBuilder& PacketBuilder::corruptIpChecksum() {
  corrupt_ip_ = true;
  return *this;
}

Bytes PacketBuilder::build() const {
  const size_t ihl = 20 + ip_opts_.size();
  // Which L4 header to write: none for raw().
  const uint8_t l4 = raw_ ? 0 : protocol_;
  size_t l4h = 0;
  if (l4 == kTcp) {
    l4h = 20 + tcp_opts_.size();
  } else if (l4 == kUdp || l4 == kIcmp) {
    l4h = 8;
  }
  const size_t total = ihl + l4h + payload_.size();
  Bytes p(total);
  std::span<std::byte> s(p);
  p[0] = std::byte{static_cast<uint8_t>(0x40 | (ihl / 4))};
  p[1] = std::byte{tos_};
  put16(s, 2, static_cast<uint16_t>(total));
  put16(s, 4, id_);
  put16(s, 6, static_cast<uint16_t>((df_ ? 0x4000 : 0) | (mf_ ? 0x2000 : 0) | frag_));
  p[8] = std::byte{ttl_};
  p[9] = std::byte{protocol_};
  const auto sb = src_.bytes();
  const auto db = dst_.bytes();
  for (size_t i = 0; i < 4; ++i) {
    p[12 + i] = std::byte{sb[i]};
    p[16 + i] = std::byte{db[i]};
  }
  for (size_t i = 0; i < ip_opts_.size(); ++i) {
    p[20 + i] = std::byte{ip_opts_[i]};
  }
  std::span<std::byte> l4s(p.data() + ihl, total - ihl);
  if (l4 == kTcp) {
    put16(l4s, 0, sport_);
    put16(l4s, 2, dport_);
    put16(l4s, 4, static_cast<uint16_t>(seq_ >> 16));
    put16(l4s, 6, static_cast<uint16_t>(seq_ & 0xffff));
    put16(l4s, 8, static_cast<uint16_t>(ack_ >> 16));
    put16(l4s, 10, static_cast<uint16_t>(ack_ & 0xffff));
    l4s[12] = std::byte{static_cast<uint8_t>((l4h / 4) << 4)};
    l4s[13] = std::byte{flags_};
    put16(l4s, 14, window_);
    put16(l4s, 18, urgent_);
    for (size_t i = 0; i < tcp_opts_.size(); ++i) {
      l4s[20 + i] = std::byte{tcp_opts_[i]};
    }
  } else if (l4 == kUdp) {
    put16(l4s, 0, sport_);
    put16(l4s, 2, dport_);
    put16(l4s, 4, static_cast<uint16_t>(total - ihl));
  } else if (l4 == kIcmp) {
    l4s[0] = std::byte{icmp_type_};
    l4s[1] = std::byte{icmp_code_};
    put16(l4s, 4, 0x4242);  // echo id
    put16(l4s, 6, 1);       // echo sequence
  }
  for (size_t i = 0; i < payload_.size(); ++i) {
    l4s[l4h + i] = payload_[i];
  }
  // Checksums: L4 first (it does not cover the IP header checksum), then the IP header.
  const size_t l4_len = total - ihl;
  if (l4 == kTcp) {
    put16(l4s, 16, refChecksum(l4s, pseudoHeaderSum(p, kTcp, l4_len)));
  } else if (l4 == kUdp) {
    uint16_t c = refChecksum(l4s, pseudoHeaderSum(p, kUdp, l4_len));
    put16(l4s, 6, c == 0 ? 0xffff : c);
  } else if (l4 == kIcmp) {
    put16(l4s, 2, refChecksum(l4s));
  }
  put16(s, 10, refChecksum(s.first(ihl)));
  if (corrupt_ip_) {
    put16(s, 10, static_cast<uint16_t>(get16(s, 10) ^ 0x5a5a));
  }
  return p;
}

uint16_t refChecksum(std::span<const std::byte> data, uint32_t initial) {
  uint64_t sum = initial;
  for (size_t i = 0; i < data.size(); i += 2) {
    uint32_t word = uint32_t{byteAt(data, i)} << 8;
    if (i + 1 < data.size()) {
      word |= byteAt(data, i + 1);
    }
    sum += word;
  }
  while (sum > 0xffff) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<uint16_t>(~sum & 0xffff);
}

bool ipv4HeaderValid(std::span<const std::byte> pkt) {
  if (pkt.size() < 20) {
    return false;
  }
  const size_t ihl = ipHeaderLen(pkt);
  return ihl >= 20 && ihl <= pkt.size() && refChecksum(pkt.first(ihl)) == 0;
}

bool l4ChecksumValid(std::span<const std::byte> pkt) {
  if (pkt.size() < 20) {
    return false;
  }
  const size_t ihl = ipHeaderLen(pkt);
  const size_t total = ipTotalLen(pkt);
  if (ihl < 20 || total < ihl || total > pkt.size()) {
    return false;
  }
  auto l4 = pkt.subspan(ihl, total - ihl);
  const uint8_t proto = byteAt(pkt, 9);
  if (proto == kTcp && l4.size() >= 20) {
    return refChecksum(l4, pseudoHeaderSum(pkt, kTcp, l4.size())) == 0;
  }
  if (proto == kUdp && l4.size() >= 8) {
    return get16(l4, 6) != 0 && refChecksum(l4, pseudoHeaderSum(pkt, kUdp, l4.size())) == 0;
  }
  if (proto == kIcmp && l4.size() >= 8) {
    return refChecksum(l4) == 0;
  }
  return false;
}

uint16_t get16(std::span<const std::byte> p, size_t off) {
  return static_cast<uint16_t>((uint32_t{byteAt(p, off)} << 8) | byteAt(p, off + 1));
}
uint32_t get32(std::span<const std::byte> p, size_t off) {
  return (uint32_t{get16(p, off)} << 16) | get16(p, off + 2);
}
void put16(std::span<std::byte> p, size_t off, uint16_t v) {
  p[off] = std::byte{static_cast<uint8_t>(v >> 8)};
  p[off + 1] = std::byte{static_cast<uint8_t>(v & 0xff)};
}
size_t ipHeaderLen(std::span<const std::byte> pkt) {
  return size_t{byteAt(pkt, 0) & 0x0fu} * 4;
}
uint16_t ipTotalLen(std::span<const std::byte> pkt) {
  return get16(pkt, 2);
}
uint16_t ipId(std::span<const std::byte> pkt) {
  return get16(pkt, 4);
}
uint8_t ipTtl(std::span<const std::byte> pkt) {
  return byteAt(pkt, 8);
}
Ip4 ipSrc(std::span<const std::byte> pkt) {
  return Ip4::fromU32(get32(pkt, 12));
}
Ip4 ipDst(std::span<const std::byte> pkt) {
  return Ip4::fromU32(get32(pkt, 16));
}
uint32_t tcpSeq(std::span<const std::byte> pkt) {
  return get32(pkt, ipHeaderLen(pkt) + 4);
}
uint8_t tcpFlags(std::span<const std::byte> pkt) {
  return byteAt(pkt, ipHeaderLen(pkt) + 13);
}
size_t l4HeaderLen(std::span<const std::byte> pkt) {
  const uint8_t proto = byteAt(pkt, 9);
  if (proto == kTcp) {
    return (size_t{byteAt(pkt, ipHeaderLen(pkt) + 12)} >> 4) * 4;
  }
  return proto == kUdp || proto == kIcmp ? 8 : 0;
}
std::span<const std::byte> l4Payload(std::span<const std::byte> pkt) {
  const size_t off = ipHeaderLen(pkt) + l4HeaderLen(pkt);
  return pkt.subspan(off, ipTotalLen(pkt) - off);
}

Bytes patternBytes(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) {
    b[i] = std::byte{static_cast<uint8_t>(seed + i * 7 + i / 251)};
  }
  return b;
}

}  // namespace flannel::test
