// DOC: ChildProcess, a long-lived child of the test (etcd, later flanneld), optionally inside a
// network namespace.
//
// How it starts: fork(), then in the child only async-signal-safe calls: its own process group
// (pgid == pid), PR_SET_PDEATHSIG(SIGKILL) so it dies with the thread that started it (check
// that the parent did not die first), stdin from /dev/null, stdout+stderr appended to the log
// file, default signal dispositions, an empty mask, every descriptor but 0/1/2 close-on-exec,
// then execve(). Inside a namespace the program is exec'ed through `ip netns exec <ns>`, which
// execs in place (the PID we hold is the program's) and also remounts /sys for the namespace; or,
// with `setns_only`, the child itself setns()es into the namespace and execs the program directly
// (no `ip` process, no /sys remount: for programs that do not read /sys, e.g. start-up timing).
// An exec failure is reported back over a close-on-exec pipe, so start() fails with the errno
// instead of returning a process that died at once.
//
// Lifecycle:
//
//     start() ──> Running ──(exits / stop() / kill())──> Reaped
//
// stop() = SIGTERM to the PID, wait up to `grace`, SIGKILL to the PID; then SIGKILL to the
// process group (by its id, while the leader is still a zombie so the id cannot be reused), then
// reap. Never by name. The destructor calls stop().
//
// PR_SET_PDEATHSIG fires when the *thread* that forked exits: start long-lived children from the
// test's main thread (or a thread that outlives them).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

namespace flannel::test {

struct ChildSpec {
  // argv[0]: a path, or a name looked up with toolPath().
  std::vector<std::string> argv;
  std::map<std::string, std::string> env_add;
  bool inherit_env = true;
  // Network namespace to run in (a name under /run/netns); empty = the caller's namespace.
  std::string netns;
  // With `netns`: enter it with setns() in the forked child instead of `ip netns exec`.
  bool setns_only = false;
  // stdout and stderr are appended here. Required.
  std::filesystem::path log_path;
  // TestRun::id() of the owning run, so the run (and the signal teardown) can kill it; 0 = none.
  int run_id = 0;
};

struct ExitStatus {
  int exit_code = -1;   // -1 if killed by a signal
  int term_signal = 0;  // 0 if it exited
};

class ChildProcess {
 public:
  static Result<std::unique_ptr<ChildProcess>> start(ChildSpec spec);

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  const ChildSpec& spec() const { return spec_; }

  // Reaps the child if it has exited. Never blocks.
  bool running();
  // The exit status once reaped.
  const std::optional<ExitStatus>& exitStatus() const { return status_; }

  // Sends `sig` to the PID (Errc::NotFound once reaped).
  Result<void> signal(int sig);
  // SIGTERM, wait up to `grace`, SIGKILL, reap. Idempotent: returns the recorded status.
  Result<ExitStatus> stop(std::chrono::milliseconds grace = std::chrono::milliseconds(3000));
  // SIGKILL and reap at once.
  Result<ExitStatus> kill() { return stop(std::chrono::milliseconds(0)); }
  // Waits (bounded) for the child to exit on its own and reaps it.
  Result<ExitStatus> wait(std::chrono::milliseconds timeout);

  // The last `max_bytes` of the log, for failure messages.
  std::string logTail(size_t max_bytes = 4096) const;

 private:
  ChildProcess(ChildSpec spec, pid_t pid) : spec_(std::move(spec)), pid_(pid) {}
  // waitid(WNOHANG|WNOWAIT): true once the child is a zombie (not reaped yet).
  bool hasExited() const;
  Result<ExitStatus> reap();

  ChildSpec spec_;
  pid_t pid_;
  std::optional<ExitStatus> status_;
};

}  // namespace flannel::test
