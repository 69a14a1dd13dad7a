// The udp backend's in-kernel fast path (tc BPF; loaded by kernel/tun/tc_path.cc). It moves the
// packets the user-space data path would move, in the same wire format (SPEC §5.3: the bare
// inner IPv4 packet is the payload of a UDP datagram from Port to Port), without copying them
// to user space:
//
//   flannel_udp_encap  (egress of the TUN device): an IPv4 packet whose destination is in a
//       peer's subnet gets its TTL decremented, an outer IPv4 + UDP header pushed in front, and
//       is redirected to the device the routing table names for the peer's PublicIP (neighbour
//       resolved by the kernel). A TCP super packet (TSO) is encapsulated once, as one UDP
//       tunnel GSO packet that crosses a veth underlay whole (checked with the interface
//       counters: ~45-48 kB per packet, as vxlan's) and is cut into datagrams where a device
//       cannot segment UDP tunnel packets (in software, as for vxlan). bpf_skb_adjust_room marks
//       it SKB_GSO_DODGY; devices without NETIF_F_GSO_ROBUST (veth, most NICs) only have the
//       kernel recount its segments (tcp_gso_segment), they do not cut it.
//   flannel_udp_decap  (ingress of the external interface): a datagram to our address and Port
//       from an address holding a lease, carrying a well-formed IPv4 packet for our subnet, loses
//       its outer headers, gets the inner TTL decremented and enters the stack through the TUN
//       device, as if user space had written it there.
//
// Everything else (no lease, TTL about to expire, IP options, UDP super packets, malformed or
// suspicious datagrams, fragments) is passed on unchanged, so user space sees it exactly as
// without this program and drops, counts or answers it (ICMP) the same way. The outer UDP
// checksum is 0 (allowed for IPv4, RFC 768; Go flannel's socket accepts it, as Linux vxlan
// does by default); the inner IPv4 header checksum is checked before a packet is taken.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Shared with tc_path.cc (same layout, all fields in network byte order where they are
// addresses or ports).
struct flannel_udp_config {
  __u32 local_ip;     // our external address (outer source, decap destination)
  __u32 own_net;      // our subnet
  __u32 own_mask;     // and its mask
  __u32 ext_ifindex;  // the external interface (where the route lookup starts)
  __u32 tun_ifindex;  // where decapsulated packets enter
  __u16 port;         // UDP port, both ends
  __u16 enabled;      // 0 until user space has filled the rest
  __u32 flags;        // FLANNEL_UDP_*
};

// The external interface is virtual (veth, bridge, ...): what leaves it may reach a peer on the
// same machine without ever being finished by a NIC. A TCP/UDP packet whose checksum the sender
// left to the device (CHECKSUM_PARTIAL) would arrive with that checksum unfinished, and so would
// the segments the kernel cuts from a TCP super packet on the way out (or the super packet
// itself, where it is not cut); a peer that decapsulates in user space (Go flannel, or ours
// without these programs) reads them from its socket as they are, and its kernel drops them. A
// program cannot finish checksums, so TCP and UDP packets go to user space (which completes
// them) unless the peer decapsulates in its kernel too (flannel_udp_kernel_peers), where the
// checksum state travels with the packet. ICMP is always complete.
#define FLANNEL_UDP_L4_IN_USER_SPACE 1

// A peer that sent us a datagram with UDP checksum 0 within this time runs these programs: only
// they, and their user space's announcements (tc_path.cc), send 0 (a kernel UDP socket, which Go
// flannel uses, always fills it in), and the programs are attached together, so its decap
// program takes what we send. Announcements go out every second.
#define FLANNEL_UDP_KERNEL_PEER_NS (5ull * 1000000000ull)
#define FLANNEL_UDP_KERNEL_PEER_REFRESH_NS 1000000000ull

struct flannel_udp_lpm_key {
  __u32 prefixlen;
  __u32 addr;
};

struct flannel_udp_stats {
  __u64 tx_packets;  // datagrams (GSO segments counted) encapsulated
  __u64 tx_bytes;    // outer bytes
  __u64 rx_packets;  // datagrams decapsulated
  __u64 rx_bytes;    // outer bytes (without Ethernet)
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct flannel_udp_config);
} flannel_udp_cfg SEC(".maps");

// Peer subnet -> the peer's PublicIP.
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, 65536);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct flannel_udp_lpm_key);
  __type(value, __u32);
} flannel_udp_routes SEC(".maps");

// PublicIP of a lease holder -> number of its leases.
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, __u32);
} flannel_udp_peers SEC(".maps");

// PublicIP -> bpf_ktime_get_coarse_ns() of its last datagram with UDP checksum 0 (refreshed at
// most once a second). The coarse clock is the last tick's time (good to a few ms) and reads no
// clock source, which the encap does for every TCP/UDP packet on a virtual external link.
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, __u64);
} flannel_udp_kernel_peers SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct flannel_udp_stats);
} flannel_udp_stats SEC(".maps");

#define OUTER_LEN (sizeof(struct iphdr) + sizeof(struct udphdr))
#define IP_MF 0x2000
#define IP_OFFMASK 0x1fff
#define IP_DF 0x4000

// The config when the fast path is enabled and `skb` is IPv4; otherwise 0 (leave it alone).
static __always_inline struct flannel_udp_config* config(struct __sk_buff* skb) {
  if (skb->protocol != bpf_htons(ETH_P_IP)) {
    return 0;
  }
  __u32 k = 0;
  struct flannel_udp_config* c = bpf_map_lookup_elem(&flannel_udp_cfg, &k);
  return c && c->enabled ? c : 0;
}

static __always_inline __u16 fold(__u64 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)~sum;
}

// The folded one's complement checksum of a 20-byte IPv4 header: the value for its check field
// when that is 0, and 0 when the header's checksum is right.
static __always_inline __u16 ipv4_checksum(const struct iphdr* ip) {
  const __u16* w = (const __u16*)ip;
  __u64 sum = 0;
#pragma unroll
  for (int i = 0; i < 10; ++i) {
    sum += w[i];
  }
  return fold(sum);
}

// Adds to this CPU's counters: the transmit side (tx) or the receive side.
static __always_inline void count(int tx, __u32 packets, __u32 bytes) {
  __u32 k = 0;
  struct flannel_udp_stats* s = bpf_map_lookup_elem(&flannel_udp_stats, &k);
  if (!s) {
    return;
  }
  if (tx) {
    s->tx_packets += packets;
    s->tx_bytes += bytes;
  } else {
    s->rx_packets += packets;
    s->rx_bytes += bytes;
  }
}

static __always_inline __u32 segments(struct __sk_buff* skb) {
  return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

// TTL - 1 in the IPv4 header at `off` (whose TTL and protocol were `ttl` and `proto`), with the
// header checksum updated.
static __always_inline int decrement_ttl(struct __sk_buff* skb, __u32 off, __u8 ttl, __u8 proto) {
  const __u16 old = bpf_htons(((__u16)ttl << 8) | proto);
  const __u16 now = bpf_htons(((__u16)(ttl - 1) << 8) | proto);
  const __u8 lower = ttl - 1;
  if (bpf_skb_store_bytes(skb, off + offsetof(struct iphdr, ttl), &lower, 1, 0) < 0) {
    return -1;
  }
  return bpf_l3_csum_replace(skb, off + offsetof(struct iphdr, check), old, now, 2);
}

SEC("tc")
int flannel_udp_encap(struct __sk_buff* skb) {
  struct flannel_udp_config* c = config(skb);
  if (!c) {
    return TC_ACT_OK;
  }
  if (skb->len + OUTER_LEN > 0xffff) {
    return TC_ACT_OK;
  }
  void* data = (void*)(long)skb->data;
  void* end = (void*)(long)skb->data_end;
  struct iphdr* ip = data;
  if ((void*)(ip + 1) > end) {
    if (bpf_skb_pull_data(skb, sizeof(*ip)) < 0) {
      return TC_ACT_OK;
    }
    data = (void*)(long)skb->data;
    end = (void*)(long)skb->data_end;
    ip = data;
    if ((void*)(ip + 1) > end) {
      return TC_ACT_OK;
    }
  }
  if (ip->version != 4 || ip->ihl < 5 || ip->ttl <= 1) {
    return TC_ACT_OK;  // user space drops and counts these
  }
  const int l4 = ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP;
  struct flannel_udp_lpm_key key = {.prefixlen = 32, .addr = ip->daddr};
  __u32* peer_ptr = bpf_map_lookup_elem(&flannel_udp_routes, &key);
  if (!peer_ptr) {
    return TC_ACT_OK;  // no lease: user space answers with ICMP net unreachable
  }
  const __u32 peer = *peer_ptr;
  if ((c->flags & FLANNEL_UDP_L4_IN_USER_SPACE) && l4) {
    __u64* seen = bpf_map_lookup_elem(&flannel_udp_kernel_peers, &peer);
    if (!seen || bpf_ktime_get_coarse_ns() - *seen > FLANNEL_UDP_KERNEL_PEER_NS) {
      return TC_ACT_OK;
    }
  }
  // The length of each datagram on the wire: one per GSO segment (inner headers + gso_size).
  // The route lookup below compares it with the path MTU, which includes what ICMP
  // "fragmentation needed" taught the kernel about the way to the peer.
  __u32 wire_len = skb->len;
  if (skb->gso_size != 0) {
    if (ip->protocol != IPPROTO_TCP) {
      return TC_ACT_OK;  // UDP super packets: user space cuts them
    }
    const __u32 ihl = ip->ihl * 4;
    __u8* tcp = (__u8*)ip + ihl;
    if ((void*)(tcp + 13) > end) {
      return TC_ACT_OK;
    }
    wire_len = ihl + (tcp[12] >> 4) * 4 + skb->gso_size;
  }
  wire_len += OUTER_LEN;
  if (wire_len > 0xffff) {
    return TC_ACT_OK;
  }
  const __u32 local = c->local_ip;
  const __u16 port = c->port;
  // The device the routing table sends the datagram out of, as for user space's socket (the
  // lookup starts from the external interface; a missing neighbour entry is resolved by
  // bpf_redirect_neigh). No usable route: user space tries, and counts the error.
  struct bpf_fib_lookup fib = {
      .family = 2,  // AF_INET
      .l4_protocol = IPPROTO_UDP,
      .sport = port,
      .dport = port,
      .ipv4_src = local,
      .ipv4_dst = peer,
      .tot_len = wire_len,
      .ifindex = c->ext_ifindex,
  };
  const long route = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
  if (route != BPF_FIB_LKUP_RET_SUCCESS && route != BPF_FIB_LKUP_RET_NO_NEIGH) {
    // Also BPF_FIB_LKUP_RET_FRAG_NEEDED: the datagrams would not fit the path MTU with DF set;
    // user space's socket sends them and the kernel fragments them, as for Go flannel.
    return TC_ACT_OK;
  }
  const __u32 out_ifindex = fib.ifindex;
  // The lookup left the next hop (the gateway, or the peer itself on a shared link) in
  // ipv4_dst, also when the neighbour is not known yet: handing it to bpf_redirect_neigh saves
  // the kernel a second route lookup per packet.
  struct bpf_redir_neigh next_hop = {.nh_family = 2 /* AF_INET */, .ipv4_nh = fib.ipv4_dst};
  const __u8 ttl = ip->ttl;
  const __u8 proto = ip->protocol;
  // Room first: where the kernel cannot encapsulate (a UDP super packet, say), the packet goes
  // to user space untouched.
  const __u64 flags =
      BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
  const __u32 segs = segments(skb);  // adjust_room resets gso_segs
  if (bpf_skb_adjust_room(skb, OUTER_LEN, BPF_ADJ_ROOM_MAC, flags) < 0) {
    return TC_ACT_OK;
  }
  if (decrement_ttl(skb, OUTER_LEN, ttl, proto) < 0) {
    return TC_ACT_SHOT;
  }
  struct {
    struct iphdr ip;
    struct udphdr udp;
  } outer = {};
  const __u32 len = skb->len;
  outer.ip.version = 4;
  outer.ip.ihl = 5;
  outer.ip.tot_len = bpf_htons(len);
  outer.ip.frag_off = bpf_htons(IP_DF);
  outer.ip.ttl = 64;
  outer.ip.protocol = IPPROTO_UDP;
  outer.ip.saddr = local;
  outer.ip.daddr = peer;
  outer.ip.check = ipv4_checksum(&outer.ip);
  outer.udp.source = port;
  outer.udp.dest = port;
  outer.udp.len = bpf_htons(len - sizeof(struct iphdr));
  outer.udp.check = 0;
  if (bpf_skb_store_bytes(skb, 0, &outer, sizeof(outer), 0) < 0) {
    return TC_ACT_SHOT;
  }
  // bpf_redirect_neigh() wants an Ethernet header in front (it removes it and lets the
  // neighbour subsystem write the real one); the TUN device gave us none.
  if (bpf_skb_change_head(skb, sizeof(struct ethhdr), 0) < 0) {
    return TC_ACT_SHOT;
  }
  const struct ethhdr eth = {.h_proto = bpf_htons(ETH_P_IP)};
  if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0) {
    return TC_ACT_SHOT;
  }
  count(1, segs, len);
  return bpf_redirect_neigh(out_ifindex, &next_hop, sizeof(next_hop), 0);
}

SEC("tc")
int flannel_udp_decap(struct __sk_buff* skb) {
  struct flannel_udp_config* c = config(skb);
  if (!c) {
    return TC_ACT_OK;
  }
  const __u32 need = sizeof(struct ethhdr) + OUTER_LEN + sizeof(struct iphdr);
  void* data = (void*)(long)skb->data;
  void* end = (void*)(long)skb->data_end;
  if (data + need > end) {
    if (skb->len < need || bpf_skb_pull_data(skb, need) < 0) {
      return TC_ACT_OK;
    }
    data = (void*)(long)skb->data;
    end = (void*)(long)skb->data_end;
    if (data + need > end) {
      return TC_ACT_OK;
    }
  }
  struct ethhdr* eth = data;
  if (eth->h_proto != bpf_htons(ETH_P_IP)) {
    return TC_ACT_OK;
  }
  struct iphdr* outer = (void*)(eth + 1);
  if (outer->version != 4 || outer->ihl != 5 || outer->protocol != IPPROTO_UDP ||
      (outer->frag_off & bpf_htons(IP_MF | IP_OFFMASK)) || outer->daddr != c->local_ip) {
    return TC_ACT_OK;
  }
  struct udphdr* udp = (void*)(outer + 1);
  if (udp->dest != c->port) {
    return TC_ACT_OK;
  }
  const __u32 from = outer->saddr;
  if (!bpf_map_lookup_elem(&flannel_udp_peers, &from)) {
    return TC_ACT_OK;  // no lease: user space drops and counts it (unknown_source)
  }
  struct iphdr* inner = (void*)(udp + 1);
  if (inner->version != 4 || inner->ihl != 5 || inner->ttl <= 1 ||
      bpf_ntohs(udp->len) != sizeof(struct udphdr) + bpf_ntohs(inner->tot_len) ||
      bpf_ntohs(outer->tot_len) != sizeof(struct iphdr) + bpf_ntohs(udp->len) ||
      skb->len < sizeof(struct ethhdr) + bpf_ntohs(outer->tot_len) ||
      (inner->daddr & c->own_mask) != c->own_net || (inner->saddr & c->own_mask) == c->own_net) {
    return TC_ACT_OK;
  }
  if (ipv4_checksum(inner) != 0) {
    return TC_ACT_OK;  // bad header checksum: user space counts it as malformed
  }
  const __u32 outer_len = bpf_ntohs(outer->tot_len);
  const __u32 tun = c->tun_ifindex;
  const int kernel_sender = (c->flags & FLANNEL_UDP_L4_IN_USER_SPACE) && udp->check == 0;
  const __u32 inner_off = sizeof(struct ethhdr) + OUTER_LEN;
  if (decrement_ttl(skb, inner_off, inner->ttl, inner->protocol) < 0) {
    return TC_ACT_SHOT;
  }
  const __u32 segs = segments(skb);  // adjust_room resets gso_segs
  if (bpf_skb_adjust_room(skb, -(__s32)OUTER_LEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO) < 0) {
    return TC_ACT_SHOT;
  }
  count(0, segs, outer_len);
  if (kernel_sender) {
    const __u64 now = bpf_ktime_get_coarse_ns();
    __u64* seen = bpf_map_lookup_elem(&flannel_udp_kernel_peers, &from);
    if (!seen || now - *seen > FLANNEL_UDP_KERNEL_PEER_REFRESH_NS) {
      bpf_map_update_elem(&flannel_udp_kernel_peers, &from, &now, BPF_ANY);
    }
  }
  return bpf_redirect(tun, BPF_F_INGRESS);
}

char LICENSE[] SEC("license") = "GPL";
