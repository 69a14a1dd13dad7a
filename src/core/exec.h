// DOC: the CommandRunner seam: run one external program, argv only, never through a shell
// (DESIGN.md "The seams" item 7).
//
// Who uses it: the iptables rule table (`iptables-restore --noflush`), the CNI plugin (delegating
// to bridge/host-local) and the test harness (`ip netns ...`, `etcdctl`). Anything that needs a
// program's exit status and output goes through this door, so unit tests can inject a fake
// runner and never start a process.
//
// Invariants of SpawnCommandRunner, the real implementation:
//  - argv is handed to the kernel as is: no shell, no word splitting, no globbing, no `$(...)`.
//    argv[0] without a '/' is looked up on PATH the way execvp does (see findOnPath()).
//  - The child gets exactly three open descriptors: stdin, stdout and stderr, all pipes to us.
//    Every other descriptor is closed in the child, and every descriptor we open is O_CLOEXEC, so
//    a command started concurrently on another thread never inherits our pipes.
//  - stdin, stdout and stderr are driven by one poll() loop, so a child writing megabytes to both
//    streams while we still feed it stdin cannot deadlock.
//  - The child runs in its own process group (pgid == its pid). On timeout we send SIGKILL to the
//    child's PID and then to that process group (by id; never by name), reap it, and report
//    Errc::Timeout.
//  - We stop reading when the child has exited and its pipes hold no more data, so a grandchild
//    that keeps the pipes open cannot make run() hang past the child's exit.
//  - SIGPIPE is blocked on the calling thread while stdin is fed (a child that exits without
//    reading its input is not an error) and any SIGPIPE we caused is consumed before returning.
//  - The child starts with an empty signal mask and default dispositions for the usual signals,
//    whatever the caller has ignored or blocked.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace flannel {

struct Command {
  // argv[0] is the program: an absolute or relative path (contains '/'), or a name looked up on
  // PATH. Must not be empty; no element may contain a NUL byte.
  std::vector<std::string> argv;
  // Variables set for the child, overriding inherited ones of the same name. A PATH given here is
  // also the PATH used to find argv[0].
  std::map<std::string, std::string> env_add;
  // true: the child starts from our environment; false: it sees env_add only.
  bool inherit_env = true;
  // Written to the child's stdin, which is then closed (empty: stdin is closed at once).
  std::string stdin_data;
  // Wall-clock limit for the whole run, from spawn to reap. Must be positive.
  std::chrono::milliseconds timeout{30'000};
};

struct CommandOutput {
  // The exit status if the child exited, -1 if a signal killed it.
  int exit_code = -1;
  // The signal that killed the child, 0 if it exited.
  int term_signal = 0;
  std::string out;
  std::string err;

  [[nodiscard]] bool success() const noexcept { return term_signal == 0 && exit_code == 0; }
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;

  // Runs `cmd` to completion and returns its status and output. A non-zero exit status is NOT an
  // error here: it is reported in CommandOutput (see runChecked()). Errors, each message starting
  // with "running <argv[0]>: ":
  //  - Errc::InvalidInput: empty argv, a NUL byte in argv/env, an env name that is empty or holds
  //    '=', a non-positive timeout, or a program that exists but cannot be executed (EACCES).
  //  - Errc::NotFound: the program does not exist ("executable not found on PATH").
  //  - Errc::Timeout: the child was still running at the deadline; it was killed and reaped.
  //  - Errc::Internal: a system call failed (sys_errno says which errno).
  // Thread safety: implementations must allow concurrent calls from different threads.
  virtual Result<CommandOutput> run(const Command& cmd) = 0;
};

// The real runner: posix_spawn + pipes + poll. Stateless; one instance may be shared freely.
class SpawnCommandRunner final : public CommandRunner {
 public:
  Result<CommandOutput> run(const Command& cmd) override;
};

// Runs `cmd` and also turns a non-zero exit or death by signal into an Errc::Internal error:
// "running <argv[0]>: exited with status N: <last lines of stderr>".
Result<CommandOutput> runChecked(CommandRunner& runner, const Command& cmd);

// Resolves `program` as execvp would: a name containing '/' is used as is (it must exist and be
// executable); otherwise each non-empty directory of `path_env` (colon-separated) is tried in
// order. Returns the path found, Errc::NotFound ("executable not found on PATH", or "no such
// file" for a path) or Errc::InvalidInput (exists but not an executable regular file).
Result<std::string> findOnPath(std::string_view program, std::string_view path_env);

// The PATH a command will be looked up with: env_add's PATH, else ours (if inherited), else
// kDefaultPath.
std::string effectivePath(const Command& cmd);

inline constexpr std::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// argv rendered for logs and error messages, with arguments quoted when they hold spaces or
// quotes. For people only: never feed it to a shell.
std::string describeCommand(const std::vector<std::string>& argv);

}  // namespace flannel
