// DOC: ClusterFixture, the GoogleTest fixture shared by the flanneld e2e suites that run N hosts
// with one config: start(hosts, config, args) builds the cluster (FlannelCluster), starts flanneld
// everywhere and adds a pod per host; expectFullMesh() fails the test for every pod pair that does
// not ping. Header-only: the including test target defines FLANNELD_BINARY.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/ip_net.h"
#include "support/flannel_cluster.h"

namespace flannel::test {

class ClusterFixture : public ::testing::Test {
 protected:
  void start(int hosts, std::string config, std::vector<std::string> args = {}) {
    FlannelClusterSpec spec;
    spec.hosts = hosts;
    spec.network_config = std::move(config);
    spec.flanneld_args = std::move(args);
    spec.flanneld_binary = FLANNELD_BINARY;
    auto c = FlannelCluster::create(spec);
    ASSERT_TRUE(c) << c.error().message;
    cluster_ = std::move(*c);
    auto subnets = cluster_->startAllWithPods(std::chrono::seconds(20));
    ASSERT_TRUE(subnets) << subnets.error().message;
    subnets_ = *subnets;
  }
  // Every pod pings every other pod (bounded: a few seconds per pair while routes converge).
  void expectFullMesh() {
    for (const auto& failure : cluster_->meshFailures(std::chrono::seconds(10))) {
      ADD_FAILURE() << failure;
    }
  }

  std::unique_ptr<FlannelCluster> cluster_;
  std::map<int, IpNet> subnets_;  // each host's subnet, 1-based
};

}  // namespace flannel::test
