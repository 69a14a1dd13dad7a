#include "kernel/netlink/netlink_kernel.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <netlink/addr.h>
#include <netlink/attr.h>
#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/object.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>

#include "core/log.h"

namespace flannel::kernel {

namespace {

using namespace std::chrono_literals;

// No single exchange waits longer than this for the kernel (it always answers; this only
// bounds a wedged socket).
constexpr auto kExchangeTimeout = 10s;
constexpr int kSocketBufferBytes = 1 << 20;
constexpr std::chrono::microseconds kDumpBackoffFirst{500};
constexpr std::chrono::microseconds kDumpBackoffCap{8000};

// RAII for libnl's reference-counted objects.
template <auto Fn>
struct Put {
  template <class T>
  void operator()(T* p) const noexcept {
    if (p != nullptr) {
      Fn(p);
    }
  }
};
using MsgPtr = std::unique_ptr<nl_msg, Put<nlmsg_free>>;
using AddrPtr = std::unique_ptr<nl_addr, Put<nl_addr_put>>;
using LinkPtr = std::unique_ptr<rtnl_link, Put<rtnl_link_put>>;
using RtAddrPtr = std::unique_ptr<rtnl_addr, Put<rtnl_addr_put>>;
using RoutePtr = std::unique_ptr<rtnl_route, Put<rtnl_route_put>>;
using NeighPtr = std::unique_ptr<rtnl_neigh, Put<rtnl_neigh_put>>;
using CbPtr = std::unique_ptr<nl_cb, Put<nl_cb_put>>;

int familyOf(const IpAddr& ip) {
  return ip.is4() ? AF_INET : AF_INET6;
}

int familyOf(Family f) {
  return f == Family::V4 ? AF_INET : AF_INET6;
}

AddrPtr toNl(const IpAddr& ip, std::optional<uint8_t> prefix = std::nullopt) {
  nl_addr* a = nullptr;
  if (ip.is4()) {
    const auto b = ip.v4().bytes();
    a = nl_addr_build(AF_INET, b.data(), b.size());
  } else {
    const auto& b = ip.v6().bytes();
    a = nl_addr_build(AF_INET6, b.data(), b.size());
  }
  if (a != nullptr) {
    nl_addr_set_prefixlen(a, prefix.value_or(IpNet::maxPrefix(ip.family())));
  }
  return AddrPtr(a);
}

AddrPtr toNl(const Mac& mac) {
  return AddrPtr(nl_addr_build(AF_LLC, mac.bytes().data(), mac.bytes().size()));
}

// The address in `a`, by length (AF_BRIDGE entries carry AF_UNSPEC/AF_BRIDGE families).
std::optional<IpAddr> fromNl(nl_addr* a) {
  if (a == nullptr) {
    return std::nullopt;
  }
  const auto* data = static_cast<const uint8_t*>(nl_addr_get_binary_addr(a));
  switch (nl_addr_get_len(a)) {
    case 4:
      return IpAddr(Ip4::fromBytes(data[0], data[1], data[2], data[3]));
    case 16: {
      Ip6::Bytes b{};
      std::memcpy(b.data(), data, b.size());
      return IpAddr(Ip6(b));
    }
    default:
      return std::nullopt;
  }
}

// An all-zero address of `family`, for a route without RTA_DST (the default route).
IpAddr zeroOf(int family) {
  return family == AF_INET6 ? IpAddr(Ip6()) : IpAddr(Ip4());
}

std::optional<Mac> macFromNl(nl_addr* a) {
  if (a == nullptr || nl_addr_get_len(a) != 6) {
    return std::nullopt;
  }
  Mac::Bytes b{};
  std::memcpy(b.data(), nl_addr_get_binary_addr(a), b.size());
  return Mac(b);
}

std::string nlError(int nlerr) {
  return nl_geterror(nlerr);
}

// Socket-level libnl failures carry NLE_* codes, not errnos; EIO plus libnl's text is the most
// honest errno for them.
constexpr int kSocketErrno = EIO;

bool isAbsentErrno(int err) {
  return err == ENOENT || err == ESRCH || err == ENODEV || err == EADDRNOTAVAIL || err == ENXIO;
}

// --- libnl object -> value ------------------------------------------------------------------

bool hasType(nl_object* obj, const char* type) {
  const char* t = nl_object_get_type(obj);
  return t != nullptr && std::strcmp(t, type) == 0;
}

std::optional<Link> toLink(nl_object* obj) {
  if (!hasType(obj, "route/link")) {
    return std::nullopt;
  }
  auto* l = reinterpret_cast<rtnl_link*>(obj);
  Link link;
  link.index = rtnl_link_get_ifindex(l);
  if (const char* name = rtnl_link_get_name(l)) {
    link.name = name;
  }
  if (const char* kind = rtnl_link_get_type(l)) {
    link.kind = kind;
  }
  link.mac = macFromNl(rtnl_link_get_addr(l)).value_or(Mac());
  link.mtu = rtnl_link_get_mtu(l);
  const unsigned int flags = rtnl_link_get_flags(l);
  link.up = (flags & IFF_UP) != 0;
  link.lower_up = (flags & IFF_LOWER_UP) != 0;
  if (link.kind == "vxlan" && rtnl_link_is_vxlan(l)) {
    VxlanInfo v;
    uint32_t u = 0;
    if (rtnl_link_vxlan_get_id(l, &u) == 0) {
      v.vni = u;
    }
    if (rtnl_link_vxlan_get_link(l, &u) == 0) {
      v.underlay_ifindex = static_cast<int>(u);
    }
    if (rtnl_link_vxlan_get_port(l, &u) == 0) {
      v.port = static_cast<uint16_t>(u);
    }
    nl_addr* a = nullptr;
    if (rtnl_link_vxlan_get_local(l, &a) == 0) {
      AddrPtr owned(a);
      v.local = fromNl(a);
      if (v.local && addrValue(*v.local) == 0) {
        v.local.reset();  // the kernel reports 0.0.0.0 / :: for "no local address"
      }
    }
    a = nullptr;
    if (rtnl_link_vxlan_get_group(l, &a) == 0) {
      AddrPtr owned(a);
      v.group = fromNl(a);
      if (v.group && addrValue(*v.group) == 0) {
        v.group.reset();
      }
    }
    v.learning = rtnl_link_vxlan_get_learning(l) > 0;
    v.l2miss = rtnl_link_vxlan_get_l2miss(l) > 0;
    uint32_t vflags = 0;
    if (rtnl_link_vxlan_get_flags(l, &vflags) == 0) {
      v.gbp = (vflags & RTNL_LINK_VXLAN_F_GBP) != 0;
    }
    link.vxlan = v;
  }
  return link;
}

std::optional<Addr> toAddr(nl_object* obj) {
  if (!hasType(obj, "route/addr")) {
    return std::nullopt;
  }
  auto* a = reinterpret_cast<rtnl_addr*>(obj);
  auto local = fromNl(rtnl_addr_get_local(a));
  if (!local) {
    return std::nullopt;
  }
  return Addr{.ifindex = rtnl_addr_get_ifindex(a),
              .address = *local,
              .prefix_len = static_cast<uint8_t>(rtnl_addr_get_prefixlen(a))};
}

std::optional<Route> toRoute(nl_object* obj) {
  if (!hasType(obj, "route/route")) {
    return std::nullopt;
  }
  auto* r = reinterpret_cast<rtnl_route*>(obj);
  const int family = rtnl_route_get_family(r);
  if (family != AF_INET && family != AF_INET6) {
    return std::nullopt;
  }
  nl_addr* dst = rtnl_route_get_dst(r);
  const uint8_t plen = dst != nullptr ? static_cast<uint8_t>(nl_addr_get_prefixlen(dst)) : 0;
  const IpAddr dst_ip = fromNl(dst).value_or(zeroOf(family));
  Route route;
  route.dst = IpNet::masked(dst_ip, plen);
  route.table = rtnl_route_get_table(r);
  route.protocol = rtnl_route_get_protocol(r);
  route.scope = rtnl_route_get_scope(r);
  route.type = rtnl_route_get_type(r);
  const uint32_t prio = rtnl_route_get_priority(r);
  if (prio != (family == AF_INET6 ? kIpv6DefaultMetric : 0)) {
    route.metric = prio;
  }
  route.src = fromNl(rtnl_route_get_pref_src(r));
  if (rtnl_route_get_nnexthops(r) > 0) {
    rtnl_nexthop* nh = rtnl_route_nexthop_n(r, 0);
    route.ifindex = rtnl_route_nh_get_ifindex(nh);
    route.via = fromNl(rtnl_route_nh_get_gateway(nh));
    route.onlink = (rtnl_route_nh_get_flags(nh) & RTNH_F_ONLINK) != 0;
  }
  if ((rtnl_route_get_flags(r) & RTNH_F_ONLINK) != 0) {
    route.onlink = true;
  }
  return route;
}

std::optional<Neigh> toNeigh(nl_object* obj) {
  if (!hasType(obj, "route/neigh")) {
    return std::nullopt;
  }
  auto* n = reinterpret_cast<rtnl_neigh*>(obj);
  const int family = rtnl_neigh_get_family(n);
  if ((family != AF_INET && family != AF_INET6) || (rtnl_neigh_get_flags(n) & NTF_PROXY) != 0) {
    return std::nullopt;
  }
  auto dst = fromNl(rtnl_neigh_get_dst(n));
  if (!dst) {
    return std::nullopt;
  }
  const int state = rtnl_neigh_get_state(n);
  return Neigh{.ifindex = rtnl_neigh_get_ifindex(n),
               .dst = *dst,
               .lladdr = macFromNl(rtnl_neigh_get_lladdr(n)).value_or(Mac()),
               .permanent = state >= 0 && (state & NUD_PERMANENT) != 0};
}

std::optional<Fdb> toFdb(nl_object* obj) {
  if (!hasType(obj, "route/neigh")) {
    return std::nullopt;
  }
  auto* n = reinterpret_cast<rtnl_neigh*>(obj);
  if (rtnl_neigh_get_family(n) != AF_BRIDGE) {
    return std::nullopt;
  }
  auto dst = fromNl(rtnl_neigh_get_dst(n));
  auto mac = macFromNl(rtnl_neigh_get_lladdr(n));
  if (!dst || !mac) {
    return std::nullopt;
  }
  const int state = rtnl_neigh_get_state(n);
  return Fdb{.ifindex = rtnl_neigh_get_ifindex(n),
             .mac = *mac,
             .dst = *dst,
             .permanent = state >= 0 && (state & NUD_PERMANENT) != 0};
}

// --- the exchange ---------------------------------------------------------------------------

struct ExchangeState {
  uint32_t seq = 0;
  bool done = false;
  int err = 0;
  std::string extack;
  bool interrupted = false;
  const std::function<void(nl_object*)>* on_object = nullptr;
};

bool ours(nl_msg* msg, const ExchangeState& st) {
  return nlmsg_hdr(msg)->nlmsg_seq == st.seq;
}

// Replaces libnl's sequence check: answers to an earlier request that was abandoned (a timeout)
// are skipped instead of failing this one.
int onSeqCheck(nl_msg* msg, void* arg) {
  return ours(msg, *static_cast<ExchangeState*>(arg)) ? NL_OK : NL_SKIP;
}

int onDumpIntr(nl_msg* msg, void* arg) {
  auto& st = *static_cast<ExchangeState*>(arg);
  if (ours(msg, st)) {
    st.interrupted = true;
  }
  return NL_OK;  // keep reading to the end of the dump; dump() repeats it
}

void onParsed(nl_object* obj, void* arg) {
  const auto& st = *static_cast<ExchangeState*>(arg);
  if (st.on_object != nullptr && *st.on_object) {
    (*st.on_object)(obj);
  }
}

int onValid(nl_msg* msg, void* arg) {
  // Message types libnl has no parser for (none expected) are ignored.
  (void)nl_msg_parse(msg, &onParsed, arg);
  return NL_OK;
}

int onAck(nl_msg* /*msg*/, void* arg) {
  static_cast<ExchangeState*>(arg)->done = true;
  return NL_STOP;
}

// The NLMSGERR_ATTR_MSG string of an extended ACK whose attributes start `offset` bytes into
// the message, if the kernel sent one.
std::string extackText(const nlmsghdr* hdr, size_t offset) {
  if ((hdr->nlmsg_flags & NLM_F_ACK_TLVS) == 0) {
    return {};
  }
  const auto* base = reinterpret_cast<const uint8_t*>(hdr);
  size_t pos = NLMSG_ALIGN(offset);
  while (pos + NLA_HDRLEN <= hdr->nlmsg_len) {
    const auto* attr = reinterpret_cast<const nlattr*>(base + pos);
    if (attr->nla_len < NLA_HDRLEN || pos + attr->nla_len > hdr->nlmsg_len) {
      break;
    }
    if ((attr->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
      const char* text = reinterpret_cast<const char*>(base + pos + NLA_HDRLEN);
      const size_t len = strnlen(text, attr->nla_len - NLA_HDRLEN);
      return std::string(text, len);
    }
    pos += NLA_ALIGN(attr->nla_len);
  }
  return {};
}

// NLMSG_DONE ends a dump. Its payload is an int: a dump that failed when it started (a request
// the kernel rejected) ends with DONE carrying -errno, which libnl ignores; it must not read as
// an empty table.
int onFinish(nl_msg* msg, void* arg) {
  auto& st = *static_cast<ExchangeState*>(arg);
  const nlmsghdr* hdr = nlmsg_hdr(msg);
  if (hdr->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) {
    int status = 0;
    std::memcpy(&status, NLMSG_DATA(hdr), sizeof status);
    if (status < 0) {
      st.err = -status;
      st.extack = extackText(hdr, NLMSG_LENGTH(sizeof(int)));
    }
  }
  st.done = true;
  return NL_STOP;
}

int onError(sockaddr_nl* /*nla*/, nlmsgerr* err, void* arg) {
  auto& st = *static_cast<ExchangeState*>(arg);
  const auto* hdr =
      reinterpret_cast<const nlmsghdr*>(reinterpret_cast<const uint8_t*>(err) - NLMSG_HDRLEN);
  if (hdr->nlmsg_seq != st.seq) {
    return NL_SKIP;
  }
  st.err = -err->error;
  size_t offset = NLMSG_HDRLEN + sizeof(nlmsgerr);
  if ((hdr->nlmsg_flags & NLM_F_CAPPED) == 0) {
    offset += err->msg.nlmsg_len - NLMSG_HDRLEN;  // the echoed request's payload
  }
  st.extack = extackText(hdr, offset);
  st.done = true;
  return NL_STOP;
}

// A dump request with the full header of its message type (not just an rtgenmsg): the
// kernel's legacy parser for AF_BRIDGE neighbour dumps rejects anything shorter than an ndmsg,
// and the full headers say "no filter" to every other dump.
nl_msg* dumpRequest(int type, int family) {
  nl_msg* msg = nlmsg_alloc_simple(type, NLM_F_DUMP);
  if (msg == nullptr) {
    return nullptr;
  }
  const auto fam = static_cast<unsigned char>(family);
  int rc = -1;
  switch (type) {
    case RTM_GETLINK: {
      ifinfomsg h{};
      h.ifi_family = fam;
      rc = nlmsg_append(msg, &h, sizeof h, NLMSG_ALIGNTO);
      break;
    }
    case RTM_GETADDR: {
      ifaddrmsg h{};
      h.ifa_family = fam;
      rc = nlmsg_append(msg, &h, sizeof h, NLMSG_ALIGNTO);
      break;
    }
    case RTM_GETROUTE: {
      rtmsg h{};
      h.rtm_family = fam;
      rc = nlmsg_append(msg, &h, sizeof h, NLMSG_ALIGNTO);
      break;
    }
    case RTM_GETNEIGH: {
      ndmsg h{};
      h.ndm_family = fam;
      rc = nlmsg_append(msg, &h, sizeof h, NLMSG_ALIGNTO);
      break;
    }
    default:
      break;
  }
  if (rc < 0) {
    nlmsg_free(msg);
    return nullptr;
  }
  return msg;
}

// libnl 3.7 writes IFLA_VXLAN_PORT (a be16) as a 4-byte u32. Little-endian kernels read the
// right port from its first two bytes but log "attribute type 15 has an invalid length"; on a
// big-endian host the port would read as 0 (the kernel default). Rewrite it in place as the
// 2-byte attribute the kernel expects: same aligned size, so no enclosing length changes. A
// libnl that already writes 2 bytes is left alone.
void fixVxlanPortAttr(nl_msg* msg) {
  nlattr* info = nlmsg_find_attr(nlmsg_hdr(msg), sizeof(ifinfomsg), IFLA_LINKINFO);
  nlattr* data = info != nullptr
                     ? nla_find(static_cast<nlattr*>(nla_data(info)), nla_len(info), IFLA_INFO_DATA)
                     : nullptr;
  nlattr* port = data != nullptr ? nla_find(static_cast<nlattr*>(nla_data(data)), nla_len(data),
                                            IFLA_VXLAN_PORT)
                                 : nullptr;
  if (port == nullptr || nla_len(port) != sizeof(uint32_t)) {
    return;
  }
  uint32_t wide = 0;
  std::memcpy(&wide, nla_data(port), sizeof wide);
  const auto be16 = static_cast<uint16_t>(wide);  // libnl stored htons(port), widened
  std::memset(nla_data(port), 0, sizeof wide);
  std::memcpy(nla_data(port), &be16, sizeof be16);
  port->nla_len = static_cast<uint16_t>(NLA_HDRLEN + sizeof be16);
}

}  // namespace

// --- socket and exchange ----------------------------------------------------------------------

NetlinkKernel::NetlinkKernel(nl_sock* sock) : sock_(sock) {}

NetlinkKernel::~NetlinkKernel() {
  nl_socket_free(sock_);  // closes the socket
}

Result<std::unique_ptr<NetlinkKernel>> NetlinkKernel::open() {
  nl_sock* sock = nl_socket_alloc();
  if (sock == nullptr) {
    return makeError(Errc::Kernel, "opening rtnetlink socket: out of memory", ENOMEM);
  }
  std::unique_ptr<NetlinkKernel> kernel(new NetlinkKernel(sock));
  if (int rc = nl_connect(sock, NETLINK_ROUTE); rc < 0) {
    return makeError(Errc::Kernel, "opening rtnetlink socket: " + nlError(rc), kSocketErrno);
  }
  const int fd = nl_socket_get_fd(sock);
  // Extended ACKs: the kernel explains EINVAL & co. in text. CAP_ACK: error messages do not
  // echo the whole request back. Both are optional (older kernels), so failures are ignored.
  const int one = 1;
  (void)::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  (void)::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  timeval tv{.tv_sec = 2, .tv_usec = 0};
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)nl_socket_set_buffer_size(sock, kSocketBufferBytes, kSocketBufferBytes);
  return kernel;
}

NetlinkKernel::Outcome NetlinkKernel::exchange(nl_msg* raw, const ObjectFn& on_object) {
  MsgPtr msg(raw);
  ExchangeState st;
  st.on_object = &on_object;
  nl_complete_msg(sock_, msg.get());  // pid, sequence number, NLM_F_REQUEST | NLM_F_ACK
  st.seq = nlmsg_hdr(msg.get())->nlmsg_seq;
  if (int rc = nl_send(sock_, msg.get()); rc < 0) {
    return Outcome{.err = kSocketErrno, .extack = "sending: " + nlError(rc)};
  }
  CbPtr cb(nl_cb_alloc(NL_CB_DEFAULT));
  if (!cb) {
    return Outcome{.err = ENOMEM, .extack = {}};
  }
  nl_cb_set(cb.get(), NL_CB_SEQ_CHECK, NL_CB_CUSTOM, &onSeqCheck, &st);
  nl_cb_set(cb.get(), NL_CB_DUMP_INTR, NL_CB_CUSTOM, &onDumpIntr, &st);
  nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, &onValid, &st);
  nl_cb_set(cb.get(), NL_CB_FINISH, NL_CB_CUSTOM, &onFinish, &st);
  nl_cb_set(cb.get(), NL_CB_ACK, NL_CB_CUSTOM, &onAck, &st);
  nl_cb_err(cb.get(), NL_CB_CUSTOM, &onError, &st);

  const auto deadline = std::chrono::steady_clock::now() + kExchangeTimeout;
  while (!st.done) {
    // Returns after each batch of messages; the callbacks above say when the answer is
    // complete (the ACK or error, or NLMSG_DONE of a dump).
    const int rc = nl_recvmsgs(sock_, cb.get());
    if (st.done) {
      break;
    }
    if (rc < 0 && rc != -NLE_DUMP_INTR) {
      return Outcome{.err = kSocketErrno, .extack = "receiving: " + nlError(rc)};
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Outcome{.err = ETIMEDOUT, .extack = "no answer from the kernel"};
    }
  }
  return Outcome{.err = st.err, .extack = std::move(st.extack), .interrupted = st.interrupted};
}

NetlinkKernel::Outcome NetlinkKernel::dump(int type, int family, const ObjectFn& on_object,
                                           const std::function<void()>& reset) {
  Outcome out;
  for (int attempt = 1; attempt <= kDumpAttempts; ++attempt) {
    reset();
    nl_msg* msg = dumpRequest(type, family);
    if (msg == nullptr) {
      return Outcome{.err = ENOMEM, .extack = {}};
    }
    out = exchange(msg, on_object);
    if (out.err != 0 || !out.interrupted) {
      return out;
    }
    // NLM_F_DUMP_INTR: the table changed under the dump, so what we got may be torn. Ask again.
    ++interrupted_dumps_;
    logger("kernel")->debug("rtnetlink dump (type {}, family {}) interrupted, attempt {}/{}", type,
                            family, attempt, kDumpAttempts);
    // A short pause gives a burst of changes (pods starting) a chance to finish; bounded by
    // kDumpBackoffCap per attempt, so the whole call stays within tens of milliseconds.
    if (attempt < kDumpAttempts) {
      std::this_thread::sleep_for(
          std::min(kDumpBackoffFirst * (1 << (attempt - 1)), kDumpBackoffCap));
    }
  }
  return Outcome{.err = EINTR, .extack = "dump kept being interrupted by concurrent changes"};
}

Result<void> NetlinkKernel::mutate(nl_msg* msg, int build_err,
                                   const std::function<std::string()>& what, bool absent_ok) {
  if (msg == nullptr) {
    return makeError(Errc::Internal,
                     fmt::format("{}: building the request: {}", what(), nlError(build_err)));
  }
  Outcome out = exchange(msg, {});
  if (out.err == 0 || (absent_ok && isAbsentErrno(out.err)) || (!absent_ok && out.err == EEXIST)) {
    return ok();
  }
  return kernelError(what(), out.err, out.extack);
}

std::string NetlinkKernel::devName(int ifindex) {
  if (ifindex == 0) {
    return {};
  }
  auto link = getLink(ifindex, {});
  return link ? link->name : std::string();
}

// --- links ----------------------------------------------------------------------------------

Result<std::vector<Link>> NetlinkKernel::links() {
  std::vector<Link> out;
  auto done = dump(
      RTM_GETLINK, AF_UNSPEC,
      [&](nl_object* obj) {
        if (auto l = toLink(obj)) {
          out.push_back(std::move(*l));
        }
      },
      [&] { out.clear(); });
  if (done.err != 0) {
    return kernelError("listing links", done.err, done.extack);
  }
  std::sort(out.begin(), out.end(), [](const Link& a, const Link& b) { return a.index < b.index; });
  return out;
}

Result<Link> NetlinkKernel::getLink(int ifindex, const std::string& name) {
  const std::string what = ifindex != 0 ? fmt::format("looking up link ifindex {}", ifindex)
                                        : fmt::format("looking up link {}", name);
  if (ifindex == 0 && (name.empty() || name.size() > kMaxIfNameLen)) {
    return makeError(Errc::NotFound, what + ": not a valid interface name", ENODEV);
  }
  nl_msg* msg = nullptr;
  if (int rc = rtnl_link_build_get_request(ifindex, ifindex != 0 ? nullptr : name.c_str(), &msg);
      rc < 0) {
    return makeError(Errc::Internal, what + ": " + nlError(rc));
  }
  std::optional<Link> found;
  auto done = exchange(msg, [&](nl_object* obj) {
    if (auto l = toLink(obj)) {
      found = std::move(*l);
    }
  });
  if (done.err != 0) {
    return kernelError(what, done.err, done.extack);
  }
  if (!found) {
    return makeError(Errc::NotFound, what + ": no such link in the answer", ENODEV);
  }
  return *found;
}

Result<Link> NetlinkKernel::linkByName(const std::string& name) {
  return getLink(0, name);
}

Result<Link> NetlinkKernel::linkByIndex(int ifindex) {
  if (ifindex <= 0) {
    return makeError(Errc::NotFound,
                     fmt::format("looking up link ifindex {}: no such device", ifindex), ENODEV);
  }
  return getLink(ifindex, {});
}

Result<void> NetlinkKernel::createVxlan(const VxlanSpec& spec) {
  auto what = [&] {
    std::string dev = spec.underlay_ifindex != 0 ? devName(spec.underlay_ifindex) : "";
    if (dev.empty() && spec.underlay_ifindex != 0) {
      dev = fmt::format("ifindex {}", spec.underlay_ifindex);
    }
    return fmt::format("creating vxlan device {} (VNI {}, local {}, dev {}, port {})", spec.name,
                       spec.vni, spec.local ? spec.local->toString() : "none",
                       dev.empty() ? "none" : dev,
                       spec.port != 0 ? spec.port : kVxlanKernelDefaultPort);
  };
  LinkPtr link(rtnl_link_vxlan_alloc());
  if (!link) {
    return makeError(Errc::Internal, what() + ": out of memory", ENOMEM);
  }
  rtnl_link_set_name(link.get(), spec.name.c_str());
  const Mac mac = spec.mac.value_or(Mac::randomLocallyAdministered());
  AddrPtr lladdr = toNl(mac);
  rtnl_link_set_addr(link.get(), lladdr.get());
  int rc = rtnl_link_vxlan_set_id(link.get(), spec.vni);
  if (rc == 0 && spec.underlay_ifindex != 0) {
    rc = rtnl_link_vxlan_set_link(link.get(), static_cast<uint32_t>(spec.underlay_ifindex));
  }
  if (rc == 0 && spec.local) {
    AddrPtr local = toNl(*spec.local);
    rc = rtnl_link_vxlan_set_local(link.get(), local.get());
  }
  if (rc == 0 && spec.port != 0) {
    rc = rtnl_link_vxlan_set_port(link.get(), spec.port);
  }
  if (rc == 0) {
    rc = rtnl_link_vxlan_set_learning(link.get(), spec.learning ? 1 : 0);
  }
  if (rc == 0 && spec.gbp) {
    rc = rtnl_link_vxlan_set_flags(link.get(), RTNL_LINK_VXLAN_F_GBP, 1);
  }
  if (rc < 0) {
    return makeError(Errc::InvalidInput, what() + ": " + nlError(rc), EINVAL);
  }
  nl_msg* msg = nullptr;
  rc = rtnl_link_build_add_request(link.get(), NLM_F_CREATE | NLM_F_EXCL, &msg);
  if (msg != nullptr) {
    fixVxlanPortAttr(msg);
  }
  Outcome out = msg != nullptr ? exchange(msg, {}) : Outcome{.err = EINVAL, .extack = nlError(rc)};
  if (out.err != 0) {
    return kernelError(what(), out.err, out.extack);
  }
  return ok();
}

Result<Link> NetlinkKernel::ensureVxlan(const VxlanSpec& spec) {
  const std::string ctx = fmt::format("ensuring vxlan device {}", spec.name);
  if (spec.name.empty() || spec.name.size() > kMaxIfNameLen ||
      spec.name.find_first_of("/ \t\n:") != std::string::npos) {
    return makeError(Errc::InvalidInput, ctx + ": not a valid interface name", EINVAL);
  }
  if (spec.vni > VXLAN_ID_MAX) {
    return makeError(Errc::InvalidInput,
                     fmt::format("{}: VNI {} is larger than {}", ctx, spec.vni, VXLAN_ID_MAX),
                     EINVAL);
  }
  auto log = logger("kernel");
  // Bounded: a concurrent creator can make our create fail with EEXIST once or twice.
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto existing = linkByName(spec.name);
    if (existing) {
      auto why = vxlanIncompatibility(*existing, spec);
      if (!why) {
        log->debug("adopting existing vxlan device {} (ifindex {}, MAC {})", existing->name,
                   existing->index, existing->mac.toString());
        return *existing;
      }
      log->info("vxlan device {} is incompatible ({}); deleting and recreating it", spec.name,
                *why);
      if (auto del = deleteLink(existing->index); !del) {
        return del.error().context(ctx);
      }
    } else if (existing.error().code != Errc::NotFound) {
      return existing.error().context(ctx);
    }
    auto created = createVxlan(spec);
    if (!created) {
      if (created.error().sys_errno == EEXIST) {
        continue;
      }
      return created.error();
    }
    auto link = linkByName(spec.name);
    if (!link) {
      return link.error().context(ctx);
    }
    log->info("created vxlan device {} (ifindex {}, VNI {}, MAC {})", link->name, link->index,
              spec.vni, link->mac.toString());
    return link;
  }
  return makeError(Errc::Conflict, ctx + ": another process keeps creating it", EEXIST);
}

namespace {

nl_msg* linkChangeMsg(int type, int flags, int ifindex, unsigned int ifi_flags,
                      unsigned int ifi_change) {
  nl_msg* msg = nlmsg_alloc_simple(type, flags);
  if (msg == nullptr) {
    return nullptr;
  }
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  ifi.ifi_flags = ifi_flags;
  ifi.ifi_change = ifi_change;
  if (nlmsg_append(msg, &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0) {
    nlmsg_free(msg);
    return nullptr;
  }
  return msg;
}

}  // namespace

Result<void> NetlinkKernel::setLinkUp(int ifindex) {
  nl_msg* msg = linkChangeMsg(RTM_NEWLINK, 0, ifindex, IFF_UP, IFF_UP);
  return mutate(
      msg, -NLE_NOMEM,
      [&] {
        const std::string dev = devName(ifindex);
        return fmt::format("setting link {} up",
                           dev.empty() ? fmt::format("ifindex {}", ifindex) : dev);
      },
      false);
}

Result<void> NetlinkKernel::setMtu(int ifindex, uint32_t mtu) {
  nl_msg* msg = linkChangeMsg(RTM_NEWLINK, 0, ifindex, 0, 0);
  if (msg != nullptr && nla_put_u32(msg, IFLA_MTU, mtu) < 0) {
    nlmsg_free(msg);
    msg = nullptr;
  }
  return mutate(
      msg, -NLE_NOMEM,
      [&] {
        const std::string dev = devName(ifindex);
        return fmt::format("setting MTU of link {} to {}",
                           dev.empty() ? fmt::format("ifindex {}", ifindex) : dev, mtu);
      },
      false);
}

Result<void> NetlinkKernel::deleteLink(int ifindex) {
  auto link = linkByIndex(ifindex);
  if (!link) {
    if (link.error().code == Errc::NotFound) {
      return ok();  // already absent
    }
    return link.error().context(fmt::format("deleting link ifindex {}", ifindex));
  }
  nl_msg* msg = linkChangeMsg(RTM_DELLINK, 0, ifindex, 0, 0);
  return mutate(
      msg, -NLE_NOMEM, [&] { return fmt::format("deleting link {}", link->name); }, true);
}

// --- addresses ------------------------------------------------------------------------------

Result<std::vector<Addr>> NetlinkKernel::allAddresses() {
  std::vector<Addr> out;
  auto done = dump(
      RTM_GETADDR, AF_UNSPEC,
      [&](nl_object* obj) {
        if (auto a = toAddr(obj)) {
          out.push_back(*a);
        }
      },
      [&] { out.clear(); });
  if (done.err != 0) {
    return kernelError("listing addresses", done.err, done.extack);
  }
  return out;
}

Result<std::vector<Addr>> NetlinkKernel::addresses(int ifindex) {
  auto all = allAddresses();
  if (!all) {
    return all.error();
  }
  std::vector<Addr> out;
  std::copy_if(all->begin(), all->end(), std::back_inserter(out),
               [&](const Addr& a) { return a.ifindex == ifindex; });
  return out;
}

namespace {

RtAddrPtr toRtAddr(const Addr& a) {
  RtAddrPtr addr(rtnl_addr_alloc());
  if (!addr) {
    return addr;
  }
  AddrPtr local = toNl(a.address, a.prefix_len);
  rtnl_addr_set_ifindex(addr.get(), a.ifindex);
  rtnl_addr_set_family(addr.get(), familyOf(a.address));
  if (rtnl_addr_set_local(addr.get(), local.get()) < 0) {
    return nullptr;
  }
  rtnl_addr_set_prefixlen(addr.get(), a.prefix_len);
  return addr;
}

}  // namespace

Result<void> NetlinkKernel::replaceAddress(const Addr& a) {
  auto what = [&] { return "adding address " + describe(a, devName(a.ifindex)); };
  RtAddrPtr addr = toRtAddr(a);
  nl_msg* msg = nullptr;
  int rc = addr ? rtnl_addr_build_add_request(addr.get(), NLM_F_CREATE | NLM_F_REPLACE, &msg)
                : -NLE_NOMEM;
  return mutate(msg, rc, what, false);
}

Result<void> NetlinkKernel::deleteAddress(const Addr& a) {
  auto what = [&] { return "deleting address " + describe(a, devName(a.ifindex)); };
  RtAddrPtr addr = toRtAddr(a);
  nl_msg* msg = nullptr;
  int rc = addr ? rtnl_addr_build_delete_request(addr.get(), 0, &msg) : -NLE_NOMEM;
  return mutate(msg, rc, what, true);
}

// --- routes ---------------------------------------------------------------------------------

Result<std::vector<Route>> NetlinkKernel::routes(const RouteFilter& filter) {
  std::vector<Route> out;
  std::vector<int> families;
  if (!filter.family || *filter.family == Family::V4) {
    families.push_back(AF_INET);
  }
  if (!filter.family || *filter.family == Family::V6) {
    families.push_back(AF_INET6);
  }
  for (int family : families) {
    std::vector<Route> got;
    auto done = dump(
        RTM_GETROUTE, family,
        [&](nl_object* obj) {
          auto* r = reinterpret_cast<rtnl_route*>(obj);
          if (!hasType(obj, "route/route") || (rtnl_route_get_flags(r) & RTM_F_CLONED) != 0) {
            return;
          }
          if (auto route = toRoute(obj)) {
            if ((!filter.table || route->table == *filter.table) &&
                (!filter.ifindex || route->ifindex == *filter.ifindex)) {
              got.push_back(std::move(*route));
            }
          }
        },
        [&] { got.clear(); });
    if (done.err != 0) {
      return kernelError(family == AF_INET ? "listing IPv4 routes" : "listing IPv6 routes",
                         done.err, done.extack);
    }
    out.insert(out.end(), got.begin(), got.end());
  }
  return out;
}

namespace {

RoutePtr toRtRoute(const Route& r) {
  RoutePtr route(rtnl_route_alloc());
  if (!route) {
    return route;
  }
  const int family = familyOf(r.dst.family());
  rtnl_route_set_family(route.get(), static_cast<uint8_t>(family));
  AddrPtr dst = toNl(r.dst.addr(), r.dst.prefix());
  if (rtnl_route_set_dst(route.get(), dst.get()) < 0) {
    return nullptr;
  }
  rtnl_route_set_table(route.get(), r.table);
  rtnl_route_set_protocol(route.get(), r.protocol);
  rtnl_route_set_scope(route.get(), r.scope);
  rtnl_route_set_type(route.get(), r.type);
  if (r.metric) {
    rtnl_route_set_priority(route.get(), *r.metric);
  }
  if (r.src) {
    AddrPtr src = toNl(*r.src);
    if (rtnl_route_set_pref_src(route.get(), src.get()) < 0) {
      return nullptr;
    }
  }
  if (r.via || r.ifindex != 0) {
    rtnl_nexthop* nh = rtnl_route_nh_alloc();
    if (nh == nullptr) {
      return nullptr;
    }
    if (r.ifindex != 0) {
      rtnl_route_nh_set_ifindex(nh, r.ifindex);
    }
    if (r.via) {
      AddrPtr gw = toNl(*r.via);
      rtnl_route_nh_set_gateway(nh, gw.get());
    }
    if (r.onlink) {
      rtnl_route_nh_set_flags(nh, RTNH_F_ONLINK);
    }
    rtnl_route_add_nexthop(route.get(), nh);  // the route owns it now
  }
  return route;
}

}  // namespace

Result<void> NetlinkKernel::replaceRoute(const Route& r) {
  auto what = [&] { return "replacing route " + describe(r, devName(r.ifindex)); };
  RoutePtr route = toRtRoute(r);
  nl_msg* msg = nullptr;
  int rc = route ? rtnl_route_build_add_request(route.get(), NLM_F_CREATE | NLM_F_REPLACE, &msg)
                 : -NLE_NOMEM;
  return mutate(msg, rc, what, false);
}

Result<void> NetlinkKernel::deleteRoute(const Route& r) {
  auto what = [&] { return "deleting route " + describe(r, devName(r.ifindex)); };
  RoutePtr route = toRtRoute(r);
  nl_msg* msg = nullptr;
  int rc = route ? rtnl_route_build_del_request(route.get(), 0, &msg) : -NLE_NOMEM;
  return mutate(msg, rc, what, true);
}

Result<Route> NetlinkKernel::routeGet(const IpAddr& dst) {
  const std::string what = "looking up the route to " + dst.toString();
  nl_msg* msg = nlmsg_alloc_simple(RTM_GETROUTE, 0);
  if (msg == nullptr) {
    return makeError(Errc::Internal, what + ": out of memory", ENOMEM);
  }
  rtmsg rtm{};
  rtm.rtm_family = static_cast<unsigned char>(familyOf(dst));
  rtm.rtm_dst_len = IpNet::maxPrefix(dst.family());
  AddrPtr addr = toNl(dst);
  if (nlmsg_append(msg, &rtm, sizeof rtm, NLMSG_ALIGNTO) < 0 ||
      nla_put_addr(msg, RTA_DST, addr.get()) < 0) {
    nlmsg_free(msg);
    return makeError(Errc::Internal, what + ": building the request failed", ENOMEM);
  }
  std::optional<Route> found;
  auto done = exchange(msg, [&](nl_object* obj) {
    if (auto r = toRoute(obj)) {
      found = std::move(*r);
    }
  });
  if (done.err != 0) {
    return kernelError(what, done.err, done.extack);
  }
  if (!found) {
    return makeError(Errc::Kernel, what + ": the kernel sent no route", ENOMSG);
  }
  return *found;
}

// --- neighbours and FDB ------------------------------------------------------------------------

Result<std::vector<Neigh>> NetlinkKernel::neighbours(int ifindex) {
  std::vector<Neigh> out;
  auto done = dump(
      RTM_GETNEIGH, AF_UNSPEC,
      [&](nl_object* obj) {
        if (auto n = toNeigh(obj); n && n->ifindex == ifindex) {
          out.push_back(*n);
        }
      },
      [&] { out.clear(); });
  if (done.err != 0) {
    return kernelError("listing neighbours", done.err, done.extack);
  }
  return out;
}

namespace {

NeighPtr toRtNeigh(int ifindex, const IpAddr& dst, const std::optional<Mac>& lladdr) {
  NeighPtr neigh(rtnl_neigh_alloc());
  if (!neigh) {
    return neigh;
  }
  rtnl_neigh_set_ifindex(neigh.get(), ifindex);
  AddrPtr d = toNl(dst);
  if (rtnl_neigh_set_dst(neigh.get(), d.get()) < 0) {
    return nullptr;
  }
  if (lladdr) {
    AddrPtr ll = toNl(*lladdr);
    rtnl_neigh_set_lladdr(neigh.get(), ll.get());
  }
  return neigh;
}

// FDB entries are AF_BRIDGE neighbours with NTF_SELF (the vxlan device's own table, not a
// bridge master's). Some libnl versions leave NDA_DST out of AF_BRIDGE requests; without it the
// kernel would write (or delete) the MAC's entry without a remote, so it is added here when
// missing.
nl_msg* fdbMsg(const Fdb& f, bool add, int* rc) {
  NeighPtr neigh = toRtNeigh(f.ifindex, f.dst, f.mac);
  if (!neigh) {
    *rc = -NLE_NOMEM;
    return nullptr;
  }
  rtnl_neigh_set_family(neigh.get(), AF_BRIDGE);  // after set_dst, which sets the IP family
  rtnl_neigh_set_flags(neigh.get(), NTF_SELF);
  rtnl_neigh_set_state(neigh.get(), NUD_PERMANENT);
  nl_msg* msg = nullptr;
  *rc = add ? rtnl_neigh_build_add_request(neigh.get(), NLM_F_CREATE | NLM_F_REPLACE, &msg)
            : rtnl_neigh_build_delete_request(neigh.get(), 0, &msg);
  if (msg == nullptr) {
    return nullptr;
  }
  if (nlmsg_find_attr(nlmsg_hdr(msg), sizeof(ndmsg), NDA_DST) == nullptr) {
    AddrPtr d = toNl(f.dst);
    if (nla_put_addr(msg, NDA_DST, d.get()) < 0) {
      nlmsg_free(msg);
      *rc = -NLE_NOMEM;
      return nullptr;
    }
  }
  return msg;
}

}  // namespace

Result<void> NetlinkKernel::replaceNeighbour(const Neigh& n) {
  auto what = [&] { return "replacing neighbour " + describe(n, devName(n.ifindex)); };
  NeighPtr neigh = toRtNeigh(n.ifindex, n.dst, n.lladdr);
  nl_msg* msg = nullptr;
  int rc = -NLE_NOMEM;
  if (neigh) {
    rtnl_neigh_set_state(neigh.get(), NUD_PERMANENT);
    rc = rtnl_neigh_build_add_request(neigh.get(), NLM_F_CREATE | NLM_F_REPLACE, &msg);
  }
  return mutate(msg, rc, what, false);
}

Result<void> NetlinkKernel::deleteNeighbour(const Neigh& n) {
  auto what = [&] { return "deleting neighbour " + describe(n, devName(n.ifindex)); };
  NeighPtr neigh = toRtNeigh(n.ifindex, n.dst, std::nullopt);
  nl_msg* msg = nullptr;
  int rc = neigh ? rtnl_neigh_build_delete_request(neigh.get(), 0, &msg) : -NLE_NOMEM;
  return mutate(msg, rc, what, true);
}

Result<std::vector<Fdb>> NetlinkKernel::fdbEntries(int ifindex) {
  std::vector<Fdb> out;
  auto done = dump(
      RTM_GETNEIGH, AF_BRIDGE,
      [&](nl_object* obj) {
        if (auto f = toFdb(obj); f && f->ifindex == ifindex) {
          out.push_back(*f);
        }
      },
      [&] { out.clear(); });
  if (done.err != 0) {
    return kernelError("listing FDB entries", done.err, done.extack);
  }
  return out;
}

Result<void> NetlinkKernel::replaceFdb(const Fdb& f) {
  auto what = [&] { return "replacing fdb entry " + describe(f, devName(f.ifindex)); };
  int rc = 0;
  nl_msg* msg = fdbMsg(f, true, &rc);
  return mutate(msg, rc, what, false);
}

Result<void> NetlinkKernel::deleteFdb(const Fdb& f) {
  auto what = [&] { return "deleting fdb entry " + describe(f, devName(f.ifindex)); };
  int rc = 0;
  nl_msg* msg = fdbMsg(f, false, &rc);
  return mutate(msg, rc, what, true);
}

// --- sysctl ---------------------------------------------------------------------------------

Result<void> NetlinkKernel::setSysctl(const std::string& path, const std::string& value) {
  if (auto valid = validateSysctlPath(path); !valid) {
    return valid.error();
  }
  const std::string file = "/proc/sys/" + path;
  const std::string what = fmt::format("setting sysctl {} to {}", path, value);
  const int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return kernelError(what, errno);
  }
  const std::string data = value + "\n";
  const ssize_t n = ::write(fd, data.data(), data.size());
  const int err = errno;
  ::close(fd);
  if (n < 0) {
    return kernelError(what, err);
  }
  if (static_cast<size_t>(n) != data.size()) {
    return kernelError(what, EIO, "short write");
  }
  return ok();
}

Result<std::string> NetlinkKernel::sysctl(const std::string& path) {
  if (auto valid = validateSysctlPath(path); !valid) {
    return valid.error();
  }
  const std::string file = "/proc/sys/" + path;
  const std::string what = fmt::format("reading sysctl {}", path);
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return kernelError(what, errno);
  }
  std::string out;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return kernelError(what, err);
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  while (!out.empty() && (out.back() == '\n')) {
    out.pop_back();
  }
  return out;
}

}  // namespace flannel::kernel
