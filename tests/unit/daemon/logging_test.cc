#include "daemon/logging.h"

#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "core/log.h"

namespace flannel::daemon {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace lvl = spdlog::level;

TEST(Logging, VerbosityMapsToLevels) {
  EXPECT_EQ(levelForVerbosity(-1), lvl::info);
  EXPECT_EQ(levelForVerbosity(0), lvl::info);
  EXPECT_EQ(levelForVerbosity(1), lvl::debug);
  EXPECT_EQ(levelForVerbosity(3), lvl::debug);
  EXPECT_EQ(levelForVerbosity(4), lvl::trace);
  EXPECT_EQ(levelForVerbosity(10), lvl::trace);
}

TEST(Logging, ParseVmodule) {
  auto rules = parseVmodule("backend.*=2,kernel=4,,store.etcd=0,");
  ASSERT_TRUE(rules.has_value()) << rules.error().message;
  // N = 0 entries and empty entries are dropped, as klog does.
  EXPECT_EQ(*rules, (std::vector<VmoduleRule>{{.pattern = "backend.*", .verbosity = 2},
                                              {.pattern = "kernel", .verbosity = 4}}));
  EXPECT_TRUE(parseVmodule("")->empty());
}

TEST(Logging, ParseVmoduleErrorsNameTheEntry) {
  EXPECT_THAT(parseVmodule("a=1,vxlan").error().message, HasSubstr("\"vxlan\""));
  EXPECT_THAT(parseVmodule("=3").error().message, HasSubstr("\"=3\""));
  EXPECT_THAT(parseVmodule("a=b=1").error().message, HasSubstr("\"a=b=1\""));
  EXPECT_THAT(parseVmodule("a=-2").error().message, HasSubstr("negative"));
  EXPECT_THAT(parseVmodule("a=0x2").error().message, HasSubstr("not an integer"));
}

TEST(Logging, CheckBacktraceAt) {
  EXPECT_TRUE(checkBacktraceAt("").has_value());
  EXPECT_TRUE(checkBacktraceAt("main.go:42").has_value());
  EXPECT_FALSE(checkBacktraceAt("main.go").has_value());
  EXPECT_FALSE(checkBacktraceAt("main.go:0").has_value());
  EXPECT_FALSE(checkBacktraceAt("main.go:-1").has_value());
}

TEST(Logging, GlobMatch) {
  struct Case {
    const char* pattern;
    const char* text;
    bool want;
  };
  const std::vector<Case> cases = {
      {"vxlan", "vxlan", true},
      {"vxlan", "vxlan2", false},
      {"*", "", true},
      {"*", "anything.at.all", true},
      {"backend.*", "backend.vxlan", true},
      {"backend.*", "backend", false},
      {"b*d.v?lan", "backend.vxlan", true},
      {"?", "", false},
      {"a*b*c", "aXbYbZc", true},
      {"a*b*c", "aXbYbZ", false},
      {"store.etcd", "store.etcdx", false},
      {"", "", true},
      {"", "x", false},
      {"**", "x", true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(globMatch(c.pattern, c.text), c.want) << c.pattern << " vs " << c.text;
  }
}

TEST(Logging, VmodulePatternMatchesWholeNameOrLastPart) {
  EXPECT_TRUE(vmoduleMatches("vxlan", "backend.vxlan"));
  EXPECT_TRUE(vmoduleMatches("backend.vxlan", "backend.vxlan"));
  EXPECT_TRUE(vmoduleMatches("backend.*", "backend.vxlan"));
  EXPECT_TRUE(vmoduleMatches("kernel", "kernel"));
  EXPECT_FALSE(vmoduleMatches("backend", "backend.vxlan"));
  EXPECT_FALSE(vmoduleMatches("etcd", "store.etcd.client"));
  EXPECT_TRUE(vmoduleMatches("client", "store.etcd.client"));
}

TEST(Logging, SettingsLevelForLogger) {
  const LogSettings settings{
      .verbosity = 1,
      .vmodule = {{.pattern = "vxlan", .verbosity = 4},
                  {.pattern = "backend.*", .verbosity = 2},
                  {.pattern = "backend.udp", .verbosity = 6}},
  };
  EXPECT_EQ(settings.verbosityFor("backend.vxlan"), 4);
  EXPECT_EQ(settings.levelFor("backend.vxlan"), lvl::trace);
  // First match wins, as in klog.
  EXPECT_EQ(settings.verbosityFor("backend.udp"), 2);
  EXPECT_EQ(settings.levelFor("backend.udp"), lvl::debug);
  EXPECT_EQ(settings.verbosityFor("store.etcd"), 1);
  EXPECT_EQ(settings.lowestLevel(), lvl::trace);
  // vmodule never lowers the verbosity below -v.
  const LogSettings high{.verbosity = 5, .vmodule = {{.pattern = "kernel", .verbosity = 1}}};
  EXPECT_EQ(high.levelFor("kernel"), lvl::trace);
  EXPECT_EQ(LogSettings{}.lowestLevel(), lvl::info);
}

TEST(Logging, SettingsFromOptions) {
  Options options;
  options.v = 2;
  options.vmodule = "kernel=5";
  options.log_backtrace_at = "a.go:1";
  auto settings = logSettingsFrom(options);
  ASSERT_TRUE(settings.has_value());
  EXPECT_EQ(settings->verbosity, 2);
  EXPECT_EQ(settings->vmodule, (std::vector<VmoduleRule>{{.pattern = "kernel", .verbosity = 5}}));
  EXPECT_EQ(settings->backtrace_at, "a.go:1");
  options.vmodule = "kernel";
  EXPECT_FALSE(logSettingsFrom(options).has_value());
}

// setupLogging() changes process-wide spdlog state; each test installs its own output.
class LoggingSetup : public ::testing::Test {
 protected:
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> captureInto(std::ostringstream& out) {
    return std::make_shared<spdlog::sinks::ostream_sink_mt>(out, /*force_flush=*/true);
  }
  void TearDown() override {
    spdlog::drop_all();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("", spdlog::sinks_init_list{}));
  }
};

TEST_F(LoggingSetup, KlogLikeLineFormat) {
  std::ostringstream out;
  setupLogging(LogSettings{}, captureInto(out));
  flannel::logger("backend.vxlan")->info("hello {}", 42);
  flannel::logger("kernel")->warn("careful");
  flannel::logger("kernel")->error("broken");
  spdlog::info("from the default logger");
  const std::string text = out.str();
  const std::regex info(R"(^I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ backend\.vxlan\] hello 42$)",
                        std::regex::multiline);
  EXPECT_TRUE(std::regex_search(text, info)) << text;
  EXPECT_TRUE(
      std::regex_search(text, std::regex(R"(^W\d{4} .* kernel\] careful$)", std::regex::multiline)))
      << text;
  EXPECT_TRUE(
      std::regex_search(text, std::regex(R"(^E\d{4} .* kernel\] broken$)", std::regex::multiline)))
      << text;
  EXPECT_TRUE(std::regex_search(
      text, std::regex(R"(^I\d{4} .* flanneld\] from the default)", std::regex::multiline)))
      << text;
}

TEST_F(LoggingSetup, VerbosityZeroHidesDebug) {
  std::ostringstream out;
  setupLogging(LogSettings{}, captureInto(out));
  flannel::logger("kernel")->debug("hidden");
  flannel::logger("kernel")->info("shown");
  EXPECT_THAT(out.str(), Not(HasSubstr("hidden")));
  EXPECT_THAT(out.str(), HasSubstr("shown"));
}

TEST_F(LoggingSetup, VerbosityOneShowsDebugNotTrace) {
  std::ostringstream out;
  setupLogging(LogSettings{.verbosity = 1}, captureInto(out));
  flannel::logger("kernel")->debug("dbg");
  flannel::logger("kernel")->trace("trc");
  EXPECT_THAT(out.str(), HasSubstr("D"));
  EXPECT_THAT(out.str(), HasSubstr("kernel] dbg"));
  EXPECT_THAT(out.str(), Not(HasSubstr("trc")));
}

TEST_F(LoggingSetup, VmoduleAppliesToLoggersCreatedBeforeAndAfterSetup) {
  auto before = flannel::logger("backend.vxlan");
  std::ostringstream out;
  setupLogging(LogSettings{.vmodule = {{.pattern = "vxlan", .verbosity = 4},
                                       {.pattern = "store.*", .verbosity = 1}}},
               captureInto(out));
  auto after_store = flannel::logger("store.etcd");
  auto after_kernel = flannel::logger("kernel");

  before->trace("vxlan-trace");
  after_store->debug("etcd-debug");
  after_store->trace("etcd-trace");
  after_kernel->debug("kernel-debug");
  after_kernel->info("kernel-info");
  spdlog::debug("root-debug");

  const std::string text = out.str();
  EXPECT_THAT(text, HasSubstr("backend.vxlan] vxlan-trace"));
  EXPECT_THAT(text, HasSubstr("store.etcd] etcd-debug"));
  EXPECT_THAT(text, Not(HasSubstr("etcd-trace")));
  EXPECT_THAT(text, Not(HasSubstr("kernel-debug")));
  EXPECT_THAT(text, HasSubstr("kernel] kernel-info"));
  EXPECT_THAT(text, Not(HasSubstr("root-debug")));
  EXPECT_EQ(before->level(), lvl::trace);
}

TEST_F(LoggingSetup, BacktraceAtIsReportedAsUnsupported) {
  std::ostringstream out;
  setupLogging(LogSettings{.backtrace_at = "main.go:10"}, captureInto(out));
  EXPECT_TRUE(std::regex_search(
      out.str(), std::regex(R"(^W\d{4} .*\] -log_backtrace_at=main\.go:10 .*not supported)",
                            std::regex::multiline)))
      << out.str();
}

}  // namespace
}  // namespace flannel::daemon
