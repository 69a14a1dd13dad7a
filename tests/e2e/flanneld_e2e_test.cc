// flanneld end to end: real flanneld processes in host namespaces, real etcd, real kernel
// (vxlan devices, routes, FDB, neighbours), pods reaching each other across hosts.
#include <unistd.h>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sstream>

#include "core/lease.h"
#include "support/cluster_fixture.h"
#include "support/flannel_cluster.h"
#include "support/poll.h"

namespace flannel::test {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

class FlanneldE2e : public ClusterFixture {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root: creates network namespaces, vxlan devices and routes";
    }
  }
  std::string routeTo(int host, int peer) {
    auto r = cluster_->host(host).ip({"route", "show", subnets_.at(peer).toString()});
    return r ? r->out : std::string();
  }
};

TEST_F(FlanneldE2e, VxlanThreeHostsEveryPodReachesEveryPodOverTcpToo) {
  start(3, R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})");
  expectFullMesh();
  // The kernel objects of SPEC.md §5.1 on h1 for h2.
  auto peer = subnets_.at(2);
  EXPECT_THAT(routeTo(1, 2),
              HasSubstr(fmt::format("via {} dev flannel.1 onlink", peer.addr().toString())));
  auto neigh = cluster_->host(1).ip({"neigh", "show", "dev", "flannel.1"});
  ASSERT_TRUE(neigh);
  EXPECT_THAT(neigh->out, HasSubstr(peer.addr().toString()));
  EXPECT_THAT(neigh->out, HasSubstr("PERMANENT"));
  auto fdb = cluster_->host(1).exec({"bridge", "fdb", "show", "dev", "flannel.1"});
  ASSERT_TRUE(fdb);
  EXPECT_THAT(fdb->out, HasSubstr("dst 192.168.91.12"));
  // TCP: iperf3 for one second from pod 1 to pod 3.
  ChildSpec iperf;
  iperf.argv = {"iperf3", "-s", "-1"};
  auto server = cluster_->pod(3).spawn(iperf);
  ASSERT_TRUE(server) << server.error().message;
  bool ran = pollUntil(
      [&] {
        auto c = cluster_->pod(1).exec({"iperf3", "-c", cluster_->podIp(3), "-t", "1"}, 15s);
        return c && c->success();
      },
      15s, 300ms);
  EXPECT_TRUE(ran) << "iperf3 TCP pod1 -> pod3 failed";
}

TEST_F(FlanneldE2e, HostGwThreeHostsEveryPodReachesEveryPod) {
  start(3, R"({"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}})");
  expectFullMesh();
  EXPECT_THAT(routeTo(1, 2), HasSubstr("via 192.168.91.12 dev eth0"));
}

TEST_F(FlanneldE2e, VxlanDirectRoutingUsesPlainRoutesOnTheSameSegment) {
  start(3, R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "DirectRouting": true}})");
  expectFullMesh();
  EXPECT_THAT(routeTo(1, 2), HasSubstr("via 192.168.91.12 dev eth0"));
  EXPECT_THAT(routeTo(2, 3), HasSubstr("via 192.168.91.13 dev eth0"));
}

TEST_F(FlanneldE2e, AHostThatLeavesIsRemovedFromEveryOtherHost) {
  start(3, R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})");
  expectFullMesh();
  auto gone = subnets_.at(3);
  ASSERT_TRUE(cluster_->stopFlanneld(3));
  ASSERT_TRUE(cluster_->etcd().etcdctl(
      {"del", "/coreos.com/network/subnets/" +
                  subnetKeyName(SubnetKey{.ipv4 = gone, .ipv6 = std::nullopt})}));
  for (int h : {1, 2}) {
    bool removed = pollUntil([&] { return routeTo(h, 3).empty(); }, 10s);
    EXPECT_TRUE(removed) << "h" << h << " still routes to " << gone.toString() << ": "
                         << routeTo(h, 3);
    auto neigh = cluster_->host(h).ip({"neigh", "show", "dev", "flannel.1"});
    ASSERT_TRUE(neigh);
    EXPECT_THAT(neigh->out, ::testing::Not(HasSubstr(gone.addr().toString() + " ")));
  }
  EXPECT_TRUE(cluster_->pod(1).ping(cluster_->podIp(2), 5s)) << "the others keep talking";
}

TEST_F(FlanneldE2e, RestartKeepsTheSubnetAndPodsKeepTalkingThroughIt) {
  start(2, R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})");
  expectFullMesh();
  auto status = cluster_->stopFlanneld(2);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->exit_code, 0) << "SIGTERM is an orderly shutdown";
  // Down: the data plane stays in place.
  EXPECT_TRUE(cluster_->pod(1).ping(cluster_->podIp(2), 3s)) << "traffic stopped with flanneld";
  EXPECT_TRUE(cluster_->pod(2).ping(cluster_->podIp(1), 3s));
  ASSERT_TRUE(cluster_->startFlanneld(2));
  // Same subnet back (PublicIP match and the previous subnet.env).
  ASSERT_TRUE(cluster_->waitRunningAgain(2, 20s)) << cluster_->flanneldLog(2);
  auto env = readSubnetEnv(cluster_->subnetFile(2).string());
  ASSERT_TRUE(env && env->subnet);
  EXPECT_EQ(*env->subnet, subnets_.at(2));
  expectFullMesh();
}

TEST_F(FlanneldE2e, RoutesDeletedBehindOurBackComeBackWithinFiveSeconds) {
  start(2, R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})");
  expectFullMesh();
  ASSERT_TRUE(cluster_->host(1).ip({"route", "del", subnets_.at(2).toString()}));
  bool back = pollUntil([&] { return !routeTo(1, 2).empty(); }, 8s, 100ms);
  EXPECT_TRUE(back) << "the deleted route was not restored";
  EXPECT_TRUE(cluster_->pod(1).ping(cluster_->podIp(2), 5s));
}

TEST_F(FlanneldE2e, BlackholeRouteForTheOwnSubnetWithIpBlackholeRoute) {
  start(2, R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})",
        {"-ip-blackhole-route", "-iptables-resync=1"});
  auto own = subnets_.at(1).toString();
  bool present = pollUntil(
      [&] {
        auto r = cluster_->host(1).ip({"route", "show", "type", "blackhole"});
        return r && r->out.find(own) != std::string::npos;
      },
      10s);
  EXPECT_TRUE(present) << cluster_->flanneldLog(1);
  // It does not replace the pod's connected route: pods still talk.
  EXPECT_TRUE(cluster_->pod(1).ping(cluster_->podIp(2), 5s));
  EXPECT_TRUE(cluster_->pod(2).ping(cluster_->podIp(1), 5s));
}

TEST_F(FlanneldE2e, BadStartsAreClearAndRetryWhereFlannelRetries) {
  FlannelClusterSpec spec;
  spec.hosts = 1;
  spec.flanneld_binary = FLANNELD_BINARY;
  spec.network_config = R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})";
  auto c = FlannelCluster::create(spec);
  ASSERT_TRUE(c) << c.error().message;
  cluster_ = std::move(*c);
  // Wrong -iface: exit 1 naming it.
  ASSERT_TRUE(cluster_->startFlanneld(1, {"-iface=eth9"}));
  bool exited = pollUntil([&] { return !cluster_->flanneld(1)->running(); }, 15s);
  ASSERT_TRUE(exited) << cluster_->flanneldLog(1);
  EXPECT_EQ(cluster_->flanneld(1)->exitStatus()->exit_code, 1);
  EXPECT_THAT(cluster_->flanneldLog(1), HasSubstr("eth9"));
  // Missing config: keeps retrying with a clear line, does not exit.
  ASSERT_TRUE(cluster_->etcd().etcdctl({"del", "/coreos.com/network/config"}));
  ASSERT_TRUE(cluster_->startFlanneld(1));
  bool waiting = pollUntil(
      [&] {
        return cluster_->flanneldLog(1).find("waiting for the network config") != std::string::npos;
      },
      10s);
  EXPECT_TRUE(waiting) << cluster_->flanneldLog(1);
  EXPECT_TRUE(cluster_->flanneld(1)->running());
  // The config appears: it starts.
  ASSERT_TRUE(
      cluster_->etcd().etcdctl({"put", "/coreos.com/network/config",
                                R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})"}));
  EXPECT_TRUE(cluster_->waitSubnetEnv(1, 15s));
  auto st = cluster_->stopFlanneld(1);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->exit_code, 0);
  // etcd unreachable: retries, names the endpoint, exits 0 on SIGTERM.
  ASSERT_TRUE(cluster_->startFlanneld(1, {"-etcd-endpoints=http://192.168.91.99:2379"}));
  // A retry line that names the unreachable endpoint (not just the echoed flags).
  auto retryLineNames = [&](std::string_view endpoint) {
    std::istringstream log(cluster_->flanneldLog(1));
    for (std::string line; std::getline(log, line);) {
      if (line.find("waiting for the network config") != std::string::npos &&
          line.find(endpoint) != std::string::npos) {
        return true;
      }
    }
    return false;
  };
  bool named = pollUntil([&] { return retryLineNames("192.168.91.99:2379"); }, 20s);
  EXPECT_TRUE(named) << cluster_->flanneldLog(1);
  EXPECT_TRUE(cluster_->flanneld(1)->running());
  auto st2 = cluster_->stopFlanneld(1);
  ASSERT_TRUE(st2);
  EXPECT_EQ(st2->exit_code, 0);
}

}  // namespace
}  // namespace flannel::test
