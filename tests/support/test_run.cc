#include "support/test_run.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "core/log.h"
#include "support/poll.h"

namespace flannel::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view kNetnsDir = "/run/netns";
constexpr auto kNamespaceEmptyTimeout = 5000ms;

std::atomic<int> g_counter{0};

int nextCounter() {
  return g_counter.fetch_add(1) + 1;
}

auto log() {
  return logger("test.harness");
}

// The owner PID encoded in "fct-<pid>-...", if `name` has that shape.
std::optional<pid_t> ownerPid(std::string_view name) {
  const std::string head = std::string(kNamePrefix) + "-";
  if (name.substr(0, head.size()) != head) {
    return std::nullopt;
  }
  name.remove_prefix(head.size());
  const auto dash = name.find('-');
  if (dash == std::string_view::npos || dash == 0) {
    return std::nullopt;
  }
  pid_t pid = 0;
  const auto digits = name.substr(0, dash);
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (ec != std::errc() || ptr != digits.data() + digits.size() || pid <= 0) {
    return std::nullopt;
  }
  return pid;
}

// Leftovers of `pid` may be removed: it is not us and it is gone.
bool ownerIsGone(pid_t pid) {
  return pid != ::getpid() && !isPidAlive(pid);
}

// The process-wide record of what the harness has alive, for ~TestRun and the signal teardown.
// Leaked on purpose: the signal thread may use it during static destruction.
struct Registry {
  std::mutex mu;
  std::map<std::string, int> namespaces;  // name -> run id
  std::map<pid_t, int> pids;              // pid -> run id
  std::map<int, fs::path> dirs;           // run id -> temp dir
};

Registry& reg() {
  static auto* r = new Registry;
  return *r;
}

std::vector<pid_t> parsePids(std::string_view text) {
  std::vector<pid_t> pids;
  std::istringstream in{std::string(text)};
  pid_t pid = 0;
  while (in >> pid) {
    if (pid > 0) {
      pids.push_back(pid);
    }
  }
  return pids;
}

Result<std::vector<pid_t>> pidsInNamespace(CommandRunner& runner, const std::string& ip,
                                           const std::string& name) {
  Command cmd;
  cmd.argv = {ip, "netns", "pids", name};
  cmd.timeout = 5000ms;
  auto out = runChecked(runner, cmd);
  if (!out) {
    return out.error();
  }
  return parsePids(out->out);
}

// Signal teardown state. The handler only write()s to the pipe (async-signal-safe); the
// cleanup thread does the real work.
int g_signal_pipe[2] = {-1, -1};

void onTeardownSignal(int sig) {
  const int saved = errno;
  const auto byte = static_cast<unsigned char>(sig);
  ssize_t written = ::write(g_signal_pipe[1], &byte, 1);
  (void)written;
  errno = saved;
}

[[noreturn]] void teardownThread() {
  unsigned char sig = 0;
  while (::read(g_signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
  }
  std::vector<pid_t> pids;
  std::vector<std::string> namespaces;
  std::vector<fs::path> dirs;
  {
    std::lock_guard lock(reg().mu);
    for (const auto& [pid, run] : reg().pids) {
      pids.push_back(pid);
    }
    for (const auto& [name, run] : reg().namespaces) {
      namespaces.push_back(name);
    }
    for (const auto& [run, dir] : reg().dirs) {
      dirs.push_back(dir);
    }
  }
  std::fprintf(stderr,
               "flannel test harness: signal %d, tearing down %zu processes, %zu namespaces\n",
               static_cast<int>(sig), pids.size(), namespaces.size());
  for (pid_t pid : pids) {
    ::kill(pid, SIGKILL);
    ::kill(-pid, SIGKILL);
  }
  SpawnCommandRunner runner;
  for (const auto& name : namespaces) {
    auto destroyed = destroyNamespace(runner, name);
    if (!destroyed) {
      std::fprintf(stderr, "flannel test harness: %s\n", destroyed.error().message.c_str());
    }
  }
  for (const auto& dir : dirs) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  ::_exit(128 + sig);
}

}  // namespace

std::string processPrefix(pid_t pid) {
  return fmt::format("{}-{}-", kNamePrefix, pid);
}

std::string processPrefix() {
  return processPrefix(::getpid());
}

bool isPidAlive(pid_t pid) {
  if (pid <= 0) {
    return false;
  }
  if (::kill(pid, 0) != 0 && errno == ESRCH) {
    return false;
  }
  // kill() succeeds on zombies; /proc/<pid>/stat has the state after the last ')'.
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat, line)) {
    return false;
  }
  const auto paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) {
    return true;
  }
  const char state = line[paren + 2];
  return state != 'Z' && state != 'X';
}

Result<std::string> toolPath(std::string_view name) {
  std::string path;
  if (const char* env = std::getenv("PATH"); env != nullptr) {
    path = env;
    path += ":";
  }
  path += kDefaultPath;
  return findOnPath(name, path);
}

namespace registry {

void addNamespace(int run_id, const std::string& name) {
  std::lock_guard lock(reg().mu);
  reg().namespaces[name] = run_id;
}

void removeNamespace(const std::string& name) {
  std::lock_guard lock(reg().mu);
  reg().namespaces.erase(name);
}

void addPid(int run_id, pid_t pid) {
  std::lock_guard lock(reg().mu);
  reg().pids[pid] = run_id;
}

void removePid(pid_t pid) {
  std::lock_guard lock(reg().mu);
  reg().pids.erase(pid);
}

std::vector<std::string> namespacesOf(int run_id) {
  std::lock_guard lock(reg().mu);
  std::vector<std::string> out;
  for (const auto& [name, run] : reg().namespaces) {
    if (run == run_id) {
      out.push_back(name);
    }
  }
  return out;
}

std::vector<pid_t> pidsOf(int run_id) {
  std::lock_guard lock(reg().mu);
  std::vector<pid_t> out;
  for (const auto& [pid, run] : reg().pids) {
    if (run == run_id) {
      out.push_back(pid);
    }
  }
  return out;
}

}  // namespace registry

Result<std::vector<pid_t>> destroyNamespace(CommandRunner& runner, const std::string& name) {
  const auto ctx = "deleting namespace " + name;
  const fs::path mount = fs::path(kNetnsDir) / name;
  std::error_code ec;
  if (!fs::exists(mount, ec)) {
    return std::vector<pid_t>{};
  }
  auto ip = toolPath("ip");
  if (!ip) {
    return ip.error().context(ctx);
  }
  std::vector<pid_t> killed;
  std::optional<Error> problem;
  const bool emptied = pollUntil(
      [&] {
        auto pids = pidsInNamespace(runner, *ip, name);
        if (!pids) {
          problem = pids.error();
          return false;
        }
        if (pids->empty()) {
          return true;
        }
        for (pid_t pid : *pids) {
          // By PID only. A zombie is not listed (it has no namespace any more).
          if (::kill(pid, SIGKILL) == 0) {
            killed.push_back(pid);
          }
        }
        return false;
      },
      kNamespaceEmptyTimeout, 20ms);
  Command del;
  del.argv = {*ip, "netns", "del", name};
  del.timeout = 5000ms;
  auto deleted = runChecked(runner, del);
  if (!deleted && fs::exists(mount, ec)) {
    return deleted.error().context(ctx);
  }
  if (!emptied) {
    return makeError(Errc::Timeout, fmt::format("{}: processes still inside after {} ms{}", ctx,
                                                kNamespaceEmptyTimeout.count(),
                                                problem ? "; " + problem->message : std::string()));
  }
  return killed;
}

SweepReport sweepLeftovers(CommandRunner& runner) {
  SweepReport report;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kNetnsDir, ec)) {
    const auto name = entry.path().filename().string();
    const auto owner = ownerPid(name);
    if (!owner || !ownerIsGone(*owner)) {
      continue;
    }
    auto destroyed = destroyNamespace(runner, name);
    if (destroyed) {
      report.namespaces.push_back(name);
      report.killed.insert(report.killed.end(), destroyed->begin(), destroyed->end());
    } else {
      report.problems.push_back(destroyed.error().message);
    }
  }
  const auto tmp = fs::temp_directory_path(ec);
  if (!ec) {
    for (const auto& entry : fs::directory_iterator(tmp, ec)) {
      const auto name = entry.path().filename().string();
      const auto owner = ownerPid(name);
      if (!owner || !ownerIsGone(*owner) || !entry.is_directory(ec)) {
        continue;
      }
      std::error_code rm_ec;
      fs::remove_all(entry.path(), rm_ec);
      if (rm_ec) {
        report.problems.push_back(
            fmt::format("removing {}: {}", entry.path().string(), rm_ec.message()));
      } else {
        report.dirs.push_back(entry.path());
      }
    }
  }
  if (!report.namespaces.empty() || !report.dirs.empty()) {
    log()->info("swept leftovers of dead test runs: {} namespaces, {} processes, {} dirs",
                report.namespaces.size(), report.killed.size(), report.dirs.size());
  }
  for (const auto& problem : report.problems) {
    log()->warn("sweeping leftovers: {}", problem);
  }
  return report;
}

void installTeardownOnSignals() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (::pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
      log()->warn("no signal teardown: pipe2 failed: {}", std::strerror(errno));
      return;
    }
    std::thread(teardownThread).detach();
    struct sigaction sa {};
    sa.sa_handler = onTeardownSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      ::sigaction(sig, &sa, nullptr);
    }
  });
}

Result<std::unique_ptr<TestRun>> TestRun::create(std::shared_ptr<CommandRunner> runner) {
  installTeardownOnSignals();
  if (!runner) {
    runner = std::make_shared<SpawnCommandRunner>();
  }
  SweepReport sweep = sweepLeftovers(*runner);
  const int id = nextCounter();
  std::error_code ec;
  const auto tmp = fs::temp_directory_path(ec);
  if (ec) {
    return makeError(Errc::Internal, "creating test run dir: " + ec.message());
  }
  const auto dir = tmp / fmt::format("{}{}-run", processPrefix(), id);
  // Our pid is in the name, so an existing dir is the leftover of an earlier process that had it.
  fs::remove_all(dir, ec);
  if (!fs::create_directory(dir, ec) || ec) {
    return makeError(Errc::Internal,
                     fmt::format("creating test run dir {}: {}", dir.string(), ec.message()));
  }
  fs::permissions(dir, fs::perms::owner_all, ec);
  {
    std::lock_guard lock(reg().mu);
    reg().dirs[id] = dir;
  }
  log()->debug("test run {} in {}", id, dir.string());
  return std::unique_ptr<TestRun>(new TestRun(id, dir, std::move(runner), std::move(sweep)));
}

TestRun::TestRun(int id, fs::path dir, std::shared_ptr<CommandRunner> runner, SweepReport sweep)
    : id_(id), dir_(std::move(dir)), runner_(std::move(runner)), sweep_(std::move(sweep)) {}

TestRun::~TestRun() {
  auto done = teardown();
  if (!done) {
    log()->warn("tearing down test run {}: {}", id_, done.error().message);
  }
}

Result<void> TestRun::teardown() {
  if (torn_down_) {
    return ok();
  }
  torn_down_ = true;
  std::vector<std::string> problems;
  // Processes first (their owners were not destroyed: a leak or a wrong destruction order). Only
  // killed here, not reaped: the ChildProcess object still owns the wait.
  for (pid_t pid : registry::pidsOf(id_)) {
    log()->warn("test run {}: pid {} still registered at teardown; killing it", id_, pid);
    ::kill(pid, SIGKILL);
    ::kill(-pid, SIGKILL);
  }
  for (const auto& name : registry::namespacesOf(id_)) {
    log()->warn("test run {}: namespace {} still registered at teardown; deleting it", id_, name);
    auto destroyed = destroyNamespace(*runner_, name);
    if (destroyed) {
      registry::removeNamespace(name);
    } else {
      problems.push_back(destroyed.error().message);
    }
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
  if (ec) {
    problems.push_back(fmt::format("removing {}: {}", dir_.string(), ec.message()));
  }
  {
    std::lock_guard lock(reg().mu);
    reg().dirs.erase(id_);
  }
  if (!problems.empty()) {
    std::string joined;
    for (const auto& p : problems) {
      joined += (joined.empty() ? "" : "; ") + p;
    }
    return makeError(Errc::Internal, joined);
  }
  return ok();
}

std::string TestRun::uniqueName(std::string_view role) {
  return fmt::format("{}{}-{}", processPrefix(), nextCounter(), role);
}

}  // namespace flannel::test
