// DOC: IP address vocabulary types (pure; no I/O).
//
// Ip4 and Ip6 are plain values with total parsers (text in, Result out) and canonical text
// forms: dotted decimal for IPv4, RFC 5952 (lower-case, longest zero run compressed) for IPv6,
// which is also the form Go's net.IP prints, so etcd keys written by us and by Go flannel match
// byte for byte (SPEC.md §3.2). IpAddr holds either family.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "core/result.h"

namespace flannel {

// 128-bit unsigned arithmetic for IPv6 subnet math (GCC/Clang extension, pedantic-clean).
__extension__ using Uint128 = unsigned __int128;

enum class Family { V4, V6 };
std::string_view familyName(Family f) noexcept;  // "IPv4" / "IPv6"

class Ip4 {
 public:
  constexpr Ip4() = default;
  static constexpr Ip4 fromU32(uint32_t host_order) noexcept { return Ip4(host_order); }
  static constexpr Ip4 fromBytes(uint8_t a, uint8_t b, uint8_t c, uint8_t d) noexcept {
    return Ip4((uint32_t{a} << 24) | (uint32_t{b} << 16) | (uint32_t{c} << 8) | uint32_t{d});
  }
  // Dotted decimal only ("10.5.0.1"); no leading zeros, no shorthand forms.
  static Result<Ip4> parse(std::string_view text) noexcept;

  constexpr uint32_t toU32() const noexcept { return value_; }
  std::array<uint8_t, 4> bytes() const noexcept;
  std::string toString() const;

  constexpr bool isUnspecified() const noexcept { return value_ == 0; }
  constexpr bool isLoopback() const noexcept { return (value_ >> 24) == 127; }
  constexpr bool isLinkLocal() const noexcept { return (value_ >> 16) == 0xa9fe; }
  constexpr bool isMulticast() const noexcept { return (value_ >> 28) == 0xe; }
  constexpr bool isBroadcast() const noexcept { return value_ == 0xffffffffu; }
  // Go's IsGlobalUnicast: not unspecified, loopback, link-local, multicast or broadcast.
  constexpr bool isGlobalUnicast() const noexcept {
    return !isUnspecified() && !isLoopback() && !isLinkLocal() && !isMulticast() && !isBroadcast();
  }

  friend constexpr auto operator<=>(const Ip4&, const Ip4&) = default;

 private:
  constexpr explicit Ip4(uint32_t v) : value_(v) {}
  uint32_t value_ = 0;
};

class Ip6 {
 public:
  using Bytes = std::array<uint8_t, 16>;
  constexpr Ip6() = default;
  constexpr explicit Ip6(const Bytes& b) : bytes_(b) {}
  static Ip6 fromU128(Uint128 v) noexcept;
  // Any RFC 4291 text form accepted by inet_pton(AF_INET6); no zone ("%eth0").
  static Result<Ip6> parse(std::string_view text) noexcept;

  constexpr const Bytes& bytes() const noexcept { return bytes_; }
  Uint128 toU128() const noexcept;
  // RFC 5952 canonical text (what Go prints for an IPv6 net.IP).
  std::string toString() const;

  bool isUnspecified() const noexcept;
  bool isLoopback() const noexcept;
  bool isLinkLocal() const noexcept { return bytes_[0] == 0xfe && (bytes_[1] & 0xc0) == 0x80; }
  bool isMulticast() const noexcept { return bytes_[0] == 0xff; }
  bool isUniqueLocal() const noexcept { return (bytes_[0] & 0xfe) == 0xfc; }
  bool isGlobalUnicast() const noexcept {
    return !isUnspecified() && !isLoopback() && !isLinkLocal() && !isMulticast();
  }

  friend constexpr auto operator<=>(const Ip6&, const Ip6&) = default;

 private:
  Bytes bytes_{};
};

class IpAddr {
 public:
  constexpr IpAddr() = default;
  constexpr IpAddr(Ip4 a) : v_(a) {}  // NOLINT(google-explicit-constructor): a v4 is an address
  constexpr IpAddr(Ip6 a) : v_(a) {}  // NOLINT(google-explicit-constructor)
  // IPv6 when the text contains ':', else IPv4.
  static Result<IpAddr> parse(std::string_view text) noexcept;

  Family family() const noexcept { return v_.index() == 0 ? Family::V4 : Family::V6; }
  bool is4() const noexcept { return v_.index() == 0; }
  bool is6() const noexcept { return v_.index() == 1; }
  // Precondition: the matching family (checked; a mismatch is a bug).
  const Ip4& v4() const { return std::get<Ip4>(v_); }
  const Ip6& v6() const { return std::get<Ip6>(v_); }
  std::string toString() const;
  bool isGlobalUnicast() const noexcept;
  bool isLinkLocal() const noexcept;

  friend auto operator<=>(const IpAddr&, const IpAddr&) = default;
  friend bool operator==(const IpAddr&, const IpAddr&) = default;

 private:
  std::variant<Ip4, Ip6> v_;
};

}  // namespace flannel
