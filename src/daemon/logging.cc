#include "daemon/logging.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include <fmt/format.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "core/log.h"

namespace flannel::daemon {

namespace {

std::string_view lastComponent(std::string_view name) {
  const auto dot = name.rfind('.');
  return dot == std::string_view::npos ? name : name.substr(dot + 1);
}

// Filters each message by its logger's own level (LogSettings::levelFor) before handing it to
// the real output. Needed because flannel::logger() (core/log.h) gives a new logger the default
// logger's level and knows nothing of -vmodule; the default logger therefore runs at the most
// verbose level any module needs, and this filter holds every other module to its own level.
// Levels are cached per logger name; spdlog may call log() from several threads.
class LevelByNameSink final : public spdlog::sinks::sink {
 public:
  LevelByNameSink(spdlog::sink_ptr inner, LogSettings settings)
      : inner_(std::move(inner)), settings_(std::move(settings)) {}

  void log(const spdlog::details::log_msg& msg) override {
    const std::string_view name(msg.logger_name.data(), msg.logger_name.size());
    if (msg.level < levelFor(name)) {
      return;
    }
    inner_->log(msg);
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
    inner_->set_formatter(std::move(formatter));
  }

 private:
  spdlog::level::level_enum levelFor(std::string_view name) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = cache_.find(name);
    if (it == cache_.end()) {
      it = cache_.emplace(std::string(name), settings_.levelFor(name)).first;
    }
    return it->second;
  }

  spdlog::sink_ptr inner_;
  LogSettings settings_;
  std::mutex mutex_;
  std::map<std::string, spdlog::level::level_enum, std::less<>> cache_;
};

}  // namespace

Result<std::vector<VmoduleRule>> parseVmodule(std::string_view spec) {
  std::vector<VmoduleRule> rules;
  std::string_view rest = spec;
  while (true) {
    const auto comma = rest.find(',');
    const std::string_view entry = rest.substr(0, comma);
    if (!entry.empty()) {
      const auto eq = entry.find('=');
      const std::string_view pattern = entry.substr(0, eq);
      const std::string_view level =
          eq == std::string_view::npos ? std::string_view{} : entry.substr(eq + 1);
      if (eq == std::string_view::npos || pattern.empty() || level.empty() ||
          level.find('=') != std::string_view::npos) {
        return invalidInput(fmt::format("entry \"{}\" is not pattern=N", entry));
      }
      const auto verbosity = parseGoInt(level, 10);
      if (!verbosity) {
        return invalidInput(fmt::format("entry \"{}\": level \"{}\" is {}", entry, level,
                                        verbosity.error().message));
      }
      if (*verbosity < 0) {
        return invalidInput(fmt::format("entry \"{}\" has a negative level", entry));
      }
      // klog drops N = 0: it can never raise the verbosity above -v.
      if (*verbosity > 0) {
        rules.push_back(VmoduleRule{.pattern = std::string(pattern), .verbosity = *verbosity});
      }
    }
    if (comma == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(comma + 1);
  }
  return rules;
}

Result<void> checkBacktraceAt(std::string_view spec) {
  if (spec.empty()) {
    return ok();
  }
  const auto colon = spec.find(':');
  if (colon == std::string_view::npos || colon == 0 ||
      spec.find(':', colon + 1) != std::string_view::npos) {
    return invalidInput("expected file:line");
  }
  const auto line = parseGoInt(spec.substr(colon + 1), 10);
  if (!line || *line <= 0) {
    return invalidInput("expected file:line with a positive line number");
  }
  return ok();
}

spdlog::level::level_enum levelForVerbosity(int verbosity) {
  if (verbosity >= 4) {
    return spdlog::level::trace;
  }
  if (verbosity >= 1) {
    return spdlog::level::debug;
  }
  return spdlog::level::info;
}

bool globMatch(std::string_view pattern, std::string_view text) {
  // Iterative matcher with one backtrack point (the last '*'): linear in practice, and never
  // recursive, so a hostile pattern cannot blow the stack.
  size_t p = 0;
  size_t t = 0;
  size_t star = std::string_view::npos;
  size_t star_text = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_text = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_text;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') {
    ++p;
  }
  return p == pattern.size();
}

bool vmoduleMatches(std::string_view pattern, std::string_view logger_name) {
  if (globMatch(pattern, logger_name)) {
    return true;
  }
  const std::string_view last = lastComponent(logger_name);
  return last.size() != logger_name.size() && globMatch(pattern, last);
}

int LogSettings::verbosityFor(std::string_view logger_name) const {
  for (const auto& rule : vmodule) {
    if (vmoduleMatches(rule.pattern, logger_name)) {
      return std::max(verbosity, rule.verbosity);
    }
  }
  return verbosity;
}

spdlog::level::level_enum LogSettings::levelFor(std::string_view logger_name) const {
  return levelForVerbosity(verbosityFor(logger_name));
}

spdlog::level::level_enum LogSettings::lowestLevel() const {
  int most = verbosity;
  for (const auto& rule : vmodule) {
    most = std::max(most, rule.verbosity);
  }
  return levelForVerbosity(most);
}

Result<LogSettings> logSettingsFrom(const Options& options) {
  auto rules = parseVmodule(options.vmodule);
  if (!rules) {
    return rules.error();
  }
  return LogSettings{
      .verbosity = options.v,
      .vmodule = std::move(*rules),
      .backtrace_at = options.log_backtrace_at,
  };
}

void setupLogging(const LogSettings& settings, spdlog::sink_ptr output) {
  if (!output) {
    output = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  }
  auto sink = std::make_shared<LevelByNameSink>(std::move(output), settings);
  sink->set_pattern(std::string(kLogPattern));

  // Loggers made before this call (if any) move onto the new output with their own level.
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& existing) {
    existing->sinks().assign({sink});
    existing->set_level(settings.levelFor(existing->name()));
  });

  auto root = std::make_shared<spdlog::logger>(std::string(kDefaultLoggerName), sink);
  // flannel::logger() copies this level into every new module logger; the sink then applies
  // the module's real level (see LevelByNameSink).
  root->set_level(settings.lowestLevel());
  spdlog::set_default_logger(root);

  if (!settings.backtrace_at.empty()) {
    flannel::logger("daemon")->warn(
        "-log_backtrace_at={} is accepted for compatibility but not supported; ignoring it",
        settings.backtrace_at);
  }
}

}  // namespace flannel::daemon
