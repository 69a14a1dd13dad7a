// DOC: the network configuration JSON (SPEC.md §2): etcd key `<prefix>/config` or, in kube mode,
// the file given by --net-config-path (pure).
//
//   text --parseNetworkConfig--> NetworkConfig (as written; 0/nullopt = "derive")
//        --validateNetworkConfig--> NetworkConfig (every derived field filled in, SPEC §2.2)
//
// Parsing follows Go's encoding/json rules flannel relies on: keys match case-insensitively,
// unknown keys are ignored, the last duplicate wins. Every error names the field and the bad
// value. The Backend object is kept as raw JSON for the backend's own parser.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip_net.h"
#include "core/result.h"

namespace flannel {

// Wire names of the config keys (SPEC.md §2.1), in one place.
namespace config_key {
inline constexpr std::string_view kNetwork = "Network";
inline constexpr std::string_view kIPv6Network = "IPv6Network";
inline constexpr std::string_view kEnableIPv4 = "EnableIPv4";
inline constexpr std::string_view kEnableIPv6 = "EnableIPv6";
inline constexpr std::string_view kEnableNFTables = "EnableNFTables";
inline constexpr std::string_view kSubnetLen = "SubnetLen";
inline constexpr std::string_view kSubnetMin = "SubnetMin";
inline constexpr std::string_view kSubnetMax = "SubnetMax";
inline constexpr std::string_view kIPv6SubnetLen = "IPv6SubnetLen";
inline constexpr std::string_view kIPv6SubnetMin = "IPv6SubnetMin";
inline constexpr std::string_view kIPv6SubnetMax = "IPv6SubnetMax";
inline constexpr std::string_view kNetworks = "Networks";
inline constexpr std::string_view kIPv6Networks = "IPv6Networks";
inline constexpr std::string_view kBackend = "Backend";
inline constexpr std::string_view kType = "Type";
}  // namespace config_key

// Backend used when the config has no Backend object: flannel's code defaults to udp even
// though its documentation says vxlan (SPEC.md §2.1); a mixed cluster depends on the code.
inline constexpr std::string_view kDefaultBackendType = "udp";

struct NetworkConfig {
  bool enable_ipv4 = true;
  bool enable_ipv6 = false;
  bool enable_nftables = false;

  std::optional<IpNet> network{};   // IPv4 (host bits masked, as flannel does)
  uint8_t subnet_len = 0;           // 0 = derive
  std::optional<Ip4> subnet_min{};  // nullopt (or 0.0.0.0 in the JSON) = derive
  std::optional<Ip4> subnet_max{};

  std::optional<IpNet> ipv6_network{};
  uint8_t ipv6_subnet_len = 0;
  std::optional<Ip6> ipv6_subnet_min{};
  std::optional<Ip6> ipv6_subnet_max{};

  // flannel v0.20.2 only: when non-empty, element 0 replaces Network/IPv6Network for traffic
  // rules and containment checks (SPEC.md §2.1).
  std::vector<IpNet> networks{};
  std::vector<IpNet> ipv6_networks{};

  std::string backend_type{};       // lower-cased Backend.Type; "udp" when Backend is absent
  bool backend_defaulted = false;   // true when Backend was absent (the daemon warns)
  std::string backend_json = "{}";  // the Backend object, compact JSON

  // The prefix used for masquerade/forward rules: Networks[0] when given, else Network.
  std::optional<IpNet> ruleNetwork() const;
  std::optional<IpNet> ruleIPv6Network() const;

  friend bool operator==(const NetworkConfig&, const NetworkConfig&) = default;
};

// Parses the JSON document; checks types and CIDR syntax, not the §2.2 rules.
Result<NetworkConfig> parseNetworkConfig(std::string_view text) noexcept;

// SPEC.md §2.2: derives SubnetLen/SubnetMin/SubnetMax (and the IPv6 analogues) and checks
// them. Also rejects configs flannel would crash on or could never allocate from: no family
// enabled, an IPv6 prefix in Network (or IPv4 in IPv6Network), SubnetMin > SubnetMax.
Result<NetworkConfig> validateNetworkConfig(NetworkConfig config) noexcept;

// parse + validate, as etcd mode does on every read.
Result<NetworkConfig> loadNetworkConfig(std::string_view text) noexcept;

}  // namespace flannel
