// DOC: NftChainReader, the ChainReader over libnftables: lists iptables-nft's chains in-process
// (see traffic/chain_reader.h for why).
//
// iptables-nft stores `iptables -t nat` in the nftables table `ip nat` (`ip6 nat` for ip6tables),
// chain names unchanged. A snapshot lists our chain and the hook chain with `list chain` (only
// those chains' rules are fetched, not the whole table, which on a kube-proxy node holds
// thousands of rules) and keeps each rule's statements and comment, without handles and with
// counters printed as null (stateless output).
//
// Listing needs libnftables; the kernel's ruleset generation (NftNamespace::generation) does not.
// Each snapshot is remembered with the generation read just before its listing; while the
// generation stays the same, snapshot() returns the remembered text and libnftables stays
// unloaded. A generation that moved (any nftables commit in the namespace, ours included) means
// one new listing, in a session that ends with the call.
#pragma once

#include <map>
#include <memory>

#include "traffic/chain_reader.h"
#include "traffic/nft/nft_namespace.h"

namespace flannel::traffic::nft {

class NftChainReader final : public ChainReader {
 public:
  // Reads the calling thread's network namespace. Loads libnftables once to check that it can
  // (and unloads it): errors are NftNamespace::here()'s and NftLibrary::acquire()'s.
  static Result<std::unique_ptr<NftChainReader>> create();

  Result<std::string> snapshot(Family family, std::string_view table, std::string_view chain,
                               std::string_view hook_chain) override;

  // How many snapshots were listed with libnftables (the others came from the generation check).
  uint64_t listings() const noexcept { return listings_; }

 private:
  explicit NftChainReader(std::unique_ptr<NftNamespace> ns) : ns_(std::move(ns)) {}

  // The rules of one chain ({"comment", "expr"} each), or nullopt when the chain does not exist.
  static Result<std::optional<nlohmann::json>> listChain(NftSession& session,
                                                         std::string_view family,
                                                         std::string_view table,
                                                         std::string_view chain);

  struct Remembered {
    uint32_t generation = 0;
    std::string text{};
  };

  std::unique_ptr<NftNamespace> ns_;
  std::map<std::string, Remembered, std::less<>> remembered_;
  uint64_t listings_ = 0;
};

}  // namespace flannel::traffic::nft
