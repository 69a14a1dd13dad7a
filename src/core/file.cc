#include "core/file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/unique_fd.h"

namespace flannel {

Result<std::string> readSmallFile(const std::string& path, size_t max_bytes,
                                  int open_flags) noexcept {
  try {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | open_flags));
    if (!fd.valid()) {
      const int err = errno;
      return makeError(err == ENOENT ? Errc::NotFound : Errc::Unavailable,
                       fmt::format("opening {}: {}", path, std::strerror(err)), err);
    }
    std::string text;
    char buf[8192];
    for (;;) {
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        const int err = errno;
        return makeError(Errc::Unavailable, fmt::format("reading {}: {}", path, std::strerror(err)),
                         err);
      }
      if (n == 0) {
        return text;
      }
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > max_bytes) {
        return invalidInput(fmt::format("{}: larger than {} bytes", path, max_bytes));
      }
    }
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, fmt::format("reading {}: {}", path, e.what()));
  }
}

}  // namespace flannel
