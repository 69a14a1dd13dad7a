// Runs the built flanneld binary (FLANNELD_BINARY, set by CMake) for the paths that end before
// anything is started: help, version, bad input, and the start-up log line.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#ifndef FLANNELD_BINARY
#error "FLANNELD_BINARY must be defined by the build"
#endif
#ifndef FLANNEL_VERSION
#error "FLANNEL_VERSION must be defined by the build"
#endif

namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string readAll(int fd) {
  std::string text;
  std::array<char, 4096> buf{};
  while (true) {
    const ssize_t n = read(fd, buf.data(), buf.size());
    if (n > 0) {
      text.append(buf.data(), static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      return text;
    }
  }
}

// Runs flanneld with `args` and exactly the environment `env` (no inherited FLANNELD_*).
// Output is small (well under a pipe buffer), so reading stdout then stderr cannot deadlock.
RunResult run(std::vector<std::string> args, std::vector<std::string> env = {}) {
  RunResult result;
  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2 failed";
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);

  std::string binary = FLANNELD_BINARY;
  std::vector<char*> argv{binary.data()};
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);

  pid_t pid = -1;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    ADD_FAILURE() << "posix_spawn " << binary << " failed: " << rc;
  } else {
    result.out = readAll(out_pipe[0]);
    result.err = readAll(err_pipe[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  close(out_pipe[0]);
  close(err_pipe[0]);
  return result;
}

constexpr const char* kHint = "Run 'flanneld --help' for usage.";

TEST(FlanneldBinary, HelpGoesToStdoutAndExitsZero) {
  for (const char* flag : {"--help", "-help", "-h"}) {
    SCOPED_TRACE(flag);
    const RunResult r = run({flag});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_THAT(r.out, StartsWith("Usage: flanneld [OPTION]...\n"));
    EXPECT_THAT(r.out, HasSubstr("-subnet-lease-renew-margin int"));
    EXPECT_THAT(r.err, IsEmpty());
  }
}

TEST(FlanneldBinary, VersionPrintsTheVersionString) {
  const RunResult r = run({"--version"}, {"FLANNELD_HEALTHZ_PORT=abc"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, std::string(FLANNEL_VERSION) + "\n");
  EXPECT_THAT(r.err, IsEmpty());
}

TEST(FlanneldBinary, UnknownFlagExitsOneNamingIt) {
  const RunResult r = run({"--bogus"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("flanneld: "));
  EXPECT_THAT(r.err, HasSubstr("bogus"));
  EXPECT_THAT(r.err, HasSubstr(kHint));
  EXPECT_THAT(r.out, IsEmpty());
}

TEST(FlanneldBinary, RenewMarginZeroExitsOne) {
  const RunResult r = run({"-subnet-lease-renew-margin=0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("-subnet-lease-renew-margin"));
  EXPECT_THAT(r.err, HasSubstr(kHint));
}

TEST(FlanneldBinary, BadEnvironmentValueExitsOneNamingTheVariable) {
  const RunResult r = run({}, {"FLANNELD_IP_MASQ=yes"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("FLANNELD_IP_MASQ=\"yes\""));
}

TEST(FlanneldBinary, BoolWithSeparateValueExitsOne) {
  const RunResult r = run({"-ip-masq", "false"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("-ip-masq=false"));
}

TEST(FlanneldBinary, ValidFlagsLogTheConfigWithoutThePasswordThenStop) {
  // A bad etcd endpoint stops the daemon right after the flags are logged, before any network
  // or kernel work.
  const RunResult r =
      run({"-etcd-password=hunter2", "-ip-masq", "-etcd-endpoints=ftp://127.0.0.1:1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("daemon] CLI flags config: "));
  EXPECT_THAT(r.err, HasSubstr("etcd-password=<masked>"));
  EXPECT_THAT(r.err, HasSubstr("ip-masq=true"));
  EXPECT_THAT(r.err, Not(HasSubstr("hunter2")));
  EXPECT_THAT(r.err, HasSubstr("unsupported scheme \"ftp\""));
}

}  // namespace
