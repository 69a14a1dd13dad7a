#include "store/allocator.h"
#include "store/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <set>

namespace flannel::store {
namespace {

using ::testing::HasSubstr;

IpNet net(const char* s) {
  return IpNet::parse(s).value();
}
IpAddr ip(const char* s) {
  return IpAddr::parse(s).value();
}
NetworkConfig cfg(const char* json) {
  return loadNetworkConfig(json).value();
}
size_t first(size_t) {
  return 0;
}

TEST(FreeCandidates, SkipsTakenSubnetsAndStopsAtTheLimit) {
  auto c = freeCandidates(ip("10.5.1.0"), ip("10.5.255.0"), 24,
                          {net("10.5.1.0/24"), net("10.5.3.0/24")}, 3);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].toString(), "10.5.2.0/24");
  EXPECT_EQ(c[1].toString(), "10.5.4.0/24");
  EXPECT_EQ(c[2].toString(), "10.5.5.0/24");
}

TEST(FreeCandidates, ALargerTakenBlockIsJumpedOver) {
  auto c = freeCandidates(ip("10.5.1.0"), ip("10.5.255.0"), 24, {net("10.5.0.0/20")}, 2);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].toString(), "10.5.16.0/24");
}

TEST(FreeCandidates, OtherFamiliesAndOverlappingTakenEntriesAreHandled) {
  auto c = freeCandidates(ip("10.5.1.0"), ip("10.5.4.0"), 24,
                          {net("fd00::/8"), net("10.5.2.0/24"), net("10.5.2.128/25")}, 100);
  std::vector<std::string> got;
  for (auto& n : c) {
    got.push_back(n.toString());
  }
  EXPECT_EQ(got, (std::vector<std::string>{"10.5.1.0/24", "10.5.3.0/24", "10.5.4.0/24"}));
}

TEST(FreeCandidates, EndOfTheAddressSpaceAndIPv6) {
  auto c = freeCandidates(ip("255.255.255.252"), ip("255.255.255.252"), 30, {}, 10);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].toString(), "255.255.255.252/30");
  auto v6 =
      freeCandidates(ip("fd55:0:0:1::"), ip("fd55:0:0:ffff::"), 64, {net("fd55:0:0:1::/64")}, 2);
  ASSERT_EQ(v6.size(), 2u);
  EXPECT_EQ(v6[0].toString(), "fd55:0:0:2::/64");
  EXPECT_TRUE(freeCandidates(ip("10.0.0.8"), ip("10.0.0.4"), 30, {}, 10).empty());
}

TEST(CandidateSubnets, DualStackPairsOneSubnetPerFamily) {
  auto c = cfg(R"({"EnableIPv6": true, "Network": "10.5.0.0/16", "IPv6Network": "fd55::/48"})");
  auto all = candidateSubnets(c, {}, first);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), kMaxCandidates);
  for (const auto& k : *all) {
    ASSERT_TRUE(k.ipv4 && k.ipv6);
    EXPECT_TRUE(subnetFitsConfig(k, c));
  }
}

TEST(CandidateSubnets, ShuffleUsesEveryCandidateOnce) {
  auto c = cfg(R"({"Network": "10.5.0.0/16"})");
  size_t state = 7;
  auto pick = [&](size_t n) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<size_t>(state >> 33) % n;
  };
  auto all = candidateSubnets(c, {}, pick).value();
  std::set<std::string> distinct;
  for (const auto& k : all) {
    distinct.insert(k.ipv4->toString());
  }
  EXPECT_EQ(distinct.size(), all.size());
  EXPECT_EQ(all.size(), kMaxCandidates);
}

TEST(AllocateSubnet, FullNetworkNamesFamilyAndRange) {
  auto c = cfg(R"({"Network": "10.5.0.0/28", "SubnetLen": 30})");
  std::vector<SubnetKey> taken;
  for (const char* s : {"10.5.0.4/30", "10.5.0.8/30", "10.5.0.12/30"}) {
    taken.push_back(SubnetKey{.ipv4 = net(s), .ipv6 = std::nullopt});
  }
  auto r = allocateSubnet(c, taken, first);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::Conflict);
  EXPECT_THAT(r.error().message,
              HasSubstr("network is full: no free /30 IPv4 subnet between 10.5.0.4 and 10.5.0.12"));
  taken.pop_back();
  EXPECT_EQ(allocateSubnet(c, taken, first)->ipv4->toString(), "10.5.0.12/30");
}

TEST(SubnetFitsConfig, ChecksRangeLengthAndFamilies) {
  auto c = cfg(R"({"Network": "10.5.0.0/16", "SubnetMin": "10.5.10.0", "SubnetMax": "10.5.20.0"})");
  EXPECT_TRUE(subnetFitsConfig({.ipv4 = net("10.5.10.0/24"), .ipv6 = std::nullopt}, c));
  EXPECT_TRUE(subnetFitsConfig({.ipv4 = net("10.5.20.0/24"), .ipv6 = std::nullopt}, c));
  EXPECT_FALSE(subnetFitsConfig({.ipv4 = net("10.5.21.0/24"), .ipv6 = std::nullopt}, c));
  EXPECT_FALSE(subnetFitsConfig({.ipv4 = net("10.5.10.0/25"), .ipv6 = std::nullopt}, c));
  EXPECT_FALSE(subnetFitsConfig({.ipv4 = net("10.6.10.0/24"), .ipv6 = std::nullopt}, c));
  EXPECT_FALSE(subnetFitsConfig({.ipv4 = std::nullopt, .ipv6 = net("fd55::/64")}, c));
  EXPECT_FALSE(subnetFitsConfig({.ipv4 = net("10.5.10.0/24"), .ipv6 = net("fd55::/64")}, c));
}

}  // namespace
}  // namespace flannel::store

namespace flannel::store {
namespace {

TEST(DiffLeaseSets, RemovedCarryTheLastLeaseAddedCoverNewAndChanged) {
  auto lease = [](const char* subnet, int host) {
    Lease l;
    l.subnet.ipv4 = IpNet::parse(subnet).value();
    l.attrs.public_ip = Ip4::fromBytes(192, 168, 91, static_cast<uint8_t>(host));
    return l;
  };
  std::map<SubnetKey, Lease> before = {{lease("10.5.1.0/24", 11).subnet, lease("10.5.1.0/24", 11)},
                                       {lease("10.5.2.0/24", 12).subnet, lease("10.5.2.0/24", 12)},
                                       {lease("10.5.3.0/24", 13).subnet, lease("10.5.3.0/24", 13)}};
  std::map<SubnetKey, Lease> after = {{lease("10.5.1.0/24", 11).subnet, lease("10.5.1.0/24", 11)},
                                      {lease("10.5.2.0/24", 22).subnet, lease("10.5.2.0/24", 22)},
                                      {lease("10.5.4.0/24", 14).subnet, lease("10.5.4.0/24", 14)}};
  auto events = diffLeaseSets(before, after);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, LeaseEventType::Removed);
  EXPECT_EQ(events[0].lease, lease("10.5.3.0/24", 13));
  EXPECT_EQ(events[1].type, LeaseEventType::Added);
  EXPECT_EQ(events[1].lease, lease("10.5.2.0/24", 22));
  EXPECT_EQ(events[2].lease, lease("10.5.4.0/24", 14));
  EXPECT_TRUE(diffLeaseSets(after, after).empty());
}

}  // namespace
}  // namespace flannel::store
