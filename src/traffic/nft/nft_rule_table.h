// DOC: NftRuleTable, the RuleTable of nftables mode (SPEC.md §6.6), entirely in-process through
// libnftables: no `nft` process is ever started.
//
// Ours: the tables `ip flannel-ipv4` and `ip6 flannel-ipv6`; in them, chain `postrtg` (type nat,
// hook postrouting, priority srcnat = 100) and chain `forward` (type filter, hook forward,
// priority filter = 0), both with policy accept. Rules carry the comments "flanneld masq" /
// "flanneld forward".
//
//   apply(f)    list our table (to spot a chain with the wrong type/hook/priority), then one
//               transaction: add table, [flush+delete a wrong chain], add chain, flush chain,
//               add rules (nft/render.h). Atomic per family.
//   missing(f)  list tables, list our table, compare chain by chain (nft/render.h diffListing);
//               skipped while the ruleset generation has not moved since a check of the same
//               rules found nothing missing (NftNamespace::generation, no libnftables needed).
//   removeRules delete by handle the listed rules equal to stale ones, one transaction.
//   removeAll   add + delete our table in one transaction (absent = success).
//
// Each call opens its own libnftables session (NftNamespace::openSession) and ends it, so the
// library is loaded only while rules are written or listed.
//
// Unlike Go flannel's nftables mode the tables get no table comment: the JSON parser of
// libnftables 1.0.6 does not take one.
#pragma once

#include <memory>
#include <optional>

#include "traffic/nft/nft_namespace.h"
#include "traffic/nft/render.h"
#include "traffic/rule_table.h"

namespace flannel::traffic::nft {

class NftRuleTable final : public RuleTable {
 public:
  // Works on the calling thread's network namespace. Probes, with a dry run (what `nft --check`
  // does), whether masquerade takes the fully-random flag. Errors: NftNamespace::here()'s, and
  // NftSession::create()'s (libnftables cannot be loaded or cannot create a context).
  static Result<std::unique_ptr<NftRuleTable>> create();

  std::string_view mechanism() const noexcept override { return "nftables"; }
  bool supportsFullyRandom() const noexcept override { return fully_random_; }
  Result<void> apply(const RuleSet& rules) override;
  Result<RuleDrift> missing(const RuleSet& rules) override;
  Result<void> removeRules(const RuleSet& stale) override;
  Result<void> removeAll(Family family) override;

 private:
  NftRuleTable(std::unique_ptr<NftNamespace> ns, bool fully_random)
      : ns_(std::move(ns)), fully_random_(fully_random) {}

  // Our table of `family`, or nullopt when it does not exist.
  static Result<std::optional<ListedTable>> listOurTable(NftSession& session, Family family);

  struct Verified {
    uint32_t generation = 0;
    RuleSet rules{};
  };

  std::unique_ptr<NftNamespace> ns_;
  bool fully_random_;
  // The last missing() that found nothing missing, and the generation read before it.
  std::optional<Verified> verified_;
};

}  // namespace flannel::traffic::nft
