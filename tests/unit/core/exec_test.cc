#include "core/exec.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace flannel {
namespace {

using namespace std::chrono_literals;

Command cmd(std::vector<std::string> argv) {
  Command c;
  c.argv = std::move(argv);
  c.timeout = 5000ms;
  return c;
}

TEST(SpawnCommandRunner, TrueExitsZero) {
  SpawnCommandRunner runner;
  auto r = runner.run(cmd({"/bin/true"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->term_signal, 0);
  EXPECT_TRUE(r->success());
  EXPECT_EQ(r->out, "");
  EXPECT_EQ(r->err, "");
}

TEST(SpawnCommandRunner, FalseReportsStatusOneWithoutError) {
  SpawnCommandRunner runner;
  auto r = runner.run(cmd({"/bin/false"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_FALSE(r->success());
}

TEST(SpawnCommandRunner, FindsProgramOnPath) {
  SpawnCommandRunner runner;
  auto c = cmd({"true"});
  c.env_add["PATH"] = "/nonexistent-dir::/usr/bin:/bin";
  auto r = runner.run(c);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
}

TEST(SpawnCommandRunner, ExitCodeAndStderrAreSeparate) {
  SpawnCommandRunner runner;
  auto r = runner.run(cmd({"/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 42"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 42);
  EXPECT_EQ(r->out, "to-out\n");
  EXPECT_EQ(r->err, "to-err\n");
}

TEST(SpawnCommandRunner, DeathBySignalIsReported) {
  SpawnCommandRunner runner;
  auto r = runner.run(cmd({"/bin/sh", "-c", "kill -TERM $$"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->term_signal, SIGTERM);
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_FALSE(r->success());
}

TEST(SpawnCommandRunner, StdinRoundTripsThroughCat) {
  SpawnCommandRunner runner;
  auto c = cmd({"/bin/cat"});
  c.stdin_data = std::string("line one\nline two\n\0binary\xff", 25);
  auto r = runner.run(c);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out, c.stdin_data);
}

TEST(SpawnCommandRunner, LargeStdinAndOutputDoNotDeadlock) {
  // 4 MiB in, 4 MiB back on stdout while cat is still being fed: far beyond a pipe's 64 KiB
  // buffer, so a runner that writes all stdin before reading stdout would hang until timeout.
  SpawnCommandRunner runner;
  auto c = cmd({"/bin/cat"});
  c.stdin_data.reserve(4 << 20);
  for (int i = 0; c.stdin_data.size() < (4u << 20); ++i) {
    c.stdin_data += std::to_string(i) + "\n";
  }
  auto r = runner.run(c);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->out.size(), c.stdin_data.size());
  EXPECT_TRUE(r->out == c.stdin_data);
}

TEST(SpawnCommandRunner, BigOutputOnBothStreams) {
  SpawnCommandRunner runner;
  // 2 MiB of stdout and 2 MiB of stderr, interleaved.
  auto r = runner.run(
      cmd({"/bin/sh", "-c",
           "head -c 2097152 /dev/zero; head -c 2097152 /dev/zero >&2; head -c 1000 /dev/zero"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out.size(), 2097152u + 1000u);
  EXPECT_EQ(r->err.size(), 2097152u);
}

TEST(SpawnCommandRunner, ChildIgnoringStdinIsNotAnError) {
  SpawnCommandRunner runner;
  auto c = cmd({"/bin/true"});
  c.stdin_data = std::string(1 << 20, 'x');  // true exits without reading: EPIPE for us.
  auto r = runner.run(c);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
  // The SIGPIPE we provoked must not be left pending on this thread.
  sigset_t pending;
  sigemptyset(&pending);
  sigpending(&pending);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);
}

TEST(SpawnCommandRunner, TimeoutKillsTheChild) {
  SpawnCommandRunner runner;
  auto c = cmd({"/bin/sh", "-c", "echo $$; exec sleep 30"});
  c.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  auto r = runner.run(c);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::Timeout);
  EXPECT_NE(r.error().message.find("running /bin/sh: timed out after 300 ms"), std::string::npos)
      << r.error().message;
  EXPECT_LT(took, 3s);
  // The message names the pid; it must be gone (reaped, so not even a zombie).
  const auto pos = r.error().message.find("killed pid ");
  ASSERT_NE(pos, std::string::npos);
  const pid_t pid = std::stoi(r.error().message.substr(pos + 11));
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST(SpawnCommandRunner, GrandchildHoldingPipesDoesNotBlockReturn) {
  // The shell exits at once but leaves a background sleep holding stdout/stderr open.
  SpawnCommandRunner runner;
  auto c = cmd({"/bin/sh", "-c", "sleep 3 & echo $!"});
  c.timeout = 2000ms;
  const auto start = std::chrono::steady_clock::now();
  auto r = runner.run(c);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r) << r.error().message;
  const pid_t grandchild = std::stoi(r->out);
  ASSERT_GT(grandchild, 1);
  ::kill(grandchild, SIGKILL);  // By the PID it printed; not our child, init reaps it.
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_LT(took, 1500ms);
}

TEST(SpawnCommandRunner, MissingBinaryIsNotFoundAndNamed) {
  SpawnCommandRunner runner;
  auto c = cmd({"flannel-no-such-program-xyz", "--flag"});
  auto r = runner.run(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::NotFound);
  EXPECT_EQ(r.error().message, "running flannel-no-such-program-xyz: executable not found on PATH");
}

TEST(SpawnCommandRunner, MissingAbsolutePathIsNotFound) {
  SpawnCommandRunner runner;
  auto r = runner.run(cmd({"/nonexistent/iptables-restore"}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::NotFound);
  EXPECT_EQ(r.error().message.rfind("running /nonexistent/iptables-restore: ", 0), 0u)
      << r.error().message;
}

TEST(SpawnCommandRunner, NonExecutableFileIsInvalidInput) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("flannel-exec-test-noexec-" + std::to_string(::getpid()));
  { std::ofstream(path) << "#!/bin/sh\n"; }
  std::filesystem::permissions(
      path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  SpawnCommandRunner runner;
  auto r = runner.run(cmd({path.string()}));
  std::filesystem::remove(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::InvalidInput) << r.error().message;
}

TEST(SpawnCommandRunner, RejectsBadCommands) {
  SpawnCommandRunner runner;
  EXPECT_EQ(runner.run(Command{}).error().code, Errc::InvalidInput);
  EXPECT_EQ(runner.run(cmd({std::string("/bin/echo"), std::string("a\0b", 3)})).error().code,
            Errc::InvalidInput);
  auto bad_env = cmd({"/bin/true"});
  bad_env.env_add["A=B"] = "x";
  EXPECT_EQ(runner.run(bad_env).error().code, Errc::InvalidInput);
  auto zero_timeout = cmd({"/bin/true"});
  zero_timeout.timeout = 0ms;
  EXPECT_EQ(runner.run(zero_timeout).error().code, Errc::InvalidInput);
}

TEST(SpawnCommandRunner, EnvAddIsPassedAndOverrides) {
  SpawnCommandRunner runner;
  ::setenv("FLANNEL_EXEC_TEST_INHERITED", "from-parent", 1);
  auto c = cmd({"/usr/bin/env"});
  c.env_add["FLANNEL_EXEC_TEST"] = "hello world";
  c.env_add["FLANNEL_EXEC_TEST_INHERITED"] = "overridden";
  auto r = runner.run(c);
  ::unsetenv("FLANNEL_EXEC_TEST_INHERITED");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_NE(r->out.find("FLANNEL_EXEC_TEST=hello world\n"), std::string::npos);
  EXPECT_NE(r->out.find("FLANNEL_EXEC_TEST_INHERITED=overridden\n"), std::string::npos);
  EXPECT_EQ(r->out.find("from-parent"), std::string::npos);
}

TEST(SpawnCommandRunner, WithoutInheritOnlyEnvAddIsSeen) {
  SpawnCommandRunner runner;
  auto c = cmd({"/usr/bin/env"});
  c.inherit_env = false;
  c.env_add["ONLY"] = "1";
  auto r = runner.run(c);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->out, "ONLY=1\n");
}

TEST(SpawnCommandRunner, ShellMetacharactersArePassedLiterally) {
  const auto marker =
      std::filesystem::temp_directory_path() / ("flannel-exec-test-" + std::to_string(::getpid()));
  std::filesystem::remove(marker);
  const std::string arg = "$(touch " + marker.string() + "); `touch " + marker.string() +
                          "` | id > " + marker.string() + " && * ;";
  SpawnCommandRunner runner;
  auto r = runner.run(cmd({"/bin/echo", arg}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->out, arg + "\n");
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(SpawnCommandRunner, OnlyStdioIsInherited) {
  // A descriptor we leak on purpose (no O_CLOEXEC) must not reach the child.
  const int leaked = ::dup(STDERR_FILENO);
  ASSERT_GE(leaked, 3);
  SpawnCommandRunner runner;
  auto r = runner.run(cmd({"/bin/ls", "/proc/self/fd"}));
  ::close(leaked);
  ASSERT_TRUE(r) << r.error().message;
  // ls itself opens one descriptor for the directory listing (3); nothing else may be there.
  EXPECT_EQ(r->out, "0\n1\n2\n3\n");
}

TEST(RunChecked, NonZeroExitBecomesErrorWithStderrTail) {
  SpawnCommandRunner runner;
  auto r =
      runChecked(runner, cmd({"/bin/sh", "-c", "echo first >&2; echo 'bad rule' >&2; exit 2"}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::Internal);
  EXPECT_EQ(r.error().message, "running /bin/sh: exited with status 2: first; bad rule");
  EXPECT_TRUE(runChecked(runner, cmd({"/bin/true"})));
}

TEST(FindOnPath, SearchesDirectoriesInOrderAndSkipsEmptyEntries) {
  auto found = findOnPath("cat", ":/nonexistent:/bin:/usr/bin");
  ASSERT_TRUE(found) << found.error().message;
  EXPECT_EQ(*found, "/bin/cat");
  EXPECT_EQ(findOnPath("cat", "").error().code, Errc::NotFound);
  EXPECT_EQ(findOnPath("", "/bin").error().code, Errc::InvalidInput);
}

TEST(DescribeCommand, QuotesOnlyWhenNeeded) {
  EXPECT_EQ(describeCommand({"ip", "-n", "ns 1", "it's", ""}), "ip -n 'ns 1' 'it'\\''s' ''");
}

}  // namespace
}  // namespace flannel
