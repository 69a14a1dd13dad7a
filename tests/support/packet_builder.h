// DOC: PacketBuilder, the fixture maker for the udp data path's packet tests (DESIGN.md seam 6,
// Katran-style fixture tables): IPv4 packets carrying TCP, UDP or ICMP with every field a test may
// want to vary settable and every checksum correct, unless a knob deliberately breaks one.
//
//   auto p = PacketBuilder::tcp().src("10.5.1.2").dst("10.5.2.3").seq(1000).payload(1448).build();
//
// The checksum helpers here (refChecksum, ipv4HeaderValid, l4ChecksumValid) are a deliberately
// naive byte-by-byte RFC 1071 implementation, independent of src/backend/udp/dataplane/packet.cc,
// so tests can check that code against them. Field accessors read the built bytes back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/ip.h"

namespace flannel::test {

using Bytes = std::vector<std::byte>;

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;
inline constexpr uint8_t kTcpUrg = 0x20;
inline constexpr uint8_t kTcpEce = 0x40;
inline constexpr uint8_t kTcpCwr = 0x80;

Ip4 ip4(std::string_view dotted);  // parse or abort: fixtures are constants

class PacketBuilder {
 public:
  static PacketBuilder tcp();
  static PacketBuilder udp();
  static PacketBuilder icmp();  // echo request by default
  // Any protocol number (6 and 17 too); the payload follows the IP header as is: no L4 header,
  // no L4 checksum.
  static PacketBuilder raw(uint8_t protocol);

  // IPv4 header.
  PacketBuilder& src(std::string_view a) { return src(ip4(a)); }
  PacketBuilder& src(Ip4 a);
  PacketBuilder& dst(std::string_view a) { return dst(ip4(a)); }
  PacketBuilder& dst(Ip4 a);
  PacketBuilder& tos(uint8_t v);
  PacketBuilder& ttl(uint8_t v);
  PacketBuilder& id(uint16_t v);
  PacketBuilder& df(bool on);
  PacketBuilder& mf(bool on);
  PacketBuilder& fragOffset(uint16_t units_of_8);
  // IP options, padded with zeros (EOL) to a multiple of 4; IHL follows.
  PacketBuilder& ipOptions(std::span<const uint8_t> opts);

  // TCP/UDP ports; TCP fields.
  PacketBuilder& sport(uint16_t v);
  PacketBuilder& dport(uint16_t v);
  PacketBuilder& seq(uint32_t v);
  PacketBuilder& ack(uint32_t v);
  PacketBuilder& flags(uint8_t tcp_flags);  // default ACK
  PacketBuilder& window(uint16_t v);
  PacketBuilder& urgent(uint16_t v);
  PacketBuilder& tcpOptions(std::span<const uint8_t> opts);  // padded to a multiple of 4

  // ICMP type/code (echo id/seq in the rest-of-header word).
  PacketBuilder& icmpType(uint8_t type, uint8_t code = 0);

  // Payload: given bytes, or `n` bytes of a pattern that depends on `seed` and the position.
  PacketBuilder& payload(std::span<const std::byte> p);
  PacketBuilder& payload(size_t n, uint8_t seed = 0);

  // Deliberate damage, applied after the checksums: a header checksum that does not verify.
  PacketBuilder& corruptIpChecksum();

  Bytes build() const;

 private:
  PacketBuilder(uint8_t protocol, bool raw) : protocol_(protocol), raw_(raw) {}
  uint8_t protocol_;
  bool raw_;
  Ip4 src_ = Ip4::fromBytes(10, 5, 1, 2);
  Ip4 dst_ = Ip4::fromBytes(10, 5, 2, 3);
  uint8_t tos_ = 0;
  uint8_t ttl_ = 64;
  uint16_t id_ = 0x1234;
  bool df_ = true;
  bool mf_ = false;
  uint16_t frag_ = 0;
  std::vector<uint8_t> ip_opts_{};
  uint16_t sport_ = 40000;
  uint16_t dport_ = 80;
  uint32_t seq_ = 1000;
  uint32_t ack_ = 5000;
  uint8_t flags_ = kTcpAck;
  uint16_t window_ = 502;
  uint16_t urgent_ = 0;
  std::vector<uint8_t> tcp_opts_{};
  uint8_t icmp_type_ = 8;
  uint8_t icmp_code_ = 0;
  Bytes payload_{};
  bool corrupt_ip_ = false;
};

// --- independent reference checksums -------------------------------------------------------

// RFC 1071 Internet checksum of `data` (folded, complemented), plus `initial` (an unfolded sum).
uint16_t refChecksum(std::span<const std::byte> data, uint32_t initial = 0);
// The IPv4 header (IHL from the packet) sums to zero.
bool ipv4HeaderValid(std::span<const std::byte> pkt);
// TCP/UDP (with pseudo-header, over the IP total length) or ICMP checksum verifies. A UDP
// checksum of 0 ("none") counts as invalid here: our code must always fill it in.
bool l4ChecksumValid(std::span<const std::byte> pkt);

// --- reading fields back ----------------------------------------------------------------------

uint16_t get16(std::span<const std::byte> p, size_t off);
uint32_t get32(std::span<const std::byte> p, size_t off);
void put16(std::span<std::byte> p, size_t off, uint16_t v);
size_t ipHeaderLen(std::span<const std::byte> pkt);
uint16_t ipTotalLen(std::span<const std::byte> pkt);
uint16_t ipId(std::span<const std::byte> pkt);
uint8_t ipTtl(std::span<const std::byte> pkt);
Ip4 ipSrc(std::span<const std::byte> pkt);
Ip4 ipDst(std::span<const std::byte> pkt);
uint32_t tcpSeq(std::span<const std::byte> pkt);
uint8_t tcpFlags(std::span<const std::byte> pkt);
size_t l4HeaderLen(std::span<const std::byte> pkt);  // TCP data offset * 4, 8 for UDP, else 0
std::span<const std::byte> l4Payload(std::span<const std::byte> pkt);

// `n` pattern bytes as PacketBuilder::payload(n, seed) makes them.
Bytes patternBytes(size_t n, uint8_t seed);

}  // namespace flannel::test
