// DOC: TestRun, the root of every namespace test: unique names, a per-run temp dir, a registry
// of what the run created, guaranteed teardown, and the sweep of leftovers of dead runs.
//
// Naming (everything the harness creates starts with "fct-<pid>-", pid = the owning test
// process):
//   network namespace   fct-<pid>-<n>-<role>      e.g. fct-12345-3-h1   (n: per-process counter)
//   temp dir            $TMPDIR/fct-<pid>-<n>-run  (etcd data dirs, process logs)
// Namespace names are not limited to 15 characters; device names inside them are (eth0, br0,
// p-h1, ...), and never depend on the pid.
//
// Teardown guarantees, from the inside out:
//  1. Each object (ChildProcess, Netns, Topology, EtcdCluster, TestRun) tears down in its
//     destructor, so a failed ASSERT or an exception still cleans up. Destroy in reverse order of
//     creation (declare the TestRun first in a fixture).
//  2. ~TestRun kills every process and deletes every namespace still registered under it.
//  3. SIGINT/SIGTERM/SIGHUP: TestRun::create() calls installTeardownOnSignals(): a handler wakes a
//     cleanup thread that kills every registered PID, deletes every registered namespace and temp
//     dir, then _exit(128 + signal). Binaries that want Ctrl-C protection before their first
//     TestRun can call installTeardownOnSignals() themselves.
//  4. SIGKILL of the test process: children die by PR_SET_PDEATHSIG; namespaces and temp dirs stay
//     until the next TestRun::create(), which calls sweepLeftovers(): anything named
//     fct-<pid>-... whose pid is dead (or a zombie) is removed, killing processes still inside a
//     namespace (by PID, from `ip netns pids`) before `ip netns del`.
// A PID that was reused by an unrelated process keeps its leftovers alive until that process
// ends: the sweep errs on the side of leaving things alone.
//
// Network safety: the harness only ever runs `ip netns add/del/pids/exec` and `ip -n <ours> ...`;
// it never changes an interface, address, route or rule of the root namespace.
//
// All of this is plain library code (no GoogleTest), usable from tests, benchmarks and demos.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/exec.h"
#include "core/result.h"

namespace flannel::test {

inline constexpr std::string_view kNamePrefix = "fct";

// "fct-<pid>-": the prefix of every namespace and temp dir created by process `pid`.
std::string processPrefix(pid_t pid);
std::string processPrefix();  // of this process

// True if `pid` is a live process; a zombie counts as dead.
bool isPidAlive(pid_t pid);

// Absolute path of a tool (ip, etcd, etcdctl, ...): looked up on PATH, then on kDefaultPath (a
// test run by a user whose PATH lacks /usr/sbin still finds `ip`).
Result<std::string> toolPath(std::string_view name);

struct SweepReport {
  std::vector<std::string> namespaces;  // deleted
  std::vector<pid_t> killed;            // processes found inside them
  std::vector<std::filesystem::path> dirs;
  std::vector<std::string> problems;  // what could not be removed, and why
};

// Removes the leftovers of runs whose owner process is gone (see the DOC above). Never touches
// anything of a live process, including this one. Bounded in time.
SweepReport sweepLeftovers(CommandRunner& runner);

// Installs the SIGINT/SIGTERM/SIGHUP teardown (idempotent; first call wins).
void installTeardownOnSignals();

// Kills every process inside namespace `name` (SIGKILL, by PID), waits until none is left (bounded)
// and deletes the namespace. Success if it did not exist. Returns the PIDs it killed.
Result<std::vector<pid_t>> destroyNamespace(CommandRunner& runner, const std::string& name);

// Registry of live resources, used by the signal teardown and ~TestRun. Netns and ChildProcess
// register themselves; tests never need these directly.
namespace registry {
void addNamespace(int run_id, const std::string& name);
void removeNamespace(const std::string& name);
void addPid(int run_id, pid_t pid);
void removePid(pid_t pid);
std::vector<std::string> namespacesOf(int run_id);
std::vector<pid_t> pidsOf(int run_id);
}  // namespace registry

class TestRun {
 public:
  // Sweeps leftovers of dead runs, installs the signal teardown and creates the temp dir.
  // `runner` defaults to a SpawnCommandRunner owned by the run.
  static Result<std::unique_ptr<TestRun>> create(std::shared_ptr<CommandRunner> runner = nullptr);

  TestRun(const TestRun&) = delete;
  TestRun& operator=(const TestRun&) = delete;
  // Kills what is still registered under this run, deletes its namespaces, removes the temp dir.
  ~TestRun();

  // Same as the destructor, but reports what went wrong. Idempotent.
  Result<void> teardown();

  // "fct-<pid>-<n>-<role>", unique within this process.
  std::string uniqueName(std::string_view role);

  int id() const { return id_; }
  const std::filesystem::path& dir() const { return dir_; }
  CommandRunner& runner() { return *runner_; }
  std::shared_ptr<CommandRunner> sharedRunner() const { return runner_; }
  const SweepReport& sweepReport() const { return sweep_; }

 private:
  TestRun(int id, std::filesystem::path dir, std::shared_ptr<CommandRunner> runner,
          SweepReport sweep);

  int id_;
  std::filesystem::path dir_;
  std::shared_ptr<CommandRunner> runner_;
  SweepReport sweep_;
  bool torn_down_ = false;
};

}  // namespace flannel::test
