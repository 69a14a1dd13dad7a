#include "traffic/nft/render.h"

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "golden.h"
#include "test_nets.h"
#include "traffic/plan.h"

namespace flannel::traffic::nft {
namespace {

using testing::dualConfig;
using testing::expectGolden;
using testing::net;
using testing::ownSubnets;
using testing::v4Config;

constexpr PlanOptions kAll{.ip_masq = true, .forward_rules = true, .fully_random = true};

RuleSet dualPlan() {
  auto rs = plan(dualConfig(), ownSubnets(), kAll);
  EXPECT_TRUE(rs);
  return rs ? *rs : RuleSet{};
}

// `nft -j list table ...` captured from nftables 1.0.6 after applying renderApply(dualPlan()).
nlohmann::json capturedListing(const std::string& name) {
  std::ifstream in(std::string(FLANNEL_TRAFFIC_GOLDEN_DIR) + "/" + name);
  EXPECT_TRUE(in) << name;
  std::stringstream buf;
  buf << in.rdbuf();
  return nlohmann::json::parse(buf.str());
}

ListedTable listed(const nlohmann::json& listing, Family family) {
  auto t = parseListing(listing, nftFamily(family), nftTableName(family));
  EXPECT_TRUE(t) << (t ? "" : t.error().message);
  return t ? *t : ListedTable{};
}

TEST(NftRender, ApplyIpv4MatchesGolden) {
  expectGolden("nft_apply_v4.json", renderApply(dualPlan().families[0]).dump(2) + "\n");
}

TEST(NftRender, ApplyIpv6MatchesGolden) {
  expectGolden("nft_apply_v6.json", renderApply(dualPlan().families[1]).dump(2) + "\n");
}

TEST(NftRender, RecreatingAChainFlushesAndDeletesItFirst) {
  const auto doc = renderApply(dualPlan().families[0], {ChainKind::Forward});
  const auto& cmds = doc["nftables"];
  // add table, [postrtg: add, flush, 6 rules], [forward: flush, delete, add, flush, 2 rules]
  ASSERT_EQ(cmds.size(), 1u + 8u + 6u);
  EXPECT_TRUE(cmds[9].contains("flush"));
  EXPECT_TRUE(cmds[10].contains("delete"));
  EXPECT_EQ(cmds[10]["delete"]["chain"]["name"], "forward");
  EXPECT_TRUE(cmds[11].contains("add"));
}

TEST(NftRender, RemoveAllAddsThenDeletesTheTable) {
  expectGolden("nft_remove_all_v6.json", renderRemoveAll(Family::V6).dump(2) + "\n");
}

TEST(NftRender, DeleteRulesByHandle) {
  const auto doc = renderDeleteRules(Family::V4, {RuleRef{.chain = "postrtg", .handle = 12}});
  EXPECT_EQ(doc.dump(), R"({"nftables":[{"delete":{"rule":{"family":"ip","table":"flannel-ipv4",)"
                        R"("chain":"postrtg","handle":12}}}]})");
}

TEST(NftRender, FullLengthPrefixIsAPlainAddress) {
  Rule r{.kube_proxy_mark = false,
         .src = AddrMatch{.net = net("10.5.1.7/32"), .negated = false},
         .dst = AddrMatch{.net = net("fd00::/8"), .negated = true},
         .action = Action::Accept,
         .fully_random = false};
  const auto expr = ruleExpr(r, Family::V4);
  EXPECT_EQ(expr[0]["match"]["right"], "10.5.1.7");
  EXPECT_EQ(expr[1]["match"]["op"], "!=");
  EXPECT_EQ(expr[1]["match"]["right"]["prefix"]["len"], 8);
}

TEST(NftRender, CapturedListingOfOurApplyHasNoDrift) {
  const auto rs = dualPlan();
  for (const auto& [file, fam] : {std::pair{"nft_listing_v4_nft-1.0.6.json", Family::V4},
                                  std::pair{"nft_listing_v6_nft-1.0.6.json", Family::V6}}) {
    const auto table = listed(capturedListing(file), fam);
    EXPECT_EQ(table.chains.size(), 2u);
    for (const auto& chain : rs.find(fam)->chains) {
      const auto findings = diffListing(fam, chain, table);
      EXPECT_TRUE(findings.empty()) << file << ": " << findings.front();
    }
  }
}

TEST(NftRender, DiffListingFindsADeletedRule) {
  auto listing = capturedListing("nft_listing_v4_nft-1.0.6.json");
  auto& items = listing["nftables"];
  // Drop the rule with handle 12 (rule 4 of postrtg).
  for (auto it = items.begin(); it != items.end(); ++it) {
    if (it->contains("rule") && (*it)["rule"]["handle"] == 12) {
      items.erase(it);
      break;
    }
  }
  const auto rs = dualPlan();
  const auto findings =
      diffListing(Family::V4, rs.families[0].chains[0], listed(listing, Family::V4));
  ASSERT_FALSE(findings.empty());
  EXPECT_EQ(findings[0].rfind("IPv4 ip flannel-ipv4/postrtg: rule 4 is ", 0), 0u) << findings[0];
  EXPECT_NE(findings.back().find("rule 6 is missing"), std::string::npos) << findings.back();
  // The forward chain is untouched.
  EXPECT_TRUE(
      diffListing(Family::V4, rs.families[0].chains[1], listed(listing, Family::V4)).empty());
}

TEST(NftRender, DiffListingFindsAMissingChainAndAWrongPriority) {
  auto listing = capturedListing("nft_listing_v4_nft-1.0.6.json");
  auto& items = listing["nftables"];
  for (auto& item : items) {
    if (item.contains("chain") && item["chain"]["name"] == "postrtg") {
      item["chain"]["prio"] = 50;
    }
  }
  const auto rs = dualPlan();
  auto table = listed(listing, Family::V4);
  auto findings = diffListing(Family::V4, rs.families[0].chains[0], table);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0],
            "IPv4 ip flannel-ipv4/postrtg: chain is type nat hook postrouting priority 50, want "
            "nat postrouting 100");
  EXPECT_TRUE(needsRecreate(ChainKind::Masquerade, *table.findChain("postrtg")));
  EXPECT_FALSE(needsRecreate(ChainKind::Forward, *table.findChain("forward")));

  findings = diffListing(Family::V4, rs.families[0].chains[0], ListedTable{});
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0], "IPv4 ip flannel-ipv4/postrtg: chain does not exist");
}

TEST(NftRender, DiffListingFindsARuleAddedBySomeoneElse) {
  auto listing = capturedListing("nft_listing_v4_nft-1.0.6.json");
  listing["nftables"].push_back(nlohmann::json::parse(
      R"({"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "forward", "handle": 30,
          "expr": [{"drop": null}]}})"));
  const auto rs = dualPlan();
  const auto findings =
      diffListing(Family::V4, rs.families[0].chains[1], listed(listing, Family::V4));
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0], R"(IPv4 ip flannel-ipv4/forward: unexpected rule 3: [{"drop":null}])");
}

TEST(NftRender, RulesWithoutOurCommentAreDrift) {
  // Go flannel's nftables mode writes no rule comments; such rules get replaced.
  auto listing = capturedListing("nft_listing_v4_nft-1.0.6.json");
  for (auto& item : listing["nftables"]) {
    if (item.contains("rule")) {
      item["rule"].erase("comment");
    }
  }
  const auto rs = dualPlan();
  EXPECT_EQ(diffListing(Family::V4, rs.families[0].chains[1], listed(listing, Family::V4)).size(),
            2u);
}

TEST(NftRender, ParseListingSkipsOtherTablesAndIsTotal) {
  const auto listing = nlohmann::json::parse(R"({"nftables": [
    {"metainfo": {"version": "1.0.6"}},
    {"chain": {"family": "ip", "table": "nat", "name": "postrtg", "type": "nat"}},
    {"chain": {"family": "ip6", "table": "flannel-ipv4", "name": "postrtg"}},
    {"chain": {"family": "ip", "table": "flannel-ipv4", "name": "forward", "prio": "x"}},
    {"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "forward", "handle": 3,
              "expr": [{"accept": null}]}},
    {"rule": {"family": "ip", "table": "flannel-ipv4"}},
    {"rule": 7}, 42, null
  ]})");
  auto table = parseListing(listing, "ip", "flannel-ipv4");
  ASSERT_TRUE(table);
  ASSERT_EQ(table->chains.size(), 1u);
  EXPECT_EQ(table->chains[0].name, "forward");
  EXPECT_FALSE(table->chains[0].prio.has_value());
  ASSERT_EQ(table->rules.size(), 1u);
  EXPECT_EQ(table->rules[0].handle, 3u);

  EXPECT_FALSE(parseListing(nlohmann::json::parse("{}"), "ip", "x"));
  EXPECT_FALSE(parseListing(nlohmann::json::parse(R"({"nftables": 1})"), "ip", "x"));
  EXPECT_TRUE(
      hasTable(nlohmann::json::parse(
                   R"({"nftables": [{"table": {"family": "ip", "name": "flannel-ipv4"}}]})"),
               "ip", "flannel-ipv4"));
  EXPECT_FALSE(
      hasTable(nlohmann::json::parse(
                   R"({"nftables": [{"table": {"family": "ip6", "name": "flannel-ipv4"}}]})"),
               "ip", "flannel-ipv4"));
}

TEST(NftRender, NormalizeExprTreatsNatFlagFormsAlike) {
  const auto a =
      normalizeExpr(nlohmann::json::parse(R"([{"masquerade": {"flags": ["fully-random"]}}])"));
  const auto b =
      normalizeExpr(nlohmann::json::parse(R"([{"masquerade": {"flags": "fully-random"}}])"));
  const auto c = normalizeExpr(nlohmann::json::parse(R"([{"masquerade": {"flags": []}}])"));
  EXPECT_EQ(a, b);
  EXPECT_EQ(c, nlohmann::json::parse(R"([{"masquerade": null}])"));
}

TEST(NftRender, StaleRulesMatchWhateverTheRandomFlag) {
  const auto table = listed(capturedListing("nft_listing_v4_nft-1.0.6.json"), Family::V4);
  const ChainRules stale{.kind = ChainKind::Masquerade,
                         .rules = masqRules(net("10.5.0.0/16"), net("10.5.1.0/24"), false)};
  const auto refs = staleRules(Family::V4, stale, table);
  ASSERT_EQ(refs.size(), 6u);
  EXPECT_EQ(refs[0].handle, 9u);
  EXPECT_EQ(refs[5].handle, 14u);
  EXPECT_EQ(refs[0].chain, "postrtg");
  const ChainRules other{.kind = ChainKind::Masquerade,
                         .rules = masqRules(net("10.5.0.0/16"), net("10.5.2.0/24"), true)};
  // Only the subnet-independent rules (mark, the two masquerades) are shared.
  EXPECT_EQ(staleRules(Family::V4, other, table).size(), 3u);
}

}  // namespace
}  // namespace flannel::traffic::nft
