#include "cni/scratch_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/file.h"

namespace flannel::cni {

namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxFileSize = 16u << 20;

Error sysError(std::string_view what, const std::string& path, int err) {
  return makeError(Errc::Unavailable, fmt::format("{} {}: {}", what, path, std::strerror(err)),
                   err);
}

Result<void> checkId(std::string_view id) {
  if (id.empty() || id == "." || id == ".." || id.find('/') != std::string_view::npos ||
      id.find('\0') != std::string_view::npos) {
    return invalidInput(fmt::format("container ID \"{}\" cannot name a scratch file", id));
  }
  return {};
}

// mkdir -p with mode 0700 for every directory it creates (existing ones are left alone).
Result<void> makeDirs(const std::string& dir) {
  std::string partial;
  const fs::path path(dir);
  for (const auto& part : path) {
    partial = partial.empty()  ? part.string()
              : partial == "/" ? "/" + part.string()
                               : partial + "/" + part.string();
    if (partial == "/" || part.empty()) {
      continue;
    }
    if (::mkdir(partial.c_str(), 0700) == 0) {
      ::chmod(partial.c_str(), 0700);  // exactly 0700, whatever the umask
      continue;
    }
    if (errno != EEXIST) {
      return sysError("creating directory", partial, errno);
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return sysError("checking directory", dir, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    return sysError("using", dir, ENOTDIR);
  }
  return {};
}

Result<void> writeAll(int fd, std::string_view bytes, const std::string& path) {
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return sysError("writing", path, errno);
    }
    written += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace

std::string ScratchStore::pathFor(std::string_view container_id) const {
  return (fs::path(dir_) / std::string(container_id)).string();
}

Result<void> ScratchStore::save(std::string_view container_id,
                                std::string_view bytes) const noexcept {
  try {
    if (auto ok = checkId(container_id); !ok) {
      return ok;
    }
    if (auto ok = makeDirs(dir_); !ok) {
      return ok;
    }
    const std::string target = pathFor(container_id);
    const std::string tmp =
        (fs::path(dir_) / fmt::format(".{}.tmp-{}", container_id, ::getpid())).string();
    ::unlink(tmp.c_str());  // a leftover of a crashed run of ours with the same pid
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      return sysError("creating", tmp, errno);
    }
    auto fail = [&](Error e) -> Result<void> {
      ::close(fd);
      ::unlink(tmp.c_str());
      return e;
    };
    if (::fchmod(fd, 0600) != 0) {
      return fail(sysError("setting the mode of", tmp, errno));
    }
    if (auto ok = writeAll(fd, bytes, tmp); !ok) {
      return fail(ok.error());
    }
    if (::fsync(fd) != 0) {
      return fail(sysError("syncing", tmp, errno));
    }
    if (::close(fd) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return sysError("closing", tmp, err);
    }
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return sysError(fmt::format("renaming {} to", tmp), target, err);
    }
    // Make the rename durable: without this a power loss can forget the file although ADD
    // succeeded, and the later DEL would then leak the delegate's allocations.
    const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
      return sysError("opening directory", dir_, errno);
    }
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    if (rc != 0) {
      return sysError("syncing directory", dir_, err);
    }
    return {};
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, fmt::format("saving {}: {}", pathFor(container_id), e.what()));
  }
}

Result<std::optional<std::string>> ScratchStore::load(
    std::string_view container_id) const noexcept {
  try {
    if (auto ok = checkId(container_id); !ok) {
      return ok.error();
    }
    const std::string path = pathFor(container_id);
    auto text = readSmallFile(path, kMaxFileSize, O_NOFOLLOW);
    if (!text) {
      if (text.error().code == Errc::NotFound) {
        return std::optional<std::string>();
      }
      if (text.error().code == Errc::InvalidInput) {
        return invalidInput(text.error().message + "; not a delegate config");
      }
      return text.error();
    }
    return std::optional<std::string>(std::move(*text));
  } catch (const std::exception& e) {
    return makeError(Errc::Internal,
                     fmt::format("loading {}: {}", pathFor(container_id), e.what()));
  }
}

Result<void> ScratchStore::remove(std::string_view container_id) const noexcept {
  try {
    if (auto ok = checkId(container_id); !ok) {
      return ok;
    }
    const std::string path = pathFor(container_id);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return sysError("removing", path, errno);
    }
    return {};
  } catch (const std::exception& e) {
    return makeError(Errc::Internal,
                     fmt::format("removing {}: {}", pathFor(container_id), e.what()));
  }
}

}  // namespace flannel::cni
