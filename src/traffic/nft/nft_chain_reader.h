// DOC: NftChainReader, the ChainReader over libnftables: lists iptables-nft's chains in-process
// (see traffic/chain_reader.h for why).
//
// iptables-nft stores `iptables -t nat` in the nftables table `ip nat` (`ip6 nat` for ip6tables),
// chain names unchanged. A snapshot lists our chain and the hook chain with `list chain` (only
// those chains' rules are fetched, not the whole table, which on a kube-proxy node holds
// thousands of rules) and keeps each rule's statements and comment, without handles and with
// counters printed as null (stateless output).
#pragma once

#include <memory>

#include "traffic/chain_reader.h"
#include "traffic/nft/nft_session.h"

namespace flannel::traffic::nft {

class NftChainReader final : public ChainReader {
 public:
  // A libnftables context in the calling thread's network namespace.
  static Result<std::unique_ptr<NftChainReader>> create();

  Result<std::string> snapshot(Family family, std::string_view table, std::string_view chain,
                               std::string_view hook_chain) override;

 private:
  explicit NftChainReader(std::unique_ptr<NftSession> session) : session_(std::move(session)) {}

  // The rules of one chain ({"comment", "expr"} each), or nullopt when the chain does not exist.
  Result<std::optional<nlohmann::json>> listChain(std::string_view family, std::string_view table,
                                                  std::string_view chain);

  std::unique_ptr<NftSession> session_;
};

}  // namespace flannel::traffic::nft
