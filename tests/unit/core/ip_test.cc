#include "core/ip.h"

#include <gtest/gtest.h>

namespace flannel {
namespace {

TEST(Ip4, ParsesAndFormatsDottedDecimal) {
  struct Case {
    const char* text;
    uint32_t value;
  };
  for (auto c : {Case{"0.0.0.0", 0}, Case{"10.5.92.1", 0x0a055c01}, Case{"255.255.255.255", ~0u},
                 Case{"192.168.91.11", 0xc0a85b0b}}) {
    auto ip = Ip4::parse(c.text);
    ASSERT_TRUE(ip) << c.text;
    EXPECT_EQ(ip->toU32(), c.value);
    EXPECT_EQ(ip->toString(), c.text);
  }
}

TEST(Ip4, RejectsEverythingElseWithTheInputInTheMessage) {
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", " 1.2.3.4",
                          "a.b.c.d", "::1", "1.2.3.4/24", "1.2.3.-1"}) {
    auto ip = Ip4::parse(bad);
    ASSERT_FALSE(ip) << bad;
    EXPECT_EQ(ip.error().code, Errc::InvalidInput);
    EXPECT_NE(ip.error().message.find("is not an IPv4 address"), std::string::npos);
  }
  std::string with_nul("1.2.3.4\0", 8);
  EXPECT_FALSE(Ip4::parse(with_nul));
  EXPECT_EQ(Ip4::parse("\x01zz").error().message, "\"\\x01zz\" is not an IPv4 address");
}

TEST(Ip4, Classification) {
  EXPECT_TRUE(Ip4::parse("10.0.0.1")->isGlobalUnicast());
  EXPECT_FALSE(Ip4::parse("127.0.0.1")->isGlobalUnicast());
  EXPECT_TRUE(Ip4::parse("169.254.3.4")->isLinkLocal());
  EXPECT_TRUE(Ip4::parse("224.0.0.1")->isMulticast());
  EXPECT_FALSE(Ip4::parse("255.255.255.255")->isGlobalUnicast());
  EXPECT_TRUE(Ip4().isUnspecified());
}

TEST(Ip6, FormatsLikeGo) {
  // RFC 5952 canonical forms, which are also what Go's net.IP.String() prints.
  struct Case {
    const char* in;
    const char* out;
  };
  for (auto c : {Case{"fd55:0:0:36::", "fd55:0:0:36::"},
                 Case{"FD55:0000:0000:0036:0:0:0:0", "fd55:0:0:36::"}, Case{"::", "::"},
                 Case{"::1", "::1"}, Case{"fd55::", "fd55::"},
                 Case{"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},     // first of equal runs
                 Case{"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"},  // single 0 not compressed
                 Case{"1:0:0:2:0:0:0:3", "1:0:0:2::3"},                 // longest run wins
                 Case{"fe80::1", "fe80::1"}, Case{"::ffff:10.1.2.3", "::ffff:10.1.2.3"}}) {
    auto ip = Ip6::parse(c.in);
    ASSERT_TRUE(ip) << c.in;
    EXPECT_EQ(ip->toString(), c.out) << c.in;
  }
}

TEST(Ip6, RejectsGarbageAndZones) {
  for (const char* bad : {"", "fe80::1%eth0", "1.2.3.4", ":::", "1::2::3", "12345::", "g::1"}) {
    EXPECT_FALSE(Ip6::parse(bad)) << bad;
  }
}

TEST(Ip6, U128RoundTrip) {
  auto ip = *Ip6::parse("fd55:0:0:36::1");
  EXPECT_EQ(Ip6::fromU128(ip.toU128()), ip);
  EXPECT_EQ(Ip6::fromU128(ip.toU128() + 1).toString(), "fd55:0:0:36::2");
}

TEST(IpAddr, PicksTheFamilyFromTheText) {
  EXPECT_TRUE(IpAddr::parse("10.1.1.1")->is4());
  EXPECT_TRUE(IpAddr::parse("fd00::1")->is6());
  EXPECT_FALSE(IpAddr::parse("eth0"));
  EXPECT_LT(*IpAddr::parse("10.1.1.1"), *IpAddr::parse("10.1.1.2"));
  EXPECT_NE(IpAddr(Ip4()), IpAddr(Ip6()));
}

}  // namespace
}  // namespace flannel
