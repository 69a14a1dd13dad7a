// Fuzz target: the subnet.env reader (SPEC.md §7.3) must be total, and what it reads must
// survive render -> parse unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/subnet_env.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto env = flannel::parseSubnetEnv(text);
  if (!env) {
    if (env.error().message.empty()) {
      std::abort();
    }
    return 0;
  }
  auto again = flannel::parseSubnetEnv(flannel::renderSubnetEnv(*env));
  // A /32 or /128 subnet has no "network + 1" host, so it renders as the network address
  // itself and still reads back equal.
  if (!again || !(*again == *env)) {
    std::abort();
  }
  return 0;
}
