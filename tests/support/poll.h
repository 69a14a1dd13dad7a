// DOC: pollUntil, the one way tests wait for state: a bounded poll with a deadline, never a fixed
// sleep standing in for synchronisation (DESIGN.md "Tests": checks that poll until a deadline).
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

namespace flannel::test {

// Calls `probe` every `interval` until it returns true or `timeout` has passed; at most
// timeout / interval + 2 calls. Returns whether the probe succeeded.
template <class Probe>
bool pollUntil(Probe&& probe, std::chrono::milliseconds timeout,
               std::chrono::milliseconds interval = std::chrono::milliseconds(50)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const long long max_attempts = timeout.count() / std::max<long long>(1, interval.count()) + 1;
  for (long long attempt = 0; attempt < max_attempts; ++attempt) {
    if (probe()) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      break;
    }
    std::this_thread::sleep_for(interval);
  }
  return probe();
}

}  // namespace flannel::test
