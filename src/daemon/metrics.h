// DOC: Metrics, a small registry of Prometheus counters and gauges, rendered in the text
// exposition format 0.0.4 for GET /metrics (daemon/health.h).
//
// Every degraded state has a metric (DESIGN.md "Logging"); this registry is where they live. It
// knows two metric types:
//   counter  only goes up (inc()); e.g. flannel_reconcile_failures_total
//   gauge    any value (set(), inc(), dec()); e.g. flannel_leases
// A metric family is a name, a help text and a type; each distinct label set is one series of
// that family, with its own value.
//
// Thread safety:
//   * registration (counter(), gauge()) and render() belong to the control-plane thread;
//   * values are std::atomic<double>: set and read them from any thread (the udp data path's
//     workers count packets on their own threads). A Counter& / Gauge& stays valid for the life
//     of the registry.
//
// Registration is idempotent: asking again for the same name and labels returns the same
// series. Programming errors (a malformed metric or label name, reusing a name with another type
// or help, one label name twice) throw std::invalid_argument at registration, i.e. at start-up.
//
// Output (families and series in registration order; labels in the order given):
//   # HELP flannel_leases Number of leases known.
//   # TYPE flannel_leases gauge
//   flannel_leases 3
//   # HELP flannel_store_errors_total Store requests that failed.
//   # TYPE flannel_store_errors_total counter
//   flannel_store_errors_total{op="renew"} 2
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flannel::daemon {

// Label name/value pairs, in rendering order.
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { Counter, Gauge };

class Counter {
 public:
  // Adds `by` (must be >= 0; a negative or NaN increment is ignored: counters never go down).
  void inc(double by = 1.0) noexcept;
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }
  // For a counter mirrored from a monotonic source (a collector): the source's total.
  void setTotal(double total) noexcept { value_.store(total, std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void inc(double by = 1.0) noexcept;
  void dec(double by = 1.0) noexcept { inc(-by); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Metrics {
 public:
  Metrics() = default;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The counter series `name{labels}`, created at 0 on first use. Control thread only.
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  // The gauge series `name{labels}`, created at 0 on first use. Control thread only.
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});

  // The text exposition format 0.0.4. Control thread only (values are read atomically). Runs
  // the collector first.
  std::string render() const;
  // A function render() calls first, to copy values kept elsewhere (the udp data path's
  // per-worker counters) into series of this registry. Control thread only.
  void setCollector(std::function<void(Metrics&)> fn) { collector_ = std::move(fn); }

  // The Content-Type of render()'s output.
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct Series {
    Labels labels{};
    Counter counter{};
    Gauge gauge{};
  };
  struct Family {
    std::string name{};
    std::string help{};
    MetricType type = MetricType::Counter;
    std::deque<Series> series{};  // deque: references stay valid as series are added
  };
  Series& series(const std::string& name, const std::string& help, MetricType type,
                 const Labels& labels);

  std::vector<std::unique_ptr<Family>> families_{};
  std::function<void(Metrics&)> collector_{};
};

// Prometheus number text: integers without a fraction ("3", "-2"), others in the shortest form
// that reads back exactly ("0.25", "1e+20"), "NaN", "+Inf", "-Inf".
std::string formatMetricValue(double v);

}  // namespace flannel::daemon
