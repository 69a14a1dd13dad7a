// The plugin's commands end to end, with real files in a temp dir and FakeRunner standing in
// for the delegate: exactly what reaches the delegate, what is printed, what is left on disk.
#include "cni/plugin.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>

#include "support/fake_runner.h"
#include "temp_dir.h"

namespace flannel::cni {
namespace {

namespace fs = std::filesystem;
using flannel::test::FakeRunner;
using ::testing::HasSubstr;

constexpr std::string_view kSubnetEnv =
    "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.1.1/24\nFLANNEL_MTU=1450\n"
    "FLANNEL_IPMASQ=true\n";

constexpr std::string_view kResult =
    R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/pod"}],)"
    R"("ips":[{"address":"10.5.1.2/24","gateway":"10.5.1.1","interface":0}],)"
    R"("routes":[{"dst":"10.5.0.0/16"}]})";

// Records whether the scratch file existed when the delegate was run.
class ProbeRunner final : public CommandRunner {
 public:
  ProbeRunner(CommandRunner& inner, std::string watched)
      : inner_(inner), watched_(std::move(watched)) {}
  Result<CommandOutput> run(const Command& cmd) override {
    existed.push_back(fs::exists(watched_));
    return inner_.run(cmd);
  }
  std::vector<bool> existed;

 private:
  CommandRunner& inner_;
  std::string watched_;
};

class CniPlugin : public ::testing::Test {
 protected:
  CniPlugin()
      : bridge_(test::writeExecutable(tmp_.str("bin/bridge"))),
        ptp_(test::writeExecutable(tmp_.str("bin/ptp"))) {
    test::writeFile(subnetFile(), kSubnetEnv);
  }

  std::string subnetFile() const { return tmp_.str("run/flannel/subnet.env"); }
  std::string dataDir() const { return tmp_.str("var/lib/cni/flannel"); }
  std::string scratch(const std::string& id = "c1") const { return dataDir() + "/" + id; }

  std::string conf(std::string_view version = "1.0.0", std::string_view extra = "") const {
    return fmt::format(
        R"({{"cniVersion":"{}","name":"cbr0","type":"flannel","subnetFile":"{}","dataDir":"{}",)"
        R"("delegate":{{"hairpinMode":true,"isDefaultGateway":true}}{}}})",
        version, subnetFile(), dataDir(), extra);
  }

  EnvMap env(std::string command, std::string id = "c1") const {
    return EnvMap{{"CNI_COMMAND", std::move(command)},
                  {"CNI_CONTAINERID", std::move(id)},
                  {"CNI_NETNS", "/run/netns/pod"},
                  {"CNI_IFNAME", "eth0"},
                  {"CNI_ARGS", "K8S_POD_NAME=web"},
                  {"CNI_PATH", tmp_.str("nothing-here") + ":" + tmp_.str("bin")}};
  }

  PluginOutput run(const EnvMap& e, std::string_view input) {
    Plugin plugin(runner_, PluginOptions{.delegate_timeout = std::chrono::seconds(5)});
    return plugin.run(e, input);
  }

  // The error JSON on stdout, checked for shape.
  static Json errorOf(const PluginOutput& out) {
    EXPECT_EQ(out.exit_code, 1);
    auto j = parseJson(out.out, "stdout");
    EXPECT_TRUE(j) << out.out;
    EXPECT_EQ(out.out.back(), '\n');
    return j ? *j : Json();
  }

  test::TempDir tmp_;
  std::string bridge_;
  std::string ptp_;
  FakeRunner runner_;
};

constexpr std::string_view kExpectedDelegate =
    R"({"cniVersion":"1.0.0","name":"cbr0","type":"bridge","hairpinMode":true,)"
    R"("isDefaultGateway":true,"ipMasq":false,"mtu":1450,"isGateway":true,)"
    R"("ipam":{"type":"host-local","ranges":[[{"subnet":"10.5.1.0/24"}]],)"
    R"("routes":[{"dst":"10.5.0.0/16"}]}})";

TEST_F(CniPlugin, VersionPrintsSupportedVersionsAndRunsNothing) {
  auto out = run(EnvMap{{"CNI_COMMAND", "VERSION"}}, "");
  EXPECT_EQ(out.exit_code, 0);
  EXPECT_EQ(out.out, renderVersionInfo());
  EXPECT_EQ(runner_.callCount(), 0u);
}

TEST_F(CniPlugin, AddSavesTheDelegateConfigThenRunsTheDelegateAndPrintsItsResult) {
  runner_.on({bridge_}, FakeRunner::exited(0, std::string(kResult), "bridge log line\n"));
  ProbeRunner probe(runner_, scratch());
  Plugin plugin(probe, PluginOptions{.delegate_timeout = std::chrono::seconds(5)});
  auto out = plugin.run(env("ADD"), conf());

  ASSERT_EQ(out.exit_code, 0) << out.out << out.err;
  EXPECT_EQ(out.out, kResult);
  EXPECT_EQ(probe.existed, std::vector<bool>{true});  // saved BEFORE the delegate ran
  EXPECT_EQ(test::readFile(scratch()), kExpectedDelegate);
  EXPECT_EQ(test::fileMode(scratch()), 0600u);
  EXPECT_EQ(test::fileMode(dataDir()), 0700u);

  ASSERT_EQ(runner_.callCount(), 1u);
  const auto calls = runner_.calls();
  const Command& cmd = calls[0];
  EXPECT_EQ(cmd.argv, std::vector<std::string>{bridge_});
  EXPECT_EQ(cmd.stdin_data, kExpectedDelegate);
  EXPECT_EQ(cmd.env_add, (std::map<std::string, std::string>{
                             {"CNI_COMMAND", "ADD"},
                             {"CNI_CONTAINERID", "c1"},
                             {"CNI_NETNS", "/run/netns/pod"},
                             {"CNI_IFNAME", "eth0"},
                             {"CNI_ARGS", "K8S_POD_NAME=web"},
                             {"CNI_PATH", tmp_.str("nothing-here") + ":" + tmp_.str("bin")}}));
  EXPECT_EQ(cmd.timeout, std::chrono::seconds(5));
  EXPECT_THAT(out.err, HasSubstr("delegate config saved to " + scratch()));
  EXPECT_THAT(out.err, HasSubstr("bridge log line"));
}

TEST_F(CniPlugin, AddWithoutSubnetEnvIsTryAgainLaterAndTouchesNothing) {
  fs::remove(subnetFile());
  auto out = run(env("ADD"), conf("0.3.1"));
  const Json e = errorOf(out);
  EXPECT_EQ(e["cniVersion"], "0.3.1");
  EXPECT_EQ(e["code"], 11);
  EXPECT_EQ(e["msg"], "subnet.env missing: flanneld is not running yet on this node (expected " +
                          subnetFile() + ")");
  EXPECT_EQ(e["details"],
            "flanneld writes this file once it holds a subnet lease; retry after it has started");
  EXPECT_EQ(e.size(), 4u);
  EXPECT_EQ(runner_.callCount(), 0u);
  EXPECT_FALSE(fs::exists(dataDir()));
}

TEST_F(CniPlugin, AddWithAMissingDelegateSavesNothing) {
  auto out = run(env("ADD"), conf("1.0.0", R"(,"delegate":{"type":"no-such-plugin"})"));
  const Json e = errorOf(out);
  EXPECT_EQ(e["code"], 100);
  EXPECT_EQ(e["msg"], "delegate plugin \"no-such-plugin\" not found on CNI_PATH");
  EXPECT_FALSE(fs::exists(scratch()));
  EXPECT_EQ(runner_.callCount(), 0u);
  // So a DEL afterwards has nothing to undo and succeeds.
  auto del = run(env("DEL"), conf());
  EXPECT_EQ(del.exit_code, 0) << del.out;
}

TEST_F(CniPlugin, AddPassesTheDelegatesErrorThroughAndKeepsTheFileForDel) {
  runner_.on({bridge_}, FakeRunner::exited(1, R"({"code":999,"msg":"failed to open netns"})"));
  auto out = run(env("ADD"), conf("0.4.0"));
  const Json e = errorOf(out);
  EXPECT_EQ(
      e,
      parseJson(R"({"cniVersion":"0.4.0","code":999,"msg":"failed to open netns"})", "x").value());
  EXPECT_TRUE(fs::exists(scratch()));
}

TEST_F(CniPlugin, ConfigErrorsAreReportedWithTheirCodes) {
  struct Case {
    std::string input;
    int code;
    std::string version;
    std::string msg_part;
  };
  const Case cases[] = {
      {"not json", 6, "1.0.0", "network config is not valid JSON"},
      {"[]", 6, "1.0.0", "network config must be a JSON object"},
      {conf("9.9.9"), 1, "1.0.0", "incompatible CNI versions"},
      {conf("0.3.1", R"(,"delegate":{"name":"x"})"), 7, "0.3.1",
       "\"delegate\" must not have a \"name\" key"},
      {conf("0.3.1", R"(,"delegate":{"ipam":{}})"), 7, "0.3.1",
       "\"delegate\" must not have an \"ipam\" key"},
      {conf("0.3.1", R"(,"delegate":{"type":7})"), 7, "0.3.1",
       "\"delegate.type\" must be a string, not an integer 7"},
  };
  for (const auto& c : cases) {
    auto out = run(env("ADD"), c.input);
    const Json e = errorOf(out);
    EXPECT_EQ(e["code"], c.code) << c.input;
    EXPECT_EQ(e["cniVersion"], c.version) << c.input;
    EXPECT_THAT(e["msg"].get<std::string>(), HasSubstr(c.msg_part)) << c.input;
    EXPECT_THAT(out.err, HasSubstr(fmt::format("error {}: ", c.code)));
  }
  EXPECT_EQ(runner_.callCount(), 0u);
  EXPECT_FALSE(fs::exists(dataDir()));
}

TEST_F(CniPlugin, EnvironmentErrorsAreCode4) {
  auto e = env("ADD");
  e.erase("CNI_IFNAME");
  const Json missing = errorOf(run(e, conf("0.3.1")));
  EXPECT_EQ(missing["code"], 4);
  EXPECT_EQ(missing["cniVersion"], "0.3.1");
  EXPECT_EQ(missing["msg"], "required environment variables missing for ADD: CNI_IFNAME");

  const Json unknown = errorOf(run(env("GC"), conf()));
  EXPECT_EQ(unknown["code"], 4);
}

TEST_F(CniPlugin, ScratchWriteFailureIsIoFailure) {
  test::writeFile(tmp_.str("var/lib/cni/flannel"), "a file where the directory should be");
  const Json e = errorOf(run(env("ADD"), conf()));
  EXPECT_EQ(e["code"], 5);
  EXPECT_THAT(e["msg"].get<std::string>(), HasSubstr("saving the delegate config: "));
  EXPECT_EQ(runner_.callCount(), 0u);
}

TEST_F(CniPlugin, DelRunsTheDelegateWithTheSavedBytesThenRemovesTheFile) {
  runner_.on({bridge_}, FakeRunner::exited(0, std::string(kResult)));
  ASSERT_EQ(run(env("ADD"), conf()).exit_code, 0);
  const std::string saved = test::readFile(scratch());
  // Even if the conflist changed since ADD, DEL hands the delegate what ADD used.
  fs::remove(subnetFile());
  auto out = run(env("DEL"), conf("1.0.0", R"(,"delegate":{"mtu":1})"));
  ASSERT_EQ(out.exit_code, 0) << out.out;
  EXPECT_EQ(out.out, "");
  ASSERT_EQ(runner_.callCount(), 2u);
  const auto calls = runner_.calls();
  const Command& del = calls[1];
  EXPECT_EQ(del.argv, std::vector<std::string>{bridge_});
  EXPECT_EQ(del.stdin_data, saved);
  EXPECT_EQ(del.env_add.at("CNI_COMMAND"), "DEL");
  EXPECT_FALSE(fs::exists(scratch()));

  // DEL twice: nothing to do, success, no delegate run.
  auto again = run(env("DEL"), conf());
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_EQ(again.out, "");
  EXPECT_EQ(runner_.callCount(), 2u);
  EXPECT_THAT(again.err, HasSubstr("nothing to do"));
}

TEST_F(CniPlugin, DelUsesTheSavedDelegateType) {
  test::writeFile(scratch(), R"({"cniVersion":"1.0.0","name":"cbr0","type":"ptp"})");
  runner_.on({ptp_}, FakeRunner::exited(0));
  auto out = run(env("DEL"), conf());
  ASSERT_EQ(out.exit_code, 0) << out.out;
  ASSERT_EQ(runner_.callCount(), 1u);
  EXPECT_EQ(runner_.calls()[0].argv, std::vector<std::string>{ptp_});
}

TEST_F(CniPlugin, DelWithoutNetnsStillRunsTheDelegate) {
  test::writeFile(scratch(), R"({"type":"bridge"})");
  runner_.on({bridge_}, FakeRunner::exited(0));
  auto e = env("DEL");
  e.erase("CNI_NETNS");
  ASSERT_EQ(run(e, conf()).exit_code, 0);
  EXPECT_FALSE(runner_.calls()[0].env_add.contains("CNI_NETNS"));
}

TEST_F(CniPlugin, DelKeepsTheFileWhenTheDelegateFailsSoARetryCanFinish) {
  test::writeFile(scratch(), R"({"type":"bridge"})");
  runner_.once({bridge_}, FakeRunner::exited(1, R"({"code":11,"msg":"ipam store locked"})"));
  runner_.on({bridge_}, FakeRunner::exited(0));
  const Json e = errorOf(run(env("DEL"), conf()));
  EXPECT_EQ(e["code"], 11);
  EXPECT_EQ(e["msg"], "ipam store locked");
  EXPECT_TRUE(fs::exists(scratch()));

  auto retry = run(env("DEL"), conf());
  EXPECT_EQ(retry.exit_code, 0) << retry.out;
  EXPECT_FALSE(fs::exists(scratch()));
  EXPECT_EQ(runner_.callCount(), 2u);
}

TEST_F(CniPlugin, DelWithAnUnusableSavedFileLogsRemovesItAndSucceeds) {
  for (const char* junk : {"{torn", "[1]", R"({"type":5})", R"({"notype":1})"}) {
    test::writeFile(scratch(), junk);
    auto out = run(env("DEL"), conf());
    EXPECT_EQ(out.exit_code, 0) << junk;
    EXPECT_EQ(out.out, "") << junk;
    EXPECT_THAT(out.err, HasSubstr("is unusable")) << junk;
    EXPECT_FALSE(fs::exists(scratch())) << junk;
  }
  EXPECT_EQ(runner_.callCount(), 0u);
}

TEST_F(CniPlugin, DelWhoseDelegateIsGoneFailsAndKeepsTheFile) {
  test::writeFile(scratch(), R"({"type":"uninstalled"})");
  const Json e = errorOf(run(env("DEL"), conf()));
  EXPECT_EQ(e["code"], 100);
  EXPECT_TRUE(fs::exists(scratch()));
}

TEST_F(CniPlugin, CheckHandsTheDelegateTheSavedConfigWithPrevResult) {
  runner_.on({bridge_}, FakeRunner::exited(0, std::string(kResult)));
  ASSERT_EQ(run(env("ADD"), conf()).exit_code, 0);
  runner_.clearCalls();
  auto out = run(env("CHECK"), conf("1.0.0", fmt::format(R"(,"prevResult":{})", kResult)));
  ASSERT_EQ(out.exit_code, 0) << out.out;
  EXPECT_EQ(out.out, "");
  ASSERT_EQ(runner_.callCount(), 1u);
  const auto calls = runner_.calls();
  const Command& cmd = calls[0];
  EXPECT_EQ(cmd.env_add.at("CNI_COMMAND"), "CHECK");
  Json expected = parseJson(kExpectedDelegate, "x").value();
  expected["prevResult"] = prevResultForCheck(parseJson(kResult, "x").value());
  EXPECT_EQ(parseJson(cmd.stdin_data, "stdin").value(), expected);
  EXPECT_EQ(expected["prevResult"]["routes"][0]["gw"], "10.5.1.1");
  EXPECT_TRUE(fs::exists(scratch()));  // CHECK changes nothing
}

TEST_F(CniPlugin, CheckOfAnUnknownContainerIsCode3) {
  const Json e = errorOf(run(env("CHECK", "never-added"), conf()));
  EXPECT_EQ(e["code"], 3);
  EXPECT_THAT(e["msg"].get<std::string>(),
              HasSubstr("container never-added is not attached to network cbr0"));
  EXPECT_EQ(runner_.callCount(), 0u);
}

TEST_F(CniPlugin, CheckNeedsCniVersion040) {
  test::writeFile(scratch(), R"({"type":"bridge"})");
  const Json e = errorOf(run(env("CHECK"), conf("0.3.1")));
  EXPECT_EQ(e["code"], 1);
  EXPECT_EQ(e["msg"], "config version \"0.3.1\" does not allow CHECK");
  EXPECT_EQ(runner_.callCount(), 0u);
}

TEST_F(CniPlugin, CheckFailsWhenTheNodeNoLongerHoldsThePodsSubnet) {
  runner_.on({bridge_}, FakeRunner::exited(0, std::string(kResult)));
  ASSERT_EQ(run(env("ADD"), conf()).exit_code, 0);
  test::writeFile(subnetFile(),
                  "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.9.1/24\nFLANNEL_MTU=1450\n"
                  "FLANNEL_IPMASQ=true\n");
  const Json e = errorOf(run(env("CHECK"), conf()));
  EXPECT_EQ(e["code"], 102);
  EXPECT_THAT(e["msg"].get<std::string>(),
              HasSubstr("the pod's subnet 10.5.1.0/24 is no longer this node's flannel subnet"));
  // And when flanneld's file is gone altogether: try again later.
  fs::remove(subnetFile());
  EXPECT_EQ(errorOf(run(env("CHECK"), conf()))["code"], 11);
}

TEST_F(CniPlugin, CheckPassesTheDelegatesErrorThrough) {
  test::writeFile(scratch(), std::string(kExpectedDelegate));
  runner_.on({bridge_}, FakeRunner::exited(1, R"({"code":999,"msg":"Failed to match addr"})"));
  const Json e = errorOf(run(env("CHECK"), conf()));
  EXPECT_EQ(e["code"], 999);
  EXPECT_EQ(e["msg"], "Failed to match addr");
}

TEST_F(CniPlugin, CheckWithAnUnparsableSavedFileIsCode6) {
  test::writeFile(scratch(), "{torn");
  const Json e = errorOf(run(env("CHECK"), conf()));
  EXPECT_EQ(e["code"], 6);
  EXPECT_THAT(e["msg"].get<std::string>(), HasSubstr("saved delegate config"));
}

}  // namespace
}  // namespace flannel::cni
