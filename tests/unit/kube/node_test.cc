// Node, NodeList, Status and watch-event parsing; pod CIDRs; node -> lease (SPEC.md §4.4, §4.5);
// kube-mode config checks.
#include "store/kube/node.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flannel::store::kube {
namespace {

using ::testing::HasSubstr;

const AnnotationKeys kKeys = AnnotationKeys::forPrefix("flannel.alpha.coreos.com/");

Node flannelNode(std::string name, std::vector<std::string> cidrs) {
  Node n;
  n.name = std::move(name);
  n.pod_cidrs = std::move(cidrs);
  if (!n.pod_cidrs.empty()) {
    n.pod_cidr = n.pod_cidrs.front();
  }
  n.annotations = {{kKeys.kube_subnet_manager, "true"},
                   {kKeys.backend_type, "vxlan"},
                   {kKeys.backend_data, R"({"VNI":1, "VtepMAC":"aa:bb:cc:dd:ee:01"})"},
                   {kKeys.public_ip, "192.168.91.12"},
                   {kKeys.backend_v6_data, R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"})"},
                   {kKeys.public_ipv6, "fd00::12"}};
  return n;
}

TEST(ParseNode, ReadsTheFieldsFlannelUses) {
  auto n = parseNode(R"({"kind":"Node","apiVersion":"v1","metadata":{"name":"n1",
      "resourceVersion":"1234","annotations":{"a/b":"c"},"labels":{"x":"y"}},
      "spec":{"podCIDR":"10.5.1.0/24","podCIDRs":["10.5.1.0/24","fd00:1::/64"]},
      "status":{"conditions":[]}})");
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(n->name, "n1");
  EXPECT_EQ(n->resource_version, "1234");
  EXPECT_EQ(n->annotations, (Annotations{{"a/b", "c"}}));
  EXPECT_EQ(n->pod_cidr, "10.5.1.0/24");
  EXPECT_EQ(n->pod_cidrs.size(), 2u);
}

TEST(ParseNode, ANodeWithoutAnnotationsOrSpecIsFine) {
  auto n = parseNode(R"({"metadata":{"name":"bare"}})");
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_TRUE(n->annotations.empty());
  EXPECT_TRUE(n->pod_cidr.empty());
}

TEST(ParseNode, RejectsWhatIsNotANode) {
  EXPECT_FALSE(parseNode("not json"));
  EXPECT_FALSE(parseNode("[]"));
  EXPECT_THAT(parseNode(R"({"metadata":{}})").error().message, HasSubstr("metadata.name"));
  EXPECT_THAT(parseNode(R"({"metadata":{"name":"n","annotations":{"a":1}}})").error().message,
              HasSubstr("annotation \"a\" is an integer"));
  EXPECT_THAT(parseNode(R"({"metadata":{"name":"n"},"spec":{"podCIDRs":"x"}})").error().message,
              HasSubstr("spec.podCIDRs is a string"));
}

TEST(ParseNodeList, ItemsVersionAndContinue) {
  auto l = parseNodeList(R"({"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":
      "77","continue":"abc","remainingItemCount":3},"items":[{"metadata":{"name":"a"}},
      {"metadata":{"name":"b"}}]})");
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->resource_version, "77");
  EXPECT_EQ(l->continue_token, "abc");
  ASSERT_EQ(l->items.size(), 2u);
  EXPECT_EQ(l->items[1].name, "b");
  auto empty =
      parseNodeList(R"({"kind":"NodeList","metadata":{"resourceVersion":"5"},"items":null})");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->items.empty());
  EXPECT_FALSE(parseNodeList(R"({"items":[{"metadata":{}}]})"));
}

TEST(ParseStatus, OnlyStatusObjects) {
  auto s = parseStatus(R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
      "message":"nodes \"n1\" not found","reason":"NotFound","details":{"name":"n1","kind":"nodes"},
      "code":404})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->code, 404);
  EXPECT_EQ(s->reason, "NotFound");
  EXPECT_EQ(s->message, "nodes \"n1\" not found");
  EXPECT_FALSE(parseStatus("<html>bad gateway</html>"));
  EXPECT_FALSE(parseStatus(R"({"kind":"Node"})"));
}

TEST(ParseWatchEvent, EveryType) {
  auto added = parseWatchEvent(
      R"({"type":"ADDED","object":{"kind":"Node","metadata":{"name":"n","resourceVersion":"9"}}})");
  ASSERT_TRUE(added) << added.error().message;
  EXPECT_EQ(added->type, WatchEventType::Added);
  EXPECT_EQ(added->resource_version, "9");
  EXPECT_EQ(added->node->name, "n");
  EXPECT_EQ(parseWatchEvent(R"({"type":"MODIFIED","object":{"metadata":{"name":"n"}}})")->type,
            WatchEventType::Modified);
  EXPECT_EQ(parseWatchEvent(R"({"type":"DELETED","object":{"metadata":{"name":"n"}}})")->type,
            WatchEventType::Deleted);
  auto bookmark = parseWatchEvent(
      R"({"type":"BOOKMARK","object":{"kind":"Node","apiVersion":"v1","metadata":{"resourceVersion":"12746"}}})");
  ASSERT_TRUE(bookmark);
  EXPECT_EQ(bookmark->type, WatchEventType::Bookmark);
  EXPECT_EQ(bookmark->resource_version, "12746");
  auto error = parseWatchEvent(
      R"json({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}})json");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->type, WatchEventType::Error);
  EXPECT_EQ(error->status->code, 410);
  EXPECT_EQ(error->status->reason, "Expired");
  EXPECT_FALSE(parseWatchEvent(R"({"type":"SOMETHING","object":{}})"));
  EXPECT_FALSE(parseWatchEvent(R"({"type":"ADDED"})"));
  EXPECT_FALSE(parseWatchEvent(R"({"type":"BOOKMARK","object":{"metadata":{}}})"));
  EXPECT_FALSE(parseWatchEvent("{\"type\":\"ADDED\",\"obj"));
}

TEST(NodePodCidrs, PodCidrsWinOverPodCidr) {
  Node n;
  n.name = "n";
  EXPECT_TRUE(nodePodCidrs(n)->empty());
  n.pod_cidr = "10.5.1.0/24";
  EXPECT_EQ(nodePodCidrs(n)->v4->toString(), "10.5.1.0/24");
  n.pod_cidrs = {"fd00:1::/64", "10.5.2.0/24"};
  auto c = nodePodCidrs(n);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->v4->toString(), "10.5.2.0/24");
  EXPECT_EQ(c->v6->toString(), "fd00:1::/64");
}

TEST(NodePodCidrs, Errors) {
  Node n;
  n.name = "n";
  n.pod_cidrs = {"10.5.1.0/24", "fd00::/64", "10.5.2.0/24"};
  EXPECT_THAT(nodePodCidrs(n).error().message, HasSubstr("3 entries"));
  n.pod_cidrs = {"10.5.1.0/24", "10.5.2.0/24"};
  EXPECT_THAT(nodePodCidrs(n).error().message, HasSubstr("two IPv4 ranges"));
  n.pod_cidrs = {"bogus"};
  EXPECT_THAT(nodePodCidrs(n).error().message, HasSubstr("\"bogus\" is not a CIDR"));
}

TEST(NodeToLease, Ipv4) {
  auto l = nodeToLease(flannelNode("n2", {"10.5.2.0/24"}), kKeys, true, false);
  ASSERT_TRUE(l) << l.error().message;
  ASSERT_TRUE(*l);
  EXPECT_EQ((*l)->subnet.ipv4->toString(), "10.5.2.0/24");
  EXPECT_FALSE((*l)->subnet.ipv6);
  EXPECT_EQ((*l)->attrs.public_ip.toString(), "192.168.91.12");
  EXPECT_EQ((*l)->attrs.backend_type, "vxlan");
  EXPECT_EQ((*l)->attrs.backend_data, R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"})");  // compacted
  EXPECT_FALSE((*l)->attrs.public_ipv6);
  EXPECT_EQ((*l)->attrs.backend_v6_data, "");
  EXPECT_FALSE((*l)->expiration);
}

TEST(NodeToLease, DualStackAndIpv6Only) {
  auto node = flannelNode("n2", {"10.5.2.0/24", "fd00:2::/64"});
  auto dual = nodeToLease(node, kKeys, true, true);
  ASSERT_TRUE(dual && *dual);
  EXPECT_EQ((*dual)->subnet.ipv6->toString(), "fd00:2::/64");
  EXPECT_EQ((*dual)->attrs.public_ipv6->toString(), "fd00::12");
  EXPECT_EQ((*dual)->attrs.backend_v6_data, R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"})");
  auto v6only = nodeToLease(node, kKeys, false, true);
  ASSERT_TRUE(v6only && *v6only);
  EXPECT_FALSE((*v6only)->subnet.ipv4);
  EXPECT_TRUE((*v6only)->attrs.public_ip.isUnspecified());
}

TEST(NodeToLease, NotAFlannelNode) {
  Node bare;
  bare.name = "bare";
  EXPECT_FALSE(*nodeToLease(bare, kKeys, true, false));
  auto n = flannelNode("n", {"10.5.2.0/24"});
  n.annotations[kKeys.kube_subnet_manager] = "True";  // exactly "true" only
  EXPECT_FALSE(*nodeToLease(n, kKeys, true, false));
  // Another prefix does not count.
  auto other = AnnotationKeys::forPrefix("example.com/");
  EXPECT_FALSE(*nodeToLease(flannelNode("n", {"10.5.2.0/24"}), other, true, false));
}

TEST(NodeToLease, NullAndEmptyBackendDataMeanNone) {
  auto n = flannelNode("n", {"10.5.2.0/24"});
  n.annotations[kKeys.backend_data] = "null";
  EXPECT_EQ((*nodeToLease(n, kKeys, true, false))->attrs.backend_data, "");
  n.annotations[kKeys.backend_data] = "";
  EXPECT_EQ((*nodeToLease(n, kKeys, true, false))->attrs.backend_data, "");
}

TEST(NodeToLease, MalformedNodesAreErrorsNamingTheNode) {
  auto n = flannelNode("bad-node", {"10.5.2.0/24"});
  n.annotations[kKeys.public_ip] = "999.1.1.1";
  auto r = nodeToLease(n, kKeys, true, false);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("node \"bad-node\""));
  EXPECT_THAT(r.error().message, HasSubstr("flannel.alpha.coreos.com/public-ip"));

  n = flannelNode("bad-node", {"10.5.2.0/24"});
  n.annotations[kKeys.backend_data] = "{not json";
  EXPECT_THAT(nodeToLease(n, kKeys, true, false).error().message, HasSubstr("is not JSON"));

  n = flannelNode("bad-node", {"fd00:2::/64"});
  EXPECT_THAT(nodeToLease(n, kKeys, true, false).error().message, HasSubstr("no IPv4 pod CIDR"));

  n = flannelNode("bad-node", {"10.5.2.0/24"});
  EXPECT_THAT(nodeToLease(n, kKeys, true, true).error().message, HasSubstr("no IPv6 pod CIDR"));

  n = flannelNode("bad-node", {"10.5.2.0/24"});
  n.annotations.erase(kKeys.public_ip);
  EXPECT_THAT(nodeToLease(n, kKeys, true, false).error().message, HasSubstr("public-ip = \"\""));
}

NetworkConfig parse(const char* json) {
  return parseNetworkConfig(json).value();
}

TEST(ValidateKubeNetworkConfig, WhatIsChecked) {
  EXPECT_TRUE(validateKubeNetworkConfig(parse(R"({"Network":"10.5.0.0/16"})")));
  // No SubnetLen rules: a /30 network is fine here (podCIDR is authoritative).
  EXPECT_TRUE(validateKubeNetworkConfig(parse(R"({"Network":"10.5.0.0/30","SubnetLen":8})")));
  EXPECT_TRUE(validateKubeNetworkConfig(
      parse(R"({"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48"})")));
  EXPECT_THAT(validateKubeNetworkConfig(parse(R"({"Backend":{"Type":"vxlan"}})")).error().message,
              HasSubstr("Network is missing"));
  EXPECT_THAT(validateKubeNetworkConfig(parse(R"({"Network":"10.5.0.0/16","EnableIPv6":true})"))
                  .error()
                  .message,
              HasSubstr("IPv6Network is missing"));
  // The parser already refuses a prefix of the wrong family; the check stands on its own too.
  EXPECT_FALSE(parseNetworkConfig(R"({"Network":"fd00::/48"})"));
  NetworkConfig wrong = parse(R"({"Network":"10.5.0.0/16"})");
  wrong.network = IpNet::parse("fd00::/48").value();
  EXPECT_THAT(validateKubeNetworkConfig(wrong).error().message,
              HasSubstr("Network fd00::/48 is not an IPv4 prefix"));
  wrong = parse(R"({"Network":"10.5.0.0/16"})");
  wrong.ipv6_network = IpNet::parse("10.6.0.0/16").value();
  EXPECT_THAT(validateKubeNetworkConfig(wrong).error().message,
              HasSubstr("IPv6Network 10.6.0.0/16 is not an IPv6 prefix"));
  EXPECT_THAT(validateKubeNetworkConfig(parse(R"({"EnableIPv4":false,"EnableIPv6":false})"))
                  .error()
                  .message,
              HasSubstr("both false"));
  // Networks[0] stands in for Network (v0.20.2).
  EXPECT_TRUE(validateKubeNetworkConfig(parse(R"({"Networks":["10.5.0.0/16"]})")));
}

TEST(LeaseSubnetFor, ContainmentPerEnabledFamily) {
  auto cfg = parse(R"({"Network":"10.5.0.0/16","IPv6Network":"fd00::/48","EnableIPv6":true})");
  PodCidrs both{.v4 = IpNet::parse("10.5.3.0/24").value(),
                .v6 = IpNet::parse("fd00:0:0:3::/64").value()};
  auto key = leaseSubnetFor("n", both, cfg);
  ASSERT_TRUE(key) << key.error().message;
  EXPECT_EQ(subnetKeyName(*key), "10.5.3.0-24&fd00:0:0:3::-64");

  PodCidrs outside{.v4 = IpNet::parse("10.6.3.0/24").value(), .v6 = both.v6};
  EXPECT_THAT(leaseSubnetFor("n", outside, cfg).error().message,
              HasSubstr("pod CIDR 10.6.3.0/24 is not inside the network 10.5.0.0/16"));
  // A pod CIDR larger than the network is not contained.
  PodCidrs larger{.v4 = IpNet::parse("10.0.0.0/8").value(), .v6 = both.v6};
  EXPECT_FALSE(leaseSubnetFor("n", larger, cfg));

  // IPv4-only config: an extra IPv6 pod CIDR is ignored (SPEC.md §10.16).
  auto v4cfg = parse(R"({"Network":"10.5.0.0/16"})");
  auto v4key = leaseSubnetFor("n", both, v4cfg);
  ASSERT_TRUE(v4key);
  EXPECT_FALSE(v4key->ipv6);
}

}  // namespace
}  // namespace flannel::store::kube
