// DOC: which rules flanneld wants, from the network config and its own lease (pure; SPEC.md §6).
//
// plan() follows the newest flannel rule set (SPEC.md §6.2, §6.3) in both modes, with C = the
// cluster network (NetworkConfig::ruleNetwork(): Networks[0] when given, else Network) and P = our
// own pod subnet, per enabled family:
//
//   Masquerade (with --ip-masq), in order:
//     1. mark 0x4000/0x4000                -> RETURN       (kube-proxy masquerades it itself)
//     2. -s P   -d C                        -> RETURN       (our pods to the cluster)
//     3. -s C   -d P                        -> RETURN       (the cluster to our pods)
//     4. ! -s C -d P                        -> RETURN       (outside to our pods: keep the source)
//     5. -s C   ! -d 224.0.0.0/4|ff00::/8   -> MASQUERADE   (pods to the outside)
//     6. ! -s C -d C                        -> MASQUERADE   (host/outside to remote pods)
//   Forward (with --iptables-forward-rules):
//     1. -s C -> ACCEPT     2. -d C -> ACCEPT
//
// nftables mode gets the same rules. Two deliberate differences from Go flannel's nftables mode
// (SPEC.md §6.6): rule 4 matches `saddr != C` like iptables does (Go's `saddr != P daddr C return`
// also returns traffic to remote pods, so its rule 6 can never match), and the mark is matched
// with the 0x4000 mask like iptables does (Go matches the whole mark exactly, which misses
// kube-proxy's bit whenever another component uses other mark bits).
//
// staleMasqRules() implements the start-up recycling of SPEC.md §6.5 with the newest semantics: a
// family's old masquerade rules are stale when its old network OR its old subnet differs.
#pragma once

#include "core/lease.h"
#include "core/network_config.h"
#include "core/result.h"
#include "core/subnet_env.h"
#include "traffic/rules.h"

namespace flannel::traffic {

struct PlanOptions {
  bool ip_masq = false;       // --ip-masq
  bool forward_rules = true;  // --iptables-forward-rules
  // --random-fully / fully-random on the masquerade rules. The daemon passes
  // `!--ip-masq-fully-random-disable && table.supportsFullyRandom()`.
  bool fully_random = true;
};

// The rules for `config`'s enabled families and our lease `own`. Errc::InvalidInput when an
// enabled family has no network in the config, or (masquerading only) our lease has no subnet of
// that family or one outside the network. Options with nothing to install give an empty RuleSet.
Result<RuleSet> plan(const NetworkConfig& config, const SubnetKey& own, const PlanOptions& options);

// The masquerade rules of one family for cluster network `network` and pod subnet `subnet`.
std::vector<Rule> masqRules(const IpNet& network, const IpNet& subnet, bool fully_random);
// The forward rules of one family for cluster network `network`.
std::vector<Rule> forwardRules(const IpNet& network);

// The masquerade rules a previous run installed and this run no longer wants (SPEC.md §6.5): per
// family, when `previous` (the subnet.env found at start-up) names both a network and a subnet and
// either differs from this run's (`config`'s rule network and `own`), or this run no longer uses
// that family. The result holds masquerade chains only, built without --random-fully; removal
// matches masquerade rules whatever their random flag (RuleTable::removeRules).
RuleSet staleMasqRules(const SubnetEnv& previous, const NetworkConfig& config,
                       const SubnetKey& own);

}  // namespace flannel::traffic
