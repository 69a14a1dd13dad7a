#include "core/ip_net.h"

#include <fmt/format.h>
#include <charconv>
#include <limits>

#include "core/strings.h"

namespace flannel {

namespace {

constexpr Uint128 kAllOnes = ~Uint128{0};

// Mask with the top `prefix` bits of a `width`-bit value set.
Uint128 prefixMask(uint8_t prefix, uint8_t width) noexcept {
  if (prefix == 0) {
    return 0;
  }
  Uint128 full = width == 128 ? kAllOnes : ((Uint128{1} << width) - 1);
  Uint128 host = (prefix >= width) ? 0 : ((Uint128{1} << (width - prefix)) - 1);
  return full & ~host;
}

Result<IpNet> parseImpl(std::string_view text, bool mask) noexcept {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    return invalidInput(
        fmt::format("{} is not a CIDR prefix (missing \"/length\")", quoteForMessage(text)));
  }
  auto addr_text = text.substr(0, slash);
  auto len_text = text.substr(slash + 1);
  auto addr = IpAddr::parse(addr_text);
  if (!addr) {
    return invalidInput(
        fmt::format("{} is not a CIDR prefix: {}", quoteForMessage(text), addr.error().message));
  }
  unsigned len = 0;
  auto [ptr, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  uint8_t width = IpNet::maxPrefix(addr->family());
  if (len_text.empty() || ec != std::errc() || ptr != len_text.data() + len_text.size() ||
      len > width || (len_text.size() > 1 && len_text[0] == '0')) {
    return invalidInput(fmt::format("{} is not a CIDR prefix: prefix length must be 0..{}",
                                    quoteForMessage(text), width));
  }
  IpNet net = IpNet::masked(*addr, static_cast<uint8_t>(len));
  if (!mask && net.addr() != *addr) {
    return invalidInput(fmt::format("{} has host bits set (did you mean {}?)",
                                    quoteForMessage(text), net.toString()));
  }
  return net;
}

}  // namespace

Uint128 addrValue(const IpAddr& ip) noexcept {
  return ip.is4() ? Uint128{ip.v4().toU32()} : ip.v6().toU128();
}

IpAddr addrFromValue(Family f, Uint128 value) noexcept {
  if (f == Family::V4) {
    return Ip4::fromU32(static_cast<uint32_t>(value));
  }
  return Ip6::fromU128(value);
}

IpNet IpNet::masked(IpAddr addr, uint8_t prefix) noexcept {
  uint8_t width = maxPrefix(addr.family());
  if (prefix > width) {
    prefix = width;
  }
  Uint128 v = addrValue(addr) & prefixMask(prefix, width);
  return IpNet(addrFromValue(addr.family(), v), prefix);
}

Result<IpNet> IpNet::parse(std::string_view text) noexcept {
  return parseImpl(text, false);
}

Result<IpNet> IpNet::parseMasked(std::string_view text) noexcept {
  return parseImpl(text, true);
}

bool IpNet::contains(const IpAddr& ip) const noexcept {
  if (ip.family() != family()) {
    return false;
  }
  uint8_t width = maxPrefix(family());
  return (addrValue(ip) & prefixMask(prefix_, width)) == addrValue(addr_);
}

bool IpNet::contains(const IpNet& other) const noexcept {
  return other.family() == family() && other.prefix_ >= prefix_ && contains(other.addr_);
}

bool IpNet::overlaps(const IpNet& other) const noexcept {
  return contains(other) || other.contains(*this);
}

std::optional<IpAddr> IpNet::host(Uint128 offset) const noexcept {
  uint8_t bits = hostBits();
  if (bits < 128 && offset >= (Uint128{1} << bits)) {
    return std::nullopt;
  }
  return addrFromValue(family(), addrValue(addr_) + offset);
}

std::optional<IpNet> IpNet::next() const noexcept {
  uint8_t width = maxPrefix(family());
  if (prefix_ == 0) {
    return std::nullopt;
  }
  Uint128 step = Uint128{1} << (width - prefix_);
  Uint128 v = addrValue(addr_);
  Uint128 limit = width == 128 ? kAllOnes : ((Uint128{1} << width) - 1);
  if (limit - v < step) {
    return std::nullopt;  // would wrap past the end of the address space
  }
  return IpNet(addrFromValue(family(), v + step), prefix_);
}

Uint128 IpNet::subnetCount(uint8_t len) const noexcept {
  uint8_t width = maxPrefix(family());
  if (len < prefix_ || len > width) {
    return 0;
  }
  uint8_t diff = static_cast<uint8_t>(len - prefix_);
  return diff >= 128 ? kAllOnes : (Uint128{1} << diff);
}

std::optional<IpNet> IpNet::nthSubnet(uint8_t len, Uint128 index) const noexcept {
  uint8_t width = maxPrefix(family());
  if (len < prefix_ || len > width) {
    return std::nullopt;
  }
  uint8_t diff = static_cast<uint8_t>(len - prefix_);
  if (diff < 128 && index >= (Uint128{1} << diff)) {
    return std::nullopt;
  }
  uint8_t shift = static_cast<uint8_t>(width - len);
  Uint128 offset = shift >= 128 ? 0 : (index << shift);
  return IpNet(addrFromValue(family(), addrValue(addr_) + offset), len);
}

std::string IpNet::toString() const {
  return fmt::format("{}/{}", addr_.toString(), prefix_);
}

}  // namespace flannel
