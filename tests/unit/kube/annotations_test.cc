// Annotation prefix rules, which annotations are published, and the PATCH bodies, against the
// literal examples of SPEC.md §4.3, §4.4 and §4.6.
#include "store/kube/annotations.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flannel::store::kube {
namespace {

using ::testing::HasSubstr;

const AnnotationKeys kKeys = AnnotationKeys::forPrefix("flannel.alpha.coreos.com/");
constexpr const char* kP = "flannel.alpha.coreos.com/";

std::string k(const char* name) {
  return std::string(kP) + name;
}

LeaseAttrs vxlanV4() {
  return LeaseAttrs{.public_ip = Ip4::parse("192.168.91.11").value(),
                    .public_ipv6 = std::nullopt,
                    .backend_type = "vxlan",
                    .backend_data = R"({"VNI":1,"VtepMAC":"32:dd:0a:da:f5:20"})",
                    .backend_v6_data = ""};
}

TEST(AnnotationPrefix, NormalisationTable) {
  struct Case {
    const char* in;
    const char* out;  // nullptr = error
  };
  const Case cases[] = {
      {"flannel.alpha.coreos.com", "flannel.alpha.coreos.com/"},
      {"flannel.alpha.coreos.com/", "flannel.alpha.coreos.com/"},
      {"example.com/net", "example.com/net-"},
      {"example.com/net-", "example.com/net-"},
      {"example.com/my_net-work", "example.com/my_net-work-"},
      {"a-b_c.d-e", "a-b_c.d-e/"},
      {"x.y/z", "x.y/z-"},
      {"a/b/c", nullptr},            // more than one '/'
      {"example", nullptr},          // not a domain (one label)
      {"Example.com", nullptr},      // upper case
      {"example..com", nullptr},     // empty label
      {".example.com", nullptr},     // empty first label
      {"example.com./x", nullptr},   // trailing dot
      {"exa mple.com", nullptr},     // space
      {"", nullptr},                 // "/" alone: no domain
      {"/net", nullptr},             // no domain
      {"example.com/Net", nullptr},  // upper-case name part
      {"example.com/n.t", nullptr},  // dot in the name part
      {"example.com/-", nullptr},    // name part must have a character before '-'
  };
  for (const auto& c : cases) {
    auto r = normaliseAnnotationPrefix(c.in);
    if (c.out == nullptr) {
      EXPECT_FALSE(r) << c.in << " -> " << (r ? *r : "");
      if (!r) {
        EXPECT_THAT(r.error().message, HasSubstr("--kube-annotation-prefix")) << c.in;
      }
    } else {
      ASSERT_TRUE(r) << c.in << ": " << r.error().message;
      EXPECT_EQ(*r, c.out) << c.in;
    }
  }
}

TEST(AnnotationPrefix, ErrorsSayWhichRuleFailed) {
  EXPECT_THAT(normaliseAnnotationPrefix("a/b/c").error().message, HasSubstr("more than one '/'"));
  EXPECT_THAT(normaliseAnnotationPrefix("Example.com").error().message,
              HasSubstr("\"Example.com/\" does not match"));
}

TEST(AnnotationKeys, NamesUnderThePrefix) {
  auto keys = AnnotationKeys::forPrefix("example.com/net-");
  EXPECT_EQ(keys.kube_subnet_manager, "example.com/net-kube-subnet-manager");
  EXPECT_EQ(keys.backend_type, "example.com/net-backend-type");
  EXPECT_EQ(keys.backend_data, "example.com/net-backend-data");
  EXPECT_EQ(keys.public_ip, "example.com/net-public-ip");
  EXPECT_EQ(keys.backend_v6_data, "example.com/net-backend-v6-data");
  EXPECT_EQ(keys.public_ipv6, "example.com/net-public-ipv6");
  EXPECT_EQ(keys.public_ip_overwrite, "example.com/net-public-ip-overwrite");
  EXPECT_EQ(keys.public_ipv6_overwrite, "example.com/net-public-ipv6-overwrite");
  EXPECT_EQ(keys.node_public_ip, "example.com/net-node-public-ip");
  EXPECT_EQ(keys.node_public_ipv6, "example.com/net-node-public-ipv6");
}

TEST(AnnotationPatch, FirstStartVxlanMatchesTheSpecExampleByteForByte) {
  auto desired = desiredAnnotations(kKeys, vxlanV4(), {});
  auto body = annotationPatchBody(changedAnnotations({}, desired));
  // SPEC.md §4.4 step 4, verified against Go flannel.
  EXPECT_EQ(
      body,
      R"({"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"32:dd:0a:da:f5:20\"}","flannel.alpha.coreos.com/backend-type":"vxlan","flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"192.168.91.11"}}})");
}

TEST(AnnotationPatch, OnlyChangedAnnotationsAreSent) {
  auto desired = desiredAnnotations(kKeys, vxlanV4(), {});
  Annotations current = desired;
  current["unrelated/annotation"] = "kept";
  EXPECT_TRUE(changedAnnotations(current, desired).empty());
  current[k("public-ip")] = "192.168.91.99";
  auto changed = changedAnnotations(current, desired);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(
      annotationPatchBody(changed),
      R"({"metadata":{"annotations":{"flannel.alpha.coreos.com/public-ip":"192.168.91.11"}}})");
}

TEST(DesiredAnnotations, HostGwPublishesNullDataAndUdpAnEmptyType) {
  auto hostgw = vxlanV4();
  hostgw.backend_type = "host-gw";
  hostgw.backend_data = "";
  auto a = desiredAnnotations(kKeys, hostgw, {});
  EXPECT_EQ(a.at(k("backend-data")), "null");
  EXPECT_EQ(a.at(k("backend-type")), "host-gw");
  EXPECT_EQ(a.count(k("backend-v6-data")), 0u);

  auto udp = vxlanV4();
  udp.backend_type = "";
  udp.backend_data = R"({"Port":8285})";
  auto u = desiredAnnotations(kKeys, udp, {});
  EXPECT_EQ(u.at(k("backend-type")), "");
  EXPECT_EQ(u.at(k("backend-data")), R"({"Port":8285})");
  EXPECT_THAT(annotationPatchBody(u), HasSubstr(R"("flannel.alpha.coreos.com/backend-type":"")"));
}

TEST(DesiredAnnotations, VxlanDualStackAddsTheV6Pair) {
  auto attrs = vxlanV4();
  attrs.public_ipv6 = Ip6::parse("fd00::11").value();
  attrs.backend_v6_data = R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"})";
  auto a = desiredAnnotations(kKeys, attrs, {});
  EXPECT_EQ(a.size(), 6u);
  EXPECT_EQ(a.at(k("public-ipv6")), "fd00::11");
  EXPECT_EQ(a.at(k("backend-v6-data")), R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"})");
}

TEST(DesiredAnnotations, VxlanIpv6OnlySkipsTheV4Pair) {
  LeaseAttrs attrs{.public_ip = Ip4(),
                   .public_ipv6 = Ip6::parse("fd00::11").value(),
                   .backend_type = "vxlan",
                   .backend_data = "",
                   .backend_v6_data = R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"})"};
  auto a = desiredAnnotations(kKeys, attrs, {});
  EXPECT_EQ(a.count(k("backend-data")), 0u);
  EXPECT_EQ(a.count(k("public-ip")), 0u);
  EXPECT_EQ(a.at(k("public-ipv6")), "fd00::11");
}

TEST(DesiredAnnotations, V6PairRulesPerBackend) {
  auto base = vxlanV4();
  base.public_ipv6 = Ip6::parse("fd00::11").value();
  // host-gw: whenever there is a public IPv6 (data "null").
  auto hostgw = base;
  hostgw.backend_type = "host-gw";
  hostgw.backend_data = "";
  EXPECT_EQ(desiredAnnotations(kKeys, hostgw, {}).at(k("backend-v6-data")), "null");
  // wireguard: needs v6 data and a public IPv6.
  auto wg = base;
  wg.backend_type = "wireguard";
  EXPECT_EQ(desiredAnnotations(kKeys, wg, {}).count(k("backend-v6-data")), 0u);
  wg.backend_v6_data = R"({"PublicKey":"x"})";
  EXPECT_EQ(desiredAnnotations(kKeys, wg, {}).count(k("backend-v6-data")), 1u);
  wg.public_ipv6.reset();
  EXPECT_EQ(desiredAnnotations(kKeys, wg, {}).count(k("backend-v6-data")), 0u);
  // ipip never publishes a v6 pair.
  auto ipip = base;
  ipip.backend_type = "ipip";
  ipip.backend_v6_data = R"({"x":1})";
  EXPECT_EQ(desiredAnnotations(kKeys, ipip, {}).count(k("public-ipv6")), 0u);
}

TEST(DesiredAnnotations, PublicIpOverwriteIsPublishedInstead) {
  Annotations current = {{k("public-ip-overwrite"), "203.0.113.7"},
                         {k("public-ipv6-overwrite"), "2001:db8::7"}};
  auto attrs = vxlanV4();
  attrs.public_ipv6 = Ip6::parse("fd00::11").value();
  attrs.backend_v6_data = R"({"VNI":1})";
  auto a = desiredAnnotations(kKeys, attrs, current);
  EXPECT_EQ(a.at(k("public-ip")), "203.0.113.7");
  EXPECT_EQ(a.at(k("public-ipv6")), "2001:db8::7");
  auto published = publishedAttrs(kKeys, attrs, a);
  EXPECT_EQ(published.public_ip.toString(), "203.0.113.7");
  EXPECT_EQ(published.public_ipv6->toString(), "2001:db8::7");
  // The overwrite annotations themselves are operator input: never written.
  EXPECT_EQ(a.count(k("public-ip-overwrite")), 0u);
}

TEST(DesiredAnnotations, UnusableOverwriteIsIgnoredWithAWarning) {
  Annotations current = {{k("public-ip-overwrite"), "not-an-ip"}, {k("public-ipv6-overwrite"), ""}};
  std::string warning;
  auto a = desiredAnnotations(kKeys, vxlanV4(), current, &warning);
  EXPECT_EQ(a.at(k("public-ip")), "192.168.91.11");
  EXPECT_THAT(warning, HasSubstr("public-ip-overwrite"));
  EXPECT_THAT(warning, HasSubstr("not an IPv4 address"));
}

TEST(NetworkUnavailablePatch, MatchesTheSpecBodyByteForByte) {
  // 2024-05-01T10:20:30Z
  auto t = std::chrono::system_clock::from_time_t(1714558830);
  EXPECT_EQ(rfc3339Utc(t), "2024-05-01T10:20:30Z");
  EXPECT_EQ(
      networkUnavailablePatchBody(t + std::chrono::milliseconds(999)),
      R"({"status":{"conditions":[{"type":"NetworkUnavailable","status":"False","lastHeartbeatTime":"2024-05-01T10:20:30Z","lastTransitionTime":"2024-05-01T10:20:30Z","reason":"FlannelIsUp","message":"Flannel is running on this node"}]}})");
}

TEST(GoJsonString, EscapesLikeEncodingJson) {
  EXPECT_EQ(goJsonString("plain"), R"("plain")");
  EXPECT_EQ(goJsonString(R"({"a":"b\c"})"), R"("{\"a\":\"b\\c\"}")");
  EXPECT_EQ(goJsonString("<>&"), R"("\u003c\u003e\u0026")");
  EXPECT_EQ(goJsonString("a\nb\tc\rd"), R"("a\nb\tc\rd")");
  EXPECT_EQ(goJsonString(std::string("\x01\x1f", 2)), R"("\u0001\u001f")");
  EXPECT_EQ(goJsonString("\xe2\x80\xa8\xe2\x80\xa9"), R"("\u2028\u2029")");
  EXPECT_EQ(goJsonString("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
}

}  // namespace
}  // namespace flannel::store::kube
