// Golden-file comparison for the traffic renderers. Run a test binary with
// FLANNEL_UPDATE_GOLDEN=1 to rewrite the files from the current output, then review the diff.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace flannel::traffic::testing {

inline void expectGolden(const std::string& name, const std::string& actual) {
  const std::string path = std::string(FLANNEL_TRAFFIC_GOLDEN_DIR) + "/" + name;
  if (std::getenv("FLANNEL_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path, std::ios::binary) << actual;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << "missing golden file " << path << " (FLANNEL_UPDATE_GOLDEN=1 creates it)";
  std::stringstream buf;
  buf << in.rdbuf();
  EXPECT_EQ(actual, buf.str()) << "differs from " << path;
}

}  // namespace flannel::traffic::testing
