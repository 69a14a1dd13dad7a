// DOC: Reading a whole small file (configuration, state, credentials) with open() and read(),
// bounded in size: one implementation for subnet.env, the CNI plugin's files and kubeconfigs.
#pragma once

#include <cstddef>
#include <string>

#include "core/result.h"

namespace flannel {

// The contents of the file at `path`, read to its end. Errors name the path and carry the
// errno: Errc::NotFound ("opening <path>: No such file or directory") when it does not exist,
// Errc::Unavailable ("opening <path>: ..." / "reading <path>: ...") when a system call fails,
// Errc::InvalidInput ("<path>: larger than <max_bytes> bytes") when it is longer than that.
// `open_flags` are added to O_RDONLY | O_CLOEXEC (e.g. O_NOFOLLOW).
Result<std::string> readSmallFile(const std::string& path, size_t max_bytes,
                                  int open_flags = 0) noexcept;

}  // namespace flannel
