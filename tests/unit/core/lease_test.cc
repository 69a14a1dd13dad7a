#include "core/lease.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flannel {
namespace {

using ::testing::HasSubstr;

// Literal values observed from Go flannel v0.20.2 (SPEC.md §3.3).
constexpr const char* kVxlanV4 =
    R"({"PublicIP":"192.168.91.11","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:7b:4a:66:8d:b3"}})";
constexpr const char* kVxlanDual =
    R"({"PublicIP":"192.168.91.11","PublicIPv6":"fd91::11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"32:97:59:00:96:64"},"BackendV6Data":{"VNI":1,"VtepMAC":"06:04:d6:ac:92:ba"}})";
constexpr const char* kHostGw =
    R"({"PublicIP":"192.168.91.12","PublicIPv6":null,"BackendType":"host-gw"})";
constexpr const char* kUdp = R"({"PublicIP":"192.168.91.11","PublicIPv6":null})";

TEST(LeaseJson, GoFlannelValuesRoundTripByteForByte) {
  for (const char* literal : {kVxlanV4, kVxlanDual, kHostGw, kUdp}) {
    auto attrs = decodeLeaseAttrs(literal);
    ASSERT_TRUE(attrs) << literal << ": " << attrs.error().message;
    EXPECT_EQ(encodeLeaseAttrs(*attrs), literal);
  }
}

TEST(LeaseJson, DecodedFields) {
  auto a = decodeLeaseAttrs(kVxlanDual).value();
  EXPECT_EQ(a.public_ip.toString(), "192.168.91.11");
  ASSERT_TRUE(a.public_ipv6);
  EXPECT_EQ(a.public_ipv6->toString(), "fd91::11");
  EXPECT_EQ(a.backend_type, "vxlan");
  EXPECT_EQ(a.backend_data, R"({"VNI":1,"VtepMAC":"32:97:59:00:96:64"})");
  EXPECT_EQ(a.backend_v6_data, R"({"VNI":1,"VtepMAC":"06:04:d6:ac:92:ba"})");
  auto udp = decodeLeaseAttrs(kUdp).value();
  EXPECT_EQ(udp.backend_type, "");
  EXPECT_EQ(udp.backend_data, "");
  EXPECT_FALSE(udp.public_ipv6);
}

TEST(LeaseJson, EncodesFromValues) {
  LeaseAttrs a{.public_ip = Ip4::fromBytes(192, 168, 91, 12), .backend_type = "host-gw"};
  EXPECT_EQ(encodeLeaseAttrs(a), kHostGw);
  LeaseAttrs v6only{.public_ipv6 = Ip6::parse("fd91::12").value(),
                    .backend_type = "vxlan",
                    .backend_v6_data = R"({"VNI":1,"VtepMAC":"0a:0b:0c:0d:0e:0f"})"};
  EXPECT_EQ(
      encodeLeaseAttrs(v6only),
      R"({"PublicIP":"0.0.0.0","PublicIPv6":"fd91::12","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"0a:0b:0c:0d:0e:0f"}})");
}

TEST(LeaseJson, GoDecodingRules) {
  // Case-insensitive keys, unknown keys ignored, whitespace and key order free.
  auto a = decodeLeaseAttrs(
      R"( { "backenddata" : { "VtepMAC" : "aa:bb:cc:dd:ee:ff" , "VNI" : 1 }, "x": 1,
            "publicip": "10.0.0.1", "BACKENDTYPE": "vxlan" } )");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->public_ip.toString(), "10.0.0.1");
  EXPECT_EQ(a->backend_type, "vxlan");
  EXPECT_EQ(a->backend_data, R"({"VtepMAC":"aa:bb:cc:dd:ee:ff","VNI":1})");  // order kept
  // A null BackendData is treated as absent.
  EXPECT_EQ(decodeLeaseAttrs(R"({"PublicIP":"10.0.0.1","BackendData":null})")->backend_data, "");
}

TEST(LeaseJson, RejectsMalformedValuesWholly) {
  struct Case {
    const char* json;
    const char* expected;
  };
  for (auto c : {Case{"", "not valid JSON"}, Case{"{\"PublicIP\":\"10.0.0.1\"", "not valid JSON"},
                 Case{"[1]", "expected a JSON object"},
                 Case{R"({"PublicIP":null})", "field PublicIP: is null"},
                 Case{R"({"PublicIP":"fd00::1"})", "field PublicIP: \"fd00::1\" is not an IPv4"},
                 Case{R"({"PublicIP":"10.0.0.300"})", "field PublicIP"},
                 Case{R"({"PublicIP":7})", "field PublicIP: expected a string"},
                 Case{R"({"PublicIP":"10.0.0.1","PublicIPv6":"10.0.0.1"})", "field PublicIPv6"},
                 Case{R"({"PublicIP":"10.0.0.1","BackendType":["vxlan"]})",
                      "field BackendType: expected a string"},
                 Case{"{\"PublicIP\":\"10.0.0.1\",\"BackendData\":\"\xff\"}", "lease value"}}) {
    auto a = decodeLeaseAttrs(c.json);
    ASSERT_FALSE(a) << c.json;
    EXPECT_THAT(a.error().message, HasSubstr(c.expected)) << c.json;
    EXPECT_THAT(a.error().message, HasSubstr("lease value")) << c.json;
  }
}

TEST(SubnetKey, FormatsLikeGoFlannel) {
  SubnetKey v4{.ipv4 = IpNet::parse("10.5.92.0/24").value()};
  EXPECT_EQ(subnetKeyName(v4), "10.5.92.0-24");
  SubnetKey dual{.ipv4 = IpNet::parse("10.5.73.0/24").value(),
                 .ipv6 = IpNet::parse("fd55:0:0:36::/64").value()};
  EXPECT_EQ(subnetKeyName(dual), "10.5.73.0-24&fd55:0:0:36::-64");
  SubnetKey v6only{.ipv6 = IpNet::parse("fd55:0:0:37::/64").value()};
  EXPECT_EQ(subnetKeyName(v6only), "0.0.0.0-0&fd55:0:0:37::-64");
}

TEST(SubnetKey, ParsesFullKeysAndNames) {
  for (const char* name :
       {"10.5.92.0-24", "10.5.73.0-24&fd55:0:0:36::-64", "0.0.0.0-0&fd55:0:0:37::-64"}) {
    auto k = parseSubnetKeyName(std::string("/coreos.com/network/subnets/") + name);
    ASSERT_TRUE(k) << name << ": " << k.error().message;
    EXPECT_EQ(subnetKeyName(*k), name);
    EXPECT_EQ(parseSubnetKeyName(name).value(), *k);
  }
  auto v6only = parseSubnetKeyName("0.0.0.0-0&fd55:0:0:37::-64").value();
  EXPECT_FALSE(v6only.ipv4);
  EXPECT_EQ(v6only.ipv6->toString(), "fd55:0:0:37::/64");
}

TEST(SubnetKey, RejectsRogueKeys) {
  for (const char* bad :
       {"", "/coreos.com/network/subnets/", "10.5.92.0", "10.5.92.0-", "10.5.92.0-33",
        "10.5.92.1-24", "10.5.92.0-24&", "10.5.92.0-24&fd55::1-64", "0.0.0.0-0", "10.0.0.0-0",
        "10.5.92.0-24&10.1.0.0-16", "fd55::-64", "10.5.92.0-24&fd55::-0", "x10.5.92.0-24",
        "10.5.92.0-24x", "10.5.92.0-+24", "10.5.92.0-024"}) {
    auto k = parseSubnetKeyName(bad);
    EXPECT_FALSE(k) << bad;
    if (!k) {
      EXPECT_THAT(k.error().message, HasSubstr("subnet key")) << bad;
    }
  }
}

}  // namespace
}  // namespace flannel
