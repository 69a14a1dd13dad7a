#include "core/network_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flannel {
namespace {

using ::testing::HasSubstr;

NetworkConfig load(const char* json) {
  auto c = loadNetworkConfig(json);
  EXPECT_TRUE(c) << json << ": " << (c ? "" : c.error().message);
  return c ? *c : NetworkConfig{};
}

std::string loadError(const char* json) {
  auto c = loadNetworkConfig(json);
  EXPECT_FALSE(c) << json;
  return c ? std::string() : c.error().message;
}

TEST(NetworkConfigDefaults, MinimalIPv4Config) {
  auto c = load(R"({"Network": "10.5.0.0/16"})");
  EXPECT_TRUE(c.enable_ipv4);
  EXPECT_FALSE(c.enable_ipv6);
  EXPECT_FALSE(c.enable_nftables);
  EXPECT_EQ(c.network->toString(), "10.5.0.0/16");
  EXPECT_EQ(c.subnet_len, 24);
  EXPECT_EQ(c.subnet_min->toString(), "10.5.1.0");    // the first subnet is skipped
  EXPECT_EQ(c.subnet_max->toString(), "10.5.255.0");  // the last subnet
  EXPECT_FALSE(c.ipv6_network);
  EXPECT_TRUE(c.networks.empty());
  // No Backend -> udp, as flannel's code does (its docs say vxlan).
  EXPECT_EQ(c.backend_type, "udp");
  EXPECT_TRUE(c.backend_defaulted);
  EXPECT_EQ(c.backend_json, "{}");
  EXPECT_EQ(c.ruleNetwork(), c.network);
}

TEST(NetworkConfigDefaults, DerivedSubnetLength) {
  struct Case {
    const char* network;
    int len;
    const char* min;
    const char* max;
  };
  for (auto t : {Case{"10.0.0.0/8", 24, "10.0.1.0", "10.255.255.0"},
                 Case{"10.5.0.0/22", 24, "10.5.1.0", "10.5.3.0"},
                 Case{"10.5.0.0/23", 25, "10.5.0.128", "10.5.1.128"},
                 Case{"10.0.0.0/26", 28, "10.0.0.16", "10.0.0.48"},
                 Case{"10.0.0.0/28", 30, "10.0.0.4", "10.0.0.12"}}) {
    auto json = std::string(R"({"Network":")") + t.network + "\"}";
    auto c = load(json.c_str());
    EXPECT_EQ(c.subnet_len, t.len) << t.network;
    EXPECT_EQ(c.subnet_min->toString(), t.min) << t.network;
    EXPECT_EQ(c.subnet_max->toString(), t.max) << t.network;
  }
}

TEST(NetworkConfigDefaults, IPv6DerivedValues) {
  auto c = load(R"({"EnableIPv6": true, "Network": "10.5.0.0/16", "IPv6Network": "fd55::/48"})");
  EXPECT_EQ(c.ipv6_subnet_len, 64);
  EXPECT_EQ(c.ipv6_subnet_min->toString(), "fd55:0:0:1::");
  EXPECT_EQ(c.ipv6_subnet_max->toString(), "fd55:0:0:ffff::");
  auto small = load(R"({"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd55::/120"})");
  EXPECT_EQ(small.ipv6_subnet_len, 122);
  EXPECT_FALSE(small.network);
}

TEST(NetworkConfigParse, KeysAreCaseInsensitiveAndLastDuplicateWins) {
  auto c = load(R"({"network": "10.1.0.0/16", "NETWORK": "10.5.0.0/16", "subnetlen": 26,
                   "backend": {"type": "VXLAN", "VNI": 7}, "Unknown": [1, 2]})");
  EXPECT_EQ(c.network->toString(), "10.5.0.0/16");
  EXPECT_EQ(c.subnet_len, 26);
  EXPECT_EQ(c.backend_type, "vxlan");
  EXPECT_FALSE(c.backend_defaulted);
  EXPECT_EQ(c.backend_json, R"({"type":"VXLAN","VNI":7})");
}

TEST(NetworkConfigParse, HostBitsInNetworkAreMasked) {
  EXPECT_EQ(load(R"({"Network": "10.5.3.4/16"})").network->toString(), "10.5.0.0/16");
}

TEST(NetworkConfigParse, ZeroAddressesMeanUnset) {
  auto c = load(R"({"Network": "10.5.0.0/16", "SubnetMin": "0.0.0.0", "SubnetMax": "0.0.0.0"})");
  EXPECT_EQ(c.subnet_min->toString(), "10.5.1.0");
  EXPECT_EQ(c.subnet_max->toString(), "10.5.255.0");
}

TEST(NetworkConfigParse, ExplicitRangeAndNetworksList) {
  auto c = load(R"({"Network": "10.5.0.0/16", "SubnetLen": 25, "SubnetMin": "10.5.10.0",
                   "SubnetMax": "10.5.20.128", "Networks": ["10.6.0.0/16"]})");
  EXPECT_EQ(c.subnet_len, 25);
  EXPECT_EQ(c.subnet_min->toString(), "10.5.10.0");
  EXPECT_EQ(c.subnet_max->toString(), "10.5.20.128");
  EXPECT_EQ(c.ruleNetwork()->toString(), "10.6.0.0/16");
}

TEST(NetworkConfigParse, BackendWithoutTypeOrNullIsKeptForTheRegistryToReject) {
  EXPECT_EQ(load(R"({"Network": "10.5.0.0/16", "Backend": {"VNI": 1}})").backend_type, "");
  auto null_backend = load(R"({"Network": "10.5.0.0/16", "Backend": null})");
  EXPECT_EQ(null_backend.backend_type, "");
  EXPECT_FALSE(null_backend.backend_defaulted);
}

struct ErrorCase {
  const char* json;
  const char* expected;  // substring of the message
};

class NetworkConfigErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(NetworkConfigErrors, NamesTheFieldAndTheValue) {
  auto msg = loadError(GetParam().json);
  EXPECT_THAT(msg, HasSubstr(GetParam().expected)) << GetParam().json;
  EXPECT_THAT(msg, HasSubstr("network config")) << GetParam().json;
}

INSTANTIATE_TEST_SUITE_P(
    All, NetworkConfigErrors,
    ::testing::Values(
        ErrorCase{"", "not valid JSON"}, ErrorCase{"{", "not valid JSON"},
        ErrorCase{"[]", "expected a JSON object, got an array"},
        ErrorCase{R"({"Network": 5})", "field Network: expected a string, got an integer \"5\""},
        ErrorCase{R"({"Network": "10.5.0.0"})", "field Network: \"10.5.0.0\" is not a CIDR prefix"},
        ErrorCase{R"({"Network": "fd55::/48"})", "field Network: \"fd55::/48\" is an IPv6 prefix"},
        ErrorCase{R"({"EnableIPv6": true, "EnableIPv4": false, "IPv6Network": "10.0.0.0/8"})",
                  "field IPv6Network: \"10.0.0.0/8\" is an IPv4 prefix"},
        ErrorCase{R"({"EnableIPv4": "yes", "Network": "10.5.0.0/16"})",
                  "field EnableIPv4: expected true or false, got a string"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "SubnetLen": "24"})",
                  "field SubnetLen: expected an integer 0..255, got a string"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "SubnetLen": 24.5})",
                  "field SubnetLen: expected an integer 0..255, got a fractional number"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "SubnetLen": -1})", "field SubnetLen"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "SubnetMin": "10.5.1"})",
                  "field SubnetMin: \"10.5.1\" is not an IPv4 address"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "Networks": "10.6.0.0/16"})",
                  "field Networks: expected an array"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "Networks": ["fd00::/8"]})",
                  "field Networks[0]: \"fd00::/8\" is not an IPv4 prefix"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "Backend": "vxlan"})",
                  "field Backend: expected an object with a \"Type\", got a string"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "Backend": {"Type": 3}})",
                  "field Backend.Type: expected a string"},
        // SPEC.md §2.2 validation rules, each with its own message.
        ErrorCase{R"({})", "field Network: missing"},
        ErrorCase{R"({"Network": "0.0.0.0/0"})", "field Network: missing (a /0 network"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "SubnetLen": 31})",
                  "field SubnetLen: 31 is larger than /30"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "SubnetLen": 17})",
                  "field SubnetLen: /17 leaves room for fewer than 4 subnets in 10.5.0.0/16 (use "
                  "at least /18)"},
        ErrorCase{R"({"Network": "10.5.0.0/29"})",
                  "field Network: 10.5.0.0/29 is too small to derive a subnet length (the minimum "
                  "is /28)"},
        ErrorCase{R"({"Network": "10.5.0.0/30", "SubnetLen": 30})",
                  "field SubnetLen: /30 leaves room for fewer than 4 subnets"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "SubnetMin": "10.6.0.0"})",
                  "field SubnetMin: 10.6.0.0 is not inside Network 10.5.0.0/16"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "SubnetMax": "10.4.0.0"})",
                  "field SubnetMax: 10.4.0.0 is not inside Network 10.5.0.0/16"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "SubnetMin": "10.5.1.1"})",
                  "field SubnetMin: 10.5.1.1 is not aligned to the subnet length /24"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "SubnetMax": "10.5.1.128"})",
                  "field SubnetMax: 10.5.1.128 is not aligned to the subnet length /24"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "SubnetMin": "10.5.9.0", "SubnetMax": "10.5.8.0"})",
                  "field SubnetMin: 10.5.9.0 is greater than SubnetMax 10.5.8.0"},
        ErrorCase{R"({"EnableIPv4": false, "EnableIPv6": false})",
                  "EnableIPv4 and EnableIPv6 are both false"},
        ErrorCase{R"({"Network": "10.5.0.0/16", "EnableIPv6": true})",
                  "field IPv6Network: missing"},
        ErrorCase{R"({"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd55::/48",
                     "IPv6SubnetLen": 127})",
                  "field IPv6SubnetLen: 127 is larger than /126"},
        ErrorCase{R"({"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd55::/48",
                     "IPv6SubnetLen": 49})",
                  "field IPv6SubnetLen: /49 leaves room for fewer than 4 subnets"},
        ErrorCase{R"({"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd55::/125"})",
                  "field IPv6Network: fd55::/125 is too small to derive a subnet length (the "
                  "minimum is /124)"},
        ErrorCase{R"({"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd55::/48",
                     "IPv6SubnetMin": "fd56::"})",
                  "field IPv6SubnetMin: fd56:: is not inside IPv6Network fd55::/48"},
        ErrorCase{R"({"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd55::/48",
                     "IPv6SubnetMax": "fd55:0:0:5::1"})",
                  "field IPv6SubnetMax: fd55:0:0:5::1 is not aligned to the subnet length /64"},
        ErrorCase{R"({"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd55::/48",
                     "IPv6SubnetMin": "fd55:0:0:9::", "IPv6SubnetMax": "fd55:0:0:8::"})",
                  "IPv6SubnetMin: fd55:0:0:9:: is greater than IPv6SubnetMax fd55:0:0:8::"}));

TEST(NetworkConfigParse, ParseAloneSkipsValidation) {
  // Kube mode uses parse only (podCIDRs are authoritative): a /29 network parses fine.
  auto c = parseNetworkConfig(R"({"Network": "10.5.0.0/29"})");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->subnet_len, 0);
  EXPECT_FALSE(c->subnet_min);
}

}  // namespace
}  // namespace flannel
