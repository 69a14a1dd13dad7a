// DOC: Mac, a 48-bit Ethernet (link-layer) address as a plain value (pure; no I/O).
//
// The text form is flannel's on-the-wire spelling of BackendData.VtepMAC (SPEC.md §5.1, §9.3):
// six lower-case hex pairs separated by ':' ("0e:2a:5c:01:02:03"), which is what Go's
// net.HardwareAddr.String() prints. parse() is total: it accepts that form in either case and
// the '-' separated form, and rejects everything else with the input in the message.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace flannel {

class Mac {
 public:
  using Bytes = std::array<uint8_t, 6>;

  // 00:00:00:00:00:00 (also what a device without a link-layer address reports).
  constexpr Mac() = default;
  constexpr explicit Mac(const Bytes& b) : bytes_(b) {}

  // "aa:bb:cc:dd:ee:ff" or "aa-bb-cc-dd-ee-ff", hex digits in either case.
  static Result<Mac> parse(std::string_view text) noexcept;

  // `random` with the multicast bit cleared and the locally-administered bit set
  // (b0 = (b0 & 0xfe) | 0x02), the rule flannel uses for VTEP MACs (SPEC.md §5.1). Pure.
  static Mac locallyAdministered(Bytes random) noexcept;
  // locallyAdministered() of 6 bytes from std::random_device.
  static Mac randomLocallyAdministered();

  constexpr const Bytes& bytes() const noexcept { return bytes_; }
  // Lower-case, colon separated.
  std::string toString() const;

  constexpr bool isZero() const noexcept { return bytes_ == Bytes{}; }
  constexpr bool isMulticast() const noexcept { return (bytes_[0] & 0x01) != 0; }
  constexpr bool isLocallyAdministered() const noexcept { return (bytes_[0] & 0x02) != 0; }

  friend constexpr auto operator<=>(const Mac&, const Mac&) = default;

 private:
  Bytes bytes_{};
};

}  // namespace flannel
