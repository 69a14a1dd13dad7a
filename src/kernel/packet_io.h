// DOC: the packet I/O seam of the udp data path (DESIGN.md seam 6): a TUN queue and a UDP
// socket, both as batch interfaces in the shape of wireguard-go's tun.Device and conn.Bind.
//
//   PacketIo::openTun("flannel%d", queues, offload)  -> TunDevice { name, queues[] }
//   PacketIo::openUdp(IfaceAddr, Port, sockets, gro) -> UdpBatchSocket[]
//
// Each worker thread owns one TunQueue and one UdpBatchSocket. Both are non-blocking for
// reading and expose a file descriptor that becomes readable when something is waiting, so a
// worker poll()s them together with its stop event. Data-path calls return counts or -errno and
// never throw or allocate (DESIGN.md error convention, "Data path"); opening returns Result with
// a message naming the device, address and port.
//
// Offloads (each optional, decided when opening; the data path asks what it got):
//   * TUN virtio-net header (IFF_VNET_HDR + TUNSETOFFLOAD): a read may return one TCP/UDP
//     "super packet" of up to 64 KiB that the worker segments (TSO/USO); a write may carry a
//     coalesced TCP packet that the kernel segments. Reads and writes then carry a
//     VirtioNetHdr next to the packet.
//   * UDP GSO (UDP_SEGMENT): one send carries many equal-sized datagrams (Datagram::segment).
//   * UDP GRO (UDP_GRO): one receive returns many datagrams of one sender back to back
//     (RecvSlot::segment says how long each is).
// Implementations: LinuxPacketIo (kernel/tun, /dev/net/tun and sockets) and the in-memory twins
// ChannelTun/ChannelUdp (tests/support/channel_io.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/ip.h"
#include "core/result.h"

namespace flannel::kernel {

// struct virtio_net_hdr (linux/virtio_net.h), host byte order as the TUN driver uses it for a
// little-endian host with TUNSETVNETLE unset. 10 bytes.
struct VirtioNetHdr {
  static constexpr uint8_t kFlagNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
  static constexpr uint8_t kFlagDataValid = 2;  // VIRTIO_NET_HDR_F_DATA_VALID
  static constexpr uint8_t kGsoNone = 0;        // VIRTIO_NET_HDR_GSO_NONE
  static constexpr uint8_t kGsoTcpV4 = 1;       // VIRTIO_NET_HDR_GSO_TCPV4
  static constexpr uint8_t kGsoUdpL4 = 5;       // VIRTIO_NET_HDR_GSO_UDP_L4
  static constexpr uint8_t kGsoEcn = 0x80;      // VIRTIO_NET_HDR_GSO_ECN
  uint8_t flags = 0;
  uint8_t gso_type = kGsoNone;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
};
inline constexpr size_t kVirtioNetHdrLen = 10;

class TunQueue {
 public:
  virtual ~TunQueue() = default;
  // Readable when at least one packet is waiting.
  virtual int pollFd() const = 0;
  // Reads one packet into `buf` and, when the device has offloads on, its virtio header into
  // `*hdr` (zeroed otherwise). Returns the packet length, 0 when nothing is waiting, or -errno.
  virtual long read(VirtioNetHdr* hdr, std::span<std::byte> buf) = 0;
  // Writes one packet; with offloads on, `hdr` goes in front (nullptr: a plain packet whose
  // checksums are complete). Returns 0 or -errno.
  virtual int write(const VirtioNetHdr* hdr, std::span<const std::byte> pkt) = 0;
};

struct TunDevice {
  std::string name{};     // what the kernel made of the template, e.g. "flannel0"
  bool vnet_hdr = false;  // reads and writes carry a VirtioNetHdr; TSO4 (and USO4) enabled
  bool uso = false;       // the kernel also hands us UDP super packets (TUN_F_USO4)
  std::vector<std::unique_ptr<TunQueue>> queues{};
};

struct Endpoint {
  Ip4 addr{};
  uint16_t port = 0;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// One send: `data` to `to`; with segment > 0 and GSO available, `data` is a run of datagrams of
// `segment` bytes each (the last may be shorter) that the kernel splits.
struct Datagram {
  Endpoint to{};
  std::span<const std::byte> data{};
  uint16_t segment = 0;
};

// One receive slot: the caller's buffer, filled with what arrived.
struct RecvSlot {
  std::span<std::byte> buf{};
  size_t len = 0;
  Endpoint from{};
  uint16_t segment = 0;  // GRO: datagrams of this size back to back; 0 = one datagram
};

class UdpBatchSocket {
 public:
  virtual ~UdpBatchSocket() = default;
  virtual int pollFd() const = 0;
  // Fills up to slots.size() slots without blocking; returns how many, 0 if none, or -errno.
  virtual int recv(std::span<RecvSlot> slots) = 0;
  // Sends all of `out` (blocking while the socket buffer is full). Returns how many the kernel
  // accepted: one refused because of a peer's ICMP error (ECONNREFUSED, EHOSTUNREACH,
  // ENETUNREACH) is skipped and the rest still go; -errno when the first one failed otherwise.
  virtual int send(std::span<const Datagram> out) = 0;
  virtual bool gso() const = 0;  // Datagram::segment is honoured
  virtual bool gro() const = 0;  // RecvSlot::segment may be set
  // The group spreads a peer's datagrams over its sockets by the inner packet's flow.
  virtual bool steered() const { return false; }
  // Whether the kernel may merge this socket's datagrams (UDP_GRO), switched while the socket
  // is in use: the in-kernel fast path needs them unmerged. Returns whether the switch took
  // (false where the socket has no GRO). RecvSlot::segment is then simply never set.
  virtual bool setKernelGro(bool on) {
    (void)on;
    return false;
  }
};

struct TunOptions {
  std::string name_template = "flannel%d";
  unsigned queues = 1;  // > 1 needs IFF_MULTI_QUEUE; falls back to 1 when refused
  bool offload = true;  // try IFF_VNET_HDR + TSO; falls back to plain packets
};

struct UdpOptions {
  Endpoint bind{};
  unsigned sockets = 1;  // SO_REUSEPORT group of this size, steered by inner flow when > 1
  bool offload = true;   // try UDP_SEGMENT and UDP_GRO
};

// The udp backend's in-kernel fast path (on Linux: tc BPF programs, kernel/tun/tc_path.h). It
// carries, in the kernel, the packets the user-space workers would carry, in the same wire
// format, and leaves everything else to them.
struct UdpFastPathOptions {
  Ip4 local_ip{};  // the UDP socket's address (outer source; datagrams to it are decapsulated)
  uint16_t port = 8285;
  int ext_ifindex = 0;  // the external interface
  int tun_ifindex = 0;  // the TUN device
  // The external interface is virtual (veth, bridge, ...: Link::kind set) and may not complete
  // the TCP/UDP checksums senders leave to the device; TCP/UDP then goes through the kernel only
  // to peers that announce a kernel decap (announce()), to the others through user space, which
  // completes the checksums (see bpf/udp_tc.bpf.c).
  bool virtual_ext = false;
  // Attach as classic tc filters (clsact) instead of tcx links: for kernels before 6.6, which
  // have no tcx (chosen automatically there), or forced. Filters outlive a killed process.
  bool legacy_tc = false;
};

struct UdpFastPathRoute {
  Ip4 network{};
  uint8_t prefix_len = 0;
  Ip4 peer{};  // the PublicIP holding the lease
  bool operator==(const UdpFastPathRoute&) const = default;
};

struct UdpFastPathStats {
  uint64_t tx_packets = 0;  // datagrams encapsulated in the kernel (GSO segments counted)
  uint64_t tx_bytes = 0;
  uint64_t rx_packets = 0;  // datagrams decapsulated in the kernel
  uint64_t rx_bytes = 0;
};

class UdpFastPath {
 public:
  virtual ~UdpFastPath() = default;  // detaches
  // Our subnet (decapsulated packets must be for it and not from it); until then the fast path
  // takes nothing.
  virtual Result<void> enable(Ip4 own_network, uint8_t own_prefix) = 0;
  // The peers: the kernel's tables are brought to exactly these entries. On an error the
  // entries in question stay with user space and the next call retries them.
  virtual Result<void> setPeers(const std::vector<UdpFastPathRoute>& routes) = 0;
  virtual UdpFastPathStats stats() const = 0;
  // Sends `datagram` to peer:Port with UDP checksum 0, which only the fast path sends: how a
  // host tells peers on a virtual link (UdpFastPathOptions::virtual_ext) that its kernel
  // decapsulates, so that they send it TCP/UDP through their kernel too (bpf/udp_tc.bpf.c).
  virtual Result<void> announce(Ip4 peer, std::span<const std::byte> datagram) = 0;
};

class PacketIo {
 public:
  virtual ~PacketIo() = default;
  // Creates the TUN device (non-persistent: it goes away with the last queue). IFF_TUN |
  // IFF_NO_PI as flannel does, plus the optional offloads.
  virtual Result<TunDevice> openTun(const TunOptions& opts) = 0;
  virtual Result<std::vector<std::unique_ptr<UdpBatchSocket>>> openUdp(const UdpOptions& opts) = 0;
  // Attaches the in-kernel fast path. Errc::Unavailable (naming what is missing) where there is
  // none; the default.
  virtual Result<std::unique_ptr<UdpFastPath>> attachUdpFastPath(const UdpFastPathOptions& opts) {
    (void)opts;
    return makeError(Errc::Unavailable, "no in-kernel fast path on this PacketIo");
  }
};

}  // namespace flannel::kernel
