// The flannel CNI plugin with the real daemon (issue #5, done-when): flanneld (vxlan, --ip-masq)
// on two hosts writes each host's subnet.env; our `flannel` binary is run inside the host
// namespace exactly as a container runtime runs it (CNI_* variables, the network config of a
// conflist on stdin, CNI_NETNS=/run/netns/<pod namespace>, CNI_PATH=/usr/lib/cni), and delegates
// to Debian's real bridge and host-local plugins.
//
//   pod1 10.5.a.2 ─ cni0 10.5.a.1 [h1 flanneld] flannel.1 ══vxlan══ flannel.1 [h2 flanneld]
//                                                                      cni0 10.5.b.1 ─ pod2
//
// Pods on different hosts ping each other; DEL removes the veth and releases the address (twice
// is fine); CHECK passes on a healthy pod and fails on a broken one. subnet.env, the plugin's
// dataDir and host-local's dataDir all live in the TestRun's temp dir; every namespace is ours.
// Needs root; skipped otherwise.
#include <unistd.h>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/exec.h"
#include "core/json_util.h"
#include "core/subnet_env.h"
#include "support/e2e_helpers.h"
#include "support/flannel_cluster.h"
#include "support/poll.h"
#include "support/test_run.h"

namespace flannel::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr const char* kDebianCniDir = "/usr/lib/cni";

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

class CniFlanneldPrivileged : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root: creates network namespaces and runs flanneld and CNI plugins";
    }
    for (const char* plugin : {"bridge", "host-local"}) {
      const auto path = fs::path(kDebianCniDir) / plugin;
      ASSERT_EQ(::access(path.c_str(), X_OK), 0)
          << path << " is missing: install Debian's containernetworking-plugins (scripts/setup)";
    }
    FlannelClusterSpec spec;
    spec.hosts = 2;
    spec.network_config = R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})";
    // As the stock DaemonSet: flanneld masquerades, so the delegate gets ipMasq=false.
    spec.flanneld_args = {"-ip-masq"};
    spec.flanneld_binary = FLANNELD_BINARY;
    auto c = FlannelCluster::create(spec);
    ASSERT_TRUE(c) << c.error().message;
    cluster_ = std::move(*c);
    ASSERT_TRUE(cluster_->startAll());
    for (int h = 1; h <= 2; ++h) {
      auto env = cluster_->waitSubnetEnv(h, 20s);
      ASSERT_TRUE(env) << env.error().message;
      envs_[h] = *env;
    }
    auto ip = toolPath("ip");
    ASSERT_TRUE(ip) << ip.error().message;
    ip_ = *ip;
  }

  void TearDown() override {
    pods_.clear();  // before the cluster: the pods are namespaces of its run
  }

  fs::path dataDir(int h) const {
    return cluster_->run().dir() / fmt::format("h{}-var-lib-cni-flannel", h);
  }
  fs::path hostLocalDir(int h) const {
    return cluster_->run().dir() / fmt::format("h{}-var-lib-cni-networks", h);
  }

  // The "flannel" entry of the stock conflist (name and cniVersion filled in from the list, as
  // libcni does), pointed at host h's subnet.env and the run's temp dir.
  std::string conf(int h) const {
    return fmt::format(
        R"({{"cniVersion":"1.0.0","name":"cbr0","type":"flannel","subnetFile":"{}",)"
        R"("dataDir":"{}","delegate":{{"hairpinMode":true,"isDefaultGateway":true}},)"
        R"("ipam":{{"dataDir":"{}"}}}})",
        cluster_->subnetFile(h).string(), dataDir(h).string(), hostLocalDir(h).string());
  }

  // The conf of a CHECK: the ADD config plus the ADD result as prevResult (what libcni sends).
  static std::string withPrevResult(const std::string& config, const Json& result) {
    Json j = parseJson(config, "conf").value();
    j["prevResult"] = result;
    return j.dump();
  }

  Netns& newPod(int h) {
    auto pod = Netns::create(cluster_->run(), fmt::format("pod{}", h));
    if (!pod) {
      throw std::runtime_error("creating pod namespace: " + pod.error().message);
    }
    pods_[h] = std::move(*pod);
    return *pods_[h];
  }

  static std::string netnsPath(const Netns& ns) { return "/run/netns/" + ns.name(); }

  // Runs `flannel` inside host h as a runtime does: `ip netns exec <host> flannel` with only
  // the CNI variables and PATH in the environment, the config on stdin.
  CniRun cni(int h, std::string_view command, const std::string& container_id,
             const std::string& netns_path, std::string config) {
    Command cmd;
    cmd.argv = {ip_, "netns", "exec", cluster_->host(h).name(), FLANNEL_CNI_BINARY};
    cmd.inherit_env = false;
    cmd.env_add = {{"PATH", std::string(kDefaultPath)},
                   {"CNI_COMMAND", std::string(command)},
                   {"CNI_CONTAINERID", container_id},
                   {"CNI_NETNS", netns_path},
                   {"CNI_IFNAME", "eth0"},
                   {"CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p"},
                   {"CNI_PATH", kDebianCniDir}};
    cmd.stdin_data = std::move(config);
    cmd.timeout = 60s;
    CniRun out;
    auto ran = cluster_->run().runner().run(cmd);
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

  std::string ipOut(Netns& ns, std::vector<std::string> args) {
    auto out = ns.ip(std::move(args));
    EXPECT_TRUE(out) << out.error().message;
    return out ? out->out : std::string();
  }

  std::string podAddress(int h) const { return envs_.at(h).subnet->host(2)->toString(); }
  std::string gateway(int h) const { return envs_.at(h).subnet->host(1)->toString(); }
  fs::path leaseFile(int h) const { return hostLocalDir(h) / "cbr0" / podAddress(h); }

  std::unique_ptr<FlannelCluster> cluster_;
  std::map<int, SubnetEnv> envs_;
  std::map<int, std::unique_ptr<Netns>> pods_;  // after cluster_: destroyed first
  std::string ip_;
};

TEST_F(CniFlanneldPrivileged, PodsOnTwoHostsPingThenCheckAndDelBehave) {
  std::map<int, CniRun> adds;
  for (int h = 1; h <= 2; ++h) {
    Netns& pod = newPod(h);
    const std::string id = fmt::format("ctr-{}", h);
    CniRun add = cni(h, "ADD", id, netnsPath(pod), conf(h));
    ASSERT_EQ(add.exit_code, 0) << add.describe();
    ASSERT_TRUE(add.json.is_object()) << add.describe();
    EXPECT_EQ(add.json.value("cniVersion", ""), "1.0.0");
    ASSERT_EQ(add.json["ips"].size(), 1u) << add.describe();
    const int len = envs_.at(h).subnet->prefix();
    // The address comes from flanneld's subnet for this host.
    EXPECT_EQ(add.json["ips"][0]["address"], fmt::format("{}/{}", podAddress(h), len));
    EXPECT_EQ(add.json["ips"][0]["gateway"], gateway(h));
    EXPECT_THAT(ipOut(pod, {"-4", "addr", "show", "dev", "eth0"}),
                HasSubstr(fmt::format("inet {}/{}", podAddress(h), len)));
    EXPECT_THAT(ipOut(pod, {"link", "show", "dev", "eth0"}),
                HasSubstr(fmt::format("mtu {}", envs_.at(h).mtu.value_or(0))));
    EXPECT_THAT(ipOut(pod, {"-4", "route", "show"}),
                HasSubstr(fmt::format("10.5.0.0/16 via {}", gateway(h))));
    EXPECT_THAT(ipOut(cluster_->host(h), {"-4", "addr", "show", "dev", "cni0"}),
                HasSubstr(fmt::format("inet {}/{}", gateway(h), len)));
    EXPECT_TRUE(fs::exists(leaseFile(h))) << add.describe();
    // flanneld runs with --ip-masq, so the delegate must not masquerade too (SPEC.md §7.5).
    auto saved = parseJson(readTextFile(dataDir(h) / id), "saved delegate config");
    ASSERT_TRUE(saved) << saved.error().message;
    EXPECT_EQ(saved->value("ipMasq", true), false) << saved->dump();
    adds[h] = std::move(add);
  }

  // Across hosts through flanneld's vxlan.
  auto ping12 = pods_[1]->ping(podAddress(2), 15s);
  EXPECT_TRUE(ping12) << ping12.error().message << "\nh1 flanneld:\n" << cluster_->flanneldLog(1);
  auto ping21 = pods_[2]->ping(podAddress(1), 15s);
  EXPECT_TRUE(ping21) << ping21.error().message << "\nh2 flanneld:\n" << cluster_->flanneldLog(2);

  // CHECK: healthy pods pass.
  for (int h = 1; h <= 2; ++h) {
    const CniRun check = cni(h, "CHECK", fmt::format("ctr-{}", h), netnsPath(*pods_[h]),
                             withPrevResult(conf(h), adds[h].json));
    EXPECT_EQ(check.exit_code, 0) << check.describe();
    EXPECT_EQ(check.out, "");
  }

  // CHECK: pod 2 loses its address and fails with a CNI error naming it.
  const int len2 = envs_.at(2).subnet->prefix();
  ASSERT_TRUE(
      pods_[2]->ip({"addr", "del", fmt::format("{}/{}", podAddress(2), len2), "dev", "eth0"}));
  const CniRun broken =
      cni(2, "CHECK", "ctr-2", netnsPath(*pods_[2]), withPrevResult(conf(2), adds[2].json));
  EXPECT_EQ(broken.exit_code, 1) << broken.describe();
  ASSERT_TRUE(broken.json.is_object()) << broken.describe();
  EXPECT_TRUE(broken.json.contains("code")) << broken.describe();
  EXPECT_THAT(broken.json.value("msg", ""), HasSubstr(podAddress(2))) << broken.describe();

  // DEL (healthy and broken pods alike): the veth goes, host-local releases the address, the
  // scratch file goes; a second DEL is a successful no-op.
  for (int h = 1; h <= 2; ++h) {
    const std::string id = fmt::format("ctr-{}", h);
    EXPECT_THAT(ipOut(cluster_->host(h), {"-o", "link", "show", "master", "cni0"}),
                HasSubstr("veth"));
    const CniRun del = cni(h, "DEL", id, netnsPath(*pods_[h]), conf(h));
    EXPECT_EQ(del.exit_code, 0) << del.describe();
    EXPECT_EQ(del.out, "");
    EXPECT_EQ(ipOut(cluster_->host(h), {"-o", "link", "show", "master", "cni0"}), "");
    EXPECT_EQ(ipOut(*pods_[h], {"-o", "link", "show"}).find("eth0"), std::string::npos);
    EXPECT_FALSE(fs::exists(leaseFile(h))) << "host-local kept " << leaseFile(h);
    EXPECT_FALSE(fs::exists(dataDir(h) / id));

    const CniRun again = cni(h, "DEL", id, netnsPath(*pods_[h]), conf(h));
    EXPECT_EQ(again.exit_code, 0) << again.describe();
    EXPECT_EQ(again.out, "");
  }

  // flanneld kept running through all of it.
  for (int h = 1; h <= 2; ++h) {
    EXPECT_TRUE(cluster_->flanneld(h)->running()) << cluster_->flanneldLog(h);
  }
}

}  // namespace
}  // namespace flannel::test
