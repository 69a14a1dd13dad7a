#include "traffic/plan.h"

#include <fmt/format.h>

namespace flannel::traffic {

namespace {

AddrMatch is(const IpNet& net) {
  return AddrMatch{.net = net, .negated = false};
}
AddrMatch isNot(const IpNet& net) {
  return AddrMatch{.net = net, .negated = true};
}

Rule ret(std::optional<AddrMatch> src, std::optional<AddrMatch> dst) {
  return Rule{.kube_proxy_mark = false,
              .src = std::move(src),
              .dst = std::move(dst),
              .action = Action::Return,
              .fully_random = false};
}

Rule masq(std::optional<AddrMatch> src, std::optional<AddrMatch> dst, bool fully_random) {
  return Rule{.kube_proxy_mark = false,
              .src = std::move(src),
              .dst = std::move(dst),
              .action = Action::Masquerade,
              .fully_random = fully_random};
}

Rule accept(std::optional<AddrMatch> src, std::optional<AddrMatch> dst) {
  return Rule{.kube_proxy_mark = false,
              .src = std::move(src),
              .dst = std::move(dst),
              .action = Action::Accept,
              .fully_random = false};
}

struct FamilyInputs {
  Family family = Family::V4;
  bool enabled = false;
  std::optional<IpNet> network{};
  std::optional<IpNet> subnet{};
};

}  // namespace

std::vector<Rule> masqRules(const IpNet& network, const IpNet& subnet, bool fully_random) {
  const IpNet mc = multicastNet(network.family());
  Rule mark = ret(std::nullopt, std::nullopt);
  mark.kube_proxy_mark = true;
  return {
      mark,
      ret(is(subnet), is(network)),
      ret(is(network), is(subnet)),
      ret(isNot(network), is(subnet)),
      masq(is(network), isNot(mc), fully_random),
      masq(isNot(network), is(network), fully_random),
  };
}

std::vector<Rule> forwardRules(const IpNet& network) {
  return {accept(is(network), std::nullopt), accept(std::nullopt, is(network))};
}

Result<RuleSet> plan(const NetworkConfig& config, const SubnetKey& own,
                     const PlanOptions& options) {
  const FamilyInputs inputs[] = {
      {Family::V4, config.enable_ipv4, config.ruleNetwork(), own.ipv4},
      {Family::V6, config.enable_ipv6, config.ruleIPv6Network(), own.ipv6},
  };
  RuleSet out;
  for (const auto& in : inputs) {
    if (!in.enabled || (!options.ip_masq && !options.forward_rules)) {
      continue;
    }
    const auto fam = familyName(in.family);
    if (!in.network) {
      return invalidInput(
          fmt::format("{} is enabled but the network config has no {} network", fam, fam));
    }
    if (in.network->family() != in.family) {
      return invalidInput(
          fmt::format("{} network {} is not an {} prefix", fam, in.network->toString(), fam));
    }
    FamilyRules rules{.family = in.family, .chains = {}};
    if (options.ip_masq) {
      if (!in.subnet) {
        return invalidInput(
            fmt::format("{} masquerading needs our {} subnet, but the lease has none", fam, fam));
      }
      if (in.subnet->family() != in.family || !in.network->contains(*in.subnet)) {
        return invalidInput(fmt::format("our subnet {} is not inside the {} network {}",
                                        in.subnet->toString(), fam, in.network->toString()));
      }
      rules.chains.push_back(ChainRules{
          .kind = ChainKind::Masquerade,
          .rules = masqRules(*in.network, *in.subnet, options.fully_random),
      });
    }
    if (options.forward_rules) {
      rules.chains.push_back(
          ChainRules{.kind = ChainKind::Forward, .rules = forwardRules(*in.network)});
    }
    out.families.push_back(std::move(rules));
  }
  return out;
}

RuleSet staleMasqRules(const SubnetEnv& previous, const NetworkConfig& config,
                       const SubnetKey& own) {
  const FamilyInputs olds[] = {
      {Family::V4, true, previous.network, previous.subnet},
      {Family::V6, true, previous.ipv6_network, previous.ipv6_subnet},
  };
  const FamilyInputs news[] = {
      {Family::V4, config.enable_ipv4, config.ruleNetwork(), own.ipv4},
      {Family::V6, config.enable_ipv6, config.ruleIPv6Network(), own.ipv6},
  };
  RuleSet out;
  for (size_t i = 0; i < 2; ++i) {
    const auto& old = olds[i];
    const auto& now = news[i];
    if (!old.network || !old.subnet) {
      continue;
    }
    // A subnet.env written by hand could hold the wrong family; such a pair names no rules of
    // ours.
    if (old.network->family() != old.family || old.subnet->family() != old.family) {
      continue;
    }
    const bool same = now.enabled && now.network == old.network && now.subnet == old.subnet;
    if (same) {
      continue;
    }
    out.families.push_back(FamilyRules{
        .family = old.family,
        .chains = {ChainRules{.kind = ChainKind::Masquerade,
                              .rules = masqRules(*old.network, *old.subnet, false)}},
    });
  }
  return out;
}

}  // namespace flannel::traffic
