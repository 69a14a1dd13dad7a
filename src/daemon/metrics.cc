#include "daemon/metrics.h"

#include <cmath>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

namespace flannel::daemon {

namespace {

bool isNameStart(char c, bool colon_ok) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
}

bool isNameChar(char c, bool colon_ok) {
  return isNameStart(c, colon_ok) || (c >= '0' && c <= '9');
}

// Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names: [a-zA-Z_][a-zA-Z0-9_]*, and names
// starting with "__" are reserved for Prometheus itself.
bool validName(std::string_view name, bool metric) {
  if (name.empty() || !isNameStart(name.front(), metric)) {
    return false;
  }
  for (char c : name) {
    if (!isNameChar(c, metric)) {
      return false;
    }
  }
  return metric || !name.starts_with("__");
}

std::string_view typeName(MetricType t) {
  return t == MetricType::Counter ? "counter" : "gauge";
}

// HELP text escapes backslash and newline; label values also escape the double quote.
std::string escape(std::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

void atomicAdd(std::atomic<double>& value, double by) noexcept {
  double current = value.load(std::memory_order_relaxed);
  while (!value.compare_exchange_weak(current, current + by, std::memory_order_relaxed)) {
  }
}

}  // namespace

void Counter::inc(double by) noexcept {
  if (!(by >= 0.0)) {
    return;
  }
  atomicAdd(value_, by);
}

void Gauge::inc(double by) noexcept {
  atomicAdd(value_, by);
}

std::string formatMetricValue(double v) {
  if (std::isnan(v)) {
    return "NaN";
  }
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  if (v == 0.0) {
    return "0";  // also for -0.0
  }
  // Whole numbers that a double holds exactly print without exponent or fraction.
  if (std::fabs(v) < 1e15 && v == std::trunc(v)) {
    return fmt::format("{}", static_cast<long long>(v));
  }
  return fmt::format("{}", v);
}

Metrics::Series& Metrics::series(const std::string& name, const std::string& help, MetricType type,
                                 const Labels& labels) {
  if (!validName(name, /*metric=*/true)) {
    throw std::invalid_argument(fmt::format("metric name \"{}\" is not valid", name));
  }
  std::set<std::string_view> seen;
  for (const auto& [label, value] : labels) {
    if (!validName(label, /*metric=*/false)) {
      throw std::invalid_argument(
          fmt::format("metric {}: label name \"{}\" is not valid", name, label));
    }
    if (!seen.insert(label).second) {
      throw std::invalid_argument(fmt::format("metric {}: label {} given twice", name, label));
    }
  }
  Family* family = nullptr;
  for (const auto& f : families_) {
    if (f->name == name) {
      family = f.get();
      break;
    }
  }
  if (family == nullptr) {
    families_.push_back(std::make_unique<Family>(Family{.name = name, .help = help, .type = type}));
    family = families_.back().get();
  } else if (family->type != type || family->help != help) {
    throw std::invalid_argument(
        fmt::format("metric {} is already registered as a {} with other help text or type", name,
                    typeName(family->type)));
  }
  for (Series& s : family->series) {
    if (s.labels == labels) {
      return s;
    }
  }
  Series& s = family->series.emplace_back();
  s.labels = labels;
  return s;
}

Counter& Metrics::counter(const std::string& name, const std::string& help, const Labels& labels) {
  return series(name, help, MetricType::Counter, labels).counter;
}

Gauge& Metrics::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  return series(name, help, MetricType::Gauge, labels).gauge;
}

std::string Metrics::render() const {
  if (collector_) {
    // Registration belongs to the control thread, as render() does; the collector only adds
    // series and sets values, it never removes any.
    collector_(const_cast<Metrics&>(*this));
  }
  std::string out;
  for (const auto& f : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f->name, escape(f->help, false), f->name,
                       typeName(f->type));
    for (const Series& s : f->series) {
      out += f->name;
      if (!s.labels.empty()) {
        out += '{';
        for (size_t i = 0; i < s.labels.size(); ++i) {
          if (i > 0) {
            out += ',';
          }
          out += fmt::format("{}=\"{}\"", s.labels[i].first, escape(s.labels[i].second, true));
        }
        out += '}';
      }
      const double v = f->type == MetricType::Counter ? s.counter.value() : s.gauge.value();
      out += ' ';
      out += formatMetricValue(v);
      out += '\n';
    }
  }
  return out;
}

}  // namespace flannel::daemon
