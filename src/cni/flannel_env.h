// DOC: subnet.env as the flannel CNI plugin reads it (SPEC.md §7.5 "subnet.env parsing").
//
// flanneld writes the file (SPEC.md §7.1, core/subnet_env.h); the plugin reads it on every ADD:
//   FLANNEL_NETWORK=10.5.0.0/16           one or more comma-separated IPv4 networks (de-duplicated)
//   FLANNEL_SUBNET=10.5.1.1/24            this node's IPv4 subnet; host bits are cleared
//   FLANNEL_IPV6_NETWORK=fd55::/48        the same for IPv6
//   FLANNEL_IPV6_SUBNET=fd55:0:0:1::1/64
//   FLANNEL_MTU=1450                      unsigned integer
//   FLANNEL_IPMASQ=true                   true iff exactly "true"
// Lines split at the first '='; unknown keys and lines without '=' are ignored, as flannel's
// plugin ignores them; blank lines, "#" comments and CR line ends are tolerated. A family's value
// must be of that family. The file must name a network and a subnet (of either family), the MTU
// and FLANNEL_IPMASQ.
//
// Errors: parse problems are CniCode::DecodeFailure naming the file, the line and the key; a
// missing file is CniCode::TryAgainLater (flanneld writes it once it has a lease); an unreadable
// one CniCode::IoFailure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cni/cni_error.h"
#include "core/ip_net.h"

namespace flannel::cni {

struct FlannelEnv {
  std::vector<IpNet> networks{};       // FLANNEL_NETWORK
  std::optional<IpNet> subnet{};       // FLANNEL_SUBNET, canonical (10.5.1.0/24)
  std::vector<IpNet> ipv6_networks{};  // FLANNEL_IPV6_NETWORK
  std::optional<IpNet> ipv6_subnet{};  // FLANNEL_IPV6_SUBNET, canonical
  uint32_t mtu = 0;                    // FLANNEL_MTU
  bool ipmasq = false;                 // FLANNEL_IPMASQ

  friend bool operator==(const FlannelEnv&, const FlannelEnv&) = default;
};

// Total parser; `path` only names the file in messages.
CniResult<FlannelEnv> parseFlannelEnv(std::string_view text, std::string_view path) noexcept;

// Reads and parses the file at `path` (at most 1 MiB).
CniResult<FlannelEnv> loadFlannelEnv(const std::string& path) noexcept;

}  // namespace flannel::cni
