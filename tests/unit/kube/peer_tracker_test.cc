// PeerTracker: node changes -> lease events, never losing or duplicating a peer, and relists
// that yield exactly the difference (SPEC.md §4.5 with the §10.18 fix).
#include "store/kube/peer_tracker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flannel::store::kube {
namespace {

using ::testing::HasSubstr;

const AnnotationKeys kKeys = AnnotationKeys::forPrefix("flannel.alpha.coreos.com/");

Node node(std::string name, std::string v4, std::string ip, std::string v6 = "",
          std::string ip6 = "") {
  Node n;
  n.name = std::move(name);
  n.pod_cidr = v4;
  n.pod_cidrs = {v4};
  if (!v6.empty()) {
    n.pod_cidrs.push_back(v6);
  }
  n.annotations = {{kKeys.kube_subnet_manager, "true"},
                   {kKeys.backend_type, "vxlan"},
                   {kKeys.backend_data, R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"})"},
                   {kKeys.public_ip, ip}};
  if (!ip6.empty()) {
    n.annotations[kKeys.public_ipv6] = ip6;
    n.annotations[kKeys.backend_v6_data] = R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"})";
  }
  return n;
}

std::string describe(const std::vector<LeaseEvent>& events) {
  std::string out;
  for (const auto& e : events) {
    out += e.type == LeaseEventType::Added ? "+" : "-";
    out += subnetKeyName(e.lease.subnet);
    out += "@" + e.lease.attrs.public_ip.toString();
    if (e.lease.attrs.public_ipv6) {
      out += "/" + e.lease.attrs.public_ipv6->toString();
    }
    out += " ";
  }
  return out;
}

TEST(PeerTracker, AddUpdateDelete) {
  PeerTracker t(kKeys, true, false, "me");
  EXPECT_EQ(describe(t.upsert(node("n2", "10.5.2.0/24", "192.168.0.2")).events),
            "+10.5.2.0-24@192.168.0.2 ");
  // The same node again (a status heartbeat): nothing.
  EXPECT_TRUE(t.upsert(node("n2", "10.5.2.0/24", "192.168.0.2")).events.empty());
  // A new public IP: Added with the new attributes.
  EXPECT_EQ(describe(t.upsert(node("n2", "10.5.2.0/24", "192.168.0.22")).events),
            "+10.5.2.0-24@192.168.0.22 ");
  // A new pod CIDR: the old subnet goes, the new one comes.
  EXPECT_EQ(describe(t.upsert(node("n2", "10.5.9.0/24", "192.168.0.22")).events),
            "-10.5.2.0-24@192.168.0.22 +10.5.9.0-24@192.168.0.22 ");
  // Deleted: Removed carries the last known lease.
  EXPECT_EQ(describe(t.remove("n2").events), "-10.5.9.0-24@192.168.0.22 ");
  EXPECT_TRUE(t.remove("n2").events.empty());
  EXPECT_EQ(t.size(), 0u);
}

TEST(PeerTracker, OwnNodeAndNonFlannelNodesAreNotPeers) {
  PeerTracker t(kKeys, true, false, "me");
  EXPECT_TRUE(t.upsert(node("me", "10.5.1.0/24", "192.168.0.1")).events.empty());
  Node bare;
  bare.name = "bare";
  EXPECT_TRUE(t.upsert(bare).events.empty());
  EXPECT_TRUE(t.upsert(bare).skipped.empty());
  // A flannel node that stops being one is removed.
  auto n = node("n2", "10.5.2.0/24", "192.168.0.2");
  t.upsert(n);
  n.annotations.erase(kKeys.kube_subnet_manager);
  EXPECT_EQ(describe(t.upsert(n).events), "-10.5.2.0-24@192.168.0.2 ");
}

TEST(PeerTracker, DualStackUpdateOfOneFamilyPropagates) {
  // Go flannel only propagates when both the v4 and v6 sets changed (SPEC.md §10.18).
  PeerTracker t(kKeys, true, true, "me");
  t.upsert(node("n2", "10.5.2.0/24", "192.168.0.2", "fd00:2::/64", "fd00::2"));
  EXPECT_EQ(
      describe(t.upsert(node("n2", "10.5.2.0/24", "192.168.0.9", "fd00:2::/64", "fd00::2")).events),
      "+10.5.2.0-24&fd00:2::-64@192.168.0.9/fd00::2 ");
  EXPECT_EQ(
      describe(t.upsert(node("n2", "10.5.2.0/24", "192.168.0.9", "fd00:2::/64", "fd00::9")).events),
      "+10.5.2.0-24&fd00:2::-64@192.168.0.9/fd00::9 ");
}

TEST(PeerTracker, MalformedUpdatesKeepTheLastGoodLeaseAndReportOnce) {
  PeerTracker t(kKeys, true, false, "me");
  t.upsert(node("n2", "10.5.2.0/24", "192.168.0.2"));
  auto bad = node("n2", "10.5.2.0/24", "not-an-ip");
  auto first = t.upsert(bad);
  EXPECT_TRUE(first.events.empty());
  ASSERT_EQ(first.skipped.size(), 1u);
  EXPECT_THAT(first.skipped[0].message, HasSubstr("node \"n2\""));
  EXPECT_TRUE(t.upsert(bad).skipped.empty());  // same error: not reported again
  EXPECT_EQ(t.size(), 1u);
  // Fixed: no event if it is back to the known lease.
  EXPECT_TRUE(t.upsert(node("n2", "10.5.2.0/24", "192.168.0.2")).events.empty());
  // A brand-new malformed node is skipped.
  EXPECT_EQ(t.upsert(node("n3", "10.5.3.0/24", "x")).skipped.size(), 1u);
  EXPECT_EQ(t.size(), 1u);
}

TEST(PeerTracker, ReplaceAllYieldsExactlyTheDifference) {
  PeerTracker t(kKeys, true, false, "me");
  t.upsert(node("a", "10.5.1.0/24", "192.168.0.1"));
  t.upsert(node("b", "10.5.2.0/24", "192.168.0.2"));
  t.upsert(node("c", "10.5.3.0/24", "192.168.0.3"));
  t.upsert(node("d", "10.5.4.0/24", "192.168.0.4"));
  // Relist: a unchanged, b gone, c new attrs, d moved, e new, f malformed and new, a2 bare.
  Node bare;
  bare.name = "a2";
  auto update = t.replaceAll(
      {node("a", "10.5.1.0/24", "192.168.0.1"), node("c", "10.5.3.0/24", "192.168.0.33"),
       node("d", "10.5.44.0/24", "192.168.0.4"), node("e", "10.5.5.0/24", "192.168.0.5"),
       node("f", "10.5.6.0/24", "bad"), bare, node("me", "10.5.0.0/24", "1.1.1.1")});
  EXPECT_EQ(describe(update.events),
            "-10.5.2.0-24@192.168.0.2 -10.5.4.0-24@192.168.0.4 +10.5.3.0-24@192.168.0.33 "
            "+10.5.44.0-24@192.168.0.4 +10.5.5.0-24@192.168.0.5 ");
  EXPECT_EQ(update.skipped.size(), 1u);
  EXPECT_EQ(t.size(), 4u);
  // Applying the same listing again changes nothing.
  auto again = t.replaceAll(
      {node("a", "10.5.1.0/24", "192.168.0.1"), node("c", "10.5.3.0/24", "192.168.0.33"),
       node("d", "10.5.44.0/24", "192.168.0.4"), node("e", "10.5.5.0/24", "192.168.0.5")});
  EXPECT_TRUE(again.events.empty());
}

TEST(PeerTracker, RelistKeepsAKnownNodeThatIsNowMalformed) {
  PeerTracker t(kKeys, true, false, "me");
  t.upsert(node("a", "10.5.1.0/24", "192.168.0.1"));
  auto update = t.replaceAll({node("a", "10.5.1.0/24", "garbage")});
  EXPECT_TRUE(update.events.empty());
  EXPECT_EQ(update.skipped.size(), 1u);
  EXPECT_EQ(t.leases().size(), 1u);
}

}  // namespace
}  // namespace flannel::store::kube
