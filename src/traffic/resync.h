// DOC: the periodic check-and-repair of our traffic rules (SPEC.md §6.4 "ensure loop").
//
// Every --iptables-resync seconds the daemon calls RuleResync::runOnce(plan). One period:
//
//   missing(rules) ──error──────────────────────────────> CheckFailed
//        │ no drift ──────────────────────────────────────> InPlace
//        │ drift ── apply(rules) ──ok──────────────────────> Repaired
//                                 └─error─────────────────> RepairFailed
//
// Logging is once per event, not once per period (DESIGN.md rule 5): a repair logs one line with
// what was wrong; a failure logs one warning, and again only when the error changes; the first
// clean period after failures logs that the rules are back. A failure never removes what is
// installed. The decisions are pure functions (decideResync, resyncLogAction) so they are tested
// without a table; runOnce() is the one call that does the work.
//
// Nftables mode has no periodic resync in Go flannel (SPEC.md §6.6); running it there too is
// harmless and repairs drift, so the daemon may use it for both modes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/logger.h>

#include "core/error.h"
#include "traffic/rule_table.h"

namespace flannel::traffic {

enum class ResyncOutcome { InPlace, Repaired, RepairFailed, CheckFailed };

struct ResyncReport {
  ResyncOutcome outcome = ResyncOutcome::InPlace;
  RuleDrift drift{};             // what missing() found (Repaired, RepairFailed)
  std::optional<Error> error{};  // RepairFailed, CheckFailed
};

// What to do after a check: apply when anything is absent or different.
enum class ResyncStep { Nothing, Apply };
ResyncStep decideResync(const RuleDrift& drift) noexcept;

// The state the log policy remembers between periods.
struct ResyncState {
  bool failing = false;
  std::string last_error{};  // message of the last failure logged
};

enum class ResyncLog {
  None,       // nothing worth a line (in place, or the same failure again)
  Repaired,   // info: what was wrong and that it was re-applied
  Failed,     // warning: a new failure, or a different one
  Recovered,  // info: in place again after failures
};
ResyncLog resyncLogAction(const ResyncState& before, const ResyncReport& now);
// The state after `now`.
ResyncState nextResyncState(const ResyncState& before, const ResyncReport& now);

class RuleResync {
 public:
  // `table` must outlive this object. `log` defaults to the "traffic" logger.
  explicit RuleResync(RuleTable& table, std::shared_ptr<spdlog::logger> log = nullptr);

  // One period: check, repair if needed, log per the policy above. Never throws for table errors.
  ResyncReport runOnce(const RuleSet& rules);

  // Counters for metrics.
  uint64_t repairs() const noexcept { return repairs_; }
  uint64_t failures() const noexcept { return failures_; }
  bool failing() const noexcept { return state_.failing; }

 private:
  RuleTable& table_;
  std::shared_ptr<spdlog::logger> log_;
  ResyncState state_{};
  uint64_t repairs_ = 0;
  uint64_t failures_ = 0;
};

}  // namespace flannel::traffic
