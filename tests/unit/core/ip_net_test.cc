#include "core/ip_net.h"

#include <gtest/gtest.h>

namespace flannel {
namespace {

IpNet net(const char* s) {
  return IpNet::parse(s).value();
}

TEST(IpNet, StrictParseRejectsHostBitsAndNamesTheFix) {
  auto r = IpNet::parse("10.5.3.4/16");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "\"10.5.3.4/16\" has host bits set (did you mean 10.5.0.0/16?)");
  EXPECT_EQ(IpNet::parseMasked("10.5.3.4/16")->toString(), "10.5.0.0/16");
  EXPECT_EQ(IpNet::parseMasked("fd55::1/48")->toString(), "fd55::/48");
}

TEST(IpNet, ParseEdgeCases) {
  EXPECT_EQ(net("0.0.0.0/0").prefix(), 0);
  EXPECT_EQ(net("10.1.2.3/32").toString(), "10.1.2.3/32");
  EXPECT_EQ(net("::/0").toString(), "::/0");
  EXPECT_EQ(net("fd55::1/128").toString(), "fd55::1/128");
  for (const char* bad : {"10.0.0.0", "10.0.0.0/33", "fd55::/129", "10.0.0.0/", "10.0.0.0/-1",
                          "10.0.0.0/08", "10.0.0.0/8x", "/8", "10.0.0.0/8/8", "x/8"}) {
    EXPECT_FALSE(IpNet::parse(bad)) << bad;
    EXPECT_FALSE(IpNet::parseMasked(bad)) << bad;
  }
}

TEST(IpNet, ContainsAndOverlaps) {
  IpNet n = net("10.5.0.0/16");
  EXPECT_TRUE(n.contains(*IpAddr::parse("10.5.255.255")));
  EXPECT_FALSE(n.contains(*IpAddr::parse("10.6.0.0")));
  EXPECT_FALSE(n.contains(*IpAddr::parse("fd00::")));
  EXPECT_TRUE(n.contains(net("10.5.92.0/24")));
  EXPECT_FALSE(net("10.5.92.0/24").contains(n));
  EXPECT_TRUE(n.overlaps(net("10.5.92.0/24")));
  EXPECT_TRUE(net("10.5.92.0/24").overlaps(n));
  EXPECT_FALSE(net("10.5.92.0/24").overlaps(net("10.5.93.0/24")));
  EXPECT_TRUE(net("0.0.0.0/0").overlaps(net("10.5.93.0/24")));
  EXPECT_FALSE(net("0.0.0.0/0").overlaps(net("fd00::/8")));
  EXPECT_TRUE(net("::/0").contains(net("fd55::1/128")));
  EXPECT_TRUE(net("10.1.2.3/32").contains(*IpAddr::parse("10.1.2.3")));
  EXPECT_FALSE(net("10.1.2.3/32").contains(*IpAddr::parse("10.1.2.4")));
}

TEST(IpNet, HostOffsets) {
  EXPECT_EQ(net("10.5.92.0/24").host(1)->toString(), "10.5.92.1");
  EXPECT_EQ(net("10.5.92.0/24").host(255)->toString(), "10.5.92.255");
  EXPECT_FALSE(net("10.5.92.0/24").host(256));
  EXPECT_FALSE(net("10.1.2.3/32").host(1));
  EXPECT_EQ(net("fd55:0:0:36::/64").host(1)->toString(), "fd55:0:0:36::1");
  EXPECT_FALSE(net("fd55::1/128").host(1));
  EXPECT_EQ(net("::/0").host(~Uint128{0})->toString(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

TEST(IpNet, NextStopsAtTheEndOfTheSpace) {
  EXPECT_EQ(net("10.5.1.0/24").next()->toString(), "10.5.2.0/24");
  EXPECT_EQ(net("10.5.255.0/24").next()->toString(), "10.6.0.0/24");
  EXPECT_FALSE(net("255.255.255.0/24").next());
  EXPECT_FALSE(net("255.255.255.255/32").next());
  EXPECT_FALSE(net("0.0.0.0/0").next());
  EXPECT_EQ(net("fd55:0:0:ffff::/64").next()->toString(), "fd55:0:1::/64");
  EXPECT_FALSE(net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128").next());
}

TEST(IpNet, NthSubnet) {
  IpNet n = net("10.5.0.0/16");
  EXPECT_EQ(n.subnetCount(24), 256u);
  EXPECT_EQ(n.nthSubnet(24, 0)->toString(), "10.5.0.0/24");
  EXPECT_EQ(n.nthSubnet(24, 92)->toString(), "10.5.92.0/24");
  EXPECT_EQ(n.nthSubnet(24, 255)->toString(), "10.5.255.0/24");
  EXPECT_FALSE(n.nthSubnet(24, 256));
  EXPECT_FALSE(n.nthSubnet(8, 0));   // shorter than the parent
  EXPECT_FALSE(n.nthSubnet(33, 0));  // beyond the family width
  EXPECT_EQ(n.nthSubnet(16, 0), n);
  EXPECT_EQ(net("0.0.0.0/0").subnetCount(32), Uint128{1} << 32);
  EXPECT_EQ(net("0.0.0.0/0").nthSubnet(32, (Uint128{1} << 32) - 1)->toString(),
            "255.255.255.255/32");
  EXPECT_EQ(net("::/0").subnetCount(128), ~Uint128{0});
  EXPECT_EQ(net("fd55::/48").nthSubnet(64, 0x36)->toString(), "fd55:0:0:36::/64");
  EXPECT_EQ(net("::/0").nthSubnet(0, 0)->toString(), "::/0");
}

TEST(IpNet, MaskedClampsAnOversizedPrefix) {
  EXPECT_EQ(IpNet::masked(*IpAddr::parse("10.1.2.3"), 40).toString(), "10.1.2.3/32");
  EXPECT_EQ(IpNet::masked(*IpAddr::parse("10.1.2.3"), 0).toString(), "0.0.0.0/0");
}

}  // namespace
}  // namespace flannel
