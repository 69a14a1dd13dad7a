#include "core/exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "core/log.h"
#include "core/unique_fd.h"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX does not declare it.

namespace flannel {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kChunk = 64 * 1024;
// After the child has exited we drain what is already in the pipes; a grandchild that keeps
// writing must not keep us here, so the drain is bounded.
constexpr int kMaxDrainReads = 4096;
// Bound on waiting for a SIGKILLed child to be reaped (it can only be slow in uninterruptible
// sleep); after that we report the error rather than hang.
constexpr auto kReapAfterKillLimit = std::chrono::seconds(10);

using Fd = UniqueFd;

Error sysError(std::string_view what, int err) {
  return makeError(Errc::Internal, fmt::format("{}: {}", what, std::strerror(err)), err);
}

// A pipe whose both ends are O_CLOEXEC and numbered >= 3, so that dup2() onto 0/1/2 in the
// child never degenerates into dup2(fd, fd) (which would keep FD_CLOEXEC set).
Result<std::pair<Fd, Fd>> makePipe() {
  std::array<int, 2> fds{};
  if (::pipe2(fds.data(), O_CLOEXEC) != 0) {
    return sysError("pipe2", errno);
  }
  std::array<Fd, 2> ends{Fd(fds[0]), Fd(fds[1])};
  for (auto& end : ends) {
    if (end.get() < 3) {
      const int moved = ::fcntl(end.get(), F_DUPFD_CLOEXEC, 3);
      if (moved < 0) {
        return sysError("fcntl(F_DUPFD_CLOEXEC)", errno);
      }
      end = Fd(moved);
    }
  }
  return std::make_pair(std::move(ends[0]), std::move(ends[1]));
}

Result<void> setNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return sysError("fcntl(O_NONBLOCK)", errno);
  }
  return ok();
}

bool hasNul(std::string_view s) {
  return s.find('\0') != std::string_view::npos;
}

Result<void> validate(const Command& cmd) {
  if (cmd.argv.empty() || cmd.argv.front().empty()) {
    return invalidInput("empty argv: no program to run");
  }
  for (const auto& arg : cmd.argv) {
    if (hasNul(arg)) {
      return invalidInput("an argument contains a NUL byte");
    }
  }
  for (const auto& [name, value] : cmd.env_add) {
    if (name.empty() || name.find('=') != std::string::npos || hasNul(name) || hasNul(value)) {
      return invalidInput(fmt::format("invalid environment variable name {:?}", name));
    }
  }
  if (cmd.timeout.count() <= 0) {
    return invalidInput(fmt::format("timeout must be positive, got {} ms", cmd.timeout.count()));
  }
  return ok();
}

std::vector<std::string> buildEnv(const Command& cmd) {
  std::vector<std::string> env;
  if (cmd.inherit_env && environ != nullptr) {
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view entry(*e);
      const auto eq = entry.find('=');
      const auto name = entry.substr(0, eq);
      if (cmd.env_add.find(std::string(name)) == cmd.env_add.end()) {
        env.emplace_back(entry);
      }
    }
  }
  for (const auto& [name, value] : cmd.env_add) {
    env.push_back(name + "=" + value);
  }
  return env;
}

std::vector<char*> cStrings(std::vector<std::string>& strings) {
  std::vector<char*> ptrs;
  ptrs.reserve(strings.size() + 1);
  for (auto& s : strings) {
    ptrs.push_back(s.data());
  }
  ptrs.push_back(nullptr);
  return ptrs;
}

// RAII for the posix_spawn attribute objects.
struct SpawnSetup {
  posix_spawn_file_actions_t actions{};
  posix_spawnattr_t attr{};
  bool actions_ok = false;
  bool attr_ok = false;
  SpawnSetup() = default;
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
  ~SpawnSetup() {
    if (actions_ok) {
      posix_spawn_file_actions_destroy(&actions);
    }
    if (attr_ok) {
      posix_spawnattr_destroy(&attr);
    }
  }
};

Result<void> prepareSpawn(SpawnSetup& s, int in_fd, int out_fd, int err_fd) {
  int rc = posix_spawn_file_actions_init(&s.actions);
  if (rc != 0) {
    return sysError("posix_spawn_file_actions_init", rc);
  }
  s.actions_ok = true;
  // dup2 clears FD_CLOEXEC on 0/1/2; everything else, including descriptors some other code
  // opened without O_CLOEXEC, is closed in the child before exec.
  if ((rc = posix_spawn_file_actions_adddup2(&s.actions, in_fd, STDIN_FILENO)) != 0 ||
      (rc = posix_spawn_file_actions_adddup2(&s.actions, out_fd, STDOUT_FILENO)) != 0 ||
      (rc = posix_spawn_file_actions_adddup2(&s.actions, err_fd, STDERR_FILENO)) != 0 ||
      (rc = posix_spawn_file_actions_addclosefrom_np(&s.actions, 3)) != 0) {
    return sysError("posix_spawn_file_actions", rc);
  }

  rc = posix_spawnattr_init(&s.attr);
  if (rc != 0) {
    return sysError("posix_spawnattr_init", rc);
  }
  s.attr_ok = true;
  sigset_t empty;
  sigemptyset(&empty);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM,
                  SIGTSTP, SIGTTIN, SIGTTOU}) {
    sigaddset(&defaults, sig);
  }
  const short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP;
  if ((rc = posix_spawnattr_setsigmask(&s.attr, &empty)) != 0 ||
      (rc = posix_spawnattr_setsigdefault(&s.attr, &defaults)) != 0 ||
      (rc = posix_spawnattr_setpgroup(&s.attr, 0)) != 0 ||
      (rc = posix_spawnattr_setflags(&s.attr, flags)) != 0) {
    return sysError("posix_spawnattr", rc);
  }
  return ok();
}

// Blocks SIGPIPE on this thread for its lifetime; on destruction consumes a SIGPIPE that became
// pending meanwhile (one we caused by writing to a closed pipe) and restores the old mask.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask_);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pipe_set;
      sigemptyset(&pipe_set);
      sigaddset(&pipe_set, SIGPIPE);
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{};
        while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }

 private:
  sigset_t old_mask_{};
  bool was_pending_ = false;
};

int pidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    // pidfd_open sets O_CLOEXEC itself (it is documented to).
    return static_cast<int>(fd);
  }
#else
  (void)pid;
#endif
  return -1;  // Old kernel: fall back to waiting for EOF on both pipes.
}

// Reads what is available from `fd` into `sink`. Returns false once the pipe is at EOF or
// broken (the caller then closes it).
Result<bool> readSome(int fd, std::string& sink, int max_reads) {
  std::array<char, kChunk> buf;
  for (int i = 0; i < max_reads; ++i) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n > 0) {
      sink.append(buf.data(), static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      return false;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return true;
    }
    return sysError("reading the child's output", errno);
  }
  return true;
}

Result<int> waitForExit(pid_t pid) {
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, 0);
    if (r == pid) {
      return status;
    }
    if (r < 0 && errno == EINTR) {
      continue;
    }
    return sysError(fmt::format("waitpid({})", pid), errno);
  }
}

// Kills the child (by PID, then its process group by id) and reaps it, bounded in time.
Result<void> killAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  ::kill(-pid, SIGKILL);
  const auto limit = Clock::now() + kReapAfterKillLimit;
  while (Clock::now() < limit) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      return ok();
    }
    if (r < 0 && errno != EINTR) {
      return sysError(fmt::format("waitpid({})", pid), errno);
    }
    ::usleep(1000);
  }
  return makeError(Errc::Internal, fmt::format("pid {} did not die after SIGKILL", pid));
}

// Writes the next piece of stdin. Returns false once stdin is finished (all written, or the
// child closed its end: a command that ignores its input is not our error).
Result<bool> feedStdin(int fd, std::string_view data, size_t& written) {
  while (written < data.size()) {
    const size_t len = std::min(kChunk, data.size() - written);
    const ssize_t n = ::write(fd, data.data() + written, len);
    if (n > 0) {
      written += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return true;
    }
    if (n < 0 && errno == EPIPE) {
      return false;
    }
    return sysError("writing the child's stdin", errno);
  }
  return false;
}

CommandOutput decodeStatus(int status, std::string out, std::string err) {
  CommandOutput result;
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.term_signal = WTERMSIG(status);
  }
  result.out = std::move(out);
  result.err = std::move(err);
  return result;
}

// The poll loop. On any error or timeout the child is killed and reaped before returning.
Result<CommandOutput> collect(const Command& cmd, pid_t pid, Fd in, Fd out, Fd err,
                              Clock::time_point deadline) {
  Fd pidfd(pidfdOpen(pid));
  std::string out_buf;
  std::string err_buf;
  size_t written = 0;
  bool exited = false;
  if (cmd.stdin_data.empty()) {
    in.reset();
  }
  auto fail = [&](Error e) -> Result<CommandOutput> {
    if (auto killed = killAndReap(pid); !killed) {
      return e.context(killed.error().message);
    }
    return e;
  };

  while (in.valid() || out.valid() || err.valid() || (pidfd.valid() && !exited)) {
    if (exited) {
      // The child is gone: take what its pipes already hold, but do not wait for a grandchild
      // that inherited them.
      for (Fd* fd : {&out, &err}) {
        if (fd->valid()) {
          auto r = readSome(fd->get(), fd == &out ? out_buf : err_buf, kMaxDrainReads);
          if (!r) {
            return fail(r.error());
          }
          fd->reset();
        }
      }
      break;
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      if (auto killed = killAndReap(pid); !killed) {
        return killed.error();
      }
      return makeError(Errc::Timeout,
                       fmt::format("timed out after {} ms; killed pid {} with SIGKILL",
                                   cmd.timeout.count(), pid));
    }
    const auto remaining = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    const int wait_ms = static_cast<int>(std::min<long long>(remaining, INT_MAX));

    std::array<pollfd, 4> fds{};
    nfds_t n = 0;
    int in_idx = -1;
    int out_idx = -1;
    int err_idx = -1;
    int pid_idx = -1;
    if (in.valid()) {
      in_idx = static_cast<int>(n);
      fds[n++] = pollfd{.fd = in.get(), .events = POLLOUT, .revents = 0};
    }
    if (out.valid()) {
      out_idx = static_cast<int>(n);
      fds[n++] = pollfd{.fd = out.get(), .events = POLLIN, .revents = 0};
    }
    if (err.valid()) {
      err_idx = static_cast<int>(n);
      fds[n++] = pollfd{.fd = err.get(), .events = POLLIN, .revents = 0};
    }
    if (pidfd.valid()) {
      pid_idx = static_cast<int>(n);
      fds[n++] = pollfd{.fd = pidfd.get(), .events = POLLIN, .revents = 0};
    }
    const int ready = ::poll(fds.data(), n, wait_ms);
    if (ready < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(sysError("poll", errno));
    }
    if (in_idx >= 0 && fds[in_idx].revents != 0) {
      auto more = feedStdin(in.get(), cmd.stdin_data, written);
      if (!more) {
        return fail(more.error());
      }
      if (!*more) {
        in.reset();
      }
    }
    for (auto [idx, fd, buf] :
         {std::tuple{out_idx, &out, &out_buf}, std::tuple{err_idx, &err, &err_buf}}) {
      if (idx >= 0 && fds[idx].revents != 0) {
        auto open = readSome(fd->get(), *buf, 16);
        if (!open) {
          return fail(open.error());
        }
        if (!*open) {
          fd->reset();
        }
      }
    }
    if (pid_idx >= 0 && fds[pid_idx].revents != 0) {
      exited = true;
    }
  }
  // stdin may still be open if the child exited without reading it all.
  in.reset();
  if (!exited) {
    // No pidfd (old kernel): both pipes are at EOF, but the child may still be running.
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        return decodeStatus(status, std::move(out_buf), std::move(err_buf));
      }
      if (r < 0 && errno != EINTR) {
        return sysError(fmt::format("waitpid({})", pid), errno);
      }
      if (Clock::now() >= deadline) {
        if (auto killed = killAndReap(pid); !killed) {
          return killed.error();
        }
        return makeError(Errc::Timeout,
                         fmt::format("timed out after {} ms; killed pid {} with SIGKILL",
                                     cmd.timeout.count(), pid));
      }
      ::usleep(1000);
    }
  }
  auto status = waitForExit(pid);
  if (!status) {
    return status.error();
  }
  return decodeStatus(*status, std::move(out_buf), std::move(err_buf));
}

Result<CommandOutput> spawnAndCollect(const Command& cmd) {
  if (auto valid = validate(cmd); !valid) {
    return valid.error();
  }
  auto path = findOnPath(cmd.argv.front(), effectivePath(cmd));
  if (!path) {
    return path.error();
  }
  const auto deadline = Clock::now() + cmd.timeout;

  auto in_pipe = makePipe();
  if (!in_pipe) {
    return in_pipe.error();
  }
  auto out_pipe = makePipe();
  if (!out_pipe) {
    return out_pipe.error();
  }
  auto err_pipe = makePipe();
  if (!err_pipe) {
    return err_pipe.error();
  }
  auto& [in_read, in_write] = *in_pipe;
  auto& [out_read, out_write] = *out_pipe;
  auto& [err_read, err_write] = *err_pipe;

  SpawnSetup setup;
  if (auto prepared = prepareSpawn(setup, in_read.get(), out_write.get(), err_write.get());
      !prepared) {
    return prepared.error();
  }

  std::vector<std::string> argv_strings = cmd.argv;
  std::vector<std::string> env_strings = buildEnv(cmd);
  auto argv = cStrings(argv_strings);
  auto envp = cStrings(env_strings);

  // Block SIGPIPE before the child exists, so feeding stdin to a child that has already exited
  // cannot kill us; the guard restores the mask after the child is reaped.
  SigpipeGuard sigpipe_guard;
  pid_t pid = -1;
  const int rc =
      ::posix_spawn(&pid, path->c_str(), &setup.actions, &setup.attr, argv.data(), envp.data());
  if (rc != 0) {
    if (rc == ENOENT) {
      return makeError(Errc::NotFound, fmt::format("{}: {}", *path, std::strerror(rc)), rc);
    }
    if (rc == EACCES || rc == ENOEXEC || rc == EPERM) {
      return makeError(Errc::InvalidInput,
                       fmt::format("{}: cannot execute: {}", *path, std::strerror(rc)), rc);
    }
    return sysError("posix_spawn", rc);
  }
  logger("exec")->debug("pid {}: {}", pid, describeCommand(cmd.argv));
  // Our copies of the child's ends must go, or we would never see EOF on stdout/stderr.
  in_read.reset();
  out_write.reset();
  err_write.reset();
  for (const Fd* fd : {&in_write, &out_read, &err_read}) {
    if (auto nb = setNonBlocking(fd->get()); !nb) {
      if (auto killed = killAndReap(pid); !killed) {
        return nb.error().context(killed.error().message);
      }
      return nb.error();
    }
  }
  return collect(cmd, pid, std::move(in_write), std::move(out_read), std::move(err_read), deadline);
}

// The last `max_lines` non-empty lines of `text`, joined by "; ", for error messages.
std::string tailLines(std::string_view text, size_t max_lines) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    auto line = text.substr(start, end - start);
    if (!line.empty()) {
      lines.push_back(line);
    }
    start = end + 1;
  }
  std::string out;
  const size_t first = lines.size() > max_lines ? lines.size() - max_lines : 0;
  for (size_t i = first; i < lines.size(); ++i) {
    if (!out.empty()) {
      out.append("; ");
    }
    out.append(lines[i]);
  }
  return out;
}

}  // namespace

Result<CommandOutput> SpawnCommandRunner::run(const Command& cmd) {
  const std::string program = cmd.argv.empty() ? std::string("<empty argv>") : cmd.argv.front();
  auto result = spawnAndCollect(cmd);
  if (!result) {
    return result.error().context("running " + program);
  }
  return result;
}

Result<CommandOutput> runChecked(CommandRunner& runner, const Command& cmd) {
  auto result = runner.run(cmd);
  if (!result || result->success()) {
    return result;
  }
  const std::string program = cmd.argv.empty() ? std::string("<empty argv>") : cmd.argv.front();
  std::string what = result->term_signal != 0
                         ? fmt::format("killed by signal {}", result->term_signal)
                         : fmt::format("exited with status {}", result->exit_code);
  const auto detail = tailLines(result->err, 3);
  if (!detail.empty()) {
    what += ": " + detail;
  }
  return makeError(Errc::Internal, fmt::format("running {}: {}", program, what));
}

std::string effectivePath(const Command& cmd) {
  if (auto it = cmd.env_add.find("PATH"); it != cmd.env_add.end()) {
    return it->second;
  }
  if (cmd.inherit_env) {
    if (const char* path = std::getenv("PATH"); path != nullptr) {
      return path;
    }
  }
  return std::string(kDefaultPath);
}

Result<std::string> findOnPath(std::string_view program, std::string_view path_env) {
  if (program.empty()) {
    return invalidInput("empty program name");
  }
  auto check = [](const std::string& candidate) -> Result<std::string> {
    struct stat st {};
    if (::stat(candidate.c_str(), &st) != 0) {
      return makeError(Errc::NotFound, fmt::format("{}: {}", candidate, std::strerror(errno)),
                       errno);
    }
    if (!S_ISREG(st.st_mode) || ::access(candidate.c_str(), X_OK) != 0) {
      return makeError(Errc::InvalidInput, fmt::format("{}: not an executable file", candidate),
                       EACCES);
    }
    return candidate;
  };
  if (program.find('/') != std::string_view::npos) {
    return check(std::string(program));
  }
  std::optional<Error> not_executable;
  size_t start = 0;
  while (start <= path_env.size()) {
    auto end = path_env.find(':', start);
    if (end == std::string_view::npos) {
      end = path_env.size();
    }
    const auto dir = path_env.substr(start, end - start);
    start = end + 1;
    // execvp treats an empty entry as the current directory; a daemon running as root must not,
    // so empty entries are skipped.
    if (dir.empty()) {
      continue;
    }
    std::string candidate(dir);
    if (candidate.back() != '/') {
      candidate.push_back('/');
    }
    candidate.append(program);
    auto found = check(candidate);
    if (found) {
      return found;
    }
    if (found.error().code == Errc::InvalidInput && !not_executable) {
      not_executable = found.error();
    }
  }
  if (not_executable) {
    return *not_executable;
  }
  return makeError(Errc::NotFound, "executable not found on PATH", ENOENT);
}

std::string describeCommand(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& arg : argv) {
    if (!out.empty()) {
      out.push_back(' ');
    }
    const bool plain = !arg.empty() && arg.find_first_of(" \t\n'\"\\$`") == std::string::npos;
    if (plain) {
      out.append(arg);
    } else {
      out.push_back('\'');
      for (char c : arg) {
        if (c == '\'') {
          out.append("'\\''");
        } else {
          out.push_back(c);
        }
      }
      out.push_back('\'');
    }
  }
  return out;
}

}  // namespace flannel
