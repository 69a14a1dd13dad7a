#include "traffic/nft/nft_namespace.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace flannel::traffic::nft {

namespace {

constexpr const char* kThreadNetns = "/proc/thread-self/ns/net";

Error nlError(const char* what, int err) {
  return makeError(Errc::Kernel, fmt::format("{}: {}", what, ::nl_geterror(err)));
}

Error sysError(const std::string& what) {
  return makeError(Errc::Kernel, fmt::format("{}: {}", what, std::strerror(errno)));
}

struct GenReply {
  bool seen = false;
  uint32_t id = 0;
};

int onReply(nl_msg* msg, void* arg) {
  auto* reply = static_cast<GenReply*>(arg);
  nlmsghdr* hdr = ::nlmsg_hdr(msg);
  if (hdr->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) {
    return NL_SKIP;
  }
  nlattr* attrs[NFTA_GEN_MAX + 1] = {};
  if (::nlmsg_parse(hdr, sizeof(nfgenmsg), attrs, NFTA_GEN_MAX, nullptr) < 0 ||
      attrs[NFTA_GEN_ID] == nullptr || ::nla_len(attrs[NFTA_GEN_ID]) < 4) {
    return NL_SKIP;
  }
  reply->id = ntohl(::nla_get_u32(attrs[NFTA_GEN_ID]));
  reply->seen = true;
  return NL_OK;
}

// Same namespace: same inode on the same nsfs device.
bool sameNamespace(int a, int b) {
  struct stat sa {};
  struct stat sb {};
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_ino == sb.st_ino &&
         sa.st_dev == sb.st_dev;
}

Result<UniqueFd> threadNetns() {
  UniqueFd fd(::open(kThreadNetns, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return sysError(fmt::format("opening {}", kThreadNetns));
  }
  return fd;
}

}  // namespace

void NftNamespace::SocketFree::operator()(nl_sock* sock) const noexcept {
  ::nl_socket_free(sock);  // closes the socket
}

Result<std::unique_ptr<NftNamespace>> NftNamespace::here() {
  auto netns = threadNetns();
  if (!netns) {
    return netns.error();
  }
  Socket sock(::nl_socket_alloc());
  if (!sock) {
    return makeError(Errc::Kernel, "libnl: cannot allocate a netlink socket");
  }
  ::nl_socket_disable_auto_ack(sock.get());  // GETGEN answers with NEWGEN; errors still come back
  if (int err = ::nl_connect(sock.get(), NETLINK_NETFILTER); err < 0) {
    return nlError("opening a NETLINK_NETFILTER socket", err);
  }
  // The kernel answers GETGEN at once; a bound on the wait keeps a check from ever hanging.
  timeval limit{.tv_sec = 2, .tv_usec = 0};
  if (::setsockopt(::nl_socket_get_fd(sock.get()), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) !=
      0) {
    return sysError("setting a receive timeout on the NETLINK_NETFILTER socket");
  }
  return std::unique_ptr<NftNamespace>(new NftNamespace(std::move(*netns), std::move(sock)));
}

Result<uint32_t> NftNamespace::generation() {
  nfgenmsg request{};
  request.nfgen_family = AF_UNSPEC;
  request.version = NFNETLINK_V0;
  request.res_id = 0;
  const int type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
  nl_sock* sock = sock_.get();
  if (int err = ::nl_send_simple(sock, type, NLM_F_REQUEST, &request, sizeof(request)); err < 0) {
    return nlError("asking the nftables ruleset generation", err);
  }
  GenReply reply;
  if (int err = ::nl_socket_modify_cb(sock, NL_CB_VALID, NL_CB_CUSTOM, onReply, &reply); err < 0) {
    return nlError("asking the nftables ruleset generation", err);
  }
  const int err = ::nl_recvmsgs_default(sock);
  ::nl_socket_modify_cb(sock, NL_CB_VALID, NL_CB_DEFAULT, nullptr, nullptr);
  if (err < 0) {
    return nlError("reading the nftables ruleset generation", err);
  }
  if (!reply.seen) {
    return makeError(Errc::Kernel, "the kernel's answer to NFT_MSG_GETGEN has no generation id");
  }
  return reply.id;
}

Result<std::unique_ptr<NftSession>> NftNamespace::openSession() {
  auto own = threadNetns();
  if (!own) {
    return own.error();
  }
  if (sameNamespace(own->get(), netns_.get())) {
    return NftSession::create();
  }
  if (::setns(netns_.get(), CLONE_NEWNET) != 0) {
    return sysError("entering the network namespace of the nftables ruleset");
  }
  auto session = NftSession::create();
  if (::setns(own->get(), CLONE_NEWNET) != 0) {
    // Cannot happen for a thread that could leave it. If it did, this thread would act in the
    // wrong namespace from now on: stop rather than program the wrong one.
    std::fprintf(stderr, "fatal: cannot return to the thread's network namespace: %s\n",
                 std::strerror(errno));
    std::abort();
  }
  return session;
}

}  // namespace flannel::traffic::nft
