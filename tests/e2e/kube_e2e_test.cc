// flanneld -kube-subnet-mgr end to end: the test API server listens on the underlay (inside the
// etcd node's namespace), three hosts run the real flanneld in Kubernetes mode (SPEC.md §4).
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fstream>
#include <thread>

#include "support/flannel_cluster.h"
#include "support/kube/kube_api_server.h"
#include "support/poll.h"

namespace flannel::test {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// Starts the API server from a thread inside `ns`, so that it listens on `ns`'s address.
Result<std::unique_ptr<KubeApiServer>> startApiServerIn(Netns& ns, const std::string& address) {
  Result<std::unique_ptr<KubeApiServer>> out = makeError(Errc::Internal, "not started");
  std::thread t([&] {
    int fd = ::open(("/run/netns/" + ns.name()).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      out = makeError(Errc::Internal, "setns into " + ns.name() + " failed");
      if (fd >= 0) {
        ::close(fd);
      }
      return;
    }
    ::close(fd);
    KubeApiServerOptions options;
    options.bind_address = address;
    out = KubeApiServer::start(options);
  });
  t.join();
  return out;
}

class KubeModeE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root: creates network namespaces, vxlan devices and routes";
    }
    FlannelClusterSpec spec;
    spec.hosts = 3;
    spec.flanneld_binary = FLANNELD_BINARY;
    auto c = FlannelCluster::create(spec);
    ASSERT_TRUE(c) << c.error().message;
    cluster_ = std::move(*c);
    auto api = startApiServerIn(cluster_->topology().etcdNode(1), Topology::etcdAddress(1));
    ASSERT_TRUE(api) << api.error().message;
    api_ = std::move(*api);
    net_conf_ = (cluster_->run().dir() / "net-conf.json").string();
    std::ofstream(net_conf_) << R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})";
  }
  void TearDown() override {
    cluster_.reset();  // flanneld first: it talks to the API server
    api_.reset();
  }
  Result<void> startHost(int i) {
    return cluster_->startFlanneld(
        i, {"-kube-subnet-mgr", "-kube-api-url=" + api_->url(), "-net-config-path=" + net_conf_},
        {{"NODE_NAME", fmt::format("h{}", i)}});
  }
  std::string routeOn(int host, const std::string& dst) {
    auto r = cluster_->host(host).ip({"route", "show", dst});
    return r ? r->out : std::string();
  }
  // Three nodes with podCIDRs 10.5.<i>.0/24 and flanneld on each with `net_conf`; checks the MTU
  // in subnet.env, adds the pods and expects every pod to reach every other.
  void startThreeAndPingAll(const std::string& net_conf, uint32_t mtu) {
    std::ofstream(net_conf_) << net_conf;
    for (int i = 1; i <= 3; ++i) {
      api_->putNode({.name = fmt::format("h{}", i),
                     .annotations = {},
                     .pod_cidrs = {fmt::format("10.5.{}.0/24", i)},
                     .labels = {},
                     .internal_ip = ""});
      ASSERT_TRUE(startHost(i));
    }
    for (int i = 1; i <= 3; ++i) {
      auto env = cluster_->waitSubnetEnv(i, 20s);
      ASSERT_TRUE(env) << env.error().message;
      EXPECT_EQ(env->mtu, mtu);
      ASSERT_TRUE(cluster_->addPod(i));
    }
    for (const auto& failure : cluster_->meshFailures(10s)) {
      ADD_FAILURE() << failure;
    }
  }
  std::unique_ptr<FlannelCluster> cluster_;
  std::unique_ptr<KubeApiServer> api_;
  std::string net_conf_;
};

TEST_F(KubeModeE2e, PodsPingAcrossHostsANodeWithoutPodCidrWaitsAndADeletedNodeIsRemoved) {
  api_->putNode({.name = "h1",
                 .annotations = {},
                 .pod_cidrs = {"10.5.1.0/24"},
                 .labels = {},
                 .internal_ip = ""});
  api_->putNode({.name = "h2",
                 .annotations = {},
                 .pod_cidrs = {"10.5.2.0/24"},
                 .labels = {},
                 .internal_ip = ""});
  api_->putNode(
      {.name = "h3", .annotations = {}, .pod_cidrs = {}, .labels = {}, .internal_ip = ""});
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(startHost(i));
  }
  for (int i = 1; i <= 2; ++i) {
    auto env = cluster_->waitSubnetEnv(i, 20s);
    ASSERT_TRUE(env) << env.error().message;
    EXPECT_EQ(env->subnet->toString(), fmt::format("10.5.{}.0/24", i));
    ASSERT_TRUE(cluster_->addPod(i));
  }
  // h3 has no podCIDR yet: it waits (running, saying so) instead of exiting.
  bool waiting =
      pollUntil([&] { return cluster_->flanneldLog(3).find("podCIDR") != std::string::npos; }, 10s);
  EXPECT_TRUE(waiting) << cluster_->flanneldLog(3);
  EXPECT_TRUE(cluster_->flanneld(3)->running());
  api_->setPodCidrs("h3", {"10.5.3.0/24"});
  auto env3 = cluster_->waitSubnetEnv(3, 20s);
  ASSERT_TRUE(env3) << env3.error().message;
  ASSERT_TRUE(cluster_->addPod(3));
  for (int i = 1; i <= 3; ++i) {
    for (int j = 1; j <= 3; ++j) {
      if (i != j) {
        EXPECT_TRUE(cluster_->pod(i).ping(cluster_->podIp(j), 10s))
            << "pod " << i << " -> pod " << j << "\n"
            << cluster_->flanneldLog(i);
      }
    }
  }
  // The annotations flannel publishes (SPEC.md §4.3).
  auto ann = api_->annotations("h1");
  ASSERT_TRUE(ann);
  EXPECT_EQ(ann->at("flannel.alpha.coreos.com/kube-subnet-manager"), "true");
  EXPECT_EQ(ann->at("flannel.alpha.coreos.com/backend-type"), "vxlan");
  EXPECT_EQ(ann->at("flannel.alpha.coreos.com/public-ip"), "192.168.91.11");
  EXPECT_THAT(ann->at("flannel.alpha.coreos.com/backend-data"), HasSubstr("\"VtepMAC\""));
  // Deleting a node object removes its routes on the others.
  ASSERT_TRUE(cluster_->stopFlanneld(2));
  api_->deleteNode("h2");
  for (int h : {1, 3}) {
    EXPECT_TRUE(pollUntil([&] { return routeOn(h, "10.5.2.0/24").empty(); }, 10s))
        << "h" << h << ": " << routeOn(h, "10.5.2.0/24");
  }
  // A cut watch is resumed and a 410 relists: peers stay correct.
  api_->cutWatches(true);
  api_->compact();
  api_->putNode({.name = "h2",
                 .annotations = {},
                 .pod_cidrs = {"10.5.2.0/24"},
                 .labels = {},
                 .internal_ip = ""});
  ASSERT_TRUE(startHost(2));
  EXPECT_TRUE(pollUntil([&] { return !routeOn(1, "10.5.2.0/24").empty(); }, 15s))
      << cluster_->flanneldLog(1);
  EXPECT_TRUE(cluster_->pod(1).ping(cluster_->podIp(3), 5s));
}

}  // namespace
}  // namespace flannel::test

namespace flannel::test {
namespace {

TEST_F(KubeModeE2e, HostGwPodsPingAcrossHosts) {
  // host-gw has no tunnel overhead: MTU 1500.
  startThreeAndPingAll(R"({"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}})", 1500);
  EXPECT_THAT(routeOn(1, "10.5.2.0/24"), HasSubstr("via 192.168.91.12 dev eth0"));
  auto ann = api_->annotations("h2");
  ASSERT_TRUE(ann);
  EXPECT_EQ(ann->at("flannel.alpha.coreos.com/backend-type"), "host-gw");
  EXPECT_EQ(ann->at("flannel.alpha.coreos.com/backend-data"), "null");
}

// The udp backend in Kubernetes mode: pods talk over flannel0, and the annotations are Go
// flannel's for udp (SPEC.md §4.4: "backend-type" is the empty string, "backend-data" null).
TEST_F(KubeModeE2e, UdpPodsPingAcrossHostsWithGoFlannelsAnnotations) {
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "this kernel has no /dev/net/tun (the udp backend needs the tun module)";
  }
  startThreeAndPingAll(R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp"}})", 1472);
  EXPECT_THAT(routeOn(1, "10.5.0.0/16"), HasSubstr("dev flannel0"));
  auto ann = api_->annotations("h2");
  ASSERT_TRUE(ann);
  EXPECT_EQ(ann->at("flannel.alpha.coreos.com/backend-type"), "");
  EXPECT_EQ(ann->at("flannel.alpha.coreos.com/backend-data"), "null");
  EXPECT_EQ(ann->at("flannel.alpha.coreos.com/public-ip"), "192.168.91.12");
}

}  // namespace
}  // namespace flannel::test
