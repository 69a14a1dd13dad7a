// DOC: the udp backend's packet logic (SPEC.md §5.3), pure functions over bytes.
//
//   TUN ──encap()──▶ UDP payload to peer:Port       (the raw IPv4 packet, TTL − 1)
//        └─ no route ─▶ ICMP net-unreachable back into the TUN (buildNetUnreachable)
//   UDP ──decap()──▶ TUN                            (TTL − 1; sender must hold a lease)
//
// Nothing here allocates, throws or logs; every rejected packet gets a Drop reason that the
// worker counts. The wire format is flannel's: the UDP payload is the bare IPv4 packet, no
// header of our own, so a Go flannel node on the udp backend and this one exchange packets.
//
// Super packets (TUN offloads): segmentTcp4()/segmentUdp4() cut a TSO/USO packet from the TUN
// into MSS-sized IPv4 packets laid out back to back with equal lengths (the last may be shorter),
// exactly the layout UDP GSO sends as one datagram per packet. coalesceTcp4() does the reverse
// for GRO'd receives: consecutive segments of one TCP flow become one super packet for the TUN.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/ip.h"
#include "kernel/packet_io.h"

namespace flannel::backend::udp {

inline constexpr size_t kIpv4MinHeader = 20;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
// Outer overhead of the udp backend: IPv4 (20) + UDP (8). The TUN MTU is ext − 28 (SPEC §5.3).
inline constexpr uint32_t kUdpOverhead = 28;
// The ICMP error is IP header + ICMP header + offending IP header (≤ 60) + 8 bytes.
inline constexpr size_t kMaxIcmpErrorLen = 20 + 8 + 60 + 8;

enum class Drop : uint8_t {
  None = 0,
  Malformed,      // truncated, bad version, header length, total length or checksum
  NotIpv4,        // an IPv6 packet (the udp backend carries IPv4; the kernel's own IPv6
                  // traffic on flannel0, e.g. router solicitations, ends up here)
  NoRoute,        // TUN → UDP: no lease holds the destination (ICMP error written instead)
  TtlExpired,     // TTL would reach 0
  UnknownSource,  // UDP → TUN: the sender's address holds no lease
  NotOurSubnet,   // UDP → TUN: the inner destination is outside our own subnet
  SpoofedSource,  // UDP → TUN: the inner source claims to be in our own subnet
  kCount
};
const char* dropName(Drop d) noexcept;  // "malformed", "no_route", ... (metric label values)

// The header fields the data path looks at, from a packet that passed parseIpv4().
struct Ipv4Info {
  size_t header_len = 0;  // IHL * 4
  size_t total_len = 0;   // from the header; ≤ the buffer
  uint8_t protocol = 0;
  uint8_t ttl = 0;
  bool first_fragment = true;  // fragment offset 0
  Ip4 src{};
  Ip4 dst{};
};

// Version 4, IHL ≥ 5, header and total length within `pkt`. No checksum check.
std::optional<Ipv4Info> parseIpv4(std::span<const std::byte> pkt) noexcept;

// RFC 1071 one's complement sum helpers.
uint32_t checksumAdd(std::span<const std::byte> data, uint32_t sum = 0) noexcept;
uint16_t checksumFold(uint32_t sum) noexcept;  // folded and complemented
bool ipv4HeaderChecksumOk(std::span<const std::byte> header) noexcept;

// TTL − 1 with the header checksum updated incrementally (RFC 1624 eqn. 3). False (packet
// untouched) when the TTL is 0 or 1, i.e. would reach 0.
bool decrementTtl(std::span<std::byte> pkt) noexcept;

// ICMP destination unreachable / net unreachable (type 3 code 0) for `pkt`, from `src`, TTL 8,
// quoting the offending header + 8 bytes. Returns the length written to `out` (≥
// kMaxIcmpErrorLen bytes), or 0 when no error is due (ICMP packets, non-first fragments).
size_t buildNetUnreachable(std::span<const std::byte> pkt, Ip4 src,
                           std::span<std::byte> out) noexcept;

// The in-kernel fast path's announcement to a peer (kernel::UdpFastPath::announce()): an ICMP
// echo reply (id 0x666c, "flannel!") from our TUN address to the peer's, TTL 64. A valid packet
// in flannel's format that every peer's kernel drops quietly (a reply nobody asked for).
inline constexpr size_t kAnnouncementLen = 20 + 8 + 8;
std::array<std::byte, kAnnouncementLen> buildAnnouncement(Ip4 src, Ip4 dst) noexcept;

// The routing snapshot the workers read: peer subnets → PublicIP, plus the addresses that may
// send to us. Immutable once built; a new one is published for every lease change.
class RouteTable {
 public:
  struct Entry {
    Ip4 network{};
    uint8_t prefix_len = 0;
    Ip4 peer{};  // the peer's PublicIP
  };
  RouteTable() = default;
  // `own`: our subnet (packets from peers must be for it). Leases never overlap; should two
  // entries do so anyway, the larger one wins and the one nested in it is dropped.
  RouteTable(Ip4 own_network, uint8_t own_prefix, std::vector<Entry> entries);

  // The peer whose subnet holds `dst`, or nullptr.
  const Ip4* lookup(Ip4 dst) const noexcept;
  bool isPeer(Ip4 addr) const noexcept;
  bool isOwn(Ip4 dst) const noexcept;
  size_t size() const noexcept { return entries_.size(); }

 private:
  std::vector<Entry> entries_;  // sorted by (network, prefix_len)
  std::vector<Ip4> peers_;      // sorted, unique
  uint32_t own_net_ = 0;
  uint32_t own_mask_ = 0;
  bool has_own_ = false;
};

struct EncapResult {
  Drop drop = Drop::None;
  Ip4 peer{};         // valid when drop == None
  size_t length = 0;  // bytes of the packet to send (the IPv4 total length)
};

// TUN → UDP for one plain IPv4 packet, in place (TTL − 1). A NoRoute result means the caller
// should write buildNetUnreachable() back into the TUN.
EncapResult encap(std::span<std::byte> pkt, const RouteTable& table) noexcept;

struct DecapResult {
  Drop drop = Drop::None;
  size_t length = 0;  // bytes to write to the TUN
};

// UDP → TUN for one datagram from `from`, in place (TTL − 1).
DecapResult decap(std::span<std::byte> dgram, Ip4 from, const RouteTable& table) noexcept;

// --- offloads ----------------------------------------------------------------------------

// How a super packet from the TUN (virtio header + IPv4 packet) is cut: `count` packets of
// `seg_len` bytes back to back in `out` (the last one `last_len`).
struct Segments {
  size_t count = 0;
  size_t seg_len = 0;
  size_t last_len = 0;
  size_t total() const noexcept { return count == 0 ? 0 : (count - 1) * seg_len + last_len; }
};

// Completes the checksum a NEEDS_CSUM packet left partial (csum_start/csum_offset), in place.
// False when the offsets do not fit the packet.
bool completeChecksum(std::span<std::byte> pkt, const kernel::VirtioNetHdr& h) noexcept;

// Cuts a TSO (TCPV4) or USO (UDP_L4) super packet `pkt` (IPv4, without the virtio header) into
// packets of at most hdr.gso_size payload bytes each, written back to back into `out`, with the
// IPv4 id incremented, lengths, TCP sequence numbers and flags (FIN/PSH only on the last, CWR
// only on the first) and all checksums filled in. Empty result for malformed input or when
// `out` is too small.
Segments segmentSuper(std::span<const std::byte> pkt, const kernel::VirtioNetHdr& hdr,
                      std::span<std::byte> out) noexcept;

// GRO for the TUN: appends TCP segment `seg` (a complete IPv4/TCP packet that passed decap) to
// the super packet being built when it continues the same flow
// (same addresses, ports, header options, next sequence number, same segment size, ACK only or
// ACK|PSH flags on the previous ones). Returns false when `seg` must start a new super packet.
class TcpCoalescer {
 public:
  // `buf`: room for up to 64 KiB.
  explicit TcpCoalescer(std::span<std::byte> buf) noexcept : buf_(buf) {}
  // Starts a new super packet with `seg`; false when seg is not coalescable TCP (caller
  // writes it on its own).
  bool start(std::span<const std::byte> seg) noexcept;
  bool append(std::span<const std::byte> seg) noexcept;
  bool active() const noexcept { return len_ != 0; }
  // The packet to write and its virtio header; resets the coalescer. A single segment comes
  // back unchanged with a header saying nothing (GSO none, checksums complete).
  std::span<const std::byte> finish(kernel::VirtioNetHdr& hdr) noexcept;
  size_t segments() const noexcept { return count_; }

 private:
  std::span<std::byte> buf_;
  size_t len_ = 0;      // bytes used in buf_
  size_t hdr_len_ = 0;  // IP + TCP header bytes
  size_t mss_ = 0;
  size_t count_ = 0;
  uint32_t next_seq_ = 0;
  bool last_short_ = false;
};

}  // namespace flannel::backend::udp
