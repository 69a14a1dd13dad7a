#include "core/subnet_env.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace flannel {
namespace {

using ::testing::HasSubstr;

IpNet net(const char* s) {
  return IpNet::parse(s).value();
}

TEST(SubnetEnvRender, DualStackMatchesGoFlannelFile) {
  // The verified dual-stack file of SPEC.md §7.1.
  SubnetEnv env{.network = net("10.5.0.0/16"),
                .subnet = net("10.5.73.0/24"),
                .ipv6_network = net("fd55::/48"),
                .ipv6_subnet = net("fd55:0:0:36::/64"),
                .mtu = 1450,
                .ipmasq = true};
  EXPECT_EQ(renderSubnetEnv(env),
            "FLANNEL_NETWORK=10.5.0.0/16\n"
            "FLANNEL_SUBNET=10.5.73.1/24\n"
            "FLANNEL_IPV6_NETWORK=fd55::/48\n"
            "FLANNEL_IPV6_SUBNET=fd55:0:0:36::1/64\n"
            "FLANNEL_MTU=1450\n"
            "FLANNEL_IPMASQ=true\n");
}

TEST(SubnetEnvRender, IPv4OnlyAndIPv6OnlyVariants) {
  SubnetEnv v4{
      .network = net("10.5.0.0/16"), .subnet = net("10.5.92.0/24"), .mtu = 1500, .ipmasq = false};
  EXPECT_EQ(renderSubnetEnv(v4),
            "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.92.1/24\nFLANNEL_MTU=1500\n"
            "FLANNEL_IPMASQ=false\n");
  SubnetEnv v6{.ipv6_network = net("fd55::/48"),
               .ipv6_subnet = net("fd55:0:0:37::/64"),
               .mtu = 1450,
               .ipmasq = false};
  EXPECT_EQ(renderSubnetEnv(v6),
            "FLANNEL_IPV6_NETWORK=fd55::/48\nFLANNEL_IPV6_SUBNET=fd55:0:0:37::1/64\n"
            "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n");
}

TEST(SubnetEnvParse, RoundTripsAndMasksHostBits) {
  SubnetEnv env{.network = net("10.5.0.0/16"),
                .subnet = net("10.5.73.0/24"),
                .ipv6_network = net("fd55::/48"),
                .ipv6_subnet = net("fd55:0:0:36::/64"),
                .mtu = 1450,
                .ipmasq = true};
  auto back = parseSubnetEnv(renderSubnetEnv(env));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, env);
  EXPECT_EQ(back->subnet->toString(), "10.5.73.0/24");
}

TEST(SubnetEnvParse, ToleratesDotenvSyntax) {
  auto env = parseSubnetEnv(
      "# written by hand\n\nexport FLANNEL_SUBNET=\"10.5.92.1/24\"\r\n"
      "FLANNEL_MTU='1450'\nFLANNEL_IPMASQ=true # masq on\nOTHER=whatever\n  FLANNEL_NETWORK = "
      "10.5.0.0/16");
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_EQ(env->subnet->toString(), "10.5.92.0/24");
  EXPECT_EQ(env->network->toString(), "10.5.0.0/16");
  EXPECT_EQ(env->mtu, 1450u);
  EXPECT_EQ(env->ipmasq, true);
  EXPECT_FALSE(env->ipv6_subnet);
}

TEST(SubnetEnvParse, BadValuesNameTheKeyAndLine) {
  struct Case {
    const char* text;
    const char* expected;
  };
  for (auto c :
       {Case{"FLANNEL_SUBNET=10.5.92.1", "line 1: FLANNEL_SUBNET: \"10.5.92.1\" is not a CIDR"},
        Case{"\nFLANNEL_SUBNET=fd55::1/64", "line 2: FLANNEL_SUBNET=\"fd55::1/64\": not an IPv4"},
        Case{"FLANNEL_IPV6_SUBNET=10.0.0.1/24", "not an IPv6 prefix"},
        Case{"FLANNEL_SUBNET=10.5.1.1/24,10.5.2.1/24", "holds several values"},
        Case{"FLANNEL_MTU=abc", "FLANNEL_MTU=\"abc\" is not a positive integer"},
        Case{"FLANNEL_MTU=0", "is not a positive integer"},
        Case{"FLANNEL_IPMASQ=yes", "FLANNEL_IPMASQ=\"yes\" is neither true nor false"},
        Case{"garbage line", "line 1: \"garbage line\" is not KEY=VALUE"}}) {
    auto env = parseSubnetEnv(c.text);
    ASSERT_FALSE(env) << c.text;
    EXPECT_THAT(env.error().message, HasSubstr(c.expected)) << c.text;
  }
}

class SubnetEnvFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("flannel-subnet-env-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(SubnetEnvFile, WritesAtomicallyWithMode0644WhateverTheUmask) {
  auto path = (dir_ / "run" / "flannel" / "subnet.env").string();
  SubnetEnv env{
      .network = net("10.5.0.0/16"), .subnet = net("10.5.92.0/24"), .mtu = 1450, .ipmasq = false};
  mode_t old = ::umask(0077);
  auto r = writeSubnetEnv(path, env);
  ::umask(old);
  ASSERT_TRUE(r) << r.error().message;
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  std::ifstream in(path);
  std::stringstream body;
  body << in.rdbuf();
  EXPECT_EQ(body.str(), renderSubnetEnv(env));
  // Only the target remains in the directory: no temporary file left behind.
  size_t entries = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir_ / "run" / "flannel")) {
    ++entries;
  }
  EXPECT_EQ(entries, 1u);
  // Replacing keeps a complete file and reads back the new subnet.
  env.subnet = net("10.5.93.0/24");
  ASSERT_TRUE(writeSubnetEnv(path, env));
  EXPECT_EQ(readSubnetEnv(path)->subnet->toString(), "10.5.93.0/24");
}

TEST_F(SubnetEnvFile, MissingFileMeansNoPreviousSubnet) {
  auto env = readSubnetEnv((dir_ / "absent.env").string());
  ASSERT_TRUE(env);
  EXPECT_EQ(*env, SubnetEnv{});
}

TEST_F(SubnetEnvFile, UnwritableLocationIsAClearError) {
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ / "file") << "x";
  auto r = writeSubnetEnv((dir_ / "file" / "subnet.env").string(), SubnetEnv{});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("file"));
  auto bad = readSubnetEnv((dir_ / "file").string());
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr((dir_ / "file").string()));
}

}  // namespace
}  // namespace flannel
