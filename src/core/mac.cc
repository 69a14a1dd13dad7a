#include "core/mac.h"

#include <random>

#include <fmt/format.h>

#include "core/strings.h"

namespace flannel {

namespace {

int hexValue(char c) noexcept {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

}  // namespace

Result<Mac> Mac::parse(std::string_view text) noexcept {
  // 6 pairs and 5 separators, all of the same kind.
  constexpr size_t kLen = 17;
  auto bad = [&] {
    return invalidInput(fmt::format("{} is not a MAC address", quoteForMessage(text)));
  };
  if (text.size() != kLen) {
    return bad();
  }
  const char sep = text[2];
  if (sep != ':' && sep != '-') {
    return bad();
  }
  Bytes b{};
  for (size_t i = 0; i < b.size(); ++i) {
    const size_t at = i * 3;
    if (i > 0 && text[at - 1] != sep) {
      return bad();
    }
    const int hi = hexValue(text[at]);
    const int lo = hexValue(text[at + 1]);
    if (hi < 0 || lo < 0) {
      return bad();
    }
    b[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return Mac(b);
}

Mac Mac::locallyAdministered(Bytes random) noexcept {
  random[0] = static_cast<uint8_t>((random[0] & 0xfe) | 0x02);
  return Mac(random);
}

Mac Mac::randomLocallyAdministered() {
  std::random_device rd;
  Bytes b{};
  for (size_t i = 0; i < b.size(); i += 2) {
    const auto v = rd();
    b[i] = static_cast<uint8_t>(v);
    b[i + 1] = static_cast<uint8_t>(v >> 8);
  }
  return locallyAdministered(b);
}

std::string Mac::toString() const {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", bytes_[0], bytes_[1], bytes_[2],
                     bytes_[3], bytes_[4], bytes_[5]);
}

}  // namespace flannel
