// DOC: a lease, one host's subnet assignment, and its etcd encodings (pure; SPEC.md §3.2, §3.3).
//
// Key:   "<prefix>/subnets/10.5.92.0-24", "…/10.5.73.0-24&fd55:0:0:36::-64",
//        IPv6-only "…/0.0.0.0-0&fd55:0:0:37::-64".
// Value: {"PublicIP":"192.168.91.11","PublicIPv6":null,"BackendType":"vxlan",
//         "BackendData":{"VNI":1,"VtepMAC":"c6:7b:4a:66:8d:b3"}}
//        (field order fixed; PublicIP always present; PublicIPv6 null or a string;
//         BackendType, BackendData, BackendV6Data omitted when empty).
//
// Decoding is total and all-or-nothing: a value that is not JSON, or whose fields have the
// wrong type or are not addresses, is rejected with an error naming the field; never half-read.
// Expiry is not in the value: it comes from the etcd lease TTL (store layer).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "core/ip_net.h"
#include "core/result.h"

namespace flannel {

namespace lease_key {  // JSON field names, exactly as Go flannel writes them
inline constexpr std::string_view kPublicIP = "PublicIP";
inline constexpr std::string_view kPublicIPv6 = "PublicIPv6";
inline constexpr std::string_view kBackendType = "BackendType";
inline constexpr std::string_view kBackendData = "BackendData";
inline constexpr std::string_view kBackendV6Data = "BackendV6Data";
}  // namespace lease_key

struct LeaseAttrs {
  Ip4 public_ip{};                   // 0.0.0.0 when the host has no IPv4
  std::optional<Ip6> public_ipv6{};  // JSON null when absent
  std::string backend_type{};        // "" = omitted (udp, alloc, cloud backends)
  std::string backend_data{};        // compact JSON text; "" = omitted
  std::string backend_v6_data{};     // compact JSON text; "" = omitted

  friend bool operator==(const LeaseAttrs&, const LeaseAttrs&) = default;
};

// The subnets a key names. At least one family is present.
struct SubnetKey {
  std::optional<IpNet> ipv4{};  // nullopt for IPv6-only leases (key part "0.0.0.0-0")
  std::optional<IpNet> ipv6{};

  friend bool operator==(const SubnetKey&, const SubnetKey&) = default;
  friend auto operator<=>(const SubnetKey&, const SubnetKey&) = default;
};

using SystemTime = std::chrono::system_clock::time_point;

// "2024-05-01T10:20:30Z": RFC 3339 in UTC with seconds precision, as Go's metav1.Time marshals
// and as flanneld logs lease expiry times.
std::string rfc3339Utc(SystemTime t);

struct Lease {
  SubnetKey subnet{};
  LeaseAttrs attrs{};
  // When the lease runs out, if known (our own lease after acquire/renew). nullopt for peers'
  // leases listed without a TTL lookup, and for reservations.
  std::optional<SystemTime> expiration{};
  // A key without TTL (SPEC.md §3.7): never expires, never renewed, never handed to another host.
  bool reservation = false;

  friend bool operator==(const Lease&, const Lease&) = default;
};

// "10.5.92.0-24", "10.5.73.0-24&fd55:0:0:36::-64", "0.0.0.0-0&fd55:0:0:37::-64".
// Precondition: at least one family present (an empty key renders as "0.0.0.0-0").
std::string subnetKeyName(const SubnetKey& key);

// Parses the last path component of `key` (a full etcd key or just the name). Stricter than
// Go's end-anchored regex: the whole name must match, prefixes must be canonical (no host
// bits), the IPv4 part is /0../32 (0.0.0.0-0 only together with an IPv6 part).
Result<SubnetKey> parseSubnetKeyName(std::string_view key) noexcept;

// The JSON value stored under the key, byte-compatible with Go flannel.
std::string encodeLeaseAttrs(const LeaseAttrs& attrs);

// Total decoder (Go rules: case-insensitive keys, unknown keys ignored). BackendData values are
// re-encoded compactly; JSON null BackendData counts as absent.
Result<LeaseAttrs> decodeLeaseAttrs(std::string_view json) noexcept;

}  // namespace flannel
