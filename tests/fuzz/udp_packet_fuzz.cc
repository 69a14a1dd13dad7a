// Fuzz target: the udp backend's packet logic (src/backend/udp/dataplane/packet.h) must be total
// over arbitrary bytes and keep its invariants. The first byte picks the function:
//   0 encap   [1: ignored] [packet...]
//   1 decap   [1: sender selector] [datagram...]
//   2 segmentSuper  [1..10: virtio-net header, little endian] [11: output size / 512 - 1] [packet]
//   3 TcpCoalescer  a sequence of [2-byte big-endian length][segment] fed to start()/append()
// Invariants: no crash or sanitizer report; every reported length lies within its buffer; a
// forwarded packet's header checksum is valid (when it was before, for encap); every segment
// and every ICMP error is a well-formed IPv4 packet with valid checksums.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/udp/dataplane/packet.h"

namespace {

using flannel::Ip4;
using flannel::backend::udp::checksumAdd;
using flannel::backend::udp::checksumFold;
using flannel::backend::udp::ipv4HeaderChecksumOk;
using flannel::backend::udp::parseIpv4;
using flannel::backend::udp::RouteTable;
using flannel::kernel::VirtioNetHdr;
namespace udp = flannel::backend::udp;

std::vector<std::byte> toBytes(std::span<const uint8_t> in) {
  std::vector<std::byte> out(in.size());
  std::transform(in.begin(), in.end(), out.begin(), [](uint8_t b) { return std::byte{b}; });
  return out;
}

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

const RouteTable& table() {
  static const RouteTable t(Ip4::fromBytes(10, 5, 1, 0), 24,
                            {{.network = Ip4::fromBytes(10, 5, 2, 0),
                              .prefix_len = 24,
                              .peer = Ip4::fromBytes(192, 168, 91, 12)},
                             {.network = Ip4::fromBytes(10, 6, 0, 0),
                              .prefix_len = 16,
                              .peer = Ip4::fromBytes(192, 168, 91, 13)}});
  return t;
}

bool headerOk(std::span<const std::byte> pkt) {
  auto info = parseIpv4(pkt);
  return info && ipv4HeaderChecksumOk(pkt.first(info->header_len));
}

// A complete IPv4 packet whose header and (for ICMP/TCP/UDP) L4 checksum verify.
void checkWellFormed(std::span<const std::byte> pkt, bool l4) {
  auto info = parseIpv4(pkt);
  check(info.has_value() && info->total_len == pkt.size());
  check(ipv4HeaderChecksumOk(pkt.first(info->header_len)));
  if (!l4) {
    return;
  }
  auto body = pkt.subspan(info->header_len);
  uint32_t sum = 0;
  if (info->protocol != udp::kProtoIcmp) {
    // Pseudo-header: addresses, protocol, L4 length.
    sum = checksumAdd(pkt.subspan(12, 8)) + info->protocol + static_cast<uint32_t>(body.size());
  }
  check(checksumFold(checksumAdd(body, sum)) == 0);
}

void fuzzEncapDecap(bool is_encap, uint8_t selector, std::span<const uint8_t> in) {
  std::vector<std::byte> buf = toBytes(in);
  const bool valid_before = headerOk(buf);
  const std::vector<std::byte> orig = buf;
  if (is_encap) {
    auto r = udp::encap(buf, table());
    if (r.drop == udp::Drop::None) {
      check(r.length > 0 && r.length <= buf.size());
      check(!valid_before || headerOk(buf));
      check(table().lookup(parseIpv4(buf)->dst) != nullptr);
    } else {
      check(buf == orig);
    }
    if (r.drop == udp::Drop::NoRoute) {
      std::array<std::byte, udp::kMaxIcmpErrorLen> icmp{};
      const size_t n = udp::buildNetUnreachable(buf, Ip4::fromBytes(10, 5, 1, 0), icmp);
      check(n <= icmp.size());
      if (n > 0) {
        checkWellFormed({icmp.data(), n}, true);
      }
    }
    return;
  }
  const Ip4 senders[] = {Ip4::fromBytes(192, 168, 91, 12), Ip4::fromBytes(192, 168, 91, 13),
                         Ip4::fromBytes(192, 168, 91, 99)};
  auto r = udp::decap(buf, senders[selector % 3], table());
  if (r.drop == udp::Drop::None) {
    check(r.length > 0 && r.length <= buf.size());
    check(headerOk(buf));
    check(table().isOwn(parseIpv4(buf)->dst) && !table().isOwn(parseIpv4(buf)->src));
  }
}

uint16_t le16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

void fuzzSegment(std::span<const uint8_t> in) {
  if (in.size() < 11) {
    return;
  }
  VirtioNetHdr h;
  h.flags = in[0];
  h.gso_type = in[1];
  h.hdr_len = le16(&in[2]);
  h.gso_size = le16(&in[4]);
  h.csum_start = le16(&in[6]);
  h.csum_offset = le16(&in[8]);
  std::vector<std::byte> out((size_t{in[10]} + 1) * 512);
  const std::vector<std::byte> pkt = toBytes(in.subspan(11));
  const auto s = udp::segmentSuper(pkt, h, out);
  check(s.total() <= out.size());
  if (s.count > 0) {
    check(s.last_len <= s.seg_len && s.last_len > 0);
    for (size_t i = 0; i < s.count; ++i) {
      const size_t len = i + 1 == s.count ? s.last_len : s.seg_len;
      checkWellFormed({out.data() + i * s.seg_len, len}, true);
    }
  }
  std::vector<std::byte> copy = pkt;
  if (udp::completeChecksum(copy, h)) {
    check(size_t{h.csum_start} + h.csum_offset + 2 <= copy.size());
  } else {
    check(copy == pkt);
  }
}

void fuzzCoalesce(std::span<const uint8_t> in) {
  std::vector<std::byte> buf(65536);
  udp::TcpCoalescer c(buf);
  std::vector<std::vector<std::byte>> taken;  // the segments of the current run
  auto finish = [&] {
    if (!c.active()) {
      return;
    }
    const size_t n = c.segments();
    check(n == taken.size());
    VirtioNetHdr h;
    auto out = c.finish(h);
    check(out.size() <= 65535 && out.data() == buf.data());
    if (n == 1) {
      check(h.gso_type == VirtioNetHdr::kGsoNone);
      check(out.size() == taken[0].size() &&
            std::memcmp(out.data(), taken[0].data(), out.size()) == 0);
    } else {
      // The kernel's TSO cuts it back into what went in (checksums recomputed).
      check(h.gso_type == VirtioNetHdr::kGsoTcpV4 && h.gso_size > 0);
      std::vector<std::byte> cut(n * (size_t{h.hdr_len} + h.gso_size));
      const auto s = udp::segmentSuper(out, h, cut);
      check(s.count == n);
      for (size_t i = 0; i < n; ++i) {
        const size_t len = i + 1 == n ? s.last_len : s.seg_len;
        check(len == taken[i].size());
        // Payload bytes match exactly.
        auto info = parseIpv4(taken[i]);
        const size_t hl = h.hdr_len;
        check(std::memcmp(cut.data() + i * s.seg_len + hl, taken[i].data() + hl, len - hl) == 0);
        check(info.has_value());
      }
    }
    taken.clear();
  };
  size_t off = 0;
  while (off + 2 <= in.size()) {
    const size_t len = std::min<size_t>((size_t{in[off]} << 8) | in[off + 1], in.size() - off - 2);
    std::vector<std::byte> seg = toBytes(in.subspan(off + 2, len));
    off += 2 + len;
    // Only what decap would pass reaches the coalescer: a whole packet with a valid header.
    auto info = parseIpv4(seg);
    if (!info || !headerOk(seg)) {
      continue;
    }
    seg.resize(info->total_len);
    if (c.active() && c.append(seg)) {
      taken.push_back(seg);
      continue;
    }
    finish();
    if (c.start(seg)) {
      taken.push_back(seg);
    }
  }
  finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) {
    return 0;
  }
  std::span<const uint8_t> in(data, size);
  switch (data[0] % 4) {
    case 0:
      fuzzEncapDecap(true, data[1], in.subspan(2));
      break;
    case 1:
      fuzzEncapDecap(false, data[1], in.subspan(2));
      break;
    case 2:
      fuzzSegment(in.subspan(1));
      break;
    default:
      fuzzCoalesce(in.subspan(1));
      break;
  }
  return 0;
}
