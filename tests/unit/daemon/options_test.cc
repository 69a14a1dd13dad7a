#include "daemon/options.h"

#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flannel::daemon {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using Env = std::map<std::string, std::string>;

Result<ParsedCommandLine> parse(std::vector<std::string> args, Env env = {}) {
  return parseCommandLine(std::move(args), envFromMap(std::move(env)));
}

Options parseOk(std::vector<std::string> args, Env env = {}) {
  auto r = parse(args, std::move(env));
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  return r ? r->options : Options{};
}

std::string parseError(std::vector<std::string> args, Env env = {}) {
  auto r = parse(args, std::move(env));
  EXPECT_FALSE(r.has_value()) << "expected an error";
  if (r) {
    return {};
  }
  EXPECT_EQ(r.error().code, Errc::InvalidInput);
  return r.error().message;
}

TEST(Options, DefaultsMatchFlannel) {
  const Options o = parseOk({});
  EXPECT_EQ(o.etcd_endpoints, "http://127.0.0.1:4001,http://127.0.0.1:2379");
  EXPECT_EQ(o.etcd_prefix, "/coreos.com/network");
  EXPECT_EQ(o.etcd_keyfile, "");
  EXPECT_EQ(o.etcd_certfile, "");
  EXPECT_EQ(o.etcd_cafile, "");
  EXPECT_EQ(o.etcd_username, "");
  EXPECT_EQ(o.etcd_password, "");
  EXPECT_TRUE(o.iface.empty());
  EXPECT_TRUE(o.iface_regex.empty());
  EXPECT_EQ(o.iface_can_reach, "");
  EXPECT_EQ(o.subnet_file, "/run/flannel/subnet.env");
  EXPECT_EQ(o.public_ip, "");
  EXPECT_EQ(o.public_ipv6, "");
  EXPECT_EQ(o.subnet_lease_renew_margin, 60);
  EXPECT_FALSE(o.ip_masq);
  EXPECT_FALSE(o.ip_masq_fully_random_disable);
  EXPECT_FALSE(o.ip_blackhole_route);
  EXPECT_FALSE(o.kube_subnet_mgr);
  EXPECT_EQ(o.kube_api_url, "");
  EXPECT_EQ(o.kube_annotation_prefix, "flannel.alpha.coreos.com");
  EXPECT_EQ(o.kubeconfig_file, "");
  EXPECT_FALSE(o.version);
  EXPECT_EQ(o.healthz_ip, "0.0.0.0");
  EXPECT_EQ(o.healthz_port, 0);
  EXPECT_EQ(o.iptables_resync, 5);
  EXPECT_TRUE(o.iptables_forward_rules);
  EXPECT_EQ(o.net_config_path, "/etc/kube-flannel/net-conf.json");
  EXPECT_TRUE(o.set_node_network_unavailable);
  EXPECT_EQ(o.v, 0);
  EXPECT_EQ(o.vmodule, "");
  EXPECT_EQ(o.log_backtrace_at, "");
  EXPECT_FALSE(o.help);
}

TEST(Options, DefaultStructEqualsParsedDefaults) {
  const Options parsed = parseOk({});
  const Options defaults;
  EXPECT_EQ(describeOptions(parsed), describeOptions(defaults));
}

TEST(Options, EveryFlagSetsItsMember) {
  const Options o = parseOk({"-etcd-endpoints=http://a:1",
                             "-etcd-prefix=/p",
                             "-etcd-keyfile=k",
                             "-etcd-certfile=c",
                             "-etcd-cafile=ca",
                             "-etcd-username=u",
                             "-etcd-password=pw",
                             "-iface=eth0",
                             "-iface-regex=^10\\.",
                             "-iface-can-reach=8.8.8.8",
                             "-subnet-file=/s.env",
                             "-public-ip=10.0.0.1",
                             "-public-ipv6=fd00::1",
                             "-subnet-lease-renew-margin=30",
                             "-ip-masq",
                             "-ip-masq-fully-random-disable",
                             "-ip-blackhole-route",
                             "-kube-subnet-mgr",
                             "-kube-api-url=https://k:6443",
                             "-kube-annotation-prefix=example.com",
                             "-kubeconfig-file=/kc",
                             "-healthz-ip=127.0.0.1",
                             "-healthz-port=8081",
                             "-iptables-resync=7",
                             "-iptables-forward-rules=false",
                             "-net-config-path=/n.json",
                             "-set-node-network-unavailable=false",
                             "-v=2",
                             "-vmodule=vxlan=4",
                             "-log_backtrace_at=a.go:1"});
  EXPECT_EQ(o.etcd_endpoints, "http://a:1");
  EXPECT_EQ(o.etcd_prefix, "/p");
  EXPECT_EQ(o.etcd_keyfile, "k");
  EXPECT_EQ(o.etcd_certfile, "c");
  EXPECT_EQ(o.etcd_cafile, "ca");
  EXPECT_EQ(o.etcd_username, "u");
  EXPECT_EQ(o.etcd_password, "pw");
  EXPECT_EQ(o.iface, std::vector<std::string>{"eth0"});
  EXPECT_EQ(o.iface_regex, std::vector<std::string>{"^10\\."});
  EXPECT_EQ(o.iface_can_reach, "8.8.8.8");
  EXPECT_EQ(o.subnet_file, "/s.env");
  EXPECT_EQ(o.public_ip, "10.0.0.1");
  EXPECT_EQ(o.public_ipv6, "fd00::1");
  EXPECT_EQ(o.subnet_lease_renew_margin, 30);
  EXPECT_TRUE(o.ip_masq);
  EXPECT_TRUE(o.ip_masq_fully_random_disable);
  EXPECT_TRUE(o.ip_blackhole_route);
  EXPECT_TRUE(o.kube_subnet_mgr);
  EXPECT_EQ(o.kube_api_url, "https://k:6443");
  EXPECT_EQ(o.kube_annotation_prefix, "example.com");
  EXPECT_EQ(o.kubeconfig_file, "/kc");
  EXPECT_EQ(o.healthz_ip, "127.0.0.1");
  EXPECT_EQ(o.healthz_port, 8081);
  EXPECT_EQ(o.iptables_resync, 7);
  EXPECT_FALSE(o.iptables_forward_rules);
  EXPECT_EQ(o.net_config_path, "/n.json");
  EXPECT_FALSE(o.set_node_network_unavailable);
  EXPECT_EQ(o.v, 2);
  EXPECT_EQ(o.vmodule, "vxlan=4");
  EXPECT_EQ(o.log_backtrace_at, "a.go:1");
}

TEST(Options, ValueFormsAreEquivalent) {
  const std::vector<std::vector<std::string>> forms = {
      {"-etcd-prefix=/x"}, {"--etcd-prefix=/x"}, {"-etcd-prefix", "/x"}, {"--etcd-prefix", "/x"}};
  for (const auto& args : forms) {
    SCOPED_TRACE(args.front());
    EXPECT_EQ(parseOk(args).etcd_prefix, "/x");
  }
}

TEST(Options, SeparateValueIsTakenEvenWhenItLooksLikeAFlag) {
  // Go takes the next argument as the value, whatever it looks like.
  EXPECT_EQ(parseOk({"-iface", "-ip-masq"}).iface, std::vector<std::string>{"-ip-masq"});
  EXPECT_EQ(parseOk({"-etcd-prefix", "--"}).etcd_prefix, "--");
}

TEST(Options, EmptyValueAfterEqualsIsAnEmptyString) {
  EXPECT_EQ(parseOk({"-etcd-prefix="}).etcd_prefix, "");
  EXPECT_EQ(parseOk({"-etcd-endpoints=a=b"}).etcd_endpoints, "a=b");
}

TEST(Options, BoolForms) {
  struct Case {
    std::string arg;
    bool want;
  };
  const std::vector<Case> cases = {
      {"-ip-masq", true},        {"--ip-masq", true},        {"-ip-masq=true", true},
      {"-ip-masq=false", false}, {"--ip-masq=false", false}, {"-ip-masq=1", true},
      {"-ip-masq=0", false},     {"-ip-masq=t", true},       {"-ip-masq=f", false},
      {"-ip-masq=T", true},      {"-ip-masq=F", false},      {"-ip-masq=TRUE", true},
      {"-ip-masq=FALSE", false}, {"-ip-masq=True", true},    {"-ip-masq=False", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.arg);
    EXPECT_EQ(parseOk({c.arg}).ip_masq, c.want);
  }
  EXPECT_FALSE(parseOk({"-iptables-forward-rules=false"}).iptables_forward_rules);
  EXPECT_TRUE(
      parseOk({"-iptables-forward-rules=false", "-iptables-forward-rules"}).iptables_forward_rules);
}

TEST(Options, BadBoolValuesAreErrors) {
  for (const std::string value : {"yes", "no", "on", "off", "tRuE", "", "2", "+", "enable"}) {
    SCOPED_TRACE(value);
    const std::string msg = parseError({"-ip-masq=" + value});
    EXPECT_THAT(msg, HasSubstr("invalid value \"" + value + "\" for flag -ip-masq"));
    EXPECT_THAT(msg, HasSubstr("not a boolean"));
  }
}

TEST(Options, BoolWithSeparateValueIsAStrayArgument) {
  // Go sets ip-masq=true and silently ignores "false"; we refuse and explain.
  const std::string msg = parseError({"-ip-masq", "false"});
  EXPECT_THAT(msg, HasSubstr("unexpected argument \"false\" after -ip-masq"));
  EXPECT_THAT(msg, HasSubstr("-ip-masq=false"));
}

TEST(Options, StrayPositionalArgumentIsAnError) {
  const std::string msg = parseError({"-ip-masq=true", "eth0"});
  EXPECT_THAT(msg, HasSubstr("unexpected argument \"eth0\""));
  EXPECT_THAT(msg, HasSubstr("no positional arguments"));
  EXPECT_THAT(parseError({"-"}), HasSubstr("unexpected argument \"-\""));
  // Go would stop at "x" and silently ignore the flag after it.
  EXPECT_THAT(parseError({"x", "-ip-masq"}), HasSubstr("unexpected argument \"x\""));
}

TEST(Options, IntegerBases) {
  struct Case {
    std::string text;
    int want;
  };
  const std::vector<Case> cases = {
      {"8081", 8081},    {"+8081", 8081},   {"0x1F91", 8081},   {"0X1f91", 8081},
      {"0o17621", 8081}, {"0O17621", 8081}, {"017621", 8081},   {"0b1111110010001", 8081},
      {"0B1", 1},        {"8_081", 8081},   {"0x_1f_91", 8081}, {"0_17621", 8081},
      {"0", 0},          {"00", 0},         {"65535", 65535},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(parseOk({"-healthz-port=" + c.text}).healthz_port, c.want);
    auto direct = parseGoInt(c.text, 0);
    ASSERT_TRUE(direct.has_value());
    EXPECT_EQ(*direct, c.want);
  }
  EXPECT_EQ(*parseGoInt("-0x10", 0), -16);
  EXPECT_EQ(*parseGoInt("2147483647", 0), 2147483647);
  EXPECT_EQ(*parseGoInt("-2147483648", 0), -2147483647 - 1);
}

TEST(Options, BadIntegersAreErrors) {
  for (const std::string text :
       {"abc",  "",      "1.5",  "0x",  "0b", "0o", "08", "0b2", "_1",  "1_",
        "1__0", "0x__1", "0_x1", "12a", " 1", "1 ", "-",  "+",   "--1", "0x1g"}) {
    SCOPED_TRACE(text);
    const std::string msg = parseError({"-healthz-port=" + text});
    EXPECT_THAT(msg, HasSubstr("invalid value \"" + text + "\" for flag -healthz-port"));
    EXPECT_THAT(msg, HasSubstr("not an integer"));
  }
  EXPECT_EQ(parseError({"-healthz-port=abc"}),
            "invalid value \"abc\" for flag -healthz-port: not an integer");
}

TEST(Options, IntegerOutOfRange) {
  for (const std::string text : {"2147483648", "-2147483649", "99999999999999999999999"}) {
    SCOPED_TRACE(text);
    EXPECT_THAT(parseError({"-iptables-resync=" + text}), HasSubstr("out of range"));
  }
}

TEST(Options, VerbosityIsDecimalOnlyLikeKlog) {
  EXPECT_EQ(parseOk({"-v=4"}).v, 4);
  EXPECT_EQ(parseOk({"-v", "10"}).v, 10);
  EXPECT_THAT(parseError({"-v=0x2"}), HasSubstr("invalid value \"0x2\" for flag -v"));
  EXPECT_THAT(parseError({"-v=1_0"}), HasSubstr("not an integer"));
  EXPECT_THAT(parseError({"-v=-1"}),
              HasSubstr("invalid value -1 for flag -v: must not be negative"));
  EXPECT_THAT(parseError({"-v"}), HasSubstr("flag needs an argument: -v"));
}

TEST(Options, RepeatedIfaceFlagsKeepOrder) {
  const Options o = parseOk({"-iface=eth1", "--iface", "10.0.0.2", "-iface-regex=^en",
                             "-iface=eth0", "--iface-regex=^wl"});
  EXPECT_EQ(o.iface, (std::vector<std::string>{"eth1", "10.0.0.2", "eth0"}));
  EXPECT_EQ(o.iface_regex, (std::vector<std::string>{"^en", "^wl"}));
}

TEST(Options, LastScalarWins) {
  const Options o = parseOk({"-healthz-port=1", "-healthz-port=2", "-etcd-prefix=/a",
                             "--etcd-prefix", "/b", "-ip-masq", "-ip-masq=false"});
  EXPECT_EQ(o.healthz_port, 2);
  EXPECT_EQ(o.etcd_prefix, "/b");
  EXPECT_FALSE(o.ip_masq);
}

TEST(Options, DoubleDashEndsFlags) {
  EXPECT_TRUE(parseOk({"-ip-masq", "--"}).ip_masq);
  const std::string msg = parseError({"-ip-masq", "--", "-healthz-port=1"});
  EXPECT_THAT(msg, HasSubstr("unexpected argument \"-healthz-port=1\" after \"--\""));
}

TEST(Options, BadFlagSyntax) {
  EXPECT_EQ(parseError({"---ip-masq"}), "bad flag syntax: ---ip-masq");
  EXPECT_EQ(parseError({"-=x"}), "bad flag syntax: -=x");
  EXPECT_EQ(parseError({"--=x"}), "bad flag syntax: --=x");
}

TEST(Options, UnknownFlagIsAnErrorNamingIt) {
  EXPECT_EQ(parseError({"--bogus"}), "flag provided but not defined: --bogus");
  EXPECT_EQ(parseError({"-bogus=1"}), "flag provided but not defined: -bogus");
  // klog flags that flannel does not accept either.
  EXPECT_THAT(parseError({"-logtostderr"}), HasSubstr("-logtostderr"));
  // Names are case-sensitive and '-' is not '_'.
  EXPECT_THAT(parseError({"-IP-MASQ"}), HasSubstr("-IP-MASQ"));
  EXPECT_THAT(parseError({"-ip_masq"}), HasSubstr("-ip_masq"));
}

TEST(Options, MissingValue) {
  EXPECT_EQ(parseError({"-etcd-prefix"}), "flag needs an argument: -etcd-prefix");
  EXPECT_EQ(parseError({"--healthz-port"}), "flag needs an argument: --healthz-port");
}

TEST(Options, EnvironmentFillsFlagsNotOnTheCommandLine) {
  auto r =
      parse({"-etcd-prefix=/cli", "-iface=eth9"}, {{"FLANNELD_ETCD_PREFIX", "/env"},
                                                   {"FLANNELD_IFACE", "eth0"},
                                                   {"FLANNELD_ETCD_ENDPOINTS", "http://e:2379"},
                                                   {"FLANNELD_IP_MASQ", "true"},
                                                   {"FLANNELD_HEALTHZ_PORT", "0x10"},
                                                   {"FLANNELD_V", "3"},
                                                   {"FLANNELD_LOG_BACKTRACE_AT", "x.go:3"},
                                                   {"FLANNELD_IP_MASQ_FULLY_RANDOM_DISABLE", "1"},
                                                   {"FLANNELD_KUBE_SUBNET_MGR", "True"}});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const Options& o = r->options;
  EXPECT_EQ(o.etcd_prefix, "/cli");
  EXPECT_EQ(o.iface, std::vector<std::string>{"eth9"});
  EXPECT_EQ(o.etcd_endpoints, "http://e:2379");
  EXPECT_TRUE(o.ip_masq);
  EXPECT_EQ(o.healthz_port, 16);
  EXPECT_EQ(o.v, 3);
  EXPECT_EQ(o.log_backtrace_at, "x.go:3");
  EXPECT_TRUE(o.ip_masq_fully_random_disable);
  EXPECT_TRUE(o.kube_subnet_mgr);
  EXPECT_EQ(r->sourceOf("etcd-prefix"), FlagSource::CommandLine);
  EXPECT_EQ(r->sourceOf("etcd-endpoints"), FlagSource::Environment);
  EXPECT_EQ(r->sourceOf("subnet-file"), FlagSource::Default);
}

TEST(Options, EnvironmentCanTurnOffABoolThatDefaultsToTrue) {
  EXPECT_FALSE(parseOk({}, {{"FLANNELD_IPTABLES_FORWARD_RULES", "false"}}).iptables_forward_rules);
  // ...but not when the command line set it.
  EXPECT_TRUE(parseOk({"-iptables-forward-rules"}, {{"FLANNELD_IPTABLES_FORWARD_RULES", "false"}})
                  .iptables_forward_rules);
}

TEST(Options, EmptyEnvironmentValuesAreIgnored) {
  const Options o = parseOk({}, {{"FLANNELD_ETCD_PREFIX", ""},
                                 {"FLANNELD_IFACE", ""},
                                 {"FLANNELD_HEALTHZ_PORT", ""},
                                 {"FLANNELD_IP_MASQ", ""}});
  EXPECT_EQ(o.etcd_prefix, "/coreos.com/network");
  EXPECT_TRUE(o.iface.empty());
  EXPECT_EQ(o.healthz_port, 0);
  EXPECT_FALSE(o.ip_masq);
}

TEST(Options, RepeatableFlagTakesOneUnsplitValueFromEnvironment) {
  const Options o =
      parseOk({}, {{"FLANNELD_IFACE", "eth0,eth1"}, {"FLANNELD_IFACE_REGEX", "^a, ^b"}});
  EXPECT_EQ(o.iface, std::vector<std::string>{"eth0,eth1"});
  EXPECT_EQ(o.iface_regex, std::vector<std::string>{"^a, ^b"});
}

TEST(Options, VersionAndHelpIgnoreEnvironment) {
  const Options o = parseOk({}, {{"FLANNELD_VERSION", "true"}, {"FLANNELD_HELP", "true"}});
  EXPECT_FALSE(o.version);
  EXPECT_FALSE(o.help);
}

TEST(Options, BadEnvironmentValueNamesTheVariable) {
  EXPECT_EQ(parseError({}, {{"FLANNELD_IP_MASQ", "yes"}}),
            "FLANNELD_IP_MASQ=\"yes\": not a boolean");
  EXPECT_EQ(parseError({}, {{"FLANNELD_HEALTHZ_PORT", "abc"}}),
            "FLANNELD_HEALTHZ_PORT=\"abc\": not an integer");
  // A bad variable for a flag given on the command line is never read.
  EXPECT_EQ(parseOk({"-ip-masq"}, {{"FLANNELD_IP_MASQ", "yes"}}).ip_masq, true);
}

TEST(Options, ValidationNamesTheVariableWhenTheValueCameFromIt) {
  EXPECT_EQ(parseError({}, {{"FLANNELD_SUBNET_LEASE_RENEW_MARGIN", "0"}}),
            "invalid value 0 for flag -subnet-lease-renew-margin (from "
            "FLANNELD_SUBNET_LEASE_RENEW_MARGIN): must be between 1 and 1439 minutes");
}

TEST(Options, RenewMarginBounds) {
  struct Case {
    std::string value;
    bool ok;
  };
  for (const Case& c : std::vector<Case>{{"0", false},
                                         {"1", true},
                                         {"60", true},
                                         {"1439", true},
                                         {"1440", false},
                                         {"-5", false}}) {
    SCOPED_TRACE(c.value);
    auto r = parse({"-subnet-lease-renew-margin=" + c.value});
    EXPECT_EQ(r.has_value(), c.ok);
    if (c.ok) {
      EXPECT_EQ(r->options.subnet_lease_renew_margin, std::stoi(c.value));
    } else {
      EXPECT_EQ(r.error().message, "invalid value " + c.value +
                                       " for flag -subnet-lease-renew-margin: must be between "
                                       "1 and 1439 minutes");
    }
  }
}

TEST(Options, HealthzPortBounds) {
  EXPECT_EQ(parseOk({"-healthz-port=65535"}).healthz_port, 65535);
  EXPECT_THAT(parseError({"-healthz-port=65536"}),
              HasSubstr("invalid value 65536 for flag -healthz-port"));
  EXPECT_THAT(parseError({"-healthz-port=-1"}),
              HasSubstr("invalid value -1 for flag -healthz-port"));
}

TEST(Options, IptablesResyncMustBePositive) {
  EXPECT_EQ(parseOk({"-iptables-resync=1"}).iptables_resync, 1);
  const std::string msg = parseError({"-iptables-resync=0"});
  EXPECT_THAT(msg, HasSubstr("invalid value 0 for flag -iptables-resync"));
  EXPECT_THAT(msg, HasSubstr("busy loop"));
}

TEST(Options, PublicIpFamilies) {
  EXPECT_EQ(parseOk({"-public-ip=192.0.2.1"}).public_ip, "192.0.2.1");
  EXPECT_EQ(parseOk({"-public-ipv6=2001:db8::1"}).public_ipv6, "2001:db8::1");
  for (const std::string bad : {"fd00::1", "192.0.2", "192.0.2.256", "host", " 192.0.2.1"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(
        parseError({"-public-ip=" + bad}),
        HasSubstr("invalid value \"" + bad + "\" for flag -public-ip: not an IPv4 address"));
  }
  for (const std::string bad : {"192.0.2.1", "fd00::1/64", "fd00:::1"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(parseError({"-public-ipv6=" + bad}),
                HasSubstr("invalid value \"" + bad +
                          "\" for flag -public-ipv6: not an IPv6 "
                          "address"));
  }
}

TEST(Options, VmoduleSyntax) {
  EXPECT_EQ(parseOk({"-vmodule=backend.*=2,kernel=4,"}).vmodule, "backend.*=2,kernel=4,");
  for (const std::string bad : {"vxlan", "=2", "vxlan=", "vxlan=x", "a=1=2", "vxlan=-1"}) {
    SCOPED_TRACE(bad);
    const std::string msg = parseError({"-vmodule=" + bad});
    EXPECT_THAT(msg, HasSubstr("invalid value \"" + bad + "\" for flag -vmodule"));
    EXPECT_THAT(msg, HasSubstr("pattern=N"));
  }
}

TEST(Options, BacktraceAtSyntax) {
  EXPECT_EQ(parseOk({"-log_backtrace_at=main.go:10"}).log_backtrace_at, "main.go:10");
  for (const std::string bad : {"main.go", "main.go:0", "main.go:x", ":3", "a:1:2"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(parseError({"-log_backtrace_at=" + bad}),
                HasSubstr("invalid value \"" + bad + "\" for flag -log_backtrace_at"));
  }
}

TEST(Options, HelpIsDetectedAndStopsParsing) {
  for (const std::string arg : {"-h", "--h", "-help", "--help", "-help=true"}) {
    SCOPED_TRACE(arg);
    auto r = parse({arg, "--bogus"}, {{"FLANNELD_HEALTHZ_PORT", "abc"}});
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_TRUE(r->options.help);
  }
  EXPECT_FALSE(parseOk({"-help=false"}).help);
  // An error before -help is still an error.
  EXPECT_THAT(parseError({"--bogus", "--help"}), HasSubstr("--bogus"));
}

TEST(Options, VersionSkipsEnvironmentAndValidation) {
  auto r = parse({"--version", "-subnet-lease-renew-margin=0"},
                 {{"FLANNELD_HEALTHZ_PORT", "abc"}, {"FLANNELD_ETCD_PREFIX", "/env"}});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(r->options.version);
  EXPECT_EQ(r->options.etcd_prefix, "/coreos.com/network");
  EXPECT_TRUE(parseOk({"-version"}).version);
  // Syntax errors on the command line still count.
  EXPECT_THAT(parseError({"--version", "--bogus"}), HasSubstr("--bogus"));
}

TEST(Options, SplitEndpointsLikeGo) {
  EXPECT_EQ(splitEndpoints("http://a:1,http://b:2"),
            (std::vector<std::string>{"http://a:1", "http://b:2"}));
  EXPECT_EQ(splitEndpoints("a, b"), (std::vector<std::string>{"a", " b"}));
  EXPECT_EQ(splitEndpoints("a,,b,"), (std::vector<std::string>{"a", "", "b", ""}));
  EXPECT_EQ(splitEndpoints(""), std::vector<std::string>{""});
  EXPECT_EQ(Options{}.etcdEndpointList(),
            (std::vector<std::string>{"http://127.0.0.1:4001", "http://127.0.0.1:2379"}));
}

TEST(Options, ParseGoBoolAcceptsExactlyGosSet) {
  for (const char* t : {"1", "t", "T", "true", "TRUE", "True"}) {
    EXPECT_EQ(parseGoBool(t), std::optional<bool>(true)) << t;
  }
  for (const char* f : {"0", "f", "F", "false", "FALSE", "False"}) {
    EXPECT_EQ(parseGoBool(f), std::optional<bool>(false)) << f;
  }
  for (const char* bad : {"", "yes", "tRUE", "fAlse", "01", " true"}) {
    EXPECT_EQ(parseGoBool(bad), std::nullopt) << bad;
  }
}

TEST(Options, DescribeOptionsMasksThePassword) {
  Options o;
  o.etcd_password = "s3cret-pa55";
  o.etcd_username = "alice";
  o.iface = {"eth0", "eth1"};
  const std::string line = describeOptions(o);
  EXPECT_THAT(line, Not(HasSubstr("s3cret-pa55")));
  EXPECT_THAT(line, HasSubstr("etcd-password=<masked>"));
  EXPECT_THAT(line, HasSubstr("etcd-username=\"alice\""));
  EXPECT_THAT(line, HasSubstr("iface=[\"eth0\",\"eth1\"]"));
  EXPECT_THAT(line, HasSubstr("subnet-lease-renew-margin=60"));
  EXPECT_THAT(line, HasSubstr("ip-masq=false"));
  // An unset password shows as empty, so "no password" is visible in the log.
  EXPECT_THAT(describeOptions(Options{}), HasSubstr("etcd-password=\"\""));
}

TEST(Options, DescribeOptionsQuotesAwkwardStrings) {
  Options o;
  o.etcd_prefix = "a\"b\\c\nd";
  EXPECT_THAT(describeOptions(o), HasSubstr("etcd-prefix=\"a\\\"b\\\\c\\x0ad\""));
}

TEST(Options, HelpListsEveryFlagAlphabeticallyWithDefaults) {
  const std::string help = helpText();
  EXPECT_EQ(help.rfind("Usage: flanneld [OPTION]...\n", 0), 0u);
  const std::vector<std::string> names = {"etcd-cafile",
                                          "etcd-certfile",
                                          "etcd-endpoints",
                                          "etcd-keyfile",
                                          "etcd-password",
                                          "etcd-prefix",
                                          "etcd-username",
                                          "healthz-ip",
                                          "healthz-port",
                                          "help",
                                          "iface",
                                          "iface-can-reach",
                                          "iface-regex",
                                          "ip-blackhole-route",
                                          "ip-masq",
                                          "ip-masq-fully-random-disable",
                                          "iptables-forward-rules",
                                          "iptables-resync",
                                          "kube-annotation-prefix",
                                          "kube-api-url",
                                          "kube-subnet-mgr",
                                          "kubeconfig-file",
                                          "log_backtrace_at",
                                          "net-config-path",
                                          "public-ip",
                                          "public-ipv6",
                                          "set-node-network-unavailable",
                                          "subnet-file",
                                          "subnet-lease-renew-margin",
                                          "v",
                                          "version",
                                          "vmodule"};
  size_t last = 0;
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const size_t at = help.find("\n  -" + name + "\n") != std::string::npos
                          ? help.find("\n  -" + name + "\n")
                          : help.find("\n  -" + name + " ");
    ASSERT_NE(at, std::string::npos);
    EXPECT_GT(at, last);
    last = at;
  }
  EXPECT_THAT(help, HasSubstr("  -etcd-endpoints string\n"));
  EXPECT_THAT(help, HasSubstr("(default \"http://127.0.0.1:4001,http://127.0.0.1:2379\")"));
  EXPECT_THAT(help, HasSubstr("  -subnet-lease-renew-margin int\n"));
  EXPECT_THAT(help, HasSubstr("(default 60)"));
  EXPECT_THAT(help, HasSubstr("  -iptables-forward-rules\n"));
  EXPECT_THAT(help, HasSubstr("(default true)"));
  EXPECT_THAT(help, HasSubstr("FLANNELD_"));
}

}  // namespace
}  // namespace flannel::daemon
