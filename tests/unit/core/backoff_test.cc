#include "core/backoff.h"

#include <gtest/gtest.h>

#include <cmath>

namespace flannel {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, DoublesFromTheInitialDelayUpToTheCap) {
  const Backoff b{
      .initial = milliseconds(100), .cap = milliseconds(5000), .factor = 2.0, .jitter = 0.2};
  const long expected[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
  for (unsigned attempt = 0; attempt < 8; ++attempt) {
    EXPECT_EQ(b.delay(attempt, 0.0).count(), expected[attempt]) << "attempt " << attempt;
  }
  // Any number of failures stays at the cap (no overflow, no endless loop).
  EXPECT_EQ(b.delay(4'000'000'000u, 0.0).count(), 5000);
}

TEST(Backoff, JitterTakesUpToItsFractionOff) {
  const Backoff b{
      .initial = milliseconds(1000), .cap = milliseconds(60000), .factor = 2.0, .jitter = 0.2};
  EXPECT_EQ(b.delay(1, 0.0).count(), 2000);
  EXPECT_EQ(b.delay(1, 0.5).count(), 1800);
  EXPECT_EQ(b.delay(1, 0.999).count(), 1600);
  // Out-of-range draws are clamped.
  EXPECT_EQ(b.delay(1, -3.0).count(), 2000);
  EXPECT_EQ(b.delay(1, 7.0).count(), 1600);
}

TEST(Backoff, NonIntegerFactorsFollowThePowerCurve) {
  const Backoff b{
      .initial = milliseconds(100), .cap = milliseconds(100000), .factor = 1.5, .jitter = 0.0};
  for (unsigned attempt = 0; attempt < 12; ++attempt) {
    const double want = 100.0 * std::pow(1.5, attempt);
    EXPECT_NEAR(static_cast<double>(b.delay(attempt, 0.3).count()), want, 1.0)
        << "attempt " << attempt;
  }
  // A factor of 1 keeps the initial delay.
  const Backoff flat{
      .initial = milliseconds(250), .cap = milliseconds(1000), .factor = 1.0, .jitter = 0.0};
  EXPECT_EQ(flat.delay(1000, 0.0).count(), 250);
}

}  // namespace
}  // namespace flannel
