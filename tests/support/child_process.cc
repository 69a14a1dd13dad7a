#include "support/child_process.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <utility>

#include <fmt/format.h>

#include "core/exec.h"
#include "core/log.h"
#include "support/test_run.h"

extern char** environ;  // NOLINT(readability-redundant-declaration)

namespace flannel::test {

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kReapLimit = std::chrono::seconds(10);

Error sysError(std::string_view what, int err) {
  return makeError(Errc::Internal, fmt::format("{}: {}", what, std::strerror(err)), err);
}

// An O_CLOEXEC descriptor numbered >= 3, so dup2() onto 0/1/2 in the child is a real dup.
int highCloexec(int fd) {
  if (fd < 0 || fd >= 3) {
    return fd;
  }
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  ::close(fd);
  return moved;
}

struct FdCloser {
  int fd = -1;
  FdCloser() = default;
  explicit FdCloser(int f) : fd(f) {}
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  ~FdCloser() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

std::vector<char*> cStrings(std::vector<std::string>& strings) {
  std::vector<char*> ptrs;
  ptrs.reserve(strings.size() + 1);
  for (auto& s : strings) {
    ptrs.push_back(s.data());
  }
  ptrs.push_back(nullptr);
  return ptrs;
}

std::vector<std::string> buildEnv(const ChildSpec& spec) {
  std::vector<std::string> env;
  if (spec.inherit_env && environ != nullptr) {
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view entry(*e);
      const auto name = entry.substr(0, entry.find('='));
      if (spec.env_add.find(std::string(name)) == spec.env_add.end()) {
        env.emplace_back(entry);
      }
    }
  }
  for (const auto& [name, value] : spec.env_add) {
    env.push_back(name + "=" + value);
  }
  return env;
}

// Runs in the forked child: async-signal-safe calls only, then execve. Never returns.
[[noreturn]] void childMain(pid_t parent, int devnull, int log_fd, int err_pipe, int netns_fd,
                            const char* path, char* const* argv, char* const* envp) {
  auto fail = [err_pipe](int err) {
    ssize_t written = ::write(err_pipe, &err, sizeof err);
    (void)written;
    ::_exit(127);
  };
  if (::setpgid(0, 0) != 0) {
    fail(errno);
  }
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    fail(errno);
  }
  if (::getppid() != parent) {
    ::_exit(127);  // The parent died before PDEATHSIG was armed.
  }
  if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) {
    fail(errno);
  }
  if (::dup2(devnull, STDIN_FILENO) < 0 || ::dup2(log_fd, STDOUT_FILENO) < 0 ||
      ::dup2(log_fd, STDERR_FILENO) < 0) {
    fail(errno);
  }
  // Handlers would not survive exec anyway; ignored signals would, so reset everything.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) {
      ::sigaction(sig, &dfl, nullptr);
    }
  }
  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);
  // Whatever the test process had open without O_CLOEXEC does not leak into the child.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  ::execve(path, argv, envp);
  fail(errno);
  ::_exit(127);
}

}  // namespace

Result<std::unique_ptr<ChildProcess>> ChildProcess::start(ChildSpec spec) {
  if (spec.argv.empty() || spec.argv.front().empty()) {
    return invalidInput("starting a child: empty argv");
  }
  if (spec.log_path.empty()) {
    return invalidInput("starting " + spec.argv.front() + ": no log path");
  }
  const std::string program = spec.argv.front();
  auto ctx = [&program](Error e) { return e.context("starting " + program); };

  // Everything that allocates happens before fork().
  auto resolved = toolPath(program);
  if (!resolved) {
    return ctx(resolved.error());
  }
  std::vector<std::string> argv_strings;
  std::string exec_path = *resolved;
  FdCloser netns_fd;
  if (!spec.netns.empty() && spec.setns_only) {
    const std::string ns_path = "/run/netns/" + spec.netns;
    netns_fd.fd = highCloexec(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (netns_fd.fd < 0) {
      return ctx(sysError("opening " + ns_path, errno));
    }
  } else if (!spec.netns.empty()) {
    auto ip = toolPath("ip");
    if (!ip) {
      return ctx(ip.error());
    }
    exec_path = *ip;
    argv_strings = {*ip, "netns", "exec", spec.netns};
  }
  argv_strings.push_back(*resolved);
  argv_strings.insert(argv_strings.end(), spec.argv.begin() + 1, spec.argv.end());
  std::vector<std::string> env_strings = buildEnv(spec);
  auto argv = cStrings(argv_strings);
  auto envp = cStrings(env_strings);

  FdCloser devnull(highCloexec(::open("/dev/null", O_RDONLY | O_CLOEXEC)));
  if (devnull.fd < 0) {
    return ctx(sysError("opening /dev/null", errno));
  }
  FdCloser log_fd(
      highCloexec(::open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)));
  if (log_fd.fd < 0) {
    return ctx(sysError("opening log " + spec.log_path.string(), errno));
  }
  std::array<int, 2> err_pipe{-1, -1};
  if (::pipe2(err_pipe.data(), O_CLOEXEC) != 0) {
    return ctx(sysError("pipe2", errno));
  }
  FdCloser err_read(err_pipe[0]);
  FdCloser err_write(err_pipe[1]);

  // Block every signal across fork(): the child must not run our SIGINT handler (it would wake
  // the parent's teardown thread) between fork and its own signal reset.
  sigset_t all;
  sigset_t old_mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    childMain(parent, devnull.fd, log_fd.fd, err_write.fd, netns_fd.fd, exec_path.c_str(),
              argv.data(), envp.data());
  }
  const int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  if (pid < 0) {
    return ctx(sysError("fork", fork_errno));
  }
  registry::addPid(spec.run_id, pid);
  // The test process owns the group too (no race with the child's own setpgid).
  ::setpgid(pid, pid);
  std::unique_ptr<ChildProcess> child(new ChildProcess(std::move(spec), pid));

  ::close(err_write.fd);
  err_write.fd = -1;
  int child_errno = 0;
  ssize_t n = 0;
  do {
    n = ::read(err_read.fd, &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    auto status = child->reap();
    (void)status;
    return ctx(makeError(child_errno == ENOENT ? Errc::NotFound : Errc::Internal,
                         fmt::format("exec {}: {}", exec_path, std::strerror(child_errno)),
                         child_errno));
  }
  logger("test.child")
      ->debug("started pid {}: {}{}", pid, describeCommand(argv_strings),
              child->spec_.netns.empty() ? "" : " (in " + child->spec_.netns + ")");
  return child;
}

ChildProcess::~ChildProcess() {
  auto stopped = stop();
  if (!stopped) {
    logger("test.child")->warn("stopping pid {}: {}", pid_, stopped.error().message);
  }
}

bool ChildProcess::hasExited() const {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    return errno == ECHILD;  // Someone else reaped it: treat as gone.
  }
  return info.si_pid == pid_;
}

Result<ExitStatus> ChildProcess::reap() {
  if (status_) {
    return *status_;
  }
  int raw = 0;
  pid_t r = -1;
  do {
    r = ::waitpid(pid_, &raw, 0);
  } while (r < 0 && errno == EINTR);
  ExitStatus status;
  if (r == pid_) {
    if (WIFEXITED(raw)) {
      status.exit_code = WEXITSTATUS(raw);
    } else if (WIFSIGNALED(raw)) {
      status.term_signal = WTERMSIG(raw);
    }
  } else if (errno != ECHILD) {
    return sysError(fmt::format("waitpid({})", pid_), errno);
  }
  status_ = status;
  registry::removePid(pid_);
  return status;
}

bool ChildProcess::running() {
  if (status_) {
    return false;
  }
  if (hasExited()) {
    auto reaped = reap();
    (void)reaped;
    return false;
  }
  return true;
}

Result<void> ChildProcess::signal(int sig) {
  if (status_) {
    return makeError(Errc::NotFound, fmt::format("pid {} has already been reaped", pid_));
  }
  if (::kill(pid_, sig) != 0) {
    return sysError(fmt::format("kill({}, {})", pid_, sig), errno);
  }
  return ok();
}

Result<ExitStatus> ChildProcess::wait(std::chrono::milliseconds timeout) {
  if (status_) {
    return *status_;
  }
  const auto deadline = Clock::now() + timeout;
  while (!hasExited()) {
    if (Clock::now() >= deadline) {
      return makeError(Errc::Timeout,
                       fmt::format("pid {} still running after {} ms", pid_, timeout.count()));
    }
    ::usleep(5000);
  }
  return reap();
}

Result<ExitStatus> ChildProcess::stop(std::chrono::milliseconds grace) {
  if (status_) {
    return *status_;
  }
  if (!hasExited()) {
    if (grace.count() > 0) {
      ::kill(pid_, SIGTERM);
      const auto deadline = Clock::now() + grace;
      while (!hasExited() && Clock::now() < deadline) {
        ::usleep(5000);
      }
    }
    if (!hasExited()) {
      ::kill(pid_, SIGKILL);
      const auto deadline = Clock::now() + kReapLimit;
      while (!hasExited() && Clock::now() < deadline) {
        ::usleep(2000);
      }
      if (!hasExited()) {
        return makeError(Errc::Timeout, fmt::format("pid {} survived SIGKILL for {} s", pid_,
                                                    std::chrono::seconds(kReapLimit).count()));
      }
    }
  }
  // The leader is a zombie now, so its id still names our process group: take any descendant
  // left in the group with it, then reap.
  ::kill(-pid_, SIGKILL);
  return reap();
}

std::string ChildProcess::logTail(size_t max_bytes) const {
  std::ifstream in(spec_.log_path, std::ios::binary | std::ios::ate);
  if (!in) {
    return {};
  }
  const auto size = static_cast<size_t>(in.tellg());
  const size_t start = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(start));
  std::string tail(size - start, '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  return tail;
}

}  // namespace flannel::test
