// A private temporary directory for one test (removed with everything in it), and small file
// helpers for the CNI unit tests. No root needed.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace flannel::cni::test {

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "flannel-cni-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::abort();  // no temp dir: nothing sensible can run
    }
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  const std::filesystem::path& path() const { return path_; }
  std::string str(std::string_view sub = {}) const {
    return sub.empty() ? path_.string() : (path_ / std::string(sub)).string();
  }

 private:
  std::filesystem::path path_;
};

inline void writeFile(const std::string& path, std::string_view text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

inline std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// A stand-in plugin binary: an executable file the FakeRunner never actually runs.
inline std::string writeExecutable(const std::string& path) {
  writeFile(path, "#!/bin/sh\nexit 0\n");
  ::chmod(path.c_str(), 0755);
  return path;
}

inline mode_t fileMode(const std::string& path) {
  struct stat st {};
  ::stat(path.c_str(), &st);
  return st.st_mode & 07777;
}

}  // namespace flannel::cni::test
