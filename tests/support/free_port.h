// DOC: free TCP ports on loopback, chosen by the kernel (bind port 0), never fixed numbers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/result.h"

namespace flannel::test {

// `count` distinct TCP ports that were free on 127.0.0.1 a moment ago: all are bound to port 0
// at the same time (so the kernel cannot hand out one twice), read back, then released. Another
// process may still grab one before the caller binds it; callers that start servers on them retry
// with fresh ports when a start fails.
Result<std::vector<uint16_t>> pickFreeLoopbackPorts(size_t count);

}  // namespace flannel::test
