#include "cni/flannel_env.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "core/subnet_env.h"
#include "temp_dir.h"

namespace flannel::cni {
namespace {

using ::testing::HasSubstr;

IpNet net(const char* s) {
  return IpNet::parse(s).value();
}

CniResult<FlannelEnv> parse(std::string_view text) {
  return parseFlannelEnv(text, "/run/flannel/subnet.env");
}

TEST(CniFlannelEnv, ReadsWhatFlanneldWritesIPv4) {
  // The file exactly as core/subnet_env.h renders it for flanneld.
  SubnetEnv written{
      .network = net("10.5.0.0/16"), .subnet = net("10.5.92.0/24"), .mtu = 1450, .ipmasq = true};
  auto env = parse(renderSubnetEnv(written));
  ASSERT_TRUE(env) << env.error().msg;
  EXPECT_EQ(*env, (FlannelEnv{.networks = {net("10.5.0.0/16")},
                              .subnet = net("10.5.92.0/24"),
                              .mtu = 1450,
                              .ipmasq = true}));
}

TEST(CniFlannelEnv, ReadsIPv6OnlyAndDualStack) {
  auto v6 = parse(
      "FLANNEL_IPV6_NETWORK=fd55::/48\nFLANNEL_IPV6_SUBNET=fd55:0:0:37::1/64\nFLANNEL_MTU=1430\n"
      "FLANNEL_IPMASQ=false\n");
  ASSERT_TRUE(v6) << v6.error().msg;
  EXPECT_EQ(*v6, (FlannelEnv{.ipv6_networks = {net("fd55::/48")},
                             .ipv6_subnet = net("fd55:0:0:37::/64"),
                             .mtu = 1430,
                             .ipmasq = false}));
  auto dual = parse(
      "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.73.1/24\nFLANNEL_IPV6_NETWORK=fd55::/48\n"
      "FLANNEL_IPV6_SUBNET=fd55:0:0:36::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
  ASSERT_TRUE(dual) << dual.error().msg;
  EXPECT_EQ(dual->subnet, net("10.5.73.0/24"));
  EXPECT_EQ(dual->ipv6_subnet, net("fd55:0:0:36::/64"));
  EXPECT_EQ(dual->networks, std::vector<IpNet>{net("10.5.0.0/16")});
  EXPECT_EQ(dual->ipv6_networks, std::vector<IpNet>{net("fd55::/48")});
}

TEST(CniFlannelEnv, NetworkListsAreCommaSeparatedAndDeduplicated) {
  auto env = parse(
      "FLANNEL_NETWORK=10.5.0.0/16,10.6.0.0/16,10.5.0.0/16\nFLANNEL_SUBNET=10.5.1.1/24\n"
      "FLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n");
  ASSERT_TRUE(env) << env.error().msg;
  EXPECT_EQ(env->networks, (std::vector<IpNet>{net("10.5.0.0/16"), net("10.6.0.0/16")}));
}

TEST(CniFlannelEnv, IpMasqIsTrueOnlyForExactlyTrue) {
  for (auto [value, expected] :
       {std::pair{"true", true}, std::pair{"false", false}, std::pair{"TRUE", false},
        std::pair{"1", false}, std::pair{"yes", false}, std::pair{"", false}}) {
    auto env = parse(
        fmt::format("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.1.1/24\nFLANNEL_MTU=1500\n"
                    "FLANNEL_IPMASQ={}\n",
                    value));
    ASSERT_TRUE(env) << value;
    EXPECT_EQ(env->ipmasq, expected) << value;
  }
}

TEST(CniFlannelEnv, ToleratesCommentsBlankLinesCrLfAndUnknownKeys) {
  auto env = parse(
      "# written by flanneld\r\n\r\nFLANNEL_NETWORK=10.5.0.0/16\r\nSOMETHING_ELSE=1\r\n"
      "no equals sign here\r\nFLANNEL_SUBNET=10.5.1.1/24\r\nFLANNEL_MTU=1500\r\n"
      "FLANNEL_IPMASQ=true");
  ASSERT_TRUE(env) << env.error().msg;
  EXPECT_EQ(env->mtu, 1500u);
  EXPECT_TRUE(env->ipmasq);
}

TEST(CniFlannelEnv, BadValuesAreDecodeFailuresNamingLineAndKey) {
  struct Case {
    const char* text;
    const char* message_part;
  };
  const Case cases[] = {
      {"FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.1/24\n", "line 2: FLANNEL_SUBNET"},
      {"FLANNEL_NETWORK=fd55::/48\n", "line 1: FLANNEL_NETWORK=\"fd55::/48\": not an IPv4 prefix"},
      {"FLANNEL_IPV6_SUBNET=10.5.1.0/24\n",
       "line 1: FLANNEL_IPV6_SUBNET=\"10.5.1.0/24\": not an "
       "IPv6 prefix"},
      {"FLANNEL_MTU=abc\n", "line 1: FLANNEL_MTU=\"abc\" is not a positive integer"},
      {"FLANNEL_MTU=0\n", "line 1: FLANNEL_MTU=\"0\" is not a positive integer"},
      {"FLANNEL_MTU=-1\n", "FLANNEL_MTU=\"-1\""},
      {"FLANNEL_MTU=99999999999\n", "FLANNEL_MTU=\"99999999999\""},
      {"FLANNEL_NETWORK=,\n", "line 1: FLANNEL_NETWORK is empty"},
  };
  for (const auto& c : cases) {
    auto env = parse(c.text);
    ASSERT_FALSE(env) << c.text;
    EXPECT_EQ(env.error().code, CniCode::DecodeFailure) << c.text;
    EXPECT_THAT(env.error().msg, HasSubstr(c.message_part)) << c.text;
    EXPECT_THAT(env.error().msg, HasSubstr("/run/flannel/subnet.env")) << c.text;
  }
}

TEST(CniFlannelEnv, IncompleteFileNamesWhatIsMissing) {
  auto empty = parse("");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, CniCode::DecodeFailure);
  EXPECT_EQ(empty.error().msg,
            "/run/flannel/subnet.env is incomplete: missing FLANNEL_NETWORK or "
            "FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET, FLANNEL_MTU, "
            "FLANNEL_IPMASQ");
  auto no_masq = parse("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.1.1/24\nFLANNEL_MTU=1\n");
  ASSERT_FALSE(no_masq);
  EXPECT_EQ(no_masq.error().msg, "/run/flannel/subnet.env is incomplete: missing FLANNEL_IPMASQ");
  auto no_subnet = parse("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_MTU=1\nFLANNEL_IPMASQ=true\n");
  ASSERT_FALSE(no_subnet);
  EXPECT_THAT(no_subnet.error().msg, HasSubstr("missing FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET"));
}

TEST(CniFlannelEnv, MissingFileMeansTryAgainLater) {
  test::TempDir dir;
  const std::string path = dir.str("run/flannel/subnet.env");
  auto env = loadFlannelEnv(path);
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().code, CniCode::TryAgainLater);
  EXPECT_EQ(env.error().msg,
            "subnet.env missing: flanneld is not running yet on this node (expected " + path + ")");
}

TEST(CniFlannelEnv, LoadsAFileAndReportsUnreadableOnesAsIoFailure) {
  test::TempDir dir;
  const std::string path = dir.str("subnet.env");
  test::writeFile(path,
                  "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.1.1/24\n"
                  "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n");
  auto env = loadFlannelEnv(path);
  ASSERT_TRUE(env) << env.error().msg;
  EXPECT_EQ(env->subnet, net("10.5.1.0/24"));

  // A directory opens but cannot be read.
  auto dir_env = loadFlannelEnv(dir.str());
  ASSERT_FALSE(dir_env);
  EXPECT_EQ(dir_env.error().code, CniCode::IoFailure);
  EXPECT_THAT(dir_env.error().msg, HasSubstr("reading " + dir.str()));
}

}  // namespace
}  // namespace flannel::cni
