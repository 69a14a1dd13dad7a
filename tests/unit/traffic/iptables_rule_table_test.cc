#include "traffic/iptables/iptables_rule_table.h"

#include <map>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/fake_runner.h"
#include "test_nets.h"
#include "traffic/iptables/render.h"
#include "traffic/plan.h"

namespace flannel::traffic::iptables {
namespace {

using flannel::test::FakeRunner;
using testing::dualConfig;
using testing::net;
using testing::ownSubnets;
using testing::v4Config;

constexpr PlanOptions kAll{.ip_masq = true, .forward_rules = true, .fully_random = true};
using Argv = std::vector<std::string>;

const std::string kEmptyNat =
    "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    ":POSTROUTING ACCEPT [0:0]\nCOMMIT\n";
const std::string kEmptyFilter =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

// iptables-save output holding exactly our rules for `chain`.
std::string savedWith(const ChainRules& chain) {
  const ChainNames& n = chainNames(chain.kind);
  std::string out = fmt::format("*{}\n:{} ACCEPT [0:0]\n:{} - [0:0]\n", n.iptables_table,
                                n.iptables_hook_chain, n.iptables_chain);
  out += fmt::format("-A {} {}\n", n.iptables_hook_chain, jumpSpec(chain.kind));
  for (const auto& r : chain.rules) {
    out += fmt::format("-A {} {}\n", n.iptables_chain, ruleSpec(r, chain.kind));
  }
  return out + "COMMIT\n";
}

RuleSet v4Plan() {
  auto rs = plan(v4Config(), ownSubnets(), kAll);
  EXPECT_TRUE(rs);
  return rs ? *rs : RuleSet{};
}

// A ChainReader whose snapshots the test sets; counts calls.
class FakeChainReader final : public ChainReader {
 public:
  struct State {
    std::map<std::string, std::string> snaps;  // "<table>/<chain>" -> snapshot
    int calls = 0;
    bool fail = false;
  };
  explicit FakeChainReader(std::shared_ptr<State> state) : state_(std::move(state)) {}
  Result<std::string> snapshot(Family, std::string_view table, std::string_view chain,
                               std::string_view) override {
    ++state_->calls;
    if (state_->fail) {
      return makeError(Errc::Kernel, "libnftables: Operation not permitted");
    }
    return state_->snaps[fmt::format("{}/{}", table, chain)];
  }

 private:
  std::shared_ptr<State> state_;
};

struct Harness {
  std::shared_ptr<FakeRunner> runner = std::make_shared<FakeRunner>();
  std::shared_ptr<FakeChainReader::State> reader_state = std::make_shared<FakeChainReader::State>();

  std::unique_ptr<IptablesRuleTable> create(std::string version_line) {
    runner->once({"iptables", "--version"}, FakeRunner::exited(0, version_line + "\n"));
    auto t = IptablesRuleTable::create(runner, IptablesOptions{},
                                       std::make_unique<FakeChainReader>(reader_state));
    EXPECT_TRUE(t) << (t ? "" : t.error().message);
    runner->clearCalls();
    return t ? std::move(*t) : nullptr;
  }
};

TEST(IptablesVersionParse, ReadsVariantAndVersion) {
  auto nft = parseIptablesVersion("iptables v1.8.9 (nf_tables)");
  ASSERT_TRUE(nft);
  EXPECT_EQ(nft->variant, IptablesVariant::Nft);
  EXPECT_EQ(nft->major, 1);
  EXPECT_EQ(nft->minor, 8);
  EXPECT_EQ(nft->patch, 9);
  auto legacy = parseIptablesVersion("iptables v1.8.7 (legacy)");
  ASSERT_TRUE(legacy);
  EXPECT_EQ(legacy->variant, IptablesVariant::Legacy);
  auto old = parseIptablesVersion("iptables v1.6.1");
  ASSERT_TRUE(old);
  EXPECT_EQ(old->variant, IptablesVariant::Legacy);
  EXPECT_FALSE(old->atLeast(1, 6, 2));
  EXPECT_TRUE(parseIptablesVersion("iptables v1.6.2")->atLeast(1, 6, 2));
  EXPECT_TRUE(parseIptablesVersion("ip6tables v1.10")->atLeast(1, 6, 2));
  for (std::string_view bad : {"", "iptables", "iptables v", "iptables vx.y", "iptables v1."}) {
    EXPECT_FALSE(parseIptablesVersion(bad)) << bad;
  }
}

TEST(IptablesRuleTable, CreateRunsIptablesVersionOnce) {
  auto runner = std::make_shared<FakeRunner>();
  runner->on({"iptables", "--version"}, FakeRunner::exited(0, "iptables v1.8.9 (nf_tables)\n"));
  auto t = IptablesRuleTable::create(runner);
  ASSERT_TRUE(t);
  EXPECT_EQ(runner->argvs(), (std::vector<Argv>{{"iptables", "--version"}}));
  EXPECT_TRUE((*t)->supportsFullyRandom());
  EXPECT_FALSE((*t)->checksInProcess());  // no reader given
  EXPECT_EQ((*t)->mechanism(), "iptables");
}

TEST(IptablesRuleTable, MissingIptablesIsAClearError) {
  auto runner = std::make_shared<FakeRunner>();
  runner->missing("iptables");
  auto t = IptablesRuleTable::create(runner);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, Errc::NotFound);
  EXPECT_EQ(t.error().message,
            "iptables mode needs the iptables programs: running iptables: executable not found "
            "on PATH");
}

TEST(IptablesRuleTable, OldIptablesGetsNeitherWaitNorRandomFully) {
  Harness h;
  auto t = h.create("iptables v1.6.1");
  EXPECT_FALSE(t->supportsFullyRandom());
  EXPECT_FALSE(t->checksInProcess());
  h.runner->on({"iptables-save"}, FakeRunner::exited(0, kEmptyNat));
  h.runner->on({"iptables-restore"}, FakeRunner::exited(0));
  ASSERT_TRUE(t->apply(v4Plan()));
  EXPECT_EQ(h.runner->argvs().back(), (Argv{"iptables-restore", "--noflush"}));
}

TEST(IptablesRuleTable, ApplySavesEachTableThenRestoresOnce) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (legacy)");
  h.runner->on({"iptables-save", "-t", "nat"}, FakeRunner::exited(0, kEmptyNat));
  h.runner->on({"iptables-save", "-t", "filter"}, FakeRunner::exited(0, kEmptyFilter));
  h.runner->on({"iptables-restore"}, FakeRunner::exited(0));
  const auto rs = v4Plan();
  ASSERT_TRUE(t->apply(rs));
  const auto calls = h.runner->calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].argv, (Argv{"iptables-save", "-t", "nat"}));
  EXPECT_EQ(calls[1].argv, (Argv{"iptables-save", "-t", "filter"}));
  EXPECT_EQ(calls[2].argv, (Argv{"iptables-restore", "--noflush", "--wait"}));
  EXPECT_EQ(calls[2].stdin_data, renderApply(rs.families[0], {}));
  EXPECT_EQ(calls[2].stdin_data.rfind("*nat\n:FLANNEL-POSTRTG - [0:0]\n-A POSTROUTING -m comment "
                                      "--comment \"flanneld masq\" -j FLANNEL-POSTRTG\n",
                                      0),
            0u)
      << calls[2].stdin_data;
}

TEST(IptablesRuleTable, ApplyUsesIp6tablesForIpv6) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (legacy)");
  h.runner->on({"iptables-save"}, FakeRunner::exited(0, kEmptyNat + kEmptyFilter));
  h.runner->on({"ip6tables-save"}, FakeRunner::exited(0, kEmptyNat + kEmptyFilter));
  h.runner->on({"iptables-restore"}, FakeRunner::exited(0));
  h.runner->on({"ip6tables-restore"}, FakeRunner::exited(0));
  auto rs = plan(dualConfig(), ownSubnets(), kAll);
  ASSERT_TRUE(rs);
  ASSERT_TRUE(t->apply(*rs));
  const auto argvs = h.runner->argvs();
  ASSERT_EQ(argvs.size(), 6u);
  EXPECT_EQ(argvs[3], (Argv{"ip6tables-save", "-t", "nat"}));
  EXPECT_EQ(argvs[5], (Argv{"ip6tables-restore", "--noflush", "--wait"}));
  EXPECT_NE(h.runner->calls()[5].stdin_data.find("! -d ff00::/8"), std::string::npos);
}

TEST(IptablesRuleTable, ApplyDeletesEveryExistingJumpBeforeAppendingOne) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (legacy)");
  // A Go flannel's jump (inserted first) plus a stray copy without comment.
  const std::string nat =
      "*nat\n:POSTROUTING ACCEPT [0:0]\n:FLANNEL-POSTRTG - [0:0]\n"
      "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n"
      "-A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE\n"
      "-A POSTROUTING -j FLANNEL-POSTRTG\nCOMMIT\n";
  h.runner->on({"iptables-save", "-t", "nat"}, FakeRunner::exited(0, nat));
  h.runner->on({"iptables-save", "-t", "filter"}, FakeRunner::exited(0, kEmptyFilter));
  h.runner->on({"iptables-restore"}, FakeRunner::exited(0));
  ASSERT_TRUE(t->apply(v4Plan()));
  const auto payload = h.runner->calls().back().stdin_data;
  EXPECT_EQ(
      payload.rfind("*nat\n:FLANNEL-POSTRTG - [0:0]\n"
                    "-D POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n"
                    "-D POSTROUTING -j FLANNEL-POSTRTG\n"
                    "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n",
                    0),
      0u)
      << payload;
  // Someone else's rule is not mentioned.
  EXPECT_EQ(payload.find("172.17.0.0/16"), std::string::npos);
}

TEST(IptablesRuleTable, FailedRestoreReportsItsStderrAndTheLine) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (legacy)");
  h.runner->on({"iptables-save"}, FakeRunner::exited(0, kEmptyNat + kEmptyFilter));
  h.runner->on({"iptables-restore"},
               FakeRunner::exited(1, "", "iptables-restore: line 4 failed\n"));
  auto r = t->apply(v4Plan());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::Kernel);
  EXPECT_EQ(r.error().message,
            "applying IPv4 iptables rules: running iptables-restore --noflush --wait: exited with "
            "status 1: iptables-restore: line 4 failed (line 4 of the input: `-A FLANNEL-POSTRTG "
            "-m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN`)");
}

TEST(IptablesRuleTable, MissingRestoreBinaryIsAClearError) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (legacy)");
  h.runner->on({"ip6tables-save"}, FakeRunner::exited(0, kEmptyNat + kEmptyFilter));
  h.runner->missing("ip6tables-restore");
  auto rs = plan(testing::v6Config(), ownSubnets(), kAll);
  ASSERT_TRUE(rs);
  auto r = t->apply(*rs);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::NotFound);
  EXPECT_EQ(r.error().message,
            "applying IPv6 iptables rules: running ip6tables-restore: executable not found on "
            "PATH");
}

TEST(IptablesRuleTable, FailedSaveIsAnError) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (legacy)");
  h.runner->on({"iptables-save"},
               FakeRunner::exited(1, "", "iptables-save: Permission denied (you must be root)\n"));
  auto r = t->missing(v4Plan());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::Kernel);
  EXPECT_NE(r.error().message.find("checking IPv4 iptables rules: running iptables-save -t nat: "
                                   "exited with status 1: iptables-save: Permission denied"),
            std::string::npos)
      << r.error().message;
}

TEST(IptablesRuleTable, LegacyChecksRunIptablesSaveEveryTime) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (legacy)");
  const auto rs = v4Plan();
  h.runner->on({"iptables-save", "-t", "nat"},
               FakeRunner::exited(0, savedWith(rs.families[0].chains[0])));
  h.runner->on({"iptables-save", "-t", "filter"},
               FakeRunner::exited(0, savedWith(rs.families[0].chains[1])));
  for (int i = 0; i < 3; ++i) {
    auto drift = t->missing(rs);
    ASSERT_TRUE(drift);
    EXPECT_FALSE(drift->any()) << drift->summary();
  }
  EXPECT_EQ(h.runner->callCount(), 6u);
  EXPECT_EQ(h.reader_state->calls, 0);  // legacy: the reader was dropped
}

TEST(IptablesRuleTable, NftChecksForkNothingWhileTheSnapshotIsUnchanged) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (nf_tables)");
  ASSERT_TRUE(t->checksInProcess());
  const auto rs = v4Plan();
  h.reader_state->snaps["nat/FLANNEL-POSTRTG"] = "nat-snapshot-1";
  h.reader_state->snaps["filter/FLANNEL-FWD"] = "filter-snapshot-1";
  h.runner->on({"iptables-save"}, FakeRunner::exited(0, kEmptyNat + kEmptyFilter));
  h.runner->on({"iptables-restore"}, FakeRunner::exited(0));
  ASSERT_TRUE(t->apply(rs));
  h.runner->clearCalls();

  for (int i = 0; i < 5; ++i) {
    auto drift = t->missing(rs);
    ASSERT_TRUE(drift);
    EXPECT_FALSE(drift->any()) << drift->summary();
  }
  EXPECT_EQ(h.runner->callCount(), 0u) << "a check with nothing changed must not fork";
}

TEST(IptablesRuleTable, NftCheckFallsBackToIptablesSaveWhenTheSnapshotChanges) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (nf_tables)");
  const auto rs = v4Plan();
  const auto& masq = rs.families[0].chains[0];
  h.reader_state->snaps["nat/FLANNEL-POSTRTG"] = "before";
  h.runner->on({"iptables-save", "-t", "filter"},
               FakeRunner::exited(0, savedWith(rs.families[0].chains[1])));
  // First check: no snapshot yet -> iptables-save, all fine -> snapshot recorded.
  h.runner->once({"iptables-save", "-t", "nat"}, FakeRunner::exited(0, savedWith(masq)));
  ASSERT_FALSE(t->missing(rs)->any());
  EXPECT_EQ(h.runner->callCount(), 2u);
  h.runner->clearCalls();

  // Someone deletes rule 3: the snapshot changes, iptables-save says exactly what.
  ChainRules damaged = masq;
  damaged.rules.erase(damaged.rules.begin() + 2);
  h.reader_state->snaps["nat/FLANNEL-POSTRTG"] = "after";
  h.runner->once({"iptables-save", "-t", "nat"}, FakeRunner::exited(0, savedWith(damaged)));
  auto drift = t->missing(rs);
  ASSERT_TRUE(drift);
  ASSERT_TRUE(drift->any());
  EXPECT_EQ(drift->findings.front().rfind("IPv4 nat/FLANNEL-POSTRTG: rule 3 is ", 0), 0u)
      << drift->summary();
  EXPECT_EQ(h.runner->argvs(), (std::vector<Argv>{{"iptables-save", "-t", "nat"}}));
}

TEST(IptablesRuleTable, NftCheckWithAFailingReaderStillWorks) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (nf_tables)");
  h.reader_state->fail = true;
  const auto rs = v4Plan();
  h.runner->on({"iptables-save", "-t", "nat"},
               FakeRunner::exited(0, savedWith(rs.families[0].chains[0])));
  h.runner->on({"iptables-save", "-t", "filter"},
               FakeRunner::exited(0, savedWith(rs.families[0].chains[1])));
  for (int i = 0; i < 2; ++i) {
    auto drift = t->missing(rs);
    ASSERT_TRUE(drift);
    EXPECT_FALSE(drift->any());
  }
  EXPECT_EQ(h.runner->callCount(), 4u);
}

TEST(IptablesRuleTable, ADifferentRuleSetIsNeverJudgedBySnapshot) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (nf_tables)");
  h.runner->on({"iptables-save"}, FakeRunner::exited(0, kEmptyNat + kEmptyFilter));
  h.runner->on({"iptables-restore"}, FakeRunner::exited(0));
  ASSERT_TRUE(t->apply(v4Plan()));
  h.runner->clearCalls();
  // The lease changed: same snapshots, but other rules wanted -> checked with iptables-save.
  auto other = plan(v4Config(), SubnetKey{.ipv4 = net("10.5.9.0/24"), .ipv6 = std::nullopt}, kAll);
  ASSERT_TRUE(other);
  auto drift = t->missing(*other);
  ASSERT_TRUE(drift);
  EXPECT_TRUE(drift->any());
  EXPECT_GE(h.runner->callCount(), 1u);
}

TEST(IptablesRuleTable, RemoveRulesDeletesOnlyStaleRulesThatArePresent) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (legacy)");
  const auto old = masqRules(net("10.5.0.0/16"), net("10.5.7.0/24"), true);
  ChainRules present{.kind = ChainKind::Masquerade, .rules = {old[0], old[1], old[4]}};
  h.runner->on({"iptables-save", "-t", "nat"}, FakeRunner::exited(0, savedWith(present)));
  h.runner->on({"iptables-restore"}, FakeRunner::exited(0));
  RuleSet stale{.families = {FamilyRules{
                    .family = Family::V4,
                    .chains = {ChainRules{
                        .kind = ChainKind::Masquerade,
                        .rules = masqRules(net("10.5.0.0/16"), net("10.5.7.0/24"), false)}}}}};
  ASSERT_TRUE(t->removeRules(stale));
  const auto calls = h.runner->calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].stdin_data,
            "*nat\n"
            "-D FLANNEL-POSTRTG " +
                ruleSpec(old[0], ChainKind::Masquerade) + "\n" + "-D FLANNEL-POSTRTG " +
                ruleSpec(old[1], ChainKind::Masquerade) + "\n" + "-D FLANNEL-POSTRTG " +
                ruleSpec(old[4], ChainKind::Masquerade) + "\nCOMMIT\n");
}

TEST(IptablesRuleTable, RemoveRulesWithNothingPresentRunsNoRestore) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (legacy)");
  h.runner->on({"iptables-save", "-t", "nat"}, FakeRunner::exited(0, kEmptyNat));
  RuleSet stale{.families = {FamilyRules{
                    .family = Family::V4,
                    .chains = {ChainRules{
                        .kind = ChainKind::Masquerade,
                        .rules = masqRules(net("10.5.0.0/16"), net("10.5.7.0/24"), false)}}}}};
  ASSERT_TRUE(t->removeRules(stale));
  EXPECT_EQ(h.runner->argvs(), (std::vector<Argv>{{"iptables-save", "-t", "nat"}}));
}

TEST(IptablesRuleTable, RemoveAllDeletesJumpsThenChains) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (legacy)");
  const auto rs = v4Plan();
  h.runner->on({"iptables-save", "-t", "nat"},
               FakeRunner::exited(0, savedWith(rs.families[0].chains[0])));
  h.runner->on({"iptables-save", "-t", "filter"}, FakeRunner::exited(0, kEmptyFilter));
  h.runner->on({"iptables-restore"}, FakeRunner::exited(0));
  ASSERT_TRUE(t->removeAll(Family::V4));
  EXPECT_EQ(h.runner->calls().back().stdin_data,
            "*nat\n-D POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n"
            "-F FLANNEL-POSTRTG\n-X FLANNEL-POSTRTG\nCOMMIT\n");
}

TEST(IptablesRuleTable, RemoveAllOfNothingRunsNoRestore) {
  Harness h;
  auto t = h.create("iptables v1.8.9 (legacy)");
  h.runner->on({"ip6tables-save"}, FakeRunner::exited(0, kEmptyNat + kEmptyFilter));
  ASSERT_TRUE(t->removeAll(Family::V6));
  EXPECT_EQ(h.runner->argvs(), (std::vector<Argv>{{"ip6tables-save", "-t", "nat"},
                                                  {"ip6tables-save", "-t", "filter"}}));
}

}  // namespace
}  // namespace flannel::traffic::iptables
