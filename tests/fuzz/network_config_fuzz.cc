// Fuzz target: the network config parser and validator (SPEC.md §2) must be total.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/network_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = flannel::parseNetworkConfig(text);
  if (!parsed) {
    if (parsed.error().message.empty()) {
      std::abort();  // every error must say what is wrong
    }
    return 0;
  }
  auto valid = flannel::validateNetworkConfig(*parsed);
  if (valid) {
    // Invariants of a validated config: derived fields filled and consistent.
    if (valid->enable_ipv4 && (!valid->network || !valid->subnet_min || !valid->subnet_max ||
                               !valid->network->contains(flannel::IpAddr(*valid->subnet_min)) ||
                               *valid->subnet_max < *valid->subnet_min || valid->subnet_len > 30)) {
      std::abort();
    }
    if (valid->enable_ipv6 &&
        (!valid->ipv6_network || !valid->ipv6_subnet_min || !valid->ipv6_subnet_max ||
         !valid->ipv6_network->contains(flannel::IpAddr(*valid->ipv6_subnet_max)) ||
         valid->ipv6_subnet_len > 126)) {
      std::abort();
    }
  } else if (valid.error().message.empty()) {
    std::abort();
  }
  return 0;
}
