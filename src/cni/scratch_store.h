// DOC: ScratchStore, the plugin's memory between ADD and DEL/CHECK: one file per container,
// <dataDir>/<containerID>, holding the exact delegate config that ADD used (SPEC.md §7.5 step 5).
//
// ADD saves the file BEFORE it invokes the delegate, so a DEL after an ADD that failed halfway
// still finds the config and lets the delegate release what it had allocated.
//
// Guarantees:
//  - save() is atomic: the bytes go to a fresh temporary file in dataDir (O_EXCL, mode 0600
//    whatever the umask), are fsync()ed, renamed over the target, and the directory is fsync()ed.
//    A reader sees the old file or the new one, never a torn one; a crash leaves at most a
//    ".<id>.tmp-<pid>" file behind.
//  - dataDir (and any missing parent) is created with mode 0700; an existing directory is left
//    as it is.
//  - remove() of an absent file and load() of an absent file are not errors.
//  - Container IDs are file names: an ID that is empty, ".", "..", or holds '/' or NUL is
//    rejected (Errc::InvalidInput) before any file is touched.
// Errors are flannel::Error: Errc::Unavailable with sys_errno for failed system calls, naming the
// path. Not thread-safe for one container ID; runtimes never run two operations on one container
// at once (CNI spec), and different IDs never share a file.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace flannel::cni {

class ScratchStore {
 public:
  explicit ScratchStore(std::string data_dir) : dir_(std::move(data_dir)) {}

  const std::string& dir() const { return dir_; }
  // <dataDir>/<id> (no validation; for messages and tests).
  std::string pathFor(std::string_view container_id) const;

  Result<void> save(std::string_view container_id, std::string_view bytes) const noexcept;
  // The saved bytes, or nullopt when there is no file (at most 16 MiB are read).
  Result<std::optional<std::string>> load(std::string_view container_id) const noexcept;
  Result<void> remove(std::string_view container_id) const noexcept;

 private:
  std::string dir_;
};

}  // namespace flannel::cni
