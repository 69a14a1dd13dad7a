// DOC: jittered exponential backoff, as a pure value (DESIGN.md "Retry").
//
// delay(attempt) = min(cap, initial * factor^attempt), then scaled by a jitter factor drawn in
// [1 - jitter, 1]. The random draw is passed in, so the schedule is testable without a clock.
#pragma once

#include <algorithm>
#include <chrono>

namespace flannel {

struct Backoff {
  std::chrono::milliseconds initial{100};
  std::chrono::milliseconds cap{5000};
  double factor = 2.0;
  double jitter = 0.2;  // fraction of the delay that may be taken off at random

  // `unit_random` in [0, 1).
  std::chrono::milliseconds delay(unsigned attempt, double unit_random) const noexcept {
    // factor^attempt by multiplying (stops at the cap): no libm, which flanneld would otherwise
    // map whole for this one function.
    const double cap_ms = static_cast<double>(cap.count());
    double base = static_cast<double>(initial.count());
    for (unsigned i = 0; i < std::min(attempt, 64u) && base < cap_ms; ++i) {
      base *= factor;
    }
    base = std::min(base, cap_ms);
    double scaled = base * (1.0 - jitter * std::clamp(unit_random, 0.0, 1.0));
    return std::chrono::milliseconds(static_cast<long long>(std::max(scaled, 0.0)));
  }
};

}  // namespace flannel
