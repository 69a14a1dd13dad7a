#include "support/fake_runner.h"

#include <gtest/gtest.h>

namespace flannel::test {
namespace {

TEST(FakeRunner, AnswersByArgvPrefixInOrderAndRecordsEverything) {
  FakeRunner runner;
  runner.once({"iptables-save"}, FakeRunner::exited(0, "first"));
  runner.on({"iptables-save"}, FakeRunner::exited(0, "later"));
  runner.on({}, FakeRunner::exited(3, "", "catch-all"));
  Command a{.argv = {"iptables-save", "-t", "nat"},
            .env_add = {},
            .inherit_env = true,
            .stdin_data = "in",
            .timeout = std::chrono::seconds(1)};
  EXPECT_EQ(runner.run(a)->out, "first");
  EXPECT_EQ(runner.run(a)->out, "later");
  EXPECT_EQ(runner.run(a)->out, "later");
  Command b = a;
  b.argv = {"true"};
  EXPECT_EQ(runner.run(b)->exit_code, 3);
  ASSERT_EQ(runner.callCount(), 4u);
  EXPECT_EQ(runner.calls()[0].stdin_data, "in");
  EXPECT_EQ(runner.argvs()[3], std::vector<std::string>{"true"});
  runner.clearCalls();
  EXPECT_EQ(runner.callCount(), 0u);
}

TEST(FakeRunner, MissingProgramAndUnscriptedCommandsAreErrors) {
  FakeRunner runner;
  runner.missing("ip6tables-restore");
  Command c{.argv = {"ip6tables-restore", "--noflush"},
            .env_add = {},
            .inherit_env = true,
            .stdin_data = {},
            .timeout = std::chrono::seconds(1)};
  auto r = runner.run(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::NotFound);
  EXPECT_EQ(r.error().message, "running ip6tables-restore: executable not found on PATH");
  c.argv = {"nft", "list", "ruleset"};
  auto u = runner.run(c);
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, Errc::Internal);
  EXPECT_EQ(u.error().message, "FakeRunner: no script for nft list ruleset");
  EXPECT_EQ(runner.callCount(), 2u);
}

}  // namespace
}  // namespace flannel::test
