// DOC: flanneld's command line and FLANNELD_* environment (SPEC.md §1.1-§1.3).
//
// `Options` holds every flag of flannel v0.20.2 plus the two newest ones, with flannel's
// defaults, so manifests and unit files keep working. `parseCommandLine()` is a pure, total
// parser: the arguments and an environment lookup go in, a `Result` comes out; it never
// throws, never prints and never exits.
//
// Syntax follows Go's `flag` package (SPEC.md §1.2); where flannel is wrong we are right
// (SPEC.md §10 item 6): an unknown flag, a bad value (on the command line or in a FLANNELD_*
// variable) or a stray positional argument is an error (the caller exits 1), not a silent exit 0.
//
//   args ──tokenise (Go rules)──► flags set on the command line
//        ── help? ───────────────► return (nothing else is looked at)
//        ── version? ────────────► return (environment and validation skipped, SPEC.md §1.4)
//        ── FLANNELD_* for every flag not on the command line (command line wins)
//        ── validate ranges and syntax of the combined result ──► Options
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace flannel::daemon {

// Every flag of SPEC.md §1.1, one member per flag, named like the flag with '-' -> '_'.
// Defaults are flannel's.
struct Options {
  std::string etcd_endpoints = "http://127.0.0.1:4001,http://127.0.0.1:2379";
  std::string etcd_prefix = "/coreos.com/network";
  std::string etcd_keyfile{};
  std::string etcd_certfile{};
  std::string etcd_cafile{};
  std::string etcd_username{};
  std::string etcd_password{};             // never logged; see describeOptions()
  std::vector<std::string> iface{};        // repeatable, tried in order
  std::vector<std::string> iface_regex{};  // repeatable, tried after every iface
  std::string iface_can_reach{};
  std::string subnet_file = "/run/flannel/subnet.env";
  std::string public_ip{};             // empty, or an IPv4 literal
  std::string public_ipv6{};           // empty, or an IPv6 literal
  int subnet_lease_renew_margin = 60;  // minutes, 1..1439
  bool ip_masq = false;
  bool ip_masq_fully_random_disable = false;  // newest flannel
  bool ip_blackhole_route = false;            // newest flannel
  bool kube_subnet_mgr = false;
  std::string kube_api_url{};
  std::string kube_annotation_prefix = "flannel.alpha.coreos.com";
  std::string kubeconfig_file{};
  bool version = false;
  std::string healthz_ip = "0.0.0.0";
  int healthz_port = 0;     // 0..65535; only > 0 enables the health server
  int iptables_resync = 5;  // seconds, >= 1
  bool iptables_forward_rules = true;
  std::string net_config_path = "/etc/kube-flannel/net-conf.json";
  bool set_node_network_unavailable = true;
  int v = 0;                       // klog verbosity, >= 0
  std::string vmodule{};           // klog "pattern=N[,pattern=N...]", see daemon/logging.h
  std::string log_backtrace_at{};  // klog "file:line"; accepted, unsupported
  bool help = false;               // -h, -help, --help

  // etcd_endpoints split on ',' with no trimming, like Go's strings.Split: "" gives one empty
  // element and "a,,b" gives {"a", "", "b"} (SPEC.md §1.1).
  std::vector<std::string> etcdEndpointList() const;
};

// Go's strings.Split(s, ","): never empty, no trimming.
std::vector<std::string> splitEndpoints(std::string_view endpoints);

// Looks up one environment variable; nullopt when unset. Injected so the parser stays pure.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// An EnvLookup over a fixed map (tests, and anything that already has the environment).
EnvLookup envFromMap(std::map<std::string, std::string> vars);
// An EnvLookup over the real process environment (getenv). Only main() should use this.
EnvLookup processEnvironment();

enum class FlagSource { Default, CommandLine, Environment };

struct ParsedCommandLine {
  Options options;
  // Flags whose value did not come from the default, by flag name (e.g. "healthz-port").
  std::map<std::string, FlagSource, std::less<>> sources;

  FlagSource sourceOf(std::string_view flag) const;
};

// Parses flanneld's arguments (without argv[0]) and environment.
//
// - Syntax: Go `flag` rules (SPEC.md §1.2): `-name` == `--name`; `-name=value` or `-name value`
//   for non-bools; bools as `-name` or `-name=<1|0|t|f|T|F|true|false|TRUE|FALSE|True|False>`;
//   ints in Go syntax (0x, 0o, 0 and 0b prefixes, '_' digit separators); `-v` is decimal only
//   (klog); `--` ends the flags; `---name` is an error. Scalars: last one wins; iface and
//   iface-regex append.
// - `-h`/`-help` stops parsing at once and returns with options.help set.
// - With options.version set, the environment and validation are skipped.
// - Otherwise every flag not given on the command line takes FLANNELD_<NAME> (upper case,
//   '-' -> '_') when set and non-empty; iface/iface-regex take exactly one unsplit value from
//   it; FLANNELD_VERSION and FLANNELD_HELP have no effect.
// - Errors (Errc::InvalidInput), each naming the flag or variable and the bad value: unknown
//   flag, missing value, bad bool/int, stray positional argument (also after `--`), bad
//   FLANNELD_* value, subnet-lease-renew-margin outside 1..1439, healthz-port outside 0..65535,
//   iptables-resync < 1, public-ip not IPv4, public-ipv6 not IPv6, v < 0, bad vmodule or
//   log_backtrace_at syntax.
Result<ParsedCommandLine> parseCommandLine(std::vector<std::string> args, const EnvLookup& env);

// Go's strconv.ParseBool.
std::optional<bool> parseGoBool(std::string_view text);

// Go's strconv.ParseInt(text, base, 32) for base 0 (prefix detection, '_' separators where Go
// integer literals allow them) or base 10 (plain decimal); the result must fit in an int.
// The error message is the reason only ("not an integer", "out of range").
Result<int> parseGoInt(std::string_view text, int base);

// `Usage: flanneld [OPTION]...` and every flag, alphabetically, with its default and a
// one-line description; ends with a note on FLANNELD_* variables.
std::string helpText();

// One line for the startup log, like flannel's "CLI flags config" line: every flag as
// name=value in flag-name order. etcd-password is masked (flannel echoes it; we do not).
std::string describeOptions(const Options& options);

// The text that replaces a non-empty etcd-password in describeOptions().
inline constexpr std::string_view kMaskedPassword = "<masked>";

}  // namespace flannel::daemon
