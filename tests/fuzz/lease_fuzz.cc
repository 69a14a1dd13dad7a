// Fuzz target: lease values and subnet keys (SPEC.md §3.2, §3.3) must decode totally, and
// whatever decodes must survive encode -> decode unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/lease.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto attrs = flannel::decodeLeaseAttrs(text)) {
    auto again = flannel::decodeLeaseAttrs(flannel::encodeLeaseAttrs(*attrs));
    if (!again || !(*again == *attrs)) {
      std::abort();
    }
  } else if (attrs.error().message.empty()) {
    std::abort();
  }
  if (auto key = flannel::parseSubnetKeyName(text)) {
    auto again = flannel::parseSubnetKeyName(flannel::subnetKeyName(*key));
    if (!again || !(*again == *key)) {
      std::abort();
    }
  }
  return 0;
}
