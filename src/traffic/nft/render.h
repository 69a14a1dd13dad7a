// DOC: libnftables JSON for our rules, and the reading of nft's JSON listings (pure;
// `man libnftables-json`).
//
// renderApply() makes one transaction per family, for nft_run_cmd_from_buffer(); libnftables
// sends one input as one netlink batch, so the kernel applies all of it or nothing:
//
//   {"nftables": [
//     {"add":   {"table": {"family": "ip", "name": "flannel-ipv4"}}},
//     {"add":   {"chain": {..., "name": "postrtg", "type": "nat", "hook": "postrouting",
//                          "prio": 100, "policy": "accept"}}},       create; no-op if it exists
//     {"flush": {"chain": {..., "name": "postrtg"}}},                 drop what it held
//     {"add":   {"rule":  {..., "chain": "postrtg", "comment": "flanneld masq", "expr": [...]}}},
//     ... the same for chain "forward" (filter, forward, priority 0) ...
//   ]}
//
// Statements are written in the form nft prints them back (a /32 or /128 prefix as a plain
// address, a single NAT flag as a string), so a listing compares equal to the rendering.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/ip.h"
#include "core/json_util.h"
#include "traffic/rules.h"

namespace flannel::traffic::nft {

// The "expr" array of one rule.
Json ruleExpr(const Rule& rule, Family family);

// The chain object of `kind` in our table of `family` (with type, hook, prio and policy).
Json chainObject(Family family, ChainKind kind);

// The transaction drawn above. For each kind in `recreate` the existing chain is flushed and
// deleted first, because a base chain's type, hook or priority cannot be changed in place.
Json renderApply(const FamilyRules& rules, const std::set<ChainKind>& recreate = {});

// Deletes our table of `family` whether or not it exists ("add" then "delete" in one
// transaction: nft 1.0.6 has no "destroy").
Json renderRemoveAll(Family family);

// Deletes the rules with these handles from our table of `family`.
struct RuleRef {
  std::string chain{};
  uint64_t handle = 0;
};
Json renderDeleteRules(Family family, const std::vector<RuleRef>& rules);

// One table as `list table` shows it.
struct ListedChain {
  std::string name{};
  // Base chains only.
  std::optional<std::string> type{};
  std::optional<std::string> hook{};
  std::optional<int64_t> prio{};
  std::optional<std::string> policy{};
};
struct ListedRule {
  std::string chain{};
  uint64_t handle = 0;
  std::string comment{};
  nlohmann::json expr{};  // normalised (see normalizeExpr)
};
struct ListedTable {
  std::vector<ListedChain> chains{};
  std::vector<ListedRule> rules{};  // in chain order, per chain

  const ListedChain* findChain(std::string_view name) const noexcept;
  std::vector<const ListedRule*> rulesOf(std::string_view name) const;
};

// Reads the objects of table `<family> <table>` from a listing's "nftables" array (other
// tables' objects are skipped). Total: Errc::InvalidInput when the document is not an nftables
// listing.
Result<ListedTable> parseListing(const nlohmann::json& listing, std::string_view family,
                                 std::string_view table);

// Whether a listing of tables shows `<family> <table>`.
bool hasTable(const nlohmann::json& listing, std::string_view family, std::string_view table);

// An "expr" array in a form where equal rules compare equal: a one-element NAT "flags" array
// becomes its element, an empty one disappears; object keys are unordered (nlohmann::json).
nlohmann::json normalizeExpr(const nlohmann::json& expr);

// What differs between the chain we want and the listed table, one line per problem, each
// starting with "<IPv4|IPv6> <table>/<chain>: ". Empty when the chain exists with our type, hook
// and priority and holds exactly `want` (statements and comments), in order.
std::vector<std::string> diffListing(Family family, const ChainRules& want,
                                     const ListedTable& seen);

// Whether an existing chain must be deleted and re-created to get our type, hook or priority.
bool needsRecreate(ChainKind kind, const ListedChain& chain);

// The rules of our chains in `seen` that are one of `stale` (masquerade rules match whatever
// their flags).
std::vector<RuleRef> staleRules(Family family, const ChainRules& stale, const ListedTable& seen);

}  // namespace flannel::traffic::nft
