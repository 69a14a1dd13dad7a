// DOC: iptables-restore text for our rules, and the reading of iptables-save output (pure).
//
// Rule text is written exactly as iptables-save prints it (addresses first, then matches in
// order, then the target), so a saved rule compares equal to its rendering as a string and a
// saved line can be fed back as a `-D` line. Comment values are double-quoted.
//
// renderApply() makes one `iptables-restore --noflush` payload per family, one section per table;
// each section is committed atomically:
//
//   *nat
//   :FLANNEL-POSTRTG - [0:0]                  create the chain, or flush it (--noflush semantics)
//   -D POSTROUTING <each jump seen>           our old jump(s), a Go flannel's inserted one included
//   -A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
//   -A FLANNEL-POSTRTG <rule> ...
//   COMMIT
//
// Deleting every jump seen and appending one in the same transaction is what keeps jumps from
// ever doubling, whoever added the earlier ones, without a moment where none is there.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip.h"
#include "traffic/rules.h"

namespace flannel::traffic::iptables {

// `-s 10.5.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE
// --random-fully`: the part of a rule line after `-A <chain> `.
std::string ruleSpec(const Rule& rule, ChainKind kind);

// `-m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`: our jump rule in the hook chain.
std::string jumpSpec(ChainKind kind);

// One chain of ours as iptables-save shows it.
struct SavedChain {
  bool exists = false;
  std::vector<std::string> rules{};  // the chain's rule specs, in order
  std::vector<std::string> jumps{};  // specs of the hook chain's rules that jump (-j/-g) to it

  friend bool operator==(const SavedChain&, const SavedChain&) = default;
};

// Reads `kind`'s chain from iptables-save output (any number of tables; only the kind's table is
// looked at). Total: lines it does not understand are skipped.
SavedChain parseSave(std::string_view save_text, ChainKind kind);

// What differs between the chain we want and what iptables-save showed, one line per problem,
// each starting with "<IPv4|IPv6> <table>/<chain>: ". Empty when the chain holds exactly `want`
// and the hook chain holds exactly one jump to it, equal to jumpSpec().
std::vector<std::string> diffSaved(Family family, const ChainRules& want, const SavedChain& seen);

// The restore payload for apply(): per chain of `rules`, its table's section as drawn above.
// `seen[kind]` is what iptables-save showed just before (its jumps are deleted); a kind absent
// from `seen` is taken to have no jump yet.
std::string renderApply(const FamilyRules& rules, const std::map<ChainKind, SavedChain>& seen);

// A section deleting the rules of `kind`'s chain whose saved specs are `specs` (one -D each).
// Empty text when `specs` is empty.
std::string renderRemoveRules(ChainKind kind, const std::vector<std::string>& specs);

// A section deleting the jumps of `seen`, then flushing and deleting the chain if it exists.
// Empty text when there is nothing to delete.
std::string renderRemoveAll(ChainKind kind, const SavedChain& seen);

// The saved rule specs of `seen` that are one of `stale` (masquerade rules match whatever their
// --random-fully flag), in chain order.
std::vector<std::string> staleSpecs(ChainKind kind, const std::vector<Rule>& stale,
                                    const SavedChain& seen);

// If iptables-restore's stderr names the payload line that failed ("line 5 failed",
// "Error occurred at line: 5"), that line of `payload`, quoted for a message; else "".
std::string failedLine(std::string_view stderr_text, std::string_view payload);

}  // namespace flannel::traffic::iptables
