#include "daemon/options.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <type_traits>
#include <utility>
#include <variant>

#include <fmt/format.h>

#include "daemon/logging.h"

// Why there is no CLI11 here although DESIGN.md names it ("CLI11, normalise Go-style -flag
// first"): once a normaliser implements the Go `flag` rules that CLI11 cannot express, nothing is
// left for CLI11 to do but store strings. The rules it cannot express:
//  - single-dash long names (`-ip-masq`): CLI11 reads them as bundles of short flags;
//  - `-name value` where the value starts with '-' (Go takes the next argument whatever it is;
//    CLI11 sees a new option);
//  - Go's bool literals (CLI11 also takes yes/no/on/off/enable/+/-, which Go and we reject);
//  - Go integer syntax (0o, 0b, '_' separators; CLI11 uses strtoll);
//  - parsing stops at the first non-flag argument (CLI11 collects positionals and goes on);
//  - the environment comes from an injected lookup, with "one unsplit value for repeatable
//    flags", "empty is unset" and "FLANNELD_VERSION is ignored" (CLI11's envname() calls getenv);
//  - error texts that name the flag and the bad value, and a parser that never throws (CLI11
//    reports by exception);
//  - Go's help layout (`Usage: flanneld [OPTION]...`, alphabetical two-line entries).
// So the flag table below is the single source for parsing, environment, help and the startup
// log line, in the spirit of wg.c's subcommands[] table.

namespace flannel::daemon {

namespace {

using Member = std::variant<std::string Options::*, std::vector<std::string> Options::*,
                            bool Options::*, int Options::*>;

struct FlagSpec {
  std::string_view name;
  Member member;
  std::string_view usage;
  int int_base = 0;  // 0: Go's flag.Int (base prefixes); 10: klog's Level (decimal only)
  bool from_env = true;
};

// Alphabetical, as Go prints them (byte order: '-' sorts before '_' and letters).
constexpr std::array kFlags = {
    FlagSpec{"etcd-cafile", &Options::etcd_cafile,
             "CA bundle to verify etcd's certificate (used only with -etcd-certfile and "
             "-etcd-keyfile)"},
    FlagSpec{"etcd-certfile", &Options::etcd_certfile, "client TLS certificate for etcd"},
    FlagSpec{"etcd-endpoints", &Options::etcd_endpoints, "comma-separated list of etcd endpoints"},
    FlagSpec{"etcd-keyfile", &Options::etcd_keyfile, "client TLS private key for etcd"},
    FlagSpec{"etcd-password", &Options::etcd_password, "password for etcd authentication"},
    FlagSpec{"etcd-prefix", &Options::etcd_prefix,
             "etcd key prefix of the network config and the subnet leases"},
    FlagSpec{"etcd-username", &Options::etcd_username, "user name for etcd authentication"},
    FlagSpec{"healthz-ip", &Options::healthz_ip, "address the health server listens on"},
    FlagSpec{"healthz-port", &Options::healthz_port,
             "port of the health server (/healthz, /readyz); 0 disables it"},
    FlagSpec{.name = "help",
             .member = &Options::help,
             .usage = "print this help and exit (also -h)",
             .from_env = false},
    FlagSpec{"iface", &Options::iface,
             "interface (name or IP) for traffic between hosts; repeat to try several in order"},
    FlagSpec{"iface-can-reach", &Options::iface_can_reach,
             "use the interface and source address the kernel would use to reach this IP"},
    FlagSpec{"iface-regex", &Options::iface_regex,
             "regex matched against interface IPs, then names; repeatable; tried after -iface"},
    FlagSpec{"ip-blackhole-route", &Options::ip_blackhole_route,
             "keep a blackhole route for this node's own pod subnet"},
    FlagSpec{"ip-masq", &Options::ip_masq, "masquerade traffic leaving the overlay network"},
    FlagSpec{"ip-masq-fully-random-disable", &Options::ip_masq_fully_random_disable,
             "do not use fully random port mapping in the masquerade rules"},
    FlagSpec{"iptables-forward-rules", &Options::iptables_forward_rules,
             "add FORWARD accept rules for the overlay network"},
    FlagSpec{"iptables-resync", &Options::iptables_resync,
             "seconds between checks that the traffic rules are still in place (at least 1)"},
    FlagSpec{"kube-annotation-prefix", &Options::kube_annotation_prefix,
             "prefix of the node annotations flanneld reads and writes"},
    FlagSpec{"kube-api-url", &Options::kube_api_url, "Kubernetes API server URL (kube mode)"},
    FlagSpec{"kube-subnet-mgr", &Options::kube_subnet_mgr,
             "take the subnet from the Kubernetes node object instead of etcd"},
    FlagSpec{"kubeconfig-file", &Options::kubeconfig_file, "kubeconfig file (kube mode)"},
    FlagSpec{"log_backtrace_at", &Options::log_backtrace_at,
             "klog's file:line backtrace trigger; accepted but not supported"},
    FlagSpec{"net-config-path", &Options::net_config_path,
             "network configuration file (kube mode)"},
    FlagSpec{"public-ip", &Options::public_ip,
             "IPv4 address other nodes use to reach this node; empty means the interface's"},
    FlagSpec{"public-ipv6", &Options::public_ipv6,
             "IPv6 address other nodes use to reach this node; empty means the interface's"},
    FlagSpec{"set-node-network-unavailable", &Options::set_node_network_unavailable,
             "kube mode: set the node's NetworkUnavailable condition to False once running"},
    FlagSpec{"subnet-file", &Options::subnet_file,
             "file the subnet environment (FLANNEL_NETWORK, FLANNEL_SUBNET, ...) is written to"},
    FlagSpec{"subnet-lease-renew-margin", &Options::subnet_lease_renew_margin,
             "renew the subnet lease this many minutes before it expires (1..1439)"},
    FlagSpec{.name = "v",
             .member = &Options::v,
             .usage = "log verbosity: 0 info, 1-3 debug, 4 and above trace",
             .int_base = 10},
    FlagSpec{.name = "version",
             .member = &Options::version,
             .usage = "print the version and exit",
             .from_env = false},
    FlagSpec{"vmodule", &Options::vmodule,
             "per-module verbosity pattern=N[,pattern=N...]; a pattern is a glob on logger "
             "names such as backend.vxlan or store.*"},
};

bool isBool(const FlagSpec& flag) {
  return std::holds_alternative<bool Options::*>(flag.member);
}

const FlagSpec* findFlag(std::string_view name) {
  if (name == "h") {
    name = "help";
  }
  for (const auto& flag : kFlags) {
    if (flag.name == name) {
      return &flag;
    }
  }
  return nullptr;
}

std::string envVarName(std::string_view flag) {
  std::string name = "FLANNELD_";
  for (char c : flag) {
    name.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return name;
}

// Go-ish %q for the log line and messages: quotes, backslash escapes for '"', '\' and control
// characters.
std::string quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

// Sets one flag from text. On failure the error message is the bare reason, which the caller
// wraps with where the value came from.
Result<void> setValue(Options& options, const FlagSpec& flag, std::string_view text) {
  return std::visit(
      [&](auto member) -> Result<void> {
        using T = std::remove_reference_t<decltype(options.*member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          options.*member = std::string(text);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          (options.*member).emplace_back(text);
        } else if constexpr (std::is_same_v<T, bool>) {
          const auto value = parseGoBool(text);
          if (!value) {
            return invalidInput("not a boolean");
          }
          options.*member = *value;
        } else {
          static_assert(std::is_same_v<T, int>);
          auto value = parseGoInt(text, flag.int_base);
          if (!value) {
            return value.error();
          }
          options.*member = *value;
        }
        return ok();
      },
      flag.member);
}

std::string formatValue(const Options& options, const FlagSpec& flag) {
  return std::visit(
      [&](auto member) -> std::string {
        const auto& value = options.*member;
        using T = std::remove_cvref_t<decltype(value)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return quote(value);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::string out = "[";
          for (size_t i = 0; i < value.size(); ++i) {
            out += (i == 0 ? "" : ",") + quote(value[i]);
          }
          return out + "]";
        } else if constexpr (std::is_same_v<T, bool>) {
          return value ? "true" : "false";
        } else {
          return std::to_string(value);
        }
      },
      flag.member);
}

std::string_view typeName(const FlagSpec& flag) {
  if (std::holds_alternative<int Options::*>(flag.member)) {
    return " int";
  }
  if (isBool(flag)) {
    return "";
  }
  return " string";
}

// The command-line pass: Go `flag` rules (SPEC.md §1.2), except that whatever Go would leave
// unparsed (a positional argument, or anything after `--`) is an error here.
// Sets `help_requested` and stops at once on -h/-help, as Go does.
Result<void> parseArguments(const std::vector<std::string>& args, ParsedCommandLine& parsed,
                            bool& help_requested) {
  // The last bool flag written without "=value", to explain `-ip-masq false`.
  std::string bare_bool_before;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') {
      if (!bare_bool_before.empty()) {
        return invalidInput(fmt::format(
            "unexpected argument {} after {}: boolean flags take a value only with '=', "
            "as in {}={}",
            quote(arg), bare_bool_before, bare_bool_before, arg));
      }
      return invalidInput(fmt::format(
          "unexpected argument {}: flanneld takes no positional arguments", quote(arg)));
    }
    size_t dashes = 1;
    if (arg[1] == '-') {
      dashes = 2;
      if (arg.size() == 2) {  // "--": end of flags; flanneld has no positional arguments.
        if (i + 1 < args.size()) {
          return invalidInput(
              fmt::format("unexpected argument {} after \"--\": flanneld takes no positional "
                          "arguments",
                          quote(args[i + 1])));
        }
        return ok();
      }
    }
    std::string_view body = std::string_view(arg).substr(dashes);
    if (body.empty() || body[0] == '-' || body[0] == '=') {
      return invalidInput(fmt::format("bad flag syntax: {}", arg));
    }
    const auto eq = body.find('=');
    const bool has_value = eq != std::string_view::npos;
    const std::string_view name = body.substr(0, eq);
    const std::string written = std::string(arg.data(), dashes) + std::string(name);
    const FlagSpec* flag = findFlag(name);
    if (flag == nullptr) {
      return invalidInput(fmt::format("flag provided but not defined: {}", written));
    }
    std::string_view value;
    bare_bool_before.clear();
    if (has_value) {
      value = body.substr(eq + 1);
    } else if (isBool(*flag)) {
      value = "true";
      bare_bool_before = written;
    } else if (i + 1 < args.size()) {
      // Go takes the next argument as the value whatever it looks like ("-iface -x" sets
      // iface to "-x").
      value = args[++i];
    } else {
      return invalidInput(fmt::format("flag needs an argument: {}", written));
    }
    if (auto set = setValue(parsed.options, *flag, value); !set) {
      return invalidInput(fmt::format("invalid value {} for flag {}: {}", quote(value), written,
                                      set.error().message));
    }
    parsed.sources.insert_or_assign(std::string(flag->name), FlagSource::CommandLine);
    if (flag->member == Member(&Options::help) && parsed.options.help) {
      help_requested = true;
      return ok();
    }
  }
  return ok();
}

// SPEC.md §1.3: every flag not given on the command line takes a non-empty FLANNELD_<NAME>.
Result<void> applyEnvironment(ParsedCommandLine& parsed, const EnvLookup& env) {
  for (const auto& flag : kFlags) {
    if (!flag.from_env || parsed.sourceOf(flag.name) == FlagSource::CommandLine) {
      continue;
    }
    const std::string var = envVarName(flag.name);
    const std::optional<std::string> value = env(var);
    if (!value || value->empty()) {
      continue;
    }
    if (auto set = setValue(parsed.options, flag, *value); !set) {
      return invalidInput(fmt::format("{}={}: {}", var, quote(*value), set.error().message));
    }
    parsed.sources.insert_or_assign(std::string(flag.name), FlagSource::Environment);
  }
  return ok();
}

// "flag -name", plus the variable when the value came from the environment.
std::string origin(const ParsedCommandLine& parsed, std::string_view flag) {
  if (parsed.sourceOf(flag) == FlagSource::Environment) {
    return fmt::format("flag -{} (from {})", flag, envVarName(flag));
  }
  return fmt::format("flag -{}", flag);
}

Error badValue(const ParsedCommandLine& parsed, std::string_view flag, std::string_view shown,
               std::string_view reason) {
  return invalidInput(
      fmt::format("invalid value {} for {}: {}", shown, origin(parsed, flag), reason));
}

bool isIpLiteral(int family, const std::string& text) {
  in6_addr storage{};
  return inet_pton(family, text.c_str(), &storage) == 1;
}

Result<void> validate(const ParsedCommandLine& parsed) {
  const Options& o = parsed.options;
  if (o.subnet_lease_renew_margin < 1 || o.subnet_lease_renew_margin > 1439) {
    return badValue(parsed, "subnet-lease-renew-margin",
                    std::to_string(o.subnet_lease_renew_margin),
                    "must be between 1 and 1439 minutes");
  }
  if (o.healthz_port < 0 || o.healthz_port > 65535) {
    return badValue(parsed, "healthz-port", std::to_string(o.healthz_port),
                    "must be between 0 and 65535 (0 disables the health server)");
  }
  if (o.iptables_resync < 1) {
    return badValue(parsed, "iptables-resync", std::to_string(o.iptables_resync),
                    "must be at least 1 second (flannel accepts 0 and then re-checks its rules "
                    "in a busy loop)");
  }
  if (!o.public_ip.empty() && !isIpLiteral(AF_INET, o.public_ip)) {
    return badValue(parsed, "public-ip", quote(o.public_ip), "not an IPv4 address");
  }
  if (!o.public_ipv6.empty() && !isIpLiteral(AF_INET6, o.public_ipv6)) {
    return badValue(parsed, "public-ipv6", quote(o.public_ipv6), "not an IPv6 address");
  }
  if (o.v < 0) {
    return badValue(parsed, "v", std::to_string(o.v), "must not be negative");
  }
  if (auto rules = parseVmodule(o.vmodule); !rules) {
    return badValue(parsed, "vmodule", quote(o.vmodule),
                    "expected pattern=N[,pattern=N...]: " + rules.error().message);
  }
  if (auto backtrace = checkBacktraceAt(o.log_backtrace_at); !backtrace) {
    return badValue(parsed, "log_backtrace_at", quote(o.log_backtrace_at),
                    backtrace.error().message);
  }
  return ok();
}

// Go's underscoreOK: '_' only between digits, or between a base prefix and a digit.
bool underscoresOk(std::string_view text) {
  auto lower = [](char c) { return static_cast<char>(c | ('x' - 'X')); };
  char saw = '^';  // '^' start, '0' digit or prefix, '_' underscore, '!' anything else
  size_t i = 0;
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
    text.remove_prefix(1);
  }
  bool hex = false;
  if (text.size() >= 2 && text[0] == '0' &&
      (lower(text[1]) == 'b' || lower(text[1]) == 'o' || lower(text[1]) == 'x')) {
    i = 2;
    saw = '0';
    hex = lower(text[1]) == 'x';
  }
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if ((c >= '0' && c <= '9') || (hex && lower(c) >= 'a' && lower(c) <= 'f')) {
      saw = '0';
      continue;
    }
    if (c == '_') {
      if (saw != '0') {
        return false;
      }
      saw = '_';
      continue;
    }
    if (saw == '_') {
      return false;
    }
    saw = '!';
  }
  return saw != '_';
}

}  // namespace

std::vector<std::string> splitEndpoints(std::string_view endpoints) {
  std::vector<std::string> out;
  while (true) {
    const auto comma = endpoints.find(',');
    out.emplace_back(endpoints.substr(0, comma));
    if (comma == std::string_view::npos) {
      return out;
    }
    endpoints.remove_prefix(comma + 1);
  }
}

std::vector<std::string> Options::etcdEndpointList() const {
  return splitEndpoints(etcd_endpoints);
}

EnvLookup envFromMap(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    if (auto it = vars.find(name); it != vars.end()) {
      return it->second;
    }
    return std::nullopt;
  };
}

EnvLookup processEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (const char* value = std::getenv(name.c_str())) {
      return std::string(value);
    }
    return std::nullopt;
  };
}

FlagSource ParsedCommandLine::sourceOf(std::string_view flag) const {
  if (auto it = sources.find(flag); it != sources.end()) {
    return it->second;
  }
  return FlagSource::Default;
}

std::optional<bool> parseGoBool(std::string_view text) {
  if (text == "1" || text == "t" || text == "T" || text == "true" || text == "TRUE" ||
      text == "True") {
    return true;
  }
  if (text == "0" || text == "f" || text == "F" || text == "false" || text == "FALSE" ||
      text == "False") {
    return false;
  }
  return std::nullopt;
}

Result<int> parseGoInt(std::string_view text, int base) {
  const std::string_view original = text;
  auto syntax = [] { return invalidInput("not an integer"); };
  bool negative = false;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
    negative = text[0] == '-';
    text.remove_prefix(1);
  }
  if (text.empty()) {
    return syntax();
  }
  const bool base0 = base == 0;
  if (base0) {
    base = 10;
    if (text[0] == '0') {
      const char prefix = static_cast<char>(text.size() >= 3 ? (text[1] | 0x20) : 0);
      if (prefix == 'b') {
        base = 2;
        text.remove_prefix(2);
      } else if (prefix == 'o') {
        base = 8;
        text.remove_prefix(2);
      } else if (prefix == 'x') {
        base = 16;
        text.remove_prefix(2);
      } else {
        base = 8;
        text.remove_prefix(1);
      }
    }
  }
  std::uint64_t value = 0;
  bool overflow = false;
  bool underscores = false;
  for (char c : text) {
    const char low = static_cast<char>(c | 0x20);
    int digit = 0;
    if (c == '_' && base0) {
      underscores = true;
      continue;
    }
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (low >= 'a' && low <= 'z') {
      digit = low - 'a' + 10;
    } else {
      return syntax();
    }
    if (digit >= base) {
      return syntax();
    }
    if (value > (static_cast<std::uint64_t>(INT_MAX) + 1)) {
      overflow = true;  // keep scanning: a syntax error elsewhere still wins
    } else {
      value = value * static_cast<std::uint64_t>(base) + static_cast<std::uint64_t>(digit);
    }
  }
  if (underscores && !underscoresOk(original)) {
    return syntax();
  }
  const std::uint64_t limit = static_cast<std::uint64_t>(INT_MAX) + (negative ? 1 : 0);
  if (overflow || value > limit) {
    return invalidInput("out of range");
  }
  const auto signed_value = static_cast<std::int64_t>(value);
  return static_cast<int>(negative ? -signed_value : signed_value);
}

Result<ParsedCommandLine> parseCommandLine(std::vector<std::string> args, const EnvLookup& env) {
  ParsedCommandLine parsed;
  bool help_requested = false;
  if (auto r = parseArguments(args, parsed, help_requested); !r) {
    return r.error();
  }
  if (help_requested || parsed.options.version) {
    return parsed;  // SPEC.md §1.4: --version is checked before the environment is read.
  }
  if (auto r = applyEnvironment(parsed, env); !r) {
    return r.error();
  }
  if (auto r = validate(parsed); !r) {
    return r.error();
  }
  return parsed;
}

std::string helpText() {
  std::vector<const FlagSpec*> sorted;
  for (const auto& flag : kFlags) {
    sorted.push_back(&flag);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const FlagSpec* a, const FlagSpec* b) { return a->name < b->name; });
  const Options defaults;
  std::string out = "Usage: flanneld [OPTION]...\n";
  for (const FlagSpec* flag : sorted) {
    out += fmt::format("  -{}{}\n        {} (default {})\n", flag->name, typeName(*flag),
                       flag->usage, formatValue(defaults, *flag));
  }
  out +=
      "\nFlags may be written -name or --name; values as -name=value or -name value (booleans "
      "only\nas -name or -name=false). iface and iface-regex may be repeated. Every flag but "
      "help and\nversion can also be set with FLANNELD_<NAME> (upper case, '-' becomes '_', e.g. "
      "FLANNELD_IP_MASQ);\nthe command line wins.\n";
  return out;
}

std::string describeOptions(const Options& options) {
  std::string out;
  for (const auto& flag : kFlags) {
    if (!out.empty()) {
      out.push_back(' ');
    }
    out += flag.name;
    out.push_back('=');
    if (flag.member == Member(&Options::etcd_password) && !options.etcd_password.empty()) {
      out += kMaskedPassword;
    } else {
      out += formatValue(options, flag);
    }
  }
  return out;
}

}  // namespace flannel::daemon
