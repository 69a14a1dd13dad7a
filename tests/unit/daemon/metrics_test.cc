#include "daemon/metrics.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace flannel::daemon {
namespace {

TEST(Metrics, EmptyRegistryRendersNothing) {
  Metrics m;
  EXPECT_EQ(m.render(), "");
}

TEST(Metrics, RendersFamiliesAndSeriesInRegistrationOrder) {
  Metrics m;
  auto& leases = m.gauge("flannel_leases", "Number of leases known.");
  auto& renew =
      m.counter("flannel_store_errors_total", "Store requests that failed.", {{"op", "renew"}});
  auto& watch =
      m.counter("flannel_store_errors_total", "Store requests that failed.", {{"op", "watch"}});
  leases.set(3);
  renew.inc();
  renew.inc(1);
  watch.inc(0.5);
  EXPECT_EQ(m.render(),
            "# HELP flannel_leases Number of leases known.\n"
            "# TYPE flannel_leases gauge\n"
            "flannel_leases 3\n"
            "# HELP flannel_store_errors_total Store requests that failed.\n"
            "# TYPE flannel_store_errors_total counter\n"
            "flannel_store_errors_total{op=\"renew\"} 2\n"
            "flannel_store_errors_total{op=\"watch\"} 0.5\n");
}

TEST(Metrics, NewSeriesStartAtZero) {
  Metrics m;
  m.counter("a_total", "A.");
  m.gauge("b", "B.", {{"x", "1"}, {"y", "2"}});
  EXPECT_EQ(m.render(),
            "# HELP a_total A.\n"
            "# TYPE a_total counter\n"
            "a_total 0\n"
            "# HELP b B.\n"
            "# TYPE b gauge\n"
            "b{x=\"1\",y=\"2\"} 0\n");
}

TEST(Metrics, RegistrationIsIdempotent) {
  Metrics m;
  Counter& a = m.counter("c_total", "C.", {{"k", "v"}});
  Counter& b = m.counter("c_total", "C.", {{"k", "v"}});
  EXPECT_EQ(&a, &b);
  a.inc(2);
  EXPECT_EQ(b.value(), 2);
  // References stay valid while more series are added.
  for (int i = 0; i < 100; ++i) {
    m.counter("c_total", "C.", {{"k", std::to_string(i)}});
  }
  EXPECT_EQ(&a, &m.counter("c_total", "C.", {{"k", "v"}}));
}

TEST(Metrics, EscapesHelpAndLabelValues) {
  Metrics m;
  m.gauge("g", "Line one\nback\\slash \"quoted\".", {{"path", "C:\\dir\n\"x\""}}).set(1);
  EXPECT_EQ(m.render(),
            "# HELP g Line one\\nback\\\\slash \"quoted\".\n"
            "# TYPE g gauge\n"
            "g{path=\"C:\\\\dir\\n\\\"x\\\"\"} 1\n");
}

TEST(Metrics, GaugeGoesBothWaysCounterOnlyUp) {
  Metrics m;
  Gauge& g = m.gauge("g", "G.");
  g.inc(5);
  g.dec(7);
  EXPECT_EQ(g.value(), -2);
  Counter& c = m.counter("c_total", "C.");
  c.inc(3);
  c.inc(-1);
  c.inc(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(c.value(), 3);
  EXPECT_EQ(m.render(),
            "# HELP g G.\n# TYPE g gauge\ng -2\n"
            "# HELP c_total C.\n# TYPE c_total counter\nc_total 3\n");
}

TEST(Metrics, RejectsProgrammingErrors) {
  Metrics m;
  EXPECT_THROW(m.counter("", "x"), std::invalid_argument);
  EXPECT_THROW(m.counter("9lives", "x"), std::invalid_argument);
  EXPECT_THROW(m.counter("has-dash", "x"), std::invalid_argument);
  EXPECT_THROW(m.counter("ok", "x", {{"__reserved", "v"}}), std::invalid_argument);
  EXPECT_THROW(m.counter("ok", "x", {{"a:b", "v"}}), std::invalid_argument);
  EXPECT_THROW(m.counter("ok", "x", {{"a", "1"}, {"a", "2"}}), std::invalid_argument);
  m.counter("taken_total", "T.");
  EXPECT_THROW(m.gauge("taken_total", "T."), std::invalid_argument);
  EXPECT_THROW(m.counter("taken_total", "Other help."), std::invalid_argument);
  EXPECT_NO_THROW(m.counter("ns:sub_total", "Colons are fine in metric names."));
}

TEST(MetricsFormat, Numbers) {
  struct Case {
    double v;
    const char* text;
  };
  const Case cases[] = {
      {0, "0"},
      {-0.0, "0"},
      {1, "1"},
      {-2, "-2"},
      {0.25, "0.25"},
      {1.5e-7, "1.5e-07"},
      {1e20, "1e+20"},
      {123456789012, "123456789012"},
      {std::numeric_limits<double>::infinity(), "+Inf"},
      {-std::numeric_limits<double>::infinity(), "-Inf"},
      {std::numeric_limits<double>::quiet_NaN(), "NaN"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(formatMetricValue(c.v), c.text) << c.v;
  }
}

// Values are atomics: worker threads count while the control thread reads.
TEST(Metrics, ConcurrentIncrementsAreNotLost) {
  Metrics m;
  Counter& c = m.counter("packets_total", "P.");
  Gauge& g = m.gauge("inflight", "I.");
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        g.inc();
        g.dec();
      }
    });
  }
  for (int i = 0; i < 100; ++i) {
    (void)m.render();
  }
  for (auto& w : workers) {
    w.join();
  }
  EXPECT_EQ(c.value(), 40000);
  EXPECT_EQ(g.value(), 0);
}

}  // namespace
}  // namespace flannel::daemon
