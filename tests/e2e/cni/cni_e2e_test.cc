// The flannel CNI plugin in network namespaces, run exactly as a container runtime runs it: our
// `flannel` binary inside a host namespace (`ip netns exec <host>`), CNI_* variables, the config
// on stdin, CNI_NETNS=/run/netns/<pod namespace>, and Debian's real bridge / host-local plugins
// from /usr/lib/cni as delegates.
//
//   pod1 10.5.1.2 - cni0 10.5.1.1 [h1] eth0 .11 =br0= .12 eth0 [h2] cni0 10.5.2.1 - pod2 .2.2
//
// flanneld is not used yet: each test writes the hosts' subnet.env files itself (as flanneld
// would) and adds the host-gw style routes between the hosts by hand. Everything (subnet.env,
// the plugin's dataDir, host-local's dataDir) lives under the TestRun's temp dir; every
// namespace is ours and is deleted at the end. Needs root; skipped otherwise.
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/exec.h"
#include "core/json_util.h"
#include "core/subnet_env.h"
#include "support/netns.h"
#include "support/test_run.h"
#include "support/topology.h"

namespace flannel::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr const char* kDebianCniDir = "/usr/lib/cni";

#define ASSIGN_OR_FAIL(name, expr)                             \
  auto name##_result = (expr);                                 \
  ASSERT_TRUE(name##_result) << name##_result.error().message; \
  auto name = std::move(*name##_result)

#define ASSERT_OK(expr)                                    \
  do {                                                     \
    auto ok_result_ = (expr);                              \
    ASSERT_TRUE(ok_result_) << ok_result_.error().message; \
  } while (0)

IpNet net(const char* s) {
  return IpNet::parse(s).value();
}

// What a runtime gets back from one plugin run.
struct CniRun {
  int exit_code = -1;
  std::string out{};
  std::string err{};
  Json json{};  // stdout parsed (null when empty or not JSON)

  std::string describe() const {
    return fmt::format("exit {}\nstdout: {}\nstderr: {}", exit_code, out, err);
  }
};

// Per host: the files flanneld and the runtime would have on that node.
struct HostFiles {
  std::string subnet_file{};
  std::string data_dir{};        // the flannel plugin's scratch files
  std::string host_local_dir{};  // host-local's lease store (ipam.dataDir)
};

class CniPrivileged : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (creates network namespaces); CI runs these tests as root";
    }
    for (const char* plugin : {"bridge", "host-local", "loopback"}) {
      const auto path = fs::path(kDebianCniDir) / plugin;
      ASSERT_EQ(::access(path.c_str(), X_OK), 0)
          << path << " is missing: install Debian's containernetworking-plugins (scripts/setup)";
    }
    ASSIGN_OR_FAIL(run, TestRun::create());
    run_ = std::move(run);
    ASSIGN_OR_FAIL(topo, Topology::create(*run_, {.hosts = 2, .etcd_nodes = 0, .mtu = 1500}));
    topo_ = std::move(topo);
    ASSIGN_OR_FAIL(ip, toolPath("ip"));
    ip_ = ip;
    for (int h = 1; h <= 2; ++h) {
      const fs::path dir = run_->dir() / fmt::format("h{}", h);
      files_.push_back(HostFiles{.subnet_file = (dir / "run/flannel/subnet.env").string(),
                                 .data_dir = (dir / "var/lib/cni/flannel").string(),
                                 .host_local_dir = (dir / "var/lib/cni/networks").string()});
      writeHostSubnetEnv(h, false);
    }
  }

  void TearDown() override {
    pods_.clear();
    if (topo_) {
      auto destroyed = topo_->destroy();
      EXPECT_TRUE(destroyed) << destroyed.error().message;
    }
    if (run_) {
      auto torn = run_->teardown();
      EXPECT_TRUE(torn) << torn.error().message;
    }
  }

  // subnet.env of host h as flanneld writes it: Network 10.5.0.0/16, subnet 10.5.<h>.0/24
  // (+ fd55::/48, fd55:0:0:<h>::/64 when dual stack), MTU 1450, --ip-masq.
  void writeHostSubnetEnv(int h, bool dual_stack) {
    SubnetEnv env{.network = net("10.5.0.0/16"),
                  .subnet = IpNet::parse(fmt::format("10.5.{}.0/24", h)).value(),
                  .mtu = 1450,
                  .ipmasq = true};
    if (dual_stack) {
      env.ipv6_network = net("fd55::/48");
      env.ipv6_subnet = IpNet::parse(fmt::format("fd55:0:0:{}::/64", h)).value();
    }
    auto written = writeSubnetEnv(files_[h - 1].subnet_file, env);
    ASSERT_TRUE(written) << written.error().message;
  }

  const HostFiles& files(int h) const { return files_[h - 1]; }

  // The "flannel" entry of the stock conflist, pointed at this host's files.
  std::string conf(int h, std::string_view version = "0.3.1", std::string_view extra = "") const {
    return fmt::format(
        R"({{"cniVersion":"{}","name":"cbr0","type":"flannel","subnetFile":"{}","dataDir":"{}",)"
        R"("delegate":{{"hairpinMode":true,"isDefaultGateway":true}},)"
        R"("ipam":{{"dataDir":"{}"}}{}}})",
        version, files(h).subnet_file, files(h).data_dir, files(h).host_local_dir, extra);
  }

  Netns& newPod(const std::string& role) {
    auto pod = Netns::create(*run_, role);
    if (!pod) {
      throw std::runtime_error("creating pod namespace: " + pod.error().message);  // fails the test
    }
    pods_.push_back(std::move(*pod));
    return *pods_.back();
  }

  static std::string netnsPath(const Netns& ns) { return "/run/netns/" + ns.name(); }

  // Runs `flannel` inside host h the way a runtime does.
  CniRun cni(int h, std::string_view command, const std::string& container_id,
             const std::string& netns_path, std::string config,
             std::map<std::string, std::string> overrides = {}) {
    Command cmd;
    cmd.argv = {ip_, "netns", "exec", topo_->host(h).name(), FLANNEL_CNI_BINARY};
    cmd.inherit_env = false;
    cmd.env_add = {{"PATH", std::string(kDefaultPath)},
                   {"CNI_COMMAND", std::string(command)},
                   {"CNI_CONTAINERID", container_id},
                   {"CNI_NETNS", netns_path},
                   {"CNI_IFNAME", "eth0"},
                   {"CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default"},
                   {"CNI_PATH", (run_->dir() / "no-plugins-here").string() + ":" + kDebianCniDir}};
    for (auto& [k, v] : overrides) {
      if (v.empty()) {
        cmd.env_add.erase(k);
      } else {
        cmd.env_add[k] = v;
      }
    }
    cmd.stdin_data = std::move(config);
    cmd.timeout = 60s;
    CniRun out;
    auto ran = run_->runner().run(cmd);
    EXPECT_TRUE(ran) << ran.error().message;
    if (!ran) {
      return out;
    }
    out.exit_code = ran->exit_code;
    out.out = ran->out;
    out.err = ran->err;
    if (auto j = parseJson(out.out, "stdout")) {
      out.json = *j;
    }
    return out;
  }

  // The conf of a CHECK: the ADD config plus the ADD result as prevResult (what libcni sends).
  static std::string withPrevResult(const std::string& config, const Json& result) {
    Json j = parseJson(config, "conf").value();
    j["prevResult"] = result;
    return j.dump();
  }

  std::string ipOut(Netns& ns, std::vector<std::string> args) {
    auto out = ns.ip(std::move(args));
    EXPECT_TRUE(out) << out.error().message;
    return out ? out->out : std::string();
  }

  static void expectCniError(const CniRun& run, int code, std::string_view cni_version) {
    EXPECT_EQ(run.exit_code, 1) << run.describe();
    ASSERT_TRUE(run.json.is_object()) << run.describe();
    EXPECT_EQ(run.json.value("code", -1), code) << run.describe();
    EXPECT_EQ(run.json.value("cniVersion", ""), cni_version) << run.describe();
    EXPECT_TRUE(run.json.contains("msg")) << run.describe();
  }

  std::unique_ptr<TestRun> run_;
  std::unique_ptr<Topology> topo_;
  std::vector<std::unique_ptr<Netns>> pods_;
  std::vector<HostFiles> files_;
  std::string ip_;
};

TEST_F(CniPrivileged, PodsOnTwoHostsGetAddressesAndPingEachOther) {
  Netns* pods[3] = {nullptr, &newPod("pod1"), &newPod("pod2")};
  for (int h = 1; h <= 2; ++h) {
    const std::string id = fmt::format("pod{}-container", h);
    const CniRun add = cni(h, "ADD", id, netnsPath(*pods[h]), conf(h));
    ASSERT_EQ(add.exit_code, 0) << add.describe();

    // The result the runtime gets: bridge's, in the config's version, listing the pod's IP.
    ASSERT_TRUE(add.json.is_object()) << add.describe();
    EXPECT_EQ(add.json["cniVersion"], "0.3.1");
    ASSERT_EQ(add.json["ips"].size(), 1u) << add.describe();
    EXPECT_EQ(add.json["ips"][0]["address"], fmt::format("10.5.{}.2/24", h));
    EXPECT_EQ(add.json["ips"][0]["gateway"], fmt::format("10.5.{}.1", h));

    // The kernel state bridge built from the delegate config.
    EXPECT_THAT(ipOut(*pods[h], {"-4", "addr", "show", "dev", "eth0"}),
                HasSubstr(fmt::format("inet 10.5.{}.2/24", h)));
    EXPECT_THAT(ipOut(*pods[h], {"link", "show", "dev", "eth0"}), HasSubstr("mtu 1450"));
    EXPECT_THAT(ipOut(topo_->host(h), {"-4", "addr", "show", "dev", "cni0"}),
                HasSubstr(fmt::format("inet 10.5.{}.1/24", h)));
    const std::string routes = ipOut(*pods[h], {"-4", "route", "show"});
    EXPECT_THAT(routes, HasSubstr(fmt::format("default via 10.5.{}.1", h)));
    EXPECT_THAT(routes, HasSubstr(fmt::format("10.5.0.0/16 via 10.5.{}.1", h)));

    // The scratch file and host-local's lease, both under the run's temp dir.
    const std::string scratch = files(h).data_dir + "/" + id;
    ASSERT_TRUE(fs::exists(scratch)) << add.describe();
    struct stat st {};
    ASSERT_EQ(::stat(scratch.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_TRUE(fs::exists(fmt::format("{}/cbr0/10.5.{}.2", files(h).host_local_dir, h)));
  }

  // What host-gw flanneld will do later: a route to each other host's subnet via its address.
  ASSERT_OK(topo_->host(1).ip({"route", "add", "10.5.2.0/24", "via", Topology::hostAddress(2)}));
  ASSERT_OK(topo_->host(2).ip({"route", "add", "10.5.1.0/24", "via", Topology::hostAddress(1)}));
  auto ping12 = pods[1]->ping("10.5.2.2", 10s);
  EXPECT_TRUE(ping12) << ping12.error().message;
  auto ping21 = pods[2]->ping("10.5.1.2", 10s);
  EXPECT_TRUE(ping21) << ping21.error().message;

  // DEL: the pod's veth goes, host-local releases the address, the scratch file goes.
  for (int h = 1; h <= 2; ++h) {
    const std::string id = fmt::format("pod{}-container", h);
    EXPECT_THAT(ipOut(topo_->host(h), {"-o", "link", "show", "master", "cni0"}), HasSubstr("veth"));
    const CniRun del = cni(h, "DEL", id, netnsPath(*pods[h]), conf(h));
    ASSERT_EQ(del.exit_code, 0) << del.describe();
    EXPECT_EQ(del.out, "");
    EXPECT_EQ(ipOut(topo_->host(h), {"-o", "link", "show", "master", "cni0"}), "");
    EXPECT_EQ(ipOut(*pods[h], {"-o", "link", "show"}).find("eth0"), std::string::npos);
    EXPECT_FALSE(fs::exists(fmt::format("{}/cbr0/10.5.{}.2", files(h).host_local_dir, h)));
    EXPECT_FALSE(fs::exists(files(h).data_dir + "/" + id));

    const CniRun again = cni(h, "DEL", id, netnsPath(*pods[h]), conf(h));
    EXPECT_EQ(again.exit_code, 0) << again.describe();
    EXPECT_EQ(again.out, "");
  }
}

TEST_F(CniPrivileged, CheckPassesOnAHealthyPodAndFailsOnceItIsBroken) {
  Netns& pod_a = newPod("pod-a");
  Netns& pod_b = newPod("pod-b");
  // CHECK exists from CNI 0.4.0 on.
  const std::string config = conf(1, "1.0.0");
  const CniRun add_a = cni(1, "ADD", "ctr-a", netnsPath(pod_a), config);
  ASSERT_EQ(add_a.exit_code, 0) << add_a.describe();
  const CniRun add_b = cni(1, "ADD", "ctr-b", netnsPath(pod_b), config);
  ASSERT_EQ(add_b.exit_code, 0) << add_b.describe();
  EXPECT_EQ(add_b.json["ips"][0]["address"], "10.5.1.3/24");

  for (const auto& [id, pod, add] :
       {std::tuple{"ctr-a", &pod_a, &add_a}, std::tuple{"ctr-b", &pod_b, &add_b}}) {
    const CniRun check = cni(1, "CHECK", id, netnsPath(*pod), withPrevResult(config, add->json));
    EXPECT_EQ(check.exit_code, 0) << check.describe();
    EXPECT_EQ(check.out, "");
  }

  // Break pod a: its address is gone.
  ASSERT_OK(pod_a.ip({"addr", "del", "10.5.1.2/24", "dev", "eth0"}));
  const CniRun broken_a =
      cni(1, "CHECK", "ctr-a", netnsPath(pod_a), withPrevResult(config, add_a.json));
  expectCniError(broken_a, 999, "1.0.0");
  EXPECT_THAT(broken_a.json.value("msg", ""), HasSubstr("10.5.1.2/24"));

  // Break pod b: its veth pair is gone (deleting the host end takes the pod end with it).
  const std::string host_veth = add_b.json["interfaces"][1]["name"].get<std::string>();
  ASSERT_OK(topo_->host(1).ip({"link", "del", host_veth}));
  const CniRun broken_b =
      cni(1, "CHECK", "ctr-b", netnsPath(pod_b), withPrevResult(config, add_b.json));
  EXPECT_EQ(broken_b.exit_code, 1) << broken_b.describe();
  EXPECT_TRUE(broken_b.json.contains("code")) << broken_b.describe();

  // A container that was never added.
  const CniRun unknown =
      cni(1, "CHECK", "never-added", netnsPath(pod_a), withPrevResult(config, add_a.json));
  expectCniError(unknown, 3, "1.0.0");

  // DEL still cleans up broken pods.
  for (const auto& [id, pod] : {std::pair{"ctr-a", &pod_a}, std::pair{"ctr-b", &pod_b}}) {
    const CniRun del = cni(1, "DEL", id, netnsPath(*pod), config);
    EXPECT_EQ(del.exit_code, 0) << del.describe();
  }
  EXPECT_FALSE(fs::exists(files(1).host_local_dir + "/cbr0/10.5.1.2"));
  EXPECT_FALSE(fs::exists(files(1).host_local_dir + "/cbr0/10.5.1.3"));
}

TEST_F(CniPrivileged, FailuresAreCniErrorJsonWithTheRightCodes) {
  Netns& pod = newPod("pod");
  const std::string pod_path = netnsPath(pod);

  // Malformed config: 6, decoding.
  expectCniError(cni(1, "ADD", "c-bad", pod_path, R"({"cniVersion":"0.3.1","name":)"), 6, "1.0.0");

  // Invalid config: 7.
  expectCniError(
      cni(1, "ADD", "c-bad", pod_path, conf(1, "0.3.1", R"(,"delegate":{"name":"mine"})")), 7,
      "0.3.1");

  // Missing environment: 4.
  expectCniError(cni(1, "ADD", "c-bad", pod_path, conf(1), {{"CNI_IFNAME", ""}}), 4, "0.3.1");

  // No subnet.env yet: 11, try again later, with the words an operator needs.
  fs::remove(files(1).subnet_file);
  const CniRun early = cni(1, "ADD", "c-early", pod_path, conf(1));
  expectCniError(early, 11, "0.3.1");
  EXPECT_EQ(early.json.value("msg", ""),
            "subnet.env missing: flanneld is not running yet on this node (expected " +
                files(1).subnet_file + ")");
  writeHostSubnetEnv(1, false);

  // A delegate that is not on CNI_PATH: 100, and nothing saved, so DEL has nothing to do.
  const CniRun missing =
      cni(1, "ADD", "c-missing", pod_path, conf(1, "0.3.1", R"(,"delegate":{"type":"no-such"})"));
  expectCniError(missing, 100, "0.3.1");
  EXPECT_FALSE(fs::exists(files(1).data_dir + "/c-missing"));
  EXPECT_EQ(cni(1, "DEL", "c-missing", pod_path, conf(1)).exit_code, 0);

  // A delegate that runs and fails: bridge's own error is passed through; the saved config
  // stays, and DEL then lets bridge clean up.
  const std::string gone = "/run/netns/" + run_->uniqueName("never-created");
  const CniRun failed = cni(1, "ADD", "c-failed", gone, conf(1));
  expectCniError(failed, 999, "0.3.1");
  EXPECT_THAT(failed.json.value("msg", ""), HasSubstr("failed to open netns"));
  EXPECT_TRUE(fs::exists(files(1).data_dir + "/c-failed"));
  const CniRun cleanup = cni(1, "DEL", "c-failed", gone, conf(1));
  EXPECT_EQ(cleanup.exit_code, 0) << cleanup.describe();
  EXPECT_FALSE(fs::exists(files(1).data_dir + "/c-failed"));

  // VERSION.
  const CniRun version = cni(1, "VERSION", "", "", "");
  EXPECT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_EQ(version.json["supportedVersions"],
            Json::parse(R"(["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0"])"));
}

TEST_F(CniPrivileged, DualStackPodGetsAnAddressOfEachFamily) {
  writeHostSubnetEnv(1, true);
  Netns& pod = newPod("pod6");
  const CniRun add = cni(1, "ADD", "dual", netnsPath(pod), conf(1, "1.0.0"));
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  ASSERT_EQ(add.json["ips"].size(), 2u) << add.describe();
  EXPECT_EQ(add.json["ips"][0]["address"], "10.5.1.2/24");
  EXPECT_EQ(add.json["ips"][1]["address"], "fd55:0:0:1::2/64");
  EXPECT_THAT(ipOut(pod, {"-6", "addr", "show", "dev", "eth0"}), HasSubstr("fd55:0:0:1::2/64"));
  EXPECT_THAT(ipOut(pod, {"-6", "route", "show"}), HasSubstr("fd55::/48 via fd55:0:0:1::1"));
  EXPECT_THAT(ipOut(topo_->host(1), {"-6", "addr", "show", "dev", "cni0"}),
              HasSubstr("fd55:0:0:1::1/64"));
  const CniRun del = cni(1, "DEL", "dual", netnsPath(pod), conf(1, "1.0.0"));
  EXPECT_EQ(del.exit_code, 0) << del.describe();
  EXPECT_FALSE(fs::exists(files(1).host_local_dir + "/cbr0/fd55:0:0:1::2"));
}

}  // namespace
}  // namespace flannel::test
