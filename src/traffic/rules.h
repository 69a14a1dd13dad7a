// DOC: the masquerade and forward rules flanneld installs, as plain data (pure; SPEC.md §6).
//
// A RuleSet says, per address family, which of our chains we manage and the rules each must hold,
// in order. It does not say how they are installed: the same RuleSet renders to
// iptables-restore text (traffic/iptables) and to a libnftables JSON transaction (traffic/nft).
//
//   RuleSet
//    └─ FamilyRules (IPv4, IPv6)           one per enabled family
//        └─ ChainRules (Masquerade, Forward) one per managed chain; absent = not managed, not
//        touched
//            └─ Rule ...                    matched in order
//
// Names are flannel's, so Go flannel and flannel-cpp recycle each other's rules on upgrade or
// downgrade instead of doubling them (SPEC.md §9 item 11):
//
//   kind         comment            iptables (table / chain / jump from)     nftables (table <fam>)
//   Masquerade   "flanneld masq"    nat / FLANNEL-POSTRTG / POSTROUTING       chain postrtg:
//                                                                            nat, postrouting, 100
//   Forward      "flanneld forward" filter / FLANNEL-FWD / FORWARD            chain forward:
//                                                                            filter, forward, 0
//   nftables tables: `ip flannel-ipv4`, `ip6 flannel-ipv6`.
//
// In iptables mode every chain also has one jump rule, appended to its hook chain and carrying
// the chain's comment; the renderers derive it from the chain kind, so it is not a Rule here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip.h"
#include "core/ip_net.h"

namespace flannel::traffic {

// Wire names (SPEC.md §6), in one place.
namespace names {
inline constexpr std::string_view kMasqComment = "flanneld masq";
inline constexpr std::string_view kForwardComment = "flanneld forward";

inline constexpr std::string_view kIptablesNatTable = "nat";
inline constexpr std::string_view kIptablesFilterTable = "filter";
inline constexpr std::string_view kIptablesMasqChain = "FLANNEL-POSTRTG";
inline constexpr std::string_view kIptablesForwardChain = "FLANNEL-FWD";
inline constexpr std::string_view kIptablesPostrouting = "POSTROUTING";
inline constexpr std::string_view kIptablesForward = "FORWARD";

inline constexpr std::string_view kNftTableV4 = "flannel-ipv4";
inline constexpr std::string_view kNftTableV6 = "flannel-ipv6";
inline constexpr std::string_view kNftMasqChain = "postrtg";
inline constexpr std::string_view kNftForwardChain = "forward";
}  // namespace names

// The mark kube-proxy sets on traffic it wants masqueraded itself (matched as 0x4000/0x4000).
inline constexpr uint32_t kKubeProxyMark = 0x4000;

// 224.0.0.0/4 or ff00::/8: never masqueraded.
IpNet multicastNet(Family family);

enum class ChainKind { Masquerade, Forward };

// Everything a chain kind is called, in both modes.
struct ChainNames {
  std::string_view comment{};
  std::string_view iptables_table{};       // "nat" / "filter"
  std::string_view iptables_chain{};       // "FLANNEL-POSTRTG" / "FLANNEL-FWD"
  std::string_view iptables_hook_chain{};  // "POSTROUTING" / "FORWARD" (holds our jump rule)
  std::string_view nft_chain{};            // "postrtg" / "forward"
  std::string_view nft_type{};             // "nat" / "filter"
  std::string_view nft_hook{};             // "postrouting" / "forward"
  int nft_priority = 0;                    // srcnat (100) / filter (0)
};
const ChainNames& chainNames(ChainKind kind) noexcept;

// "flannel-ipv4" / "flannel-ipv6".
std::string_view nftTableName(Family family) noexcept;
// nftables address family of our tables and of iptables-nft's tables: "ip" / "ip6".
std::string_view nftFamily(Family family) noexcept;

// A source or destination match: `-s N` / `! -s N`, `ip saddr N` / `ip saddr != N`.
struct AddrMatch {
  IpNet net{};
  bool negated = false;

  friend bool operator==(const AddrMatch&, const AddrMatch&) = default;
};

enum class Action { Return, Accept, Masquerade };

struct Rule {
  // `-m mark --mark 0x4000/0x4000` / `meta mark & 0x4000 == 0x4000` (kube-proxy's mark bit).
  bool kube_proxy_mark = false;
  std::optional<AddrMatch> src{};
  std::optional<AddrMatch> dst{};
  Action action = Action::Return;
  // Masquerade only: `--random-fully` / `fully-random`.
  bool fully_random = false;

  friend bool operator==(const Rule&, const Rule&) = default;
};

// Equal, except that the fully-random flag of a masquerade is ignored. Used to recognise a rule
// installed by an earlier run whatever its --random-fully setting was (SPEC.md §6.5).
bool sameRuleIgnoringRandom(const Rule& a, const Rule& b) noexcept;

struct ChainRules {
  ChainKind kind = ChainKind::Masquerade;
  std::vector<Rule> rules{};

  friend bool operator==(const ChainRules&, const ChainRules&) = default;
};

struct FamilyRules {
  Family family = Family::V4;
  std::vector<ChainRules> chains{};  // at most one per kind; Masquerade first

  const ChainRules* find(ChainKind kind) const noexcept;
  friend bool operator==(const FamilyRules&, const FamilyRules&) = default;
};

struct RuleSet {
  std::vector<FamilyRules> families{};  // at most one per family; IPv4 first

  const FamilyRules* find(Family family) const noexcept;
  // No chain managed at all.
  bool empty() const noexcept;
  friend bool operator==(const RuleSet&, const RuleSet&) = default;
};

// One line for logs and messages, e.g. "-s 10.5.0.0/16 ! -d 224.0.0.0/4 -> masquerade
// fully-random". For people only.
std::string describeRule(const Rule& rule);

}  // namespace flannel::traffic
