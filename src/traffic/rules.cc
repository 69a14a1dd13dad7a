#include "traffic/rules.h"

#include <fmt/format.h>

namespace flannel::traffic {

namespace {

constexpr ChainNames kMasqNames{
    .comment = names::kMasqComment,
    .iptables_table = names::kIptablesNatTable,
    .iptables_chain = names::kIptablesMasqChain,
    .iptables_hook_chain = names::kIptablesPostrouting,
    .nft_chain = names::kNftMasqChain,
    .nft_type = "nat",
    .nft_hook = "postrouting",
    .nft_priority = 100,  // srcnat
};

constexpr ChainNames kForwardNames{
    .comment = names::kForwardComment,
    .iptables_table = names::kIptablesFilterTable,
    .iptables_chain = names::kIptablesForwardChain,
    .iptables_hook_chain = names::kIptablesForward,
    .nft_chain = names::kNftForwardChain,
    .nft_type = "filter",
    .nft_hook = "forward",
    .nft_priority = 0,  // filter
};

std::string describeMatch(std::string_view flag, const std::optional<AddrMatch>& m) {
  if (!m) {
    return {};
  }
  return fmt::format("{}{} {} ", m->negated ? "! " : "", flag, m->net.toString());
}

}  // namespace

IpNet multicastNet(Family family) {
  if (family == Family::V4) {
    return IpNet::masked(Ip4::fromBytes(224, 0, 0, 0), 4);
  }
  Ip6::Bytes b{};
  b[0] = 0xff;
  return IpNet::masked(Ip6(b), 8);
}

const ChainNames& chainNames(ChainKind kind) noexcept {
  return kind == ChainKind::Masquerade ? kMasqNames : kForwardNames;
}

std::string_view nftTableName(Family family) noexcept {
  return family == Family::V4 ? names::kNftTableV4 : names::kNftTableV6;
}

std::string_view nftFamily(Family family) noexcept {
  return family == Family::V4 ? "ip" : "ip6";
}

bool sameRuleIgnoringRandom(const Rule& a, const Rule& b) noexcept {
  Rule x = a;
  Rule y = b;
  x.fully_random = false;
  y.fully_random = false;
  return x == y;
}

const ChainRules* FamilyRules::find(ChainKind kind) const noexcept {
  for (const auto& c : chains) {
    if (c.kind == kind) {
      return &c;
    }
  }
  return nullptr;
}

const FamilyRules* RuleSet::find(Family family) const noexcept {
  for (const auto& f : families) {
    if (f.family == family) {
      return &f;
    }
  }
  return nullptr;
}

bool RuleSet::empty() const noexcept {
  for (const auto& f : families) {
    if (!f.chains.empty()) {
      return false;
    }
  }
  return true;
}

std::string describeRule(const Rule& rule) {
  std::string out;
  if (rule.kube_proxy_mark) {
    out += fmt::format("mark {:#x}/{:#x} ", kKubeProxyMark, kKubeProxyMark);
  }
  out += describeMatch("-s", rule.src);
  out += describeMatch("-d", rule.dst);
  out += "-> ";
  switch (rule.action) {
    case Action::Return:
      out += "return";
      break;
    case Action::Accept:
      out += "accept";
      break;
    case Action::Masquerade:
      out += rule.fully_random ? "masquerade fully-random" : "masquerade";
      break;
  }
  return out;
}

}  // namespace flannel::traffic
