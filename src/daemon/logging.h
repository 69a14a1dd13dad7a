// DOC: flanneld's log set-up: spdlog to stderr in a klog-like format, levels from klog's -v,
// -vmodule and -log_backtrace_at flags (SPEC.md §1.1, §1.9).
//
// Line format (klog's, with the logger name where klog has file:line):
//
//   I1125 10:59:30.123456    4242 backend.vxlan] msg
//   │└ mmdd hh:mm:ss.uuuuuu  └ pid  └ logger
//   └ level: T trace, D debug, I info, W warning, E error, C critical
//
// Verbosity (-v, and N in -vmodule) maps onto spdlog levels:
//
//   0 -> info      1..3 -> debug      >= 4 -> trace
//
// (flannel's interesting klog levels are V(1) udp errors, V(2) route details, V(4) neighbour/FDB
// calls and V(6) iptables-restore payloads, SPEC.md §1.9; our modules log the first two kinds at
// debug and the last two at trace.)
//
// -vmodule: klog matches its patterns against source file names; we have no file names, so a
// pattern is a glob ('*' any run of characters, '?' one character, everything else literal)
// matched against the module logger's name (DESIGN.md: one logger per module, named
// "store.etcd", "backend.vxlan", "kernel", ...). A pattern matches when it matches the whole
// name or its last dot-separated part, so `vxlan=4`, `backend.vxlan=4` and `backend.*=4` all
// select "backend.vxlan". As in klog, the first matching entry wins, an entry can only raise the
// verbosity above -v (never lower it), entries with N = 0 are dropped and empty entries (a
// trailing comma) are ignored.
//
// -log_backtrace_at: accepted (syntax file:line, as klog) and reported as unsupported.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <spdlog/common.h>

#include "core/result.h"
#include "daemon/options.h"

namespace flannel::daemon {

struct VmoduleRule {
  std::string pattern{};
  int verbosity = 0;
  friend bool operator==(const VmoduleRule&, const VmoduleRule&) = default;
};

// Parses klog's `pattern=N[,pattern=N...]`. Errors name the offending entry.
Result<std::vector<VmoduleRule>> parseVmodule(std::string_view spec);

// Checks klog's `file:line` syntax for -log_backtrace_at (empty is fine).
Result<void> checkBacktraceAt(std::string_view spec);

// 0 -> info, 1..3 -> debug, >= 4 -> trace (negative counts as 0).
spdlog::level::level_enum levelForVerbosity(int verbosity);

// '*' matches any run of characters (including '.'), '?' exactly one; nothing else is special.
bool globMatch(std::string_view pattern, std::string_view text);

// True when `pattern` matches the whole logger name or its last dot-separated part.
bool vmoduleMatches(std::string_view pattern, std::string_view logger_name);

struct LogSettings {
  int verbosity = 0;
  std::vector<VmoduleRule> vmodule{};
  std::string backtrace_at{};

  // max(verbosity, N of the first vmodule rule matching `logger_name`).
  int verbosityFor(std::string_view logger_name) const;
  spdlog::level::level_enum levelFor(std::string_view logger_name) const;
  // The most verbose level any logger can have (the level new loggers start with).
  spdlog::level::level_enum lowestLevel() const;
};

// Builds LogSettings from the -v, -vmodule and -log_backtrace_at options.
Result<LogSettings> logSettingsFrom(const Options& options);

// spdlog pattern for the klog-like line above.
inline constexpr std::string_view kLogPattern = "%L%m%d %H:%M:%S.%f %7P %n] %v";
// Name of the default logger (what spdlog::info() and friends log as).
inline constexpr std::string_view kDefaultLoggerName = "flanneld";

// Installs the log set-up process-wide; call once, early in main(), before other threads start.
//
// - Output goes to `output` (stderr when null) through a filter that applies each logger's
//   level by name, so loggers created later with flannel::logger() get their -vmodule level
//   too: flannel::logger() copies the default logger's level, which is set to lowestLevel(),
//   and the filter drops what is below levelFor(name). Loggers that already exist are moved
//   onto the same output and set to their own level.
// - Logs a warning when -log_backtrace_at is set (unsupported).
void setupLogging(const LogSettings& settings, spdlog::sink_ptr output = nullptr);

}  // namespace flannel::daemon
