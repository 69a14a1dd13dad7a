#include "core/ip.h"

#include <arpa/inet.h>

#include <fmt/format.h>
#include <cstring>

#include "core/strings.h"

namespace flannel {

namespace {

// inet_pton needs a NUL-terminated string; addresses are short, so a stack buffer suffices.
template <size_t N>
bool copyToBuffer(std::string_view text, char (&buf)[N]) noexcept {
  if (text.empty() || text.size() >= N || text.find('\0') != std::string_view::npos) {
    return false;
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  return true;
}

}  // namespace

std::string_view familyName(Family f) noexcept {
  return f == Family::V4 ? "IPv4" : "IPv6";
}

Result<Ip4> Ip4::parse(std::string_view text) noexcept {
  char buf[INET_ADDRSTRLEN + 1];
  in_addr a{};
  if (!copyToBuffer(text, buf) || inet_pton(AF_INET, buf, &a) != 1) {
    return invalidInput(fmt::format("{} is not an IPv4 address", quoteForMessage(text)));
  }
  return Ip4(ntohl(a.s_addr));
}

std::array<uint8_t, 4> Ip4::bytes() const noexcept {
  return {static_cast<uint8_t>(value_ >> 24), static_cast<uint8_t>(value_ >> 16),
          static_cast<uint8_t>(value_ >> 8), static_cast<uint8_t>(value_)};
}

std::string Ip4::toString() const {
  auto b = bytes();
  return fmt::format("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
}

Ip6 Ip6::fromU128(Uint128 v) noexcept {
  Bytes b{};
  for (int i = 15; i >= 0; --i) {
    b[static_cast<size_t>(i)] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
  return Ip6(b);
}

Result<Ip6> Ip6::parse(std::string_view text) noexcept {
  char buf[INET6_ADDRSTRLEN + 1];
  in6_addr a{};
  if (!copyToBuffer(text, buf) || inet_pton(AF_INET6, buf, &a) != 1) {
    return invalidInput(fmt::format("{} is not an IPv6 address", quoteForMessage(text)));
  }
  Bytes b{};
  std::memcpy(b.data(), &a, 16);
  return Ip6(b);
}

Uint128 Ip6::toU128() const noexcept {
  Uint128 v = 0;
  for (uint8_t byte : bytes_) {
    v = (v << 8) | byte;
  }
  return v;
}

bool Ip6::isUnspecified() const noexcept {
  for (uint8_t byte : bytes_) {
    if (byte != 0) {
      return false;
    }
  }
  return true;
}

bool Ip6::isLoopback() const noexcept {
  for (size_t i = 0; i < 15; ++i) {
    if (bytes_[i] != 0) {
      return false;
    }
  }
  return bytes_[15] == 1;
}

std::string Ip6::toString() const {
  uint16_t groups[8];
  for (size_t i = 0; i < 8; ++i) {
    groups[i] = static_cast<uint16_t>((bytes_[2 * i] << 8) | bytes_[2 * i + 1]);
  }
  // IPv4-mapped addresses keep the dotted tail (RFC 5952 §5).
  bool mapped = groups[0] == 0 && groups[1] == 0 && groups[2] == 0 && groups[3] == 0 &&
                groups[4] == 0 && groups[5] == 0xffff;
  int groups_to_print = mapped ? 6 : 8;
  // Longest run of >= 2 zero groups; the first one wins a tie (RFC 5952 §4.2).
  int best_start = -1;
  int best_len = 0;
  for (int i = 0; i < groups_to_print;) {
    if (groups[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < groups_to_print && groups[j] == 0) {
      ++j;
    }
    if (j - i > best_len && j - i >= 2) {
      best_start = i;
      best_len = j - i;
    }
    i = j;
  }
  std::string out;
  out.reserve(41);
  for (int i = 0; i < groups_to_print; ++i) {
    if (i == best_start) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') {
      out += ':';
    }
    out += fmt::format("{:x}", groups[i]);
  }
  if (mapped) {
    if (!out.empty() && out.back() != ':') {
      out += ':';
    }
    out += fmt::format("{}.{}.{}.{}", bytes_[12], bytes_[13], bytes_[14], bytes_[15]);
  }
  return out;
}

Result<IpAddr> IpAddr::parse(std::string_view text) noexcept {
  if (text.find(':') != std::string_view::npos) {
    auto r = Ip6::parse(text);
    if (!r) {
      return r.error();
    }
    return IpAddr(*r);
  }
  auto r = Ip4::parse(text);
  if (!r) {
    return invalidInput(fmt::format("{} is not an IP address", quoteForMessage(text)));
  }
  return IpAddr(*r);
}

std::string IpAddr::toString() const {
  return is4() ? v4().toString() : v6().toString();
}

bool IpAddr::isGlobalUnicast() const noexcept {
  return is4() ? std::get<Ip4>(v_).isGlobalUnicast() : std::get<Ip6>(v_).isGlobalUnicast();
}

bool IpAddr::isLinkLocal() const noexcept {
  return is4() ? std::get<Ip4>(v_).isLinkLocal() : std::get<Ip6>(v_).isLinkLocal();
}

}  // namespace flannel
