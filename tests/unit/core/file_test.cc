// readSmallFile (core/file.h) and the callers' mapping of its errors, on real files in a
// private temporary directory.
#include "core/file.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/subnet_env.h"

namespace flannel {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "flannel-file-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string write(const std::string& name, const std::string& text) {
    auto p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  fs::path dir_;
};

TEST_F(FileTest, ReadsTheWholeFile) {
  std::string big(20000, 'x');  // more than one read() buffer
  big[12345] = '\0';
  auto p = write("f", big);
  auto r = readSmallFile(p, 1 << 20);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, big);
  auto empty = readSmallFile(write("e", ""), 10);
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, "");
}

TEST_F(FileTest, ErrorsNameThePathAndCarryTheErrno) {
  const std::string missing = (dir_ / "missing").string();
  auto r = readSmallFile(missing, 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::NotFound);
  EXPECT_EQ(r.error().sys_errno, ENOENT);
  EXPECT_EQ(r.error().message, "opening " + missing + ": No such file or directory");

  auto dir = readSmallFile(dir_.string(), 100);
  ASSERT_FALSE(dir);
  EXPECT_EQ(dir.error().code, Errc::Unavailable);
  EXPECT_EQ(dir.error().sys_errno, EISDIR);
  EXPECT_EQ(dir.error().message, "reading " + dir_.string() + ": Is a directory");

  auto p = write("big", std::string(101, 'y'));
  auto big = readSmallFile(p, 100);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::InvalidInput);
  EXPECT_EQ(big.error().message, p + ": larger than 100 bytes");
  EXPECT_TRUE(readSmallFile(p, 101));

  const std::string link = (dir_ / "link").string();
  ASSERT_EQ(::symlink(p.c_str(), link.c_str()), 0);
  EXPECT_TRUE(readSmallFile(link, 1000));
  auto nofollow = readSmallFile(link, 1000, O_NOFOLLOW);
  ASSERT_FALSE(nofollow);
  EXPECT_EQ(nofollow.error().sys_errno, ELOOP);
  EXPECT_EQ(nofollow.error().code, Errc::Unavailable);
}

TEST_F(FileTest, SubnetEnvMapsMissingToEmptyAndOversizeToInvalidInput) {
  auto none = readSubnetEnv((dir_ / "subnet.env").string());
  ASSERT_TRUE(none) << none.error().message;
  auto p = write("huge.env", std::string((1 << 20) + 1, '#'));
  auto huge = readSubnetEnv(p);
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code, Errc::InvalidInput);
  EXPECT_THAT(huge.error().message, HasSubstr(": larger than 1048576 bytes; not a subnet.env"));
}

}  // namespace
}  // namespace flannel
