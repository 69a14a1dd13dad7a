#include "cni/scratch_store.h"

#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "temp_dir.h"

namespace flannel::cni {
namespace {

namespace fs = std::filesystem;
using test::fileMode;
using test::TempDir;
using ::testing::HasSubstr;

// Sets the umask for one scope (the process-wide value is restored afterwards).
struct UmaskScope {
  explicit UmaskScope(mode_t mask) : old(::umask(mask)) {}
  ~UmaskScope() { ::umask(old); }
  mode_t old;
};

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(CniScratchStore, SaveCreatesDir0700AndFile0600WhateverTheUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{022}, mode_t{077}}) {
    TempDir tmp;
    UmaskScope umask_scope(mask);
    const ScratchStore store(tmp.str("var/lib/cni/flannel"));
    ASSERT_TRUE(store.save("abc", R"({"type":"bridge"})"));
    EXPECT_EQ(fileMode(tmp.str("var/lib/cni/flannel")), 0700u) << mask;
    EXPECT_EQ(fileMode(tmp.str("var/lib/cni")), 0700u) << mask;
    EXPECT_EQ(fileMode(store.pathFor("abc")), 0600u) << mask;
    EXPECT_EQ(test::readFile(store.pathFor("abc")), R"({"type":"bridge"})");
  }
}

TEST(CniScratchStore, ExistingDirectoryIsLeftAsItIs) {
  TempDir tmp;
  fs::create_directories(tmp.str("data"));
  ::chmod(tmp.str("data").c_str(), 0755);
  const ScratchStore store(tmp.str("data"));
  ASSERT_TRUE(store.save("abc", "{}"));
  EXPECT_EQ(fileMode(tmp.str("data")), 0755u);
}

TEST(CniScratchStore, SaveReplacesTheWholeFileAndLeavesNoTemporaryFiles) {
  TempDir tmp;
  const ScratchStore store(tmp.str("data"));
  ASSERT_TRUE(store.save("c1", std::string(10000, 'x')));
  ASSERT_TRUE(store.save("c1", "short"));
  ASSERT_TRUE(store.save("c2", "other"));
  EXPECT_EQ(test::readFile(store.pathFor("c1")), "short");
  EXPECT_EQ(entries(tmp.str("data")), (std::vector<std::string>{"c1", "c2"}));
}

TEST(CniScratchStore, LoadAndRemove) {
  TempDir tmp;
  const ScratchStore store(tmp.str("data"));
  auto absent = store.load("nothing");
  ASSERT_TRUE(absent) << absent.error().message;
  EXPECT_FALSE(*absent);  // no file, and no directory either
  ASSERT_TRUE(store.remove("nothing"));

  ASSERT_TRUE(store.save("abc", "bytes\n"));
  auto loaded = store.load("abc");
  ASSERT_TRUE(loaded);
  ASSERT_TRUE(*loaded);
  EXPECT_EQ(**loaded, "bytes\n");
  ASSERT_TRUE(store.remove("abc"));
  EXPECT_FALSE(*store.load("abc"));
  EXPECT_TRUE(store.remove("abc"));  // twice is fine
}

TEST(CniScratchStore, IdsThatAreNotFileNamesAreRejectedBeforeAnyFileIsTouched) {
  TempDir tmp;
  const ScratchStore store(tmp.str("data"));
  for (const char* bad : {"", ".", "..", "../escape", "a/b"}) {
    auto saved = store.save(bad, "x");
    ASSERT_FALSE(saved) << bad;
    EXPECT_EQ(saved.error().code, Errc::InvalidInput);
    EXPECT_FALSE(store.load(bad));
    EXPECT_FALSE(store.remove(bad));
  }
  EXPECT_FALSE(fs::exists(tmp.str("data")));
  EXPECT_FALSE(fs::exists(tmp.str("escape")));
}

TEST(CniScratchStore, DataDirThatIsAFileFailsWithTheReason) {
  TempDir tmp;
  test::writeFile(tmp.str("data"), "a file");
  const ScratchStore store(tmp.str("data"));
  auto saved = store.save("abc", "x");
  ASSERT_FALSE(saved);
  EXPECT_EQ(saved.error().code, Errc::Unavailable);
  EXPECT_EQ(saved.error().sys_errno, ENOTDIR);
  EXPECT_THAT(saved.error().message, HasSubstr(tmp.str("data")));

  const ScratchStore nested(tmp.str("data/sub"));
  auto nested_saved = nested.save("abc", "x");
  ASSERT_FALSE(nested_saved);
  EXPECT_EQ(nested_saved.error().sys_errno, ENOTDIR);
}

TEST(CniScratchStore, LoadOfADirectoryIsAnError) {
  TempDir tmp;
  fs::create_directories(tmp.str("data/abc"));
  const ScratchStore store(tmp.str("data"));
  auto loaded = store.load("abc");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().sys_errno, EISDIR);
}

TEST(CniScratchStore, ASymlinkIsNotFollowed) {
  TempDir tmp;
  test::writeFile(tmp.str("secret"), "secret");
  fs::create_directories(tmp.str("data"));
  fs::create_symlink(tmp.str("secret"), tmp.str("data/abc"));
  const ScratchStore store(tmp.str("data"));
  EXPECT_FALSE(store.load("abc"));
  // save() replaces the link itself, never writes through it.
  ASSERT_TRUE(store.save("abc", "new"));
  EXPECT_EQ(test::readFile(tmp.str("secret")), "secret");
  EXPECT_FALSE(fs::is_symlink(tmp.str("data/abc")));
}

}  // namespace
}  // namespace flannel::cni
