// DOC: NftNamespace, the network namespace whose nftables ruleset a RuleTable or ChainReader
// works on: the kernel's ruleset generation, and libnftables sessions opened there on demand.
//
// Every committed nftables transaction in a namespace (ours, `nft`, iptables-nft, kube-proxy)
// moves that namespace's ruleset generation. Asking for it is one netlink round trip
// (NFT_MSG_GETGEN over a NETLINK_NETFILTER socket, through libnl), with no libnftables involved,
// so periodic checks compare generations and list rules only when the generation moved.
//
// The netlink socket is opened by here(), in the calling thread's namespace, and keeps talking
// to that namespace. A libnftables context binds to the namespace of the thread that creates
// it, so openSession() creates it in the remembered namespace: directly when the calling thread
// is already there, else by entering it with setns() and coming back.
//
// Thread safety: none; one owner thread.
#pragma once

#include <cstdint>
#include <memory>

#include "core/result.h"
#include "core/unique_fd.h"
#include "traffic/nft/nft_session.h"

struct nl_sock;

namespace flannel::traffic::nft {

class NftNamespace {
 public:
  // Errc::Kernel when the netlink socket cannot be opened or the namespace cannot be pinned.
  static Result<std::unique_ptr<NftNamespace>> here();

  // The current ruleset generation. Errc::Kernel when the kernel does not answer it.
  Result<uint32_t> generation();

  // A libnftables session in this namespace (loads libnftables if no session holds it).
  Result<std::unique_ptr<NftSession>> openSession();

 private:
  struct SocketFree {
    void operator()(nl_sock* sock) const noexcept;
  };
  using Socket = std::unique_ptr<nl_sock, SocketFree>;

  NftNamespace(UniqueFd netns, Socket sock) : netns_(std::move(netns)), sock_(std::move(sock)) {}

  UniqueFd netns_;
  Socket sock_;
};

}  // namespace flannel::traffic::nft
