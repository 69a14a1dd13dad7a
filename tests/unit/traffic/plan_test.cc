#include "traffic/plan.h"

#include <gtest/gtest.h>

#include "test_nets.h"

namespace flannel::traffic {
namespace {

using testing::dualConfig;
using testing::net;
using testing::ownSubnets;
using testing::v4Config;
using testing::v6Config;

constexpr PlanOptions kMasqAndForward{.ip_masq = true, .forward_rules = true, .fully_random = true};

AddrMatch is(std::string_view n) {
  return AddrMatch{.net = net(n), .negated = false};
}
AddrMatch isNot(std::string_view n) {
  return AddrMatch{.net = net(n), .negated = true};
}
Rule rule(std::optional<AddrMatch> src, std::optional<AddrMatch> dst, Action action,
          bool fully_random = false) {
  return Rule{.kube_proxy_mark = false,
              .src = src,
              .dst = dst,
              .action = action,
              .fully_random = fully_random};
}
Rule markReturn() {
  Rule r = rule(std::nullopt, std::nullopt, Action::Return);
  r.kube_proxy_mark = true;
  return r;
}

TEST(TrafficPlan, Ipv4MasqueradeRulesFollowNewestFlannelInOrder) {
  auto rs = plan(v4Config(), ownSubnets(), kMasqAndForward);
  ASSERT_TRUE(rs) << rs.error().message;
  ASSERT_EQ(rs->families.size(), 1u);
  const auto* masq = rs->families[0].find(ChainKind::Masquerade);
  ASSERT_NE(masq, nullptr);
  const std::vector<Rule> want = {
      markReturn(),
      rule(is("10.5.1.0/24"), is("10.5.0.0/16"), Action::Return),
      rule(is("10.5.0.0/16"), is("10.5.1.0/24"), Action::Return),
      rule(isNot("10.5.0.0/16"), is("10.5.1.0/24"), Action::Return),
      rule(is("10.5.0.0/16"), isNot("224.0.0.0/4"), Action::Masquerade, true),
      rule(isNot("10.5.0.0/16"), is("10.5.0.0/16"), Action::Masquerade, true),
  };
  EXPECT_EQ(masq->rules, want);
}

TEST(TrafficPlan, Ipv4ForwardRulesAcceptToAndFromTheNetwork) {
  auto rs = plan(v4Config(), ownSubnets(), kMasqAndForward);
  ASSERT_TRUE(rs);
  const auto* fwd = rs->families[0].find(ChainKind::Forward);
  ASSERT_NE(fwd, nullptr);
  const std::vector<Rule> want = {
      rule(is("10.5.0.0/16"), std::nullopt, Action::Accept),
      rule(std::nullopt, is("10.5.0.0/16"), Action::Accept),
  };
  EXPECT_EQ(fwd->rules, want);
  // Masquerade chain first, then forward.
  ASSERT_EQ(rs->families[0].chains.size(), 2u);
  EXPECT_EQ(rs->families[0].chains[0].kind, ChainKind::Masquerade);
  EXPECT_EQ(rs->families[0].chains[1].kind, ChainKind::Forward);
}

TEST(TrafficPlan, Ipv6UsesTheIpv6NetworkAndMulticastPrefix) {
  auto rs = plan(v6Config(), ownSubnets(), kMasqAndForward);
  ASSERT_TRUE(rs) << rs.error().message;
  ASSERT_EQ(rs->families.size(), 1u);
  EXPECT_EQ(rs->families[0].family, Family::V6);
  const auto* masq = rs->families[0].find(ChainKind::Masquerade);
  ASSERT_NE(masq, nullptr);
  ASSERT_EQ(masq->rules.size(), 6u);
  EXPECT_EQ(masq->rules[1], rule(is("fd00:10:0:1::/64"), is("fd00:10::/48"), Action::Return));
  EXPECT_EQ(masq->rules[4], rule(is("fd00:10::/48"), isNot("ff00::/8"), Action::Masquerade, true));
  const auto* fwd = rs->families[0].find(ChainKind::Forward);
  ASSERT_NE(fwd, nullptr);
  EXPECT_EQ(fwd->rules[0], rule(is("fd00:10::/48"), std::nullopt, Action::Accept));
}

TEST(TrafficPlan, DualStackPlansBothFamiliesIpv4First) {
  auto rs = plan(dualConfig(), ownSubnets(), kMasqAndForward);
  ASSERT_TRUE(rs) << rs.error().message;
  ASSERT_EQ(rs->families.size(), 2u);
  EXPECT_EQ(rs->families[0].family, Family::V4);
  EXPECT_EQ(rs->families[1].family, Family::V6);
  EXPECT_NE(rs->find(Family::V6), nullptr);
  EXPECT_EQ(rs->families[1].chains.size(), 2u);
}

TEST(TrafficPlan, IpMasqOffGivesOnlyForwardRules) {
  auto rs = plan(dualConfig(), ownSubnets(),
                 PlanOptions{.ip_masq = false, .forward_rules = true, .fully_random = true});
  ASSERT_TRUE(rs);
  ASSERT_EQ(rs->families.size(), 2u);
  for (const auto& f : rs->families) {
    ASSERT_EQ(f.chains.size(), 1u);
    EXPECT_EQ(f.chains[0].kind, ChainKind::Forward);
    EXPECT_EQ(f.find(ChainKind::Masquerade), nullptr);
  }
}

TEST(TrafficPlan, IpMasqOffNeedsNoSubnet) {
  auto rs = plan(v4Config(), SubnetKey{},
                 PlanOptions{.ip_masq = false, .forward_rules = true, .fully_random = true});
  ASSERT_TRUE(rs) << rs.error().message;
  EXPECT_EQ(rs->families.size(), 1u);
}

TEST(TrafficPlan, ForwardRulesOffGivesOnlyMasqueradeRules) {
  auto rs = plan(v4Config(), ownSubnets(),
                 PlanOptions{.ip_masq = true, .forward_rules = false, .fully_random = true});
  ASSERT_TRUE(rs);
  ASSERT_EQ(rs->families.size(), 1u);
  ASSERT_EQ(rs->families[0].chains.size(), 1u);
  EXPECT_EQ(rs->families[0].chains[0].kind, ChainKind::Masquerade);
}

TEST(TrafficPlan, NothingEnabledGivesAnEmptyRuleSet) {
  auto rs = plan(dualConfig(), ownSubnets(),
                 PlanOptions{.ip_masq = false, .forward_rules = false, .fully_random = true});
  ASSERT_TRUE(rs);
  EXPECT_TRUE(rs->empty());
  EXPECT_TRUE(rs->families.empty());
}

TEST(TrafficPlan, FullyRandomOffDropsTheFlagFromEveryMasquerade) {
  auto rs = plan(v4Config(), ownSubnets(),
                 PlanOptions{.ip_masq = true, .forward_rules = false, .fully_random = false});
  ASSERT_TRUE(rs);
  for (const auto& r : rs->families[0].chains[0].rules) {
    EXPECT_FALSE(r.fully_random) << describeRule(r);
  }
}

TEST(TrafficPlan, NetworksListReplacesNetworkForRules) {
  NetworkConfig c = v4Config();
  c.networks = {net("10.6.0.0/16"), net("10.7.0.0/16")};
  auto rs = plan(c, SubnetKey{.ipv4 = net("10.6.3.0/24"), .ipv6 = std::nullopt}, kMasqAndForward);
  ASSERT_TRUE(rs) << rs.error().message;
  EXPECT_EQ(rs->families[0].chains[1].rules[0].src->net, net("10.6.0.0/16"));
}

TEST(TrafficPlan, MasqueradeWithoutOurSubnetIsAnError) {
  auto rs = plan(dualConfig(), SubnetKey{.ipv4 = net("10.5.1.0/24"), .ipv6 = std::nullopt},
                 kMasqAndForward);
  ASSERT_FALSE(rs);
  EXPECT_EQ(rs.error().code, Errc::InvalidInput);
  EXPECT_NE(rs.error().message.find("IPv6"), std::string::npos) << rs.error().message;
}

TEST(TrafficPlan, SubnetOutsideTheNetworkIsAnError) {
  auto rs = plan(v4Config(), SubnetKey{.ipv4 = net("10.9.1.0/24"), .ipv6 = std::nullopt},
                 kMasqAndForward);
  ASSERT_FALSE(rs);
  EXPECT_NE(rs.error().message.find("10.9.1.0/24"), std::string::npos) << rs.error().message;
}

TEST(TrafficPlan, EnabledFamilyWithoutNetworkIsAnError) {
  NetworkConfig c = v4Config();
  c.network.reset();
  auto rs = plan(c, ownSubnets(), kMasqAndForward);
  ASSERT_FALSE(rs);
  EXPECT_EQ(rs.error().code, Errc::InvalidInput);
}

TEST(TrafficPlan, DescribeRuleIsReadable) {
  EXPECT_EQ(describeRule(rule(is("10.5.0.0/16"), isNot("224.0.0.0/4"), Action::Masquerade, true)),
            "-s 10.5.0.0/16 ! -d 224.0.0.0/4 -> masquerade fully-random");
  EXPECT_EQ(describeRule(markReturn()), "mark 0x4000/0x4000 -> return");
}

// --- staleMasqRules (SPEC.md §6.5, newest semantics: either differs) ---

SubnetEnv previous(std::string_view network, std::string_view subnet) {
  SubnetEnv env;
  env.network = net(network);
  env.subnet = net(subnet);
  return env;
}

TEST(StaleMasqRules, SameNetworkAndSubnetIsNotStale) {
  auto stale = staleMasqRules(previous("10.5.0.0/16", "10.5.1.0/24"), v4Config(), ownSubnets());
  EXPECT_TRUE(stale.empty());
}

TEST(StaleMasqRules, OnlySubnetChangedIsStale) {
  auto stale = staleMasqRules(previous("10.5.0.0/16", "10.5.7.0/24"), v4Config(), ownSubnets());
  ASSERT_EQ(stale.families.size(), 1u);
  ASSERT_EQ(stale.families[0].chains.size(), 1u);
  EXPECT_EQ(stale.families[0].chains[0].kind, ChainKind::Masquerade);
  EXPECT_EQ(stale.families[0].chains[0].rules,
            masqRules(net("10.5.0.0/16"), net("10.5.7.0/24"), false));
}

TEST(StaleMasqRules, OnlyNetworkChangedIsStale) {
  auto stale = staleMasqRules(previous("10.4.0.0/14", "10.5.1.0/24"), v4Config(), ownSubnets());
  ASSERT_EQ(stale.families.size(), 1u);
  EXPECT_EQ(stale.families[0].chains[0].rules[2].src->net, net("10.4.0.0/14"));
}

TEST(StaleMasqRules, BothChangedIsStale) {
  auto stale = staleMasqRules(previous("10.4.0.0/16", "10.4.9.0/24"), v4Config(), ownSubnets());
  EXPECT_EQ(stale.families.size(), 1u);
}

TEST(StaleMasqRules, NoPreviousFileOrHalfAPairNamesNothing) {
  EXPECT_TRUE(staleMasqRules(SubnetEnv{}, v4Config(), ownSubnets()).empty());
  SubnetEnv half;
  half.network = net("10.4.0.0/16");
  EXPECT_TRUE(staleMasqRules(half, v4Config(), ownSubnets()).empty());
}

TEST(StaleMasqRules, FamilyNoLongerEnabledIsStale) {
  SubnetEnv env = previous("10.5.0.0/16", "10.5.1.0/24");
  env.ipv6_network = net("fd00:10::/48");
  env.ipv6_subnet = net("fd00:10:0:1::/64");
  auto stale = staleMasqRules(env, v4Config(), ownSubnets());
  ASSERT_EQ(stale.families.size(), 1u);
  EXPECT_EQ(stale.families[0].family, Family::V6);
}

TEST(StaleMasqRules, FamiliesAreDecidedIndependently) {
  SubnetEnv env = previous("10.5.0.0/16", "10.5.2.0/24");
  env.ipv6_network = net("fd00:10::/48");
  env.ipv6_subnet = net("fd00:10:0:1::/64");
  auto stale = staleMasqRules(env, dualConfig(), ownSubnets());
  ASSERT_EQ(stale.families.size(), 1u);
  EXPECT_EQ(stale.families[0].family, Family::V4);
}

TEST(StaleMasqRules, RulesMatchIgnoringRandomFlag) {
  Rule a = rule(is("10.5.0.0/16"), isNot("224.0.0.0/4"), Action::Masquerade, true);
  Rule b = a;
  b.fully_random = false;
  EXPECT_TRUE(sameRuleIgnoringRandom(a, b));
  b.dst = is("224.0.0.0/4");
  EXPECT_FALSE(sameRuleIgnoringRandom(a, b));
}

}  // namespace
}  // namespace flannel::traffic
