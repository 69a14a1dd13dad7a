// DOC: IpNet, an IP prefix that is always canonical (no host bits set), IPv4 or IPv6 (pure).
//
// There is no invalid IpNet: every constructor masks or rejects. Two parsers exist because
// SPEC.md treats host bits differently by input: network configs and subnet.env mask them
// (`10.5.3.4/16` -> `10.5.0.0/16`, SPEC §2.1, §7.3), while lease keys and CNI ranges must
// already be canonical (a rogue key with host bits is rejected).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/ip.h"
#include "core/result.h"

namespace flannel {

class IpNet {
 public:
  // 0.0.0.0/0.
  IpNet() = default;
  // Host bits of `addr` are cleared. Precondition: prefix <= maxPrefix(family) (checked: a
  // larger prefix is clamped to the family's width, never UB).
  static IpNet masked(IpAddr addr, uint8_t prefix) noexcept;
  // "a.b.c.d/n" or "v6/n"; rejects host bits ("10.5.3.4/16 has host bits set").
  static Result<IpNet> parse(std::string_view text) noexcept;
  // Same, but clears host bits instead of rejecting them.
  static Result<IpNet> parseMasked(std::string_view text) noexcept;

  const IpAddr& addr() const noexcept { return addr_; }
  uint8_t prefix() const noexcept { return prefix_; }
  Family family() const noexcept { return addr_.family(); }
  bool is4() const noexcept { return addr_.is4(); }
  bool is6() const noexcept { return addr_.is6(); }
  static uint8_t maxPrefix(Family f) noexcept { return f == Family::V4 ? 32 : 128; }
  // Number of host bits (32 - prefix or 128 - prefix).
  uint8_t hostBits() const noexcept { return static_cast<uint8_t>(maxPrefix(family()) - prefix_); }

  bool contains(const IpAddr& ip) const noexcept;
  // True when `other` (same family) lies entirely inside this prefix.
  bool contains(const IpNet& other) const noexcept;
  bool overlaps(const IpNet& other) const noexcept;

  // The address `offset` positions after the network address, if it stays inside the prefix.
  // host(1) is the first host address, used for FLANNEL_SUBNET (SPEC §7.1).
  std::optional<IpAddr> host(Uint128 offset) const noexcept;
  // The prefix of the same length that follows this one, or nullopt at the end of the space.
  std::optional<IpNet> next() const noexcept;
  // The index-th subnet of length `len` inside this prefix (index 0 = the first), or nullopt if
  // len < prefix(), len exceeds the family width, or index is out of range.
  std::optional<IpNet> nthSubnet(uint8_t len, Uint128 index) const noexcept;
  // Number of subnets of length `len` inside this prefix (0 if len < prefix()); saturates at the
  // largest Uint128 for /0 -> /128.
  Uint128 subnetCount(uint8_t len) const noexcept;

  std::string toString() const;  // "10.5.0.0/16", "fd55::/48"

  friend auto operator<=>(const IpNet&, const IpNet&) = default;
  friend bool operator==(const IpNet&, const IpNet&) = default;

 private:
  IpNet(IpAddr addr, uint8_t prefix) : addr_(addr), prefix_(prefix) {}
  IpAddr addr_;
  uint8_t prefix_ = 0;
};

// Numeric value of an address (IPv4 in the low 32 bits) and back, for subnet arithmetic.
Uint128 addrValue(const IpAddr& ip) noexcept;
IpAddr addrFromValue(Family f, Uint128 value) noexcept;

}  // namespace flannel
