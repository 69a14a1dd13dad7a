#include "core/mac.h"

#include <gtest/gtest.h>

namespace flannel {
namespace {

TEST(Mac, ParsesColonAndHyphenFormsInEitherCase) {
  struct Case {
    const char* text;
    Mac::Bytes bytes;
  };
  for (const auto& c : {Case{"3e:6b:00:a1:ff:02", {0x3e, 0x6b, 0x00, 0xa1, 0xff, 0x02}},
                        Case{"3E:6B:00:A1:FF:02", {0x3e, 0x6b, 0x00, 0xa1, 0xff, 0x02}},
                        Case{"0e-2a-5c-01-02-03", {0x0e, 0x2a, 0x5c, 0x01, 0x02, 0x03}},
                        Case{"00:00:00:00:00:00", {}}}) {
    auto mac = Mac::parse(c.text);
    ASSERT_TRUE(mac) << c.text;
    EXPECT_EQ(mac->bytes(), c.bytes) << c.text;
  }
}

TEST(Mac, FormatsLowerCaseColonSeparated) {
  EXPECT_EQ(Mac({0x3e, 0x6b, 0x00, 0xa1, 0xff, 0x02}).toString(), "3e:6b:00:a1:ff:02");
  EXPECT_EQ(Mac::parse("AA-BB-CC-DD-EE-FF")->toString(), "aa:bb:cc:dd:ee:ff");
}

TEST(Mac, RejectsEverythingElseWithTheInputInTheMessage) {
  for (const char* bad :
       {"", "zz", "3e:6b:00:a1:ff", "3e:6b:00:a1:ff:02:03", "3e:6b-00:a1:ff:02", "3e6b.00a1.ff02",
        "3e:6b:00:a1:ff:0g", " 3e:6b:00:a1:ff:02", "3e:6b:00:a1:ff:02 ", "3e::6b:00:a1:ff:0"}) {
    auto mac = Mac::parse(bad);
    ASSERT_FALSE(mac) << bad;
    EXPECT_EQ(mac.error().code, Errc::InvalidInput);
    EXPECT_NE(mac.error().message.find("is not a MAC address"), std::string::npos);
  }
  EXPECT_EQ(Mac::parse("zz").error().message, "\"zz\" is not a MAC address");
}

TEST(Mac, LocallyAdministeredClearsMulticastAndSetsLocalBit) {
  struct Case {
    uint8_t in;
    uint8_t out;
  };
  for (auto c :
       {Case{0x00, 0x02}, Case{0xff, 0xfe}, Case{0x01, 0x02}, Case{0x3e, 0x3e}, Case{0x3d, 0x3e}}) {
    Mac mac = Mac::locallyAdministered({c.in, 1, 2, 3, 4, 5});
    EXPECT_EQ(mac.bytes()[0], c.out) << int(c.in);
    EXPECT_EQ(mac.bytes()[5], 5);
    EXPECT_TRUE(mac.isLocallyAdministered());
    EXPECT_FALSE(mac.isMulticast());
  }
}

TEST(Mac, RandomOnesAreLocallyAdministeredUnicastAndDiffer) {
  Mac a = Mac::randomLocallyAdministered();
  Mac b = Mac::randomLocallyAdministered();
  EXPECT_TRUE(a.isLocallyAdministered());
  EXPECT_FALSE(a.isMulticast());
  EXPECT_FALSE(a.isZero());
  EXPECT_NE(a, b);  // 46 random bits: a collision here means the generator is broken
}

TEST(Mac, OrdersAndComparesByBytes) {
  EXPECT_LT(*Mac::parse("00:00:00:00:00:01"), *Mac::parse("00:00:00:00:01:00"));
  EXPECT_EQ(*Mac::parse("aa:bb:cc:dd:ee:ff"), *Mac::parse("AA:BB:CC:DD:EE:FF"));
  EXPECT_TRUE(Mac().isZero());
}

}  // namespace
}  // namespace flannel
