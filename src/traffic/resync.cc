#include "traffic/resync.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/log.h"

namespace flannel::traffic {

std::string RuleDrift::summary() const {
  return fmt::format("{}", fmt::join(findings, "; "));
}

ResyncStep decideResync(const RuleDrift& drift) noexcept {
  return drift.any() ? ResyncStep::Apply : ResyncStep::Nothing;
}

ResyncLog resyncLogAction(const ResyncState& before, const ResyncReport& now) {
  switch (now.outcome) {
    case ResyncOutcome::InPlace:
      return before.failing ? ResyncLog::Recovered : ResyncLog::None;
    case ResyncOutcome::Repaired:
      return ResyncLog::Repaired;
    case ResyncOutcome::RepairFailed:
    case ResyncOutcome::CheckFailed: {
      const std::string msg = now.error ? now.error->message : std::string();
      return (!before.failing || msg != before.last_error) ? ResyncLog::Failed : ResyncLog::None;
    }
  }
  return ResyncLog::None;
}

ResyncState nextResyncState(const ResyncState& before, const ResyncReport& now) {
  switch (now.outcome) {
    case ResyncOutcome::InPlace:
    case ResyncOutcome::Repaired:
      return ResyncState{};
    case ResyncOutcome::RepairFailed:
    case ResyncOutcome::CheckFailed:
      return ResyncState{.failing = true,
                         .last_error = now.error ? now.error->message : before.last_error};
  }
  return before;
}

RuleResync::RuleResync(RuleTable& table, std::shared_ptr<spdlog::logger> log)
    : table_(table), log_(log ? std::move(log) : logger("traffic")) {}

ResyncReport RuleResync::runOnce(const RuleSet& rules) {
  ResyncReport report;
  auto drift = table_.missing(rules);
  if (!drift) {
    report.outcome = ResyncOutcome::CheckFailed;
    report.error = drift.error();
  } else if (decideResync(*drift) == ResyncStep::Nothing) {
    report.outcome = ResyncOutcome::InPlace;
  } else {
    report.drift = std::move(*drift);
    auto applied = table_.apply(rules);
    if (applied) {
      report.outcome = ResyncOutcome::Repaired;
      ++repairs_;
    } else {
      report.outcome = ResyncOutcome::RepairFailed;
      report.error = applied.error();
    }
  }
  if (report.error) {
    ++failures_;
  }

  switch (resyncLogAction(state_, report)) {
    case ResyncLog::None:
      break;
    case ResyncLog::Repaired:
      log_->info("{} rules were not in place ({}); re-applied them", table_.mechanism(),
                 report.drift.summary());
      break;
    case ResyncLog::Failed:
      log_->warn("{} rules: {} failed: {}; installed rules are left as they are",
                 table_.mechanism(),
                 report.outcome == ResyncOutcome::CheckFailed ? "checking" : "repairing",
                 report.error ? report.error->message : std::string("unknown error"));
      break;
    case ResyncLog::Recovered:
      log_->info("{} rules are in place again", table_.mechanism());
      break;
  }
  state_ = nextResyncState(state_, report);
  return report;
}

}  // namespace flannel::traffic
