#include "traffic/resync.h"

#include <deque>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

namespace flannel::traffic {
namespace {

// A RuleTable that answers from queues and counts applies.
class ScriptedTable final : public RuleTable {
 public:
  std::deque<Result<RuleDrift>> checks;
  std::deque<Result<void>> applies;
  int apply_calls = 0;

  std::string_view mechanism() const noexcept override { return "scripted"; }
  bool supportsFullyRandom() const noexcept override { return true; }
  Result<void> apply(const RuleSet&) override {
    ++apply_calls;
    if (applies.empty()) {
      return ok();
    }
    auto r = applies.front();
    applies.pop_front();
    return r;
  }
  Result<RuleDrift> missing(const RuleSet&) override {
    if (checks.empty()) {
      return RuleDrift{};
    }
    auto r = checks.front();
    checks.pop_front();
    return r;
  }
  Result<void> removeRules(const RuleSet&) override { return ok(); }
  Result<void> removeAll(Family) override { return ok(); }
};

RuleDrift drift(std::string what) {
  return RuleDrift{.findings = {std::move(what)}};
}

struct LogCapture {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> log;
  LogCapture() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    sink->set_pattern("%l %v");
    log = std::make_shared<spdlog::logger>("traffic.test", sink);
    log->set_level(spdlog::level::debug);
  }
  int lines() const {
    const auto s = out.str();
    return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
  }
};

TEST(ResyncDecision, AppliesOnlyWhenSomethingIsMissing) {
  EXPECT_EQ(decideResync(RuleDrift{}), ResyncStep::Nothing);
  EXPECT_EQ(decideResync(drift("x")), ResyncStep::Apply);
}

TEST(ResyncDecision, LogsEachRepairButAFailureOnlyOnce) {
  const ResyncState clean{};
  const ResyncReport in_place{};
  const ResyncReport repaired{.outcome = ResyncOutcome::Repaired, .drift = drift("x"), .error = {}};
  const ResyncReport failed{
      .outcome = ResyncOutcome::CheckFailed, .drift = {}, .error = makeError(Errc::Kernel, "boom")};
  const ResyncReport failed_other{.outcome = ResyncOutcome::RepairFailed,
                                  .drift = drift("x"),
                                  .error = makeError(Errc::Kernel, "bang")};

  EXPECT_EQ(resyncLogAction(clean, in_place), ResyncLog::None);
  EXPECT_EQ(resyncLogAction(clean, repaired), ResyncLog::Repaired);
  EXPECT_EQ(resyncLogAction(clean, failed), ResyncLog::Failed);

  const ResyncState failing = nextResyncState(clean, failed);
  EXPECT_TRUE(failing.failing);
  EXPECT_EQ(resyncLogAction(failing, failed), ResyncLog::None);
  EXPECT_EQ(resyncLogAction(failing, failed_other), ResyncLog::Failed);
  EXPECT_EQ(resyncLogAction(failing, in_place), ResyncLog::Recovered);
  EXPECT_EQ(resyncLogAction(failing, repaired), ResyncLog::Repaired);
  EXPECT_FALSE(nextResyncState(failing, in_place).failing);
  EXPECT_FALSE(nextResyncState(failing, repaired).failing);
}

TEST(RuleResync, InPlaceDoesNothingAndLogsNothing) {
  ScriptedTable table;
  LogCapture cap;
  RuleResync resync(table, cap.log);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(resync.runOnce(RuleSet{}).outcome, ResyncOutcome::InPlace);
  }
  EXPECT_EQ(table.apply_calls, 0);
  EXPECT_EQ(cap.lines(), 0);
}

TEST(RuleResync, RepairsWhatIsMissingAndLogsOncePerRepair) {
  ScriptedTable table;
  table.checks = {drift("IPv4 nat/FLANNEL-POSTRTG: rule 3 is missing"), RuleDrift{}, RuleDrift{}};
  LogCapture cap;
  RuleResync resync(table, cap.log);
  auto report = resync.runOnce(RuleSet{});
  EXPECT_EQ(report.outcome, ResyncOutcome::Repaired);
  EXPECT_EQ(table.apply_calls, 1);
  EXPECT_EQ(resync.repairs(), 1u);
  resync.runOnce(RuleSet{});
  resync.runOnce(RuleSet{});
  EXPECT_EQ(table.apply_calls, 1);
  EXPECT_EQ(cap.lines(), 1) << cap.out.str();
  EXPECT_NE(cap.out.str().find("info scripted rules were not in place (IPv4 nat/FLANNEL-POSTRTG: "
                               "rule 3 is missing); re-applied them"),
            std::string::npos)
      << cap.out.str();
}

TEST(RuleResync, AFailureIsLoggedOnceUntilItChangesOrRecovers) {
  ScriptedTable table;
  const auto err = makeError(Errc::Kernel, "libnftables: Operation not permitted");
  table.checks = {err, err, err, drift("x"), RuleDrift{}};
  table.applies = {makeError(Errc::Kernel, "apply failed")};
  LogCapture cap;
  RuleResync resync(table, cap.log);
  EXPECT_EQ(resync.runOnce(RuleSet{}).outcome, ResyncOutcome::CheckFailed);
  EXPECT_EQ(resync.runOnce(RuleSet{}).outcome, ResyncOutcome::CheckFailed);
  EXPECT_EQ(resync.runOnce(RuleSet{}).outcome, ResyncOutcome::CheckFailed);
  EXPECT_EQ(cap.lines(), 1);
  EXPECT_TRUE(resync.failing());
  EXPECT_EQ(resync.runOnce(RuleSet{}).outcome, ResyncOutcome::RepairFailed);
  EXPECT_EQ(cap.lines(), 2);  // a different error
  EXPECT_EQ(resync.runOnce(RuleSet{}).outcome, ResyncOutcome::InPlace);
  EXPECT_EQ(cap.lines(), 3);  // back in place
  EXPECT_FALSE(resync.failing());
  EXPECT_EQ(resync.failures(), 4u);
  EXPECT_NE(cap.out.str().find("warning scripted rules: checking failed: libnftables: Operation "
                               "not permitted; installed rules are left as they are"),
            std::string::npos)
      << cap.out.str();
  EXPECT_NE(cap.out.str().find("info scripted rules are in place again"), std::string::npos);
}

TEST(RuleDriftSummary, JoinsFindings) {
  RuleDrift d{.findings = {"a", "b"}};
  EXPECT_EQ(d.summary(), "a; b");
  EXPECT_TRUE(d.any());
  EXPECT_FALSE(RuleDrift{}.any());
}

}  // namespace
}  // namespace flannel::traffic
