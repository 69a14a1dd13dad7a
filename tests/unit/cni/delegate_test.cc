#include "cni/delegate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/fake_runner.h"
#include "temp_dir.h"

namespace flannel::cni {
namespace {

using flannel::test::FakeRunner;
using ::testing::HasSubstr;

CniEnv addEnv(const std::string& path) {
  return CniEnv{.command = CniCommand::Add,
                .container_id = "c1",
                .netns = "/run/netns/pod",
                .ifname = "eth0",
                .args = "IgnoreUnknown=1",
                .path = path};
}

class CniDelegate : public ::testing::Test {
 protected:
  CniDelegate()
      : bridge_(test::writeExecutable(tmp_.str("second/bridge"))),
        cni_path_(tmp_.str("first") + ":" + tmp_.str("second")) {
    std::filesystem::create_directories(tmp_.str("first"));
  }

  DelegateCall call(CniCommand command, std::string config = R"({"type":"bridge"})") {
    return DelegateCall{.binary = bridge_,
                        .command = command,
                        .config = std::move(config),
                        .timeout = std::chrono::seconds(7)};
  }

  test::TempDir tmp_;
  std::string bridge_;
  std::string cni_path_;
  FakeRunner runner_;
  std::string log_;
};

TEST_F(CniDelegate, ResolvesTheTypeOnCniPath) {
  auto found = resolveDelegate("bridge", cni_path_);
  ASSERT_TRUE(found) << found.error().msg;
  EXPECT_EQ(*found, bridge_);
}

TEST_F(CniDelegate, MissingOrNonExecutableDelegateIsCode100) {
  auto missing = resolveDelegate("no-such-plugin", cni_path_);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, CniCode::DelegateNotFound);
  EXPECT_EQ(missing.error().msg, "delegate plugin \"no-such-plugin\" not found on CNI_PATH");
  EXPECT_THAT(missing.error().details, HasSubstr("CNI_PATH=" + cni_path_));

  test::writeFile(tmp_.str("first/ptp"), "not executable");
  auto not_exec = resolveDelegate("ptp", cni_path_);
  ASSERT_FALSE(not_exec);
  EXPECT_EQ(not_exec.error().code, CniCode::DelegateNotFound);
  EXPECT_THAT(not_exec.error().msg, HasSubstr("delegate plugin \"ptp\" cannot be run"));
}

TEST_F(CniDelegate, CommandIsArgvOnlyWithTheCniEnvironmentAndConfigOnStdin) {
  const Command cmd = delegateCommand(addEnv(cni_path_), call(CniCommand::Del, "{\"x\":1}"));
  EXPECT_EQ(cmd.argv, std::vector<std::string>{bridge_});
  EXPECT_TRUE(cmd.inherit_env);
  EXPECT_EQ(cmd.env_add, (std::map<std::string, std::string>{{"CNI_COMMAND", "DEL"},
                                                             {"CNI_CONTAINERID", "c1"},
                                                             {"CNI_NETNS", "/run/netns/pod"},
                                                             {"CNI_IFNAME", "eth0"},
                                                             {"CNI_ARGS", "IgnoreUnknown=1"},
                                                             {"CNI_PATH", cni_path_}}));
  EXPECT_EQ(cmd.stdin_data, "{\"x\":1}");
  EXPECT_EQ(cmd.timeout, std::chrono::seconds(7));

  CniEnv no_netns = addEnv(cni_path_);
  no_netns.netns.clear();
  no_netns.args.clear();
  const Command del = delegateCommand(no_netns, call(CniCommand::Del));
  EXPECT_FALSE(del.env_add.contains("CNI_NETNS"));
  EXPECT_FALSE(del.env_add.contains("CNI_ARGS"));
}

TEST_F(CniDelegate, SuccessPassesStdoutThroughAndStderrToDiagnostics) {
  const std::string result = "{\n  \"cniVersion\": \"0.3.1\",\n  \"ips\": []\n}";
  runner_.on({bridge_}, FakeRunner::exited(0, result, "bridge says hi"));
  auto out = runDelegate(runner_, addEnv(cni_path_), call(CniCommand::Add), log_);
  ASSERT_TRUE(out) << out.error().msg;
  EXPECT_EQ(*out, result);
  EXPECT_EQ(log_, "bridge says hi\n");
  ASSERT_EQ(runner_.callCount(), 1u);
  EXPECT_EQ(runner_.calls()[0].stdin_data, R"({"type":"bridge"})");
  EXPECT_EQ(runner_.calls()[0].env_add.at("CNI_COMMAND"), "ADD");
}

TEST_F(CniDelegate, CniErrorOfTheDelegateIsPassedThrough) {
  runner_.on({bridge_},
             FakeRunner::exited(
                 1, R"({"cniVersion":"0.3.1","code":11,"msg":"busy","details":"try later"})"));
  auto out = runDelegate(runner_, addEnv(cni_path_), call(CniCommand::Add), log_);
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, CniCode::TryAgainLater);
  EXPECT_EQ(out.error().msg, "busy");
  EXPECT_EQ(out.error().details, "try later");

  FakeRunner internal;
  internal.on({bridge_}, FakeRunner::exited(1, R"({"code":999,"msg":"failed to open netns"})"));
  auto e = runDelegate(internal, addEnv(cni_path_), call(CniCommand::Add), log_);
  ASSERT_FALSE(e);
  EXPECT_EQ(static_cast<int>(e.error().code), 999);
  EXPECT_EQ(e.error().msg, "failed to open netns");
}

TEST_F(CniDelegate, FailureWithoutCniErrorIsWrappedAsCode101) {
  runner_.once({bridge_}, FakeRunner::exited(2, "panic: oops", "goroutine 1 [running]:\n"));
  auto out = runDelegate(runner_, addEnv(cni_path_), call(CniCommand::Del), log_);
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, CniCode::DelegateFailed);
  EXPECT_EQ(out.error().msg, "delegate plugin bridge DEL failed (exit status 2)");
  EXPECT_EQ(out.error().details, "goroutine 1 [running]:\nstdout: panic: oops");

  runner_.once({bridge_}, CommandOutput{.exit_code = -1, .term_signal = 9, .out = "", .err = ""});
  auto killed = runDelegate(runner_, addEnv(cni_path_), call(CniCommand::Check), log_);
  ASSERT_FALSE(killed);
  EXPECT_EQ(killed.error().msg, "delegate plugin bridge CHECK failed (killed by signal 9)");

  // A JSON object without a numeric code is not a CNI error.
  runner_.once({bridge_}, FakeRunner::exited(1, R"({"code":"7","msg":"x"})"));
  auto odd = runDelegate(runner_, addEnv(cni_path_), call(CniCommand::Add), log_);
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().code, CniCode::DelegateFailed);
}

TEST_F(CniDelegate, RunnerErrorsBecomeCniErrors) {
  runner_.fail({bridge_}, makeError(Errc::Timeout, "running bridge: timed out after 7000 ms"), 1);
  auto timed_out = runDelegate(runner_, addEnv(cni_path_), call(CniCommand::Add), log_);
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(timed_out.error().code, CniCode::DelegateFailed);
  EXPECT_EQ(timed_out.error().msg, "delegate plugin bridge ADD: timed out");

  runner_.missing(bridge_);
  auto gone = runDelegate(runner_, addEnv(cni_path_), call(CniCommand::Add), log_);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, CniCode::DelegateNotFound);
}

TEST_F(CniDelegate, AddThatPrintsNoResultIsAnError) {
  runner_.on({bridge_}, FakeRunner::exited(0, "not json"));
  auto out = runDelegate(runner_, addEnv(cni_path_), call(CniCommand::Add), log_);
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, CniCode::DelegateFailed);
  EXPECT_EQ(out.error().msg, "delegate plugin bridge ADD succeeded but printed no CNI result");
  // DEL and CHECK print nothing on success.
  auto del = runDelegate(runner_, addEnv(cni_path_), call(CniCommand::Del), log_);
  EXPECT_TRUE(del);
}

}  // namespace
}  // namespace flannel::cni
