// DOC: Netns, one network namespace owned by a test (RAII).
//
// create() runs `ip netns add fct-<pid>-<n>-<role>` and brings `lo` up inside. The destructor (or
// destroy()) kills every process still inside, by PID from `ip netns pids`, waits until none is
// left (bounded) and runs `ip netns del`. Commands run inside through `ip netns exec <name>`
// via the run's CommandRunner; long-lived processes start through spawn() (a ChildProcess).
// Sockets can be opened inside from the test process itself (openSocket(), ping()), so the
// harness needs no ping binary.
//
// Thread safety: none; one test thread owns a Netns.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/exec.h"
#include "core/result.h"
#include "support/child_process.h"

namespace flannel::test {

class TestRun;

class Netns {
 public:
  static Result<std::unique_ptr<Netns>> create(TestRun& run, std::string_view role);

  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  ~Netns();

  const std::string& name() const { return name_; }
  const std::string& role() const { return role_; }
  int runId() const { return run_id_; }
  const std::filesystem::path& runDir() const { return run_dir_; }

  // `ip netns exec <name> argv...`. argv[0] is resolved with toolPath(). A non-zero exit is not
  // an error (see CommandRunner::run); execChecked() makes it one.
  Result<CommandOutput> exec(std::vector<std::string> argv,
                             std::chrono::milliseconds timeout = std::chrono::seconds(10),
                             std::map<std::string, std::string> env_add = {});
  Result<CommandOutput> execChecked(std::vector<std::string> argv,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(10),
                                    std::map<std::string, std::string> env_add = {});

  // `ip -n <name> args...`, checked.
  Result<CommandOutput> ip(std::vector<std::string> args);
  // `ip -n <name> -batch -` with one iproute2 command per line, checked.
  Result<void> ipBatch(std::string_view lines);

  // PIDs of the processes inside (`ip netns pids`).
  Result<std::vector<pid_t>> pids();

  // Starts a long-lived process inside; spec.netns and spec.run_id are filled in, and a missing
  // log_path becomes <run dir>/<role>-<program>-<n>.log.
  Result<std::unique_ptr<ChildProcess>> spawn(ChildSpec spec);

  // A socket created inside this namespace (a short-lived thread setns()es into it), owned by
  // the caller (close it). The socket stays in this namespace whichever thread uses it.
  Result<int> openSocket(int domain, int type, int protocol);

  // One ICMP echo round trip from inside this namespace to `ipv4` (raw socket; retried every
  // 200 ms until `timeout`) with `data_bytes` of echo data ("flannel!" then zeros; at least 8).
  // Errc::Timeout if no reply came.
  Result<void> ping(const std::string& ipv4,
                    std::chrono::milliseconds timeout = std::chrono::seconds(3),
                    size_t data_bytes = 8);

  // Kills what is inside and deletes the namespace. Idempotent.
  Result<void> destroy();

 private:
  Netns(std::shared_ptr<CommandRunner> runner, std::string name, std::string role, int run_id,
        std::filesystem::path run_dir);

  std::shared_ptr<CommandRunner> runner_;
  std::string name_;
  std::string role_;
  int run_id_;
  std::filesystem::path run_dir_;
  int spawned_ = 0;
  bool destroyed_ = false;
};

}  // namespace flannel::test
