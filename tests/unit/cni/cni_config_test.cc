#include "cni/cni_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flannel::cni {
namespace {

using ::testing::HasSubstr;

IpNet net(const char* s) {
  return IpNet::parse(s).value();
}

Json json(std::string_view text) {
  return parseJson(text, "test").value();
}

FlannelEnv v4Env(bool ipmasq = true) {
  return FlannelEnv{.networks = {net("10.5.0.0/16")},
                    .subnet = net("10.5.1.0/24"),
                    .mtu = 1450,
                    .ipmasq = ipmasq};
}

FlannelEnv v6Env() {
  return FlannelEnv{.ipv6_networks = {net("fd55::/48")},
                    .ipv6_subnet = net("fd55:0:0:1::/64"),
                    .mtu = 1430,
                    .ipmasq = true};
}

FlannelEnv dualEnv() {
  return FlannelEnv{.networks = {net("10.5.0.0/16")},
                    .subnet = net("10.5.1.0/24"),
                    .ipv6_networks = {net("fd55::/48")},
                    .ipv6_subnet = net("fd55:0:0:1::/64"),
                    .mtu = 1450,
                    .ipmasq = false};
}

// The "flannel" entry of the stock kube-flannel conflist.
constexpr std::string_view kStock =
    R"({"cniVersion":"0.3.1","name":"cbr0","type":"flannel",
        "delegate":{"hairpinMode":true,"isDefaultGateway":true}})";

Json build(std::string_view conf_text, const FlannelEnv& env) {
  auto conf = parseNetConf(conf_text);
  EXPECT_TRUE(conf) << conf.error().msg;
  auto out = buildDelegateConfig(*conf, env);
  EXPECT_TRUE(out) << out.error().msg;
  return out ? *out : Json();
}

CniError buildError(std::string_view conf_text, const FlannelEnv& env = v4Env()) {
  auto conf = parseNetConf(conf_text);
  EXPECT_TRUE(conf) << conf.error().msg;
  auto out = buildDelegateConfig(*conf, env);
  EXPECT_FALSE(out) << out->dump();
  return out ? CniError{} : out.error();
}

TEST(CniNetConf, DefaultsForSubnetFileAndDataDir) {
  auto conf = parseNetConf(kStock);
  ASSERT_TRUE(conf) << conf.error().msg;
  EXPECT_EQ(conf->cni_version, "0.3.1");
  EXPECT_EQ(conf->name, "cbr0");
  EXPECT_EQ(conf->type, "flannel");
  EXPECT_EQ(conf->subnet_file, "/run/flannel/subnet.env");
  EXPECT_EQ(conf->data_dir, "/var/lib/cni/flannel");
  ASSERT_TRUE(conf->delegate);
  EXPECT_FALSE(conf->ipam);
  EXPECT_FALSE(conf->runtime_config);
  EXPECT_FALSE(conf->prev_result);

  auto empty = parseNetConf(R"({"name":"n","subnetFile":"","dataDir":""})");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->subnet_file, "/run/flannel/subnet.env");
  EXPECT_EQ(empty->data_dir, "/var/lib/cni/flannel");
}

TEST(CniNetConf, TopLevelKeysMatchCaseInsensitivelyAsInGo) {
  auto conf = parseNetConf(
      R"({"Name":"n","SUBNETFILE":"/x/subnet.env","datadir":"/x/data","RuntimeConfig":{"a":1}})");
  ASSERT_TRUE(conf) << conf.error().msg;
  EXPECT_EQ(conf->name, "n");
  EXPECT_EQ(conf->subnet_file, "/x/subnet.env");
  EXPECT_EQ(conf->data_dir, "/x/data");
  ASSERT_TRUE(conf->runtime_config);
}

TEST(CniNetConf, NotJsonOrNotAnObjectIsCode6) {
  for (const char* text : {"", "garbage", "{\"name\":", "[1,2]", "\"cbr0\"", "null"}) {
    auto conf = parseNetConf(text);
    ASSERT_FALSE(conf) << text;
    EXPECT_EQ(conf.error().code, CniCode::DecodeFailure) << text;
  }
  EXPECT_THAT(parseNetConf("[1]").error().msg,
              HasSubstr("network config must be a JSON object, not an array"));
}

TEST(CniNetConf, WrongTypesAreCode7NamingTheField) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {R"({"cniVersion":1})", "network config: \"cniVersion\" must be a string, not an integer 1"},
      {R"({"subnetFile":["a"]})", "\"subnetFile\" must be a string, not an array"},
      {R"({"dataDir":true})", "\"dataDir\" must be a string, not a boolean"},
      {R"({"delegate":"bridge"})", "\"delegate\" must be an object, not a string"},
      {R"({"ipam":[]})", "\"ipam\" must be an object, not an array"},
      {R"({"runtimeConfig":5})", "\"runtimeConfig\" must be an object, not an integer"},
  };
  for (const auto& c : cases) {
    auto conf = parseNetConf(c.text);
    ASSERT_FALSE(conf) << c.text;
    EXPECT_EQ(conf.error().code, CniCode::InvalidConfig) << c.text;
    EXPECT_THAT(conf.error().msg, HasSubstr(c.message)) << c.text;
  }
}

TEST(CniVersion, EverySupportedVersionPassesOthersAreCode1) {
  for (auto v : kSupportedVersions) {
    EXPECT_TRUE(checkVersion(v)) << v;
  }
  EXPECT_TRUE(checkVersion(""));  // read as 0.1.0
  for (const char* v : {"0.3.2", "1.1.0", "2.0.0", "1.0", "x"}) {
    auto ok = checkVersion(v);
    ASSERT_FALSE(ok) << v;
    EXPECT_EQ(ok.error().code, CniCode::IncompatibleVersion);
    EXPECT_EQ(ok.error().msg, "incompatible CNI versions");
    EXPECT_THAT(ok.error().details,
                HasSubstr("plugin supports 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0"));
  }
}

TEST(CniVersion, CheckNeedsAtLeast040) {
  EXPECT_TRUE(checkVersionAllowsCheck("0.4.0"));
  EXPECT_TRUE(checkVersionAllowsCheck("1.0.0"));
  for (const char* v : {"", "0.1.0", "0.2.0", "0.3.0", "0.3.1"}) {
    auto ok = checkVersionAllowsCheck(v);
    ASSERT_FALSE(ok) << v;
    EXPECT_EQ(ok.error().code, CniCode::IncompatibleVersion) << v;
    EXPECT_THAT(ok.error().msg, HasSubstr("does not allow CHECK"));
  }
  EXPECT_EQ(checkVersionAllowsCheck("9.9.9").error().msg, "incompatible CNI versions");
}

TEST(CniVersion, ErrorsCarryTheConfigsVersionWhenKnown) {
  EXPECT_EQ(errorVersionFor(R"({"cniVersion":"0.3.1"})"), "0.3.1");
  EXPECT_EQ(errorVersionFor(R"({"CNIVERSION":"0.4.0"})"), "0.4.0");
  EXPECT_EQ(errorVersionFor(R"({"cniVersion":"9.9.9"})"), "1.0.0");
  EXPECT_EQ(errorVersionFor(R"({"cniVersion":""})"), "1.0.0");
  EXPECT_EQ(errorVersionFor("garbage"), "1.0.0");
  EXPECT_EQ(errorVersionFor(""), "1.0.0");
}

TEST(CniDelegateConfig, StockConflistOnAnIPv4Node) {
  EXPECT_EQ(build(kStock, v4Env(true)), json(R"({
    "cniVersion":"0.3.1","name":"cbr0","type":"bridge",
    "hairpinMode":true,"isDefaultGateway":true,
    "ipMasq":false,"mtu":1450,"isGateway":true,
    "ipam":{"type":"host-local","ranges":[[{"subnet":"10.5.1.0/24"}]],
            "routes":[{"dst":"10.5.0.0/16"}]}})"));
}

TEST(CniDelegateConfig, IpMasqIsTheOppositeOfFlanneldsMasquerading) {
  EXPECT_EQ(build(kStock, v4Env(true))["ipMasq"], false);
  EXPECT_EQ(build(kStock, v4Env(false))["ipMasq"], true);
}

TEST(CniDelegateConfig, IPv6OnlyNode) {
  const Json out = build(kStock, v6Env());
  EXPECT_EQ(out["mtu"], 1430);
  EXPECT_EQ(out["ipMasq"], false);
  EXPECT_EQ(out["ipam"], json(R"({"type":"host-local","ranges":[[{"subnet":"fd55:0:0:1::/64"}]],
                                  "routes":[{"dst":"fd55::/48"}]})"));
}

TEST(CniDelegateConfig, DualStackNodeGetsOneRangeSetAndOneRoutePerFamily) {
  const Json out = build(kStock, dualEnv());
  EXPECT_EQ(out["ipMasq"], true);
  EXPECT_EQ(out["ipam"], json(R"({"type":"host-local",
      "ranges":[[{"subnet":"10.5.1.0/24"}],[{"subnet":"fd55:0:0:1::/64"}]],
      "routes":[{"dst":"10.5.0.0/16"},{"dst":"fd55::/48"}]})"));
}

TEST(CniDelegateConfig, OneRoutePerFlannelNetwork) {
  FlannelEnv env = v4Env();
  env.networks = {net("10.5.0.0/16"), net("10.6.0.0/16")};
  EXPECT_EQ(build(kStock, env)["ipam"]["routes"],
            json(R"([{"dst":"10.5.0.0/16"},{"dst":"10.6.0.0/16"}])"));
}

TEST(CniDelegateConfig, CustomDelegateKeysAreKeptAndWinOverDefaults) {
  const Json out = build(R"({"cniVersion":"0.4.0","name":"n","type":"flannel","delegate":{
      "bridge":"br-pods","ipMasq":true,"mtu":9000,"isGateway":false,"forceAddress":true,
      "vlan":0,"extra":{"nested":[1,2]}}})",
                         v4Env(true));
  EXPECT_EQ(out["bridge"], "br-pods");
  EXPECT_EQ(out["ipMasq"], true);
  EXPECT_EQ(out["mtu"], 9000);
  EXPECT_EQ(out["isGateway"], false);
  EXPECT_EQ(out["forceAddress"], true);
  EXPECT_EQ(out["vlan"], 0);
  EXPECT_EQ(out["extra"], json(R"({"nested":[1,2]})"));
  EXPECT_EQ(out["type"], "bridge");
}

TEST(CniDelegateConfig, OtherDelegateTypesGetNoIsGateway) {
  const Json out = build(R"({"name":"n","delegate":{"type":"ptp"}})", v4Env());
  EXPECT_EQ(out["type"], "ptp");
  EXPECT_FALSE(out.contains("isGateway"));
  EXPECT_EQ(out["mtu"], 1450);
}

TEST(CniDelegateConfig, InputIpamIsKeptWithRangesReplacedAndRoutesAppended) {
  const Json out = build(R"({"cniVersion":"1.0.0","name":"cbr0","ipam":{
      "type":"host-local","dataDir":"/tmp/hl","resolvConf":"/etc/resolv.conf",
      "ranges":[[{"subnet":"192.168.0.0/24"}]],
      "routes":[{"dst":"192.168.100.0/24","gw":"10.5.1.254"}]}})",
                         v4Env());
  EXPECT_EQ(out["ipam"], json(R"({"type":"host-local","dataDir":"/tmp/hl",
      "resolvConf":"/etc/resolv.conf","ranges":[[{"subnet":"10.5.1.0/24"}]],
      "routes":[{"dst":"192.168.100.0/24","gw":"10.5.1.254"},{"dst":"10.5.0.0/16"}]})"));
}

TEST(CniDelegateConfig, OtherIpamTypesAreKept) {
  EXPECT_EQ(build(R"({"name":"n","ipam":{"type":"static"}})", v4Env())["ipam"]["type"], "static");
}

TEST(CniDelegateConfig, RouteToAFlannelNetworkGivenInIpamIsNotAddedTwice) {
  const Json out =
      build(R"({"name":"n","ipam":{"routes":[{"dst":"10.5.0.0/16","gw":"10.5.1.254"}]}})", v4Env());
  EXPECT_EQ(out["ipam"]["routes"], json(R"([{"dst":"10.5.0.0/16","gw":"10.5.1.254"}])"));
}

TEST(CniDelegateConfig, RuntimeConfigIsCopied) {
  const Json out = build(R"({"name":"n","runtimeConfig":{"portMappings":[
      {"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}})",
                         v4Env());
  EXPECT_EQ(out["runtimeConfig"],
            json(R"({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})"));
  // The top-level runtimeConfig replaces one written into the delegate.
  const Json replaced = build(
      R"({"name":"n","delegate":{"runtimeConfig":{"old":1}},"runtimeConfig":{"new":2}})", v4Env());
  EXPECT_EQ(replaced["runtimeConfig"], json(R"({"new":2})"));
  // Without a top-level one, the delegate's stays.
  EXPECT_EQ(
      build(R"({"name":"n","delegate":{"runtimeConfig":{"old":1}}})", v4Env())["runtimeConfig"],
      json(R"({"old":1})"));
}

TEST(CniDelegateConfig, CniVersionPropagation) {
  EXPECT_EQ(build(R"({"cniVersion":"1.0.0","name":"n","delegate":{"cniVersion":"0.3.1"}})",
                  v4Env())["cniVersion"],
            "1.0.0");
  EXPECT_EQ(build(R"({"name":"n","delegate":{"cniVersion":"0.3.1"}})", v4Env())["cniVersion"],
            "0.3.1");
  EXPECT_FALSE(build(R"({"name":"n"})", v4Env()).contains("cniVersion"));
}

TEST(CniDelegateConfig, ForbiddenAndMistypedDelegateKeysAreCode7) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {R"({"name":"n","delegate":{"type":5}})",
       "\"delegate.type\" must be a string, not an integer 5"},
      {R"({"name":"n","delegate":{"type":null}})", "\"delegate.type\" must be a string, not null"},
      {R"({"name":"n","delegate":{"name":"other"}})", "\"delegate\" must not have a \"name\" key"},
      {R"({"name":"n","delegate":{"ipam":{}}})", "\"delegate\" must not have an \"ipam\" key"},
      {R"({"name":"n","delegate":{"type":"../../bin/sh"}})",
       "\"delegate.type\" \"../../bin/sh\" is not a plugin name"},
      {R"({"name":"n","delegate":{"type":""}})", "\"delegate.type\" \"\" is not a plugin name"},
      {R"({"delegate":{}})", "network config has no \"name\""},
      {R"({"name":"n","ipam":{"type":1}})", "\"ipam.type\" must be a string, not an integer"},
      {R"({"name":"n","ipam":{"routes":{}}})", "\"ipam.routes\" must be an array, not an object"},
      {R"({"name":"n","ipam":{"routes":["10.0.0.0/8"]}})",
       "every entry of \"ipam.routes\" must be an object, not a string"},
  };
  for (const auto& c : cases) {
    CniError e = buildError(c.text);
    EXPECT_EQ(e.code, CniCode::InvalidConfig) << c.text;
    EXPECT_THAT(e.msg, HasSubstr(c.message)) << c.text;
  }
}

TEST(CniDelegateType, ReadsTheTypeOfASavedConfig) {
  EXPECT_EQ(delegateType(json(R"({"type":"bridge"})")).value(), "bridge");
  EXPECT_EQ(delegateType(json(R"({})")).error().msg, "delegate config has no \"type\"");
  EXPECT_EQ(delegateType(json(R"([])")).error().code, CniCode::InvalidConfig);
}

TEST(CniPrevResultForCheck, RoutesWithoutGatewayGetTheGatewayOfTheirFamily) {
  const Json prev = json(R"({"cniVersion":"1.0.0",
      "ips":[{"address":"10.5.1.2/24","gateway":"10.5.1.1","interface":2},
             {"address":"fd55:0:0:1::2/64","gateway":"fd55:0:0:1::1","interface":2}],
      "routes":[{"dst":"10.5.0.0/16"},{"dst":"fd55::/48"},
                {"dst":"0.0.0.0/0","gw":"10.5.1.254"},{"dst":"bogus"},"junk"]})");
  const Json out = prevResultForCheck(prev);
  EXPECT_EQ(out["routes"], json(R"([{"dst":"10.5.0.0/16","gw":"10.5.1.1"},
      {"dst":"fd55::/48","gw":"fd55:0:0:1::1"},{"dst":"0.0.0.0/0","gw":"10.5.1.254"},
      {"dst":"bogus"},"junk"])"));
  EXPECT_EQ(out["ips"], prev["ips"]);
}

TEST(CniPrevResultForCheck, LeavesResultsWithoutGatewaysOrRoutesAlone) {
  const Json no_gw =
      json(R"({"ips":[{"address":"10.5.1.2/24"}],"routes":[{"dst":"10.5.0.0/16"}]})");
  EXPECT_EQ(prevResultForCheck(no_gw), no_gw);
  const Json v6_gw_only = json(
      R"({"ips":[{"address":"fd55::2/64","gateway":"fd55::1"}],"routes":[{"dst":"10.5.0.0/16"}]})");
  EXPECT_EQ(prevResultForCheck(v6_gw_only), v6_gw_only);
  for (const char* other : {R"("x")", "[]", R"({"ips":5})", "null"}) {
    EXPECT_EQ(prevResultForCheck(json(other)), json(other));
  }
}

TEST(CniOutput, VersionInfoIsExact) {
  EXPECT_EQ(
      renderVersionInfo(),
      R"({"cniVersion":"1.0.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0"]})"
      "\n");
}

TEST(CniOutput, ErrorJsonIsExact) {
  EXPECT_EQ(renderCniError(cniError(CniCode::TryAgainLater, "later"), "0.3.1"),
            R"({"cniVersion":"0.3.1","code":11,"msg":"later"})"
            "\n");
  EXPECT_EQ(renderCniError(cniError(CniCode::InvalidConfig, "bad \"x\"", "why"), "1.0.0"),
            R"({"cniVersion":"1.0.0","code":7,"msg":"bad \"x\"","details":"why"})"
            "\n");
}

}  // namespace
}  // namespace flannel::cni
