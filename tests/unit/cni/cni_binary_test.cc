// Runs the real `flannel` binary the way a runtime does (environment + stdin), for the paths
// that need no root and no delegate: VERSION and early errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "core/exec.h"
#include "core/json_util.h"
#include "temp_dir.h"

namespace flannel::cni {
namespace {

using ::testing::HasSubstr;

CommandOutput runPlugin(std::map<std::string, std::string> env, std::string stdin_data) {
  SpawnCommandRunner runner;
  Command cmd;
  cmd.argv = {FLANNEL_CNI_BINARY};
  cmd.inherit_env = false;
  cmd.env_add = std::move(env);
  cmd.stdin_data = std::move(stdin_data);
  cmd.timeout = std::chrono::seconds(10);
  auto out = runner.run(cmd);
  EXPECT_TRUE(out) << out.error().message;
  return out ? *out : CommandOutput{};
}

TEST(CniBinary, VersionPrintsTheSupportedVersions) {
  auto out = runPlugin({{"CNI_COMMAND", "VERSION"}}, R"({"cniVersion":"0.3.1"})");
  EXPECT_EQ(out.exit_code, 0);
  EXPECT_EQ(
      out.out,
      R"({"cniVersion":"1.0.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0"]})"
      "\n");
}

TEST(CniBinary, MissingCommandIsCode4WithExitStatus1) {
  auto out = runPlugin({}, "");
  EXPECT_EQ(out.exit_code, 1);
  auto j = parseJson(out.out, "stdout");
  ASSERT_TRUE(j) << out.out;
  EXPECT_EQ((*j)["code"], 4);
  EXPECT_EQ((*j)["cniVersion"], "1.0.0");
}

TEST(CniBinary, MalformedConfigIsCode6) {
  auto out = runPlugin({{"CNI_COMMAND", "ADD"},
                        {"CNI_CONTAINERID", "c1"},
                        {"CNI_NETNS", "/run/netns/x"},
                        {"CNI_IFNAME", "eth0"},
                        {"CNI_PATH", "/usr/lib/cni"}},
                       "{\"cniVersion\":");
  EXPECT_EQ(out.exit_code, 1);
  auto j = parseJson(out.out, "stdout");
  ASSERT_TRUE(j) << out.out;
  EXPECT_EQ((*j)["code"], 6);
  EXPECT_THAT(out.err, HasSubstr("flannel ADD c1: error 6"));
}

TEST(CniBinary, MissingSubnetEnvIsCode11) {
  test::TempDir tmp;
  auto out = runPlugin(
      {{"CNI_COMMAND", "ADD"},
       {"CNI_CONTAINERID", "c1"},
       {"CNI_NETNS", "/run/netns/x"},
       {"CNI_IFNAME", "eth0"},
       {"CNI_PATH", "/usr/lib/cni"}},
      fmt::format(R"({{"cniVersion":"0.3.1","name":"cbr0","type":"flannel","subnetFile":"{}",)"
                  R"("dataDir":"{}"}})",
                  tmp.str("subnet.env"), tmp.str("data")));
  EXPECT_EQ(out.exit_code, 1);
  auto j = parseJson(out.out, "stdout");
  ASSERT_TRUE(j) << out.out;
  EXPECT_EQ((*j)["code"], 11);
  EXPECT_EQ((*j)["cniVersion"], "0.3.1");
  EXPECT_EQ((*j)["msg"], "subnet.env missing: flanneld is not running yet on this node (expected " +
                             tmp.str("subnet.env") + ")");
}

}  // namespace
}  // namespace flannel::cni
