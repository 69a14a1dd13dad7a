// DOC: the RuleTable seam: the one door through which flanneld's traffic rules reach netfilter
// (DESIGN.md "The seams" item 5).
//
// Two implementations, named by mechanism:
//   nft::NftRuleTable           nftables mode ("EnableNFTables": true): libnftables in-process,
//                               tables `ip flannel-ipv4` / `ip6 flannel-ipv6`; never forks.
//   iptables::IptablesRuleTable iptables mode: `iptables-restore --noflush --wait` through the
//                               CommandRunner seam, chains FLANNEL-POSTRTG / FLANNEL-FWD.
//
// Ownership (what "ours" means, and the only things any method changes):
//   nftables: the tables flannel-ipv4 / flannel-ipv6, and in them the chains of the RuleSet.
//   iptables: the chains FLANNEL-POSTRTG (nat) and FLANNEL-FWD (filter), and the rules in
//             POSTROUTING / FORWARD that jump to them. Rules a Go flannel left there have the same
//             names and comments (SPEC.md §9 item 11), so they are ours too and get recycled.
// Every other table, chain and rule, including other rules in POSTROUTING and FORWARD, is left
// alone.
//
// Life of the rules in the daemon (SPEC.md §1.4 step 11, §6.4, §6.5):
//
//   start-up:  other mode's table.removeAll(f)   (mode switch; errors logged)
//              table.removeRules(staleMasqRules(previous subnet.env, ...))
//              table.apply(plan(...))            (errors are fatal at start-up)
//   every --iptables-resync seconds:  RuleResync::runOnce(plan)  = missing() -> apply() if needed
//   exit:      nothing (rules persist, SPEC.md §6.7)
//
// Thread safety: none. Use a RuleTable from the thread that created it (the control thread):
// netfilter state is per network namespace, a libnftables context stays in the namespace of the
// thread that created it, and a spawned iptables-restore runs in the namespace of the thread that
// spawns it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/ip.h"
#include "core/result.h"
#include "traffic/rules.h"

namespace flannel::traffic {

// What missing() found; empty findings = every chain and rule of the RuleSet is in place.
struct RuleDrift {
  // One line per problem, for the log: "IPv4 nat/FLANNEL-POSTRTG: rule 3 is missing".
  std::vector<std::string> findings{};

  bool any() const noexcept { return !findings.empty(); }
  // The findings joined with "; ", for one log line.
  std::string summary() const;
};

class RuleTable {
 public:
  virtual ~RuleTable() = default;

  // "nftables" or "iptables", for logs.
  virtual std::string_view mechanism() const noexcept = 0;

  // Whether masquerade rules may carry --random-fully / fully-random here (probed once at
  // creation). PlanOptions::fully_random must be false when this is.
  virtual bool supportsFullyRandom() const noexcept = 0;

  // Makes every chain of `rules` hold exactly its rules, in order, creating tables and chains as
  // needed; in iptables mode also leaves exactly one jump rule to each chain, appended to its hook
  // chain (other copies, e.g. a Go flannel's rule inserted at position 1, are deleted in the same
  // transaction). Each table is replaced in one atomic transaction, so packets never see a
  // half-written chain. Idempotent. Chains and families not in `rules` are not touched.
  // Errors: Errc::NotFound (a binary is missing), Errc::Kernel (netfilter refused; the message
  // carries nft's or iptables-restore's own words), Errc::Internal, Errc::Timeout.
  virtual Result<void> apply(const RuleSet& rules) = 0;

  // Whether anything of `rules` is absent or different: a table or chain missing, a rule missing,
  // changed, reordered or added by someone else inside our chains, a jump rule missing or
  // doubled. Read-only. Errors as apply().
  virtual Result<RuleDrift> missing(const RuleSet& rules) = 0;

  // Deletes, from our chains, the rules of `stale` that are present (SPEC.md §6.5 recycling).
  // A masquerade rule matches whatever its random flag. Absent rules and chains are fine; jump
  // rules and other rules are kept. Errors as apply().
  virtual Result<void> removeRules(const RuleSet& stale) = 0;

  // Deletes everything of ours for `family` (used when switching modes): the nftables table, or
  // the iptables chains with the rules that jump to them. Already absent = success.
  // Errors as apply().
  virtual Result<void> removeAll(Family family) = 0;
};

}  // namespace flannel::traffic
