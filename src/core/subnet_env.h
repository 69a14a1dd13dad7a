// DOC: /run/flannel/subnet.env, the file the CNI plugin and other tools read (SPEC.md §7).
//
//   FLANNEL_NETWORK=10.5.0.0/16        (IPv4 enabled)
//   FLANNEL_SUBNET=10.5.92.1/24        (own subnet, host part = network + 1)
//   FLANNEL_IPV6_NETWORK=fd55::/48     (IPv6 enabled)
//   FLANNEL_IPV6_SUBNET=fd55:0:0:36::1/64
//   FLANNEL_MTU=1450
//   FLANNEL_IPMASQ=true
//
// Writing is atomic: a temporary file in the same directory, fsync, rename over the target,
// fsync of the directory; mode 0644 whatever the umask. Reading is a total dotenv parser
// (comments, `export`, quotes tolerated) used to find the previous subnet at start-up.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/ip_net.h"
#include "core/result.h"

namespace flannel {

namespace subnet_env_key {
inline constexpr std::string_view kNetwork = "FLANNEL_NETWORK";
inline constexpr std::string_view kSubnet = "FLANNEL_SUBNET";
inline constexpr std::string_view kIPv6Network = "FLANNEL_IPV6_NETWORK";
inline constexpr std::string_view kIPv6Subnet = "FLANNEL_IPV6_SUBNET";
inline constexpr std::string_view kMtu = "FLANNEL_MTU";
inline constexpr std::string_view kIpMasq = "FLANNEL_IPMASQ";
}  // namespace subnet_env_key

inline constexpr std::string_view kDefaultSubnetFile = "/run/flannel/subnet.env";

struct SubnetEnv {
  std::optional<IpNet> network{};       // FLANNEL_NETWORK
  std::optional<IpNet> subnet{};        // FLANNEL_SUBNET, canonical (written as network + 1)
  std::optional<IpNet> ipv6_network{};  // FLANNEL_IPV6_NETWORK
  std::optional<IpNet> ipv6_subnet{};   // FLANNEL_IPV6_SUBNET
  std::optional<uint32_t> mtu{};        // FLANNEL_MTU
  std::optional<bool> ipmasq{};         // FLANNEL_IPMASQ

  friend bool operator==(const SubnetEnv&, const SubnetEnv&) = default;
};

// The file's exact text (fields that are nullopt are left out, order as in SPEC.md §7.1).
std::string renderSubnetEnv(const SubnetEnv& env);

// Total parser. Unknown keys are ignored; a recognised key with a bad value is an error naming
// the key and the line. CIDRs are read with host bits masked (10.5.92.1/24 -> 10.5.92.0/24).
Result<SubnetEnv> parseSubnetEnv(std::string_view text) noexcept;

// Atomically replaces `path` with renderSubnetEnv(env), creating parent directories (0755).
Result<void> writeSubnetEnv(const std::string& path, const SubnetEnv& env) noexcept;

// Reads and parses `path`. A missing file is not an error: it yields an empty SubnetEnv.
Result<SubnetEnv> readSubnetEnv(const std::string& path) noexcept;

}  // namespace flannel
