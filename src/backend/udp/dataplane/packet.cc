#include "backend/udp/dataplane/packet.h"

#include <algorithm>
#include <bit>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace flannel::backend::udp {

namespace {

inline uint16_t load16(const std::byte* p) noexcept {
  return static_cast<uint16_t>((std::to_integer<unsigned>(p[0]) << 8) |
                               std::to_integer<unsigned>(p[1]));
}
inline uint32_t load32(const std::byte* p) noexcept {
  return (uint32_t{load16(p)} << 16) | load16(p + 2);
}
inline void store16(std::byte* p, uint16_t v) noexcept {
  p[0] = static_cast<std::byte>(v >> 8);
  p[1] = static_cast<std::byte>(v & 0xff);
}
inline void store32(std::byte* p, uint32_t v) noexcept {
  store16(p, static_cast<uint16_t>(v >> 16));
  store16(p + 2, static_cast<uint16_t>(v & 0xffff));
}
inline uint8_t u8(const std::byte* p) noexcept {
  return std::to_integer<uint8_t>(*p);
}

constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpAck = 0x10;
constexpr uint8_t kTcpUrg = 0x20;
constexpr uint8_t kTcpEce = 0x40;
constexpr uint8_t kTcpCwr = 0x80;
constexpr size_t kMaxIpPacket = 65535;

// The IPv4 header checksum (the field itself skipped). A plain 16-bit loop on purpose: for a
// 20-byte header it is faster than checksumAdd()'s vector path (measured with
// udp_packet_bench's BM_SegmentTso, which computes one per segment).
uint16_t ipv4HeaderChecksum(const std::byte* h, size_t len) noexcept {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) {
    if (i != 10) {
      sum += load16(h + i);
    }
  }
  return checksumFold(sum);
}

// Pseudo-header sum for IPv4 TCP/UDP.
uint32_t pseudoSum(const std::byte* ip, uint8_t proto, size_t l4_len) noexcept {
  uint32_t sum = 0;
  sum += load16(ip + 12) + load16(ip + 14) + load16(ip + 16) + load16(ip + 18);
  sum += proto;
  sum += static_cast<uint32_t>(l4_len);
  return sum;
}

}  // namespace

const char* dropName(Drop d) noexcept {
  switch (d) {
    case Drop::None:
      return "none";
    case Drop::Malformed:
      return "malformed";
    case Drop::NotIpv4:
      return "not_ipv4";
    case Drop::NoRoute:
      return "no_route";
    case Drop::TtlExpired:
      return "ttl_expired";
    case Drop::UnknownSource:
      return "unknown_source";
    case Drop::NotOurSubnet:
      return "not_our_subnet";
    case Drop::SpoofedSource:
      return "spoofed_source";
    case Drop::kCount:
      break;
  }
  return "unknown";
}

std::optional<Ipv4Info> parseIpv4(std::span<const std::byte> pkt) noexcept {
  if (pkt.size() < kIpv4MinHeader) {
    return std::nullopt;
  }
  const std::byte* p = pkt.data();
  const uint8_t vihl = u8(p);
  if ((vihl >> 4) != 4) {
    return std::nullopt;
  }
  Ipv4Info info;
  info.header_len = size_t{vihl & 0x0fu} * 4;
  info.total_len = load16(p + 2);
  if (info.header_len < kIpv4MinHeader || info.total_len < info.header_len ||
      info.total_len > pkt.size()) {
    return std::nullopt;
  }
  info.ttl = u8(p + 8);
  info.protocol = u8(p + 9);
  info.first_fragment = (load16(p + 6) & 0x1fff) == 0;
  info.src = Ip4::fromU32(load32(p + 12));
  info.dst = Ip4::fromU32(load32(p + 16));
  return info;
}

uint32_t checksumAdd(std::span<const std::byte> data, uint32_t sum) noexcept {
  // The one's complement sum is byte-order independent (RFC 1071 §2(B)): add the data as native
  // 32-bit words into 64-bit lanes (no carry can be lost below 2^32 words), fold, and swap the
  // 16-bit result once at the end. This is the hot loop of the TSO path (every segment's TCP
  // checksum), hence SSE2 where the target has it.
  const std::byte* p = data.data();
  size_t n = data.size();
  uint64_t acc = 0;
#if defined(__SSE2__)
  {
    const __m128i zero = _mm_setzero_si128();
    __m128i a0 = zero;
    __m128i a1 = zero;
    while (n >= 32) {
      const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
      a0 = _mm_add_epi64(a0, _mm_unpacklo_epi32(v0, zero));
      a1 = _mm_add_epi64(a1, _mm_unpackhi_epi32(v0, zero));
      a0 = _mm_add_epi64(a0, _mm_unpacklo_epi32(v1, zero));
      a1 = _mm_add_epi64(a1, _mm_unpackhi_epi32(v1, zero));
      p += 32;
      n -= 32;
    }
    alignas(16) uint64_t lanes[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes), a0);
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes + 2), a1);
    acc = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  }
#endif
  while (n >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    acc += w;
    p += 4;
    n -= 4;
  }
  if (n > 0) {
    uint32_t tail = 0;
    std::memcpy(&tail, p, n);  // the missing bytes are zero padding, as RFC 1071 says
    acc += tail;
  }
  // Fold 64 -> 16 bits (still in native order).
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  uint32_t s32 = static_cast<uint32_t>(acc);
  s32 = (s32 & 0xffff) + (s32 >> 16);
  s32 = (s32 & 0xffff) + (s32 >> 16);
  uint16_t s16 = static_cast<uint16_t>(s32);
  if constexpr (std::endian::native == std::endian::little) {
    s16 = static_cast<uint16_t>((s16 >> 8) | (s16 << 8));
  }
  const uint32_t total = sum + s16;
  return (total & 0xffff) + (total >> 16);
}

uint16_t checksumFold(uint32_t sum) noexcept {
  while ((sum >> 16) != 0) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<uint16_t>(~sum & 0xffff);
}

bool ipv4HeaderChecksumOk(std::span<const std::byte> header) noexcept {
  return checksumFold(checksumAdd(header)) == 0;
}

bool decrementTtl(std::span<std::byte> pkt) noexcept {
  std::byte* p = pkt.data();
  const uint8_t ttl = u8(p + 8);
  if (ttl <= 1) {
    return false;
  }
  // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), m = the 16-bit word holding TTL and protocol.
  const uint16_t m = load16(p + 8);
  const uint16_t m2 = static_cast<uint16_t>(m - 0x0100);
  uint32_t sum = static_cast<uint16_t>(~load16(p + 10)) + static_cast<uint16_t>(~m) + m2;
  p[8] = static_cast<std::byte>(ttl - 1);
  store16(p + 10, checksumFold(sum));
  return true;
}

size_t buildNetUnreachable(std::span<const std::byte> pkt, Ip4 src,
                           std::span<std::byte> out) noexcept {
  auto info = parseIpv4(pkt);
  if (!info || info->protocol == kProtoIcmp || !info->first_fragment ||
      out.size() < kMaxIcmpErrorLen) {
    return 0;
  }
  const size_t quoted = std::min(info->total_len, info->header_len + 8);
  const size_t total = 20 + 8 + quoted;
  std::byte* o = out.data();
  std::memset(o, 0, 28);
  o[0] = std::byte{0x45};
  store16(o + 2, static_cast<uint16_t>(total));
  o[8] = std::byte{8};  // TTL 8, as flannel's proxy
  o[9] = std::byte{kProtoIcmp};
  store32(o + 12, src.toU32());
  store32(o + 16, info->src.toU32());
  store16(o + 10, ipv4HeaderChecksum(o, 20));
  o[20] = std::byte{3};  // destination unreachable
  o[21] = std::byte{0};  // net unreachable
  std::memcpy(o + 28, pkt.data(), quoted);
  store16(o + 22, checksumFold(checksumAdd({o + 20, 8 + quoted})));
  return total;
}

std::array<std::byte, kAnnouncementLen> buildAnnouncement(Ip4 src, Ip4 dst) noexcept {
  std::array<std::byte, kAnnouncementLen> a{};
  std::byte* o = a.data();
  o[0] = std::byte{0x45};
  store16(o + 2, static_cast<uint16_t>(kAnnouncementLen));
  o[8] = std::byte{64};
  o[9] = std::byte{kProtoIcmp};
  store32(o + 12, src.toU32());
  store32(o + 16, dst.toU32());
  store16(o + 10, ipv4HeaderChecksum(o, 20));
  o[20] = std::byte{0};  // echo reply
  store16(o + 24, 0x666c);
  std::memcpy(o + 28, "flannel!", 8);
  store16(o + 22, checksumFold(checksumAdd({o + 20, 16})));
  return a;
}

RouteTable::RouteTable(Ip4 own_network, uint8_t own_prefix, std::vector<Entry> entries)
    : entries_(std::move(entries)) {
  has_own_ = true;
  own_mask_ = own_prefix == 0 ? 0 : ~uint32_t{0} << (32 - own_prefix);
  own_net_ = own_network.toU32() & own_mask_;
  for (auto& e : entries_) {
    const uint32_t mask = e.prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - e.prefix_len);
    e.network = Ip4::fromU32(e.network.toU32() & mask);
  }
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
    return a.network != b.network ? a.network < b.network : a.prefix_len < b.prefix_len;
  });
  // Keep the entries disjoint: one nested in (or equal to) an earlier, larger one is dropped.
  std::vector<Entry> disjoint;
  disjoint.reserve(entries_.size());
  uint64_t covered_end = 0;  // one past the last address of the previous kept entry
  for (const auto& e : entries_) {
    const uint64_t start = e.network.toU32();
    if (!disjoint.empty() && start < covered_end) {
      continue;
    }
    disjoint.push_back(e);
    covered_end = start + (uint64_t{1} << (32 - e.prefix_len));
  }
  entries_ = std::move(disjoint);
  for (const auto& e : entries_) {
    peers_.push_back(e.peer);
  }
  std::sort(peers_.begin(), peers_.end());
  peers_.erase(std::unique(peers_.begin(), peers_.end()), peers_.end());
}

const Ip4* RouteTable::lookup(Ip4 dst) const noexcept {
  // Entries are disjoint (the constructor drops nested ones): the one with the greatest
  // network <= dst is the only candidate.
  auto it = std::upper_bound(entries_.begin(), entries_.end(), dst,
                             [](Ip4 d, const Entry& e) { return d < e.network; });
  if (it == entries_.begin()) {
    return nullptr;
  }
  --it;
  const uint32_t mask = it->prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - it->prefix_len);
  return (dst.toU32() & mask) == it->network.toU32() ? &it->peer : nullptr;
}

bool RouteTable::isPeer(Ip4 addr) const noexcept {
  return std::binary_search(peers_.begin(), peers_.end(), addr);
}

bool RouteTable::isOwn(Ip4 dst) const noexcept {
  return has_own_ && (dst.toU32() & own_mask_) == own_net_;
}

namespace {
bool isIpv6(std::span<const std::byte> pkt) noexcept {
  return !pkt.empty() && (std::to_integer<uint8_t>(pkt[0]) >> 4) == 6;
}
}  // namespace

EncapResult encap(std::span<std::byte> pkt, const RouteTable& table) noexcept {
  EncapResult r;
  auto info = parseIpv4(pkt);
  if (!info) {
    r.drop = isIpv6(pkt) ? Drop::NotIpv4 : Drop::Malformed;
    return r;
  }
  const Ip4* peer = table.lookup(info->dst);
  if (peer == nullptr) {
    r.drop = Drop::NoRoute;
    return r;
  }
  if (!decrementTtl(pkt)) {
    r.drop = Drop::TtlExpired;
    return r;
  }
  r.peer = *peer;
  r.length = info->total_len;
  return r;
}

DecapResult decap(std::span<std::byte> dgram, Ip4 from, const RouteTable& table) noexcept {
  DecapResult r;
  if (!table.isPeer(from)) {
    r.drop = Drop::UnknownSource;
    return r;
  }
  auto info = parseIpv4(dgram);
  if (!info && isIpv6(dgram)) {
    r.drop = Drop::NotIpv4;
    return r;
  }
  if (!info || !ipv4HeaderChecksumOk(dgram.first(info->header_len))) {
    r.drop = Drop::Malformed;
    return r;
  }
  if (!table.isOwn(info->dst)) {
    r.drop = Drop::NotOurSubnet;
    return r;
  }
  if (table.isOwn(info->src)) {
    r.drop = Drop::SpoofedSource;
    return r;
  }
  if (!decrementTtl(dgram)) {
    r.drop = Drop::TtlExpired;
    return r;
  }
  r.length = info->total_len;
  return r;
}

bool completeChecksum(std::span<std::byte> pkt, const kernel::VirtioNetHdr& h) noexcept {
  const size_t start = h.csum_start;
  const size_t field = start + h.csum_offset;
  if (start >= pkt.size() || field + 2 > pkt.size()) {
    return false;
  }
  uint16_t c = checksumFold(checksumAdd(pkt.subspan(start)));
  if (c == 0 && h.csum_offset == 6) {
    c = 0xffff;  // UDP (its checksum sits at offset 6): 0 would mean "no checksum" (RFC 768)
  }
  store16(pkt.data() + field, c);
  return true;
}

Segments segmentSuper(std::span<const std::byte> pkt, const kernel::VirtioNetHdr& hdr,
                      std::span<std::byte> out) noexcept {
  Segments none;
  auto info = parseIpv4(pkt);
  const uint8_t type = hdr.gso_type & static_cast<uint8_t>(~kernel::VirtioNetHdr::kGsoEcn);
  if (!info || hdr.gso_size == 0) {
    return none;
  }
  const std::byte* ip = pkt.data();
  const size_t ihl = info->header_len;
  size_t l4hl = 0;
  if (type == kernel::VirtioNetHdr::kGsoTcpV4 && info->protocol == kProtoTcp) {
    if (info->total_len < ihl + 20) {
      return none;
    }
    l4hl = (size_t{u8(ip + ihl + 12)} >> 4) * 4;
    if (l4hl < 20 || ihl + l4hl > info->total_len) {
      return none;
    }
  } else if (type == kernel::VirtioNetHdr::kGsoUdpL4 && info->protocol == kProtoUdp) {
    l4hl = 8;
    if (ihl + l4hl > info->total_len) {
      return none;
    }
  } else {
    return none;
  }
  const size_t hl = ihl + l4hl;
  const size_t payload = info->total_len - hl;
  const size_t mss = hdr.gso_size;
  const size_t count = payload == 0 ? 1 : (payload + mss - 1) / mss;
  const size_t seg_len = hl + std::min(mss, payload);
  const size_t last_len = hl + (payload - (count - 1) * mss);
  Segments s{.count = count, .seg_len = seg_len, .last_len = last_len};
  if (s.total() > out.size()) {
    return none;
  }
  const uint16_t id0 = load16(ip + 4);
  const uint32_t seq0 = l4hl == 8 ? 0 : load32(ip + ihl + 4);
  const uint8_t flags0 = l4hl == 8 ? 0 : u8(ip + ihl + 13);
  for (size_t i = 0; i < count; ++i) {
    std::byte* o = out.data() + i * seg_len;
    const size_t len = i + 1 == count ? last_len : seg_len;
    const size_t chunk = len - hl;
    std::memcpy(o, ip, hl);
    std::memcpy(o + hl, ip + hl + i * mss, chunk);
    store16(o + 2, static_cast<uint16_t>(len));
    store16(o + 4, static_cast<uint16_t>(id0 + i));
    store16(o + 10, ipv4HeaderChecksum(o, ihl));
    std::byte* l4 = o + ihl;
    if (l4hl == 8) {
      store16(l4 + 4, static_cast<uint16_t>(8 + chunk));
      store16(l4 + 6, 0);
      uint16_t c = checksumFold(checksumAdd({l4, 8 + chunk}, pseudoSum(o, kProtoUdp, 8 + chunk)));
      store16(l4 + 6, c == 0 ? 0xffff : c);
    } else {
      store32(l4 + 4, static_cast<uint32_t>(seq0 + i * mss));
      uint8_t f = flags0;
      if (i + 1 != count) {
        f &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
      }
      if (i != 0) {
        f &= static_cast<uint8_t>(~kTcpCwr);
      }
      l4[13] = std::byte{f};
      store16(l4 + 16, 0);
      const size_t tcp_len = l4hl + chunk;
      store16(l4 + 16, checksumFold(checksumAdd({l4, tcp_len}, pseudoSum(o, kProtoTcp, tcp_len))));
    }
  }
  return s;
}

bool TcpCoalescer::start(std::span<const std::byte> seg) noexcept {
  len_ = 0;
  count_ = 0;
  auto info = parseIpv4(seg);
  if (!info || info->protocol != kProtoTcp || info->header_len != kIpv4MinHeader ||
      !info->first_fragment || (load16(seg.data() + 6) & 0x2000) != 0 ||
      info->total_len < info->header_len + 20 || info->total_len > buf_.size()) {
    return false;
  }
  const std::byte* tcp = seg.data() + info->header_len;
  const size_t thl = (size_t{u8(tcp + 12)} >> 4) * 4;
  if (thl < 20 || info->header_len + thl >= info->total_len) {
    return false;  // no payload: nothing to coalesce
  }
  const uint8_t flags = u8(tcp + 13);
  if ((flags & (kTcpSyn | kTcpFin | kTcpRst | kTcpUrg | kTcpEce | kTcpCwr)) != 0 ||
      (flags & kTcpAck) == 0) {
    return false;
  }
  std::memcpy(buf_.data(), seg.data(), info->total_len);
  len_ = info->total_len;
  hdr_len_ = info->header_len + thl;
  mss_ = info->total_len - hdr_len_;
  count_ = 1;
  next_seq_ = load32(tcp + 4) + static_cast<uint32_t>(mss_);
  last_short_ = (flags & kTcpPsh) != 0;  // PSH ends a run
  return true;
}

bool TcpCoalescer::append(std::span<const std::byte> seg) noexcept {
  if (len_ == 0 || last_short_) {
    return false;
  }
  auto info = parseIpv4(seg);
  if (!info || info->protocol != kProtoTcp || info->header_len != kIpv4MinHeader ||
      info->total_len <= hdr_len_) {
    return false;
  }
  const std::byte* a = buf_.data();
  const std::byte* b = seg.data();
  // Same TOS, flags/fragment field, TTL, protocol and addresses.
  if (a[1] != b[1] || load16(a + 6) != load16(b + 6) || a[8] != b[8] ||
      std::memcmp(a + 12, b + 12, 8) != 0) {
    return false;
  }
  const std::byte* ta = a + kIpv4MinHeader;
  const std::byte* tb = b + kIpv4MinHeader;
  const size_t thl = (size_t{u8(tb + 12)} >> 4) * 4;
  if (kIpv4MinHeader + thl != hdr_len_ || load32(tb + 4) != next_seq_) {
    return false;
  }
  // Ports, ack number, data offset, window and options must match; flags ACK or ACK|PSH.
  if (std::memcmp(ta, tb, 4) != 0 || std::memcmp(ta + 8, tb + 8, 5) != 0 ||
      std::memcmp(ta + 14, tb + 14, 2) != 0 || std::memcmp(ta + 20, tb + 20, thl - 20) != 0) {
    return false;
  }
  const uint8_t flags = u8(tb + 13);
  if ((flags & ~(kTcpAck | kTcpPsh)) != 0 || (flags & kTcpAck) == 0) {
    return false;
  }
  const size_t chunk = info->total_len - hdr_len_;
  if (chunk > mss_ || len_ + chunk > std::min(buf_.size(), kMaxIpPacket)) {
    return false;
  }
  std::memcpy(buf_.data() + len_, b + hdr_len_, chunk);
  len_ += chunk;
  ++count_;
  next_seq_ += static_cast<uint32_t>(chunk);
  if ((flags & kTcpPsh) != 0) {
    buf_[kIpv4MinHeader + 13] |= std::byte{kTcpPsh};
    last_short_ = true;
  }
  if (chunk < mss_) {
    last_short_ = true;
  }
  return true;
}

std::span<const std::byte> TcpCoalescer::finish(kernel::VirtioNetHdr& hdr) noexcept {
  hdr = kernel::VirtioNetHdr{};
  std::span<const std::byte> out{buf_.data(), len_};
  if (count_ > 1) {
    std::byte* ip = buf_.data();
    store16(ip + 2, static_cast<uint16_t>(len_));
    store16(ip + 10, ipv4HeaderChecksum(ip, kIpv4MinHeader));
    const size_t tcp_len = len_ - kIpv4MinHeader;
    // NEEDS_CSUM: the field holds the pseudo-header sum, the kernel adds the rest.
    uint32_t ps = pseudoSum(ip, kProtoTcp, tcp_len);
    while ((ps >> 16) != 0) {
      ps = (ps & 0xffff) + (ps >> 16);
    }
    store16(ip + kIpv4MinHeader + 16, static_cast<uint16_t>(ps));
    hdr.flags = kernel::VirtioNetHdr::kFlagNeedsCsum;
    hdr.gso_type = kernel::VirtioNetHdr::kGsoTcpV4;
    hdr.gso_size = static_cast<uint16_t>(mss_);
    hdr.hdr_len = static_cast<uint16_t>(hdr_len_);
    hdr.csum_start = static_cast<uint16_t>(kIpv4MinHeader);
    hdr.csum_offset = 16;
  }
  len_ = 0;
  count_ = 0;
  return out;
}

}  // namespace flannel::backend::udp
