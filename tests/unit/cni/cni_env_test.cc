#include "cni/cni_env.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flannel::cni {
namespace {

using ::testing::HasSubstr;

EnvMap fullEnv(std::string command) {
  return EnvMap{{"CNI_COMMAND", std::move(command)},
                {"CNI_CONTAINERID", "0123456789abcdef"},
                {"CNI_NETNS", "/run/netns/pod"},
                {"CNI_IFNAME", "eth0"},
                {"CNI_ARGS", "K8S_POD_NAME=web;K8S_POD_NAMESPACE=default"},
                {"CNI_PATH", "/opt/cni/bin:/usr/lib/cni"},
                {"HOME", "/root"}};
}

TEST(CniEnv, ParsesEveryVariableForAdd) {
  auto env = parseCniEnv(fullEnv("ADD"));
  ASSERT_TRUE(env) << env.error().msg;
  EXPECT_EQ(*env, (CniEnv{.command = CniCommand::Add,
                          .container_id = "0123456789abcdef",
                          .netns = "/run/netns/pod",
                          .ifname = "eth0",
                          .args = "K8S_POD_NAME=web;K8S_POD_NAMESPACE=default",
                          .path = "/opt/cni/bin:/usr/lib/cni"}));
}

TEST(CniEnv, CommandNamesRoundTrip) {
  for (auto c : {CniCommand::Add, CniCommand::Del, CniCommand::Check, CniCommand::Version}) {
    EXPECT_EQ(parseCommand(commandName(c)), c);
  }
  EXPECT_FALSE(parseCommand("add"));
  EXPECT_FALSE(parseCommand("GC"));
}

TEST(CniEnv, VersionNeedsOnlyTheCommand) {
  auto env = parseCniEnv(EnvMap{{"CNI_COMMAND", "VERSION"}});
  ASSERT_TRUE(env);
  EXPECT_EQ(env->command, CniCommand::Version);
}

TEST(CniEnv, MissingOrUnknownCommandIsCode4) {
  auto missing = parseCniEnv(EnvMap{});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, CniCode::InvalidEnvironment);
  EXPECT_EQ(missing.error().msg, "CNI_COMMAND is not set (expected ADD, DEL, CHECK or VERSION)");

  auto unknown = parseCniEnv(fullEnv("FOO"));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, CniCode::InvalidEnvironment);
  EXPECT_EQ(unknown.error().msg,
            "unknown CNI_COMMAND \"FOO\" (expected ADD, DEL, CHECK or VERSION)");
}

TEST(CniEnv, AddNamesEveryMissingVariable) {
  auto env = parseCniEnv(EnvMap{{"CNI_COMMAND", "ADD"}});
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().code, CniCode::InvalidEnvironment);
  EXPECT_EQ(env.error().msg,
            "required environment variables missing for ADD: CNI_CONTAINERID, CNI_NETNS, "
            "CNI_IFNAME, CNI_PATH");
}

TEST(CniEnv, DelWorksWithoutNetnsButCheckNeedsIt) {
  auto del = fullEnv("DEL");
  del.erase("CNI_NETNS");
  EXPECT_TRUE(parseCniEnv(del));
  auto check = fullEnv("CHECK");
  check.erase("CNI_NETNS");
  auto env = parseCniEnv(check);
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().msg, "required environment variables missing for CHECK: CNI_NETNS");
  auto no_path = fullEnv("DEL");
  no_path["CNI_PATH"] = "";
  ASSERT_FALSE(parseCniEnv(no_path));
}

TEST(CniEnv, ContainerIdsFollowTheSpecGrammar) {
  for (const char* good : {"a", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                           "pod_1.x-y", "Z9"}) {
    EXPECT_TRUE(isValidContainerId(good)) << good;
  }
  const std::string too_long(256, 'a');
  for (const std::string bad : {"", "../etc/passwd", "a/b", ".hidden", "-x", "_x", "a b", "a\nb",
                                "a\\b", too_long.c_str()}) {
    EXPECT_FALSE(isValidContainerId(bad)) << bad;
  }
}

TEST(CniEnv, PathTraversalContainerIdIsRejectedAsCode4) {
  auto env = fullEnv("DEL");
  env["CNI_CONTAINERID"] = "../../etc/shadow";
  auto parsed = parseCniEnv(env);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().code, CniCode::InvalidEnvironment);
  EXPECT_EQ(parsed.error().msg, "CNI_CONTAINERID \"../../etc/shadow\" is not a valid container ID");
}

TEST(CniEnv, InterfaceNamesFollowLinuxRules) {
  for (const char* good : {"eth0", "net1", "a", "fifteen-chars-x"}) {
    EXPECT_TRUE(isValidIfname(good)) << good;
  }
  for (const char* bad : {"", ".", "..", "sixteen-chars-xx", "a/b", "a:b", "a b", "a\tb"}) {
    EXPECT_FALSE(isValidIfname(bad)) << bad;
  }
  auto env = fullEnv("ADD");
  env["CNI_IFNAME"] = "eth0:1";
  auto parsed = parseCniEnv(env);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().code, CniCode::InvalidEnvironment);
  EXPECT_THAT(parsed.error().msg, HasSubstr("CNI_IFNAME \"eth0:1\""));
}

}  // namespace
}  // namespace flannel::cni
