// DOC: FlannelCluster, a declared topology of hosts running the real flanneld (e2e tests, the
// demo and system benchmarks): etcd on its own node of the underlay, host namespaces h1..hN,
// flanneld in each, and a "pod" namespace per host wired to its host with a veth pair (the
// CNI bridge plugin does the same with a bridge; a veth keeps these tests independent of it).
//
//   pod pN (eth0 = <subnet>.2/24, default via <subnet>.1)
//     └── veth ── host hN (vpod = <subnet>.1/24, ip_forward=1, flanneld, eth0 on the underlay)
//
// Everything lives in namespaces created by the TestRun and dies with it.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/subnet_env.h"
#include "support/child_process.h"
#include "support/etcd_cluster.h"
#include "support/netns.h"
#include "support/test_run.h"
#include "support/topology.h"

namespace flannel::test {

struct FlannelClusterSpec {
  int hosts = 3;
  std::string network_config = R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})";
  std::vector<std::string> flanneld_args{};  // extra arguments for every host
  std::string flanneld_binary{};             // required
  // Start flanneld with setns() + exec in the forked child instead of `ip netns exec` (which
  // forks nothing more but execs `ip` first and remounts /sys): start-up timing measures the
  // daemon, not iproute2. flanneld reads nothing under /sys.
  bool setns_only = false;
};

class FlannelCluster {
 public:
  // Builds the topology, starts etcd and writes the network config; flanneld is not started.
  static Result<std::unique_ptr<FlannelCluster>> create(FlannelClusterSpec spec);
  ~FlannelCluster();

  TestRun& run() { return *run_; }
  Topology& topology() { return *topo_; }
  EtcdCluster& etcd() { return *etcd_; }
  Netns& host(int i) { return topo_->host(i); }
  int hosts() const { return spec_.hosts; }

  std::filesystem::path subnetFile(int i) const;
  // Starts flanneld on host i (1-based) with the spec's arguments plus `extra`.
  Result<void> startFlanneld(int i, std::vector<std::string> extra = {},
                             std::map<std::string, std::string> env = {});
  Result<void> startAll();
  // SIGTERM, wait (bounded), then SIGKILL. Returns its exit status.
  Result<ExitStatus> stopFlanneld(int i);
  ChildProcess* flanneld(int i);
  // Polls until host i's subnet.env exists and parses.
  Result<SubnetEnv> waitSubnetEnv(int i, std::chrono::milliseconds timeout);
  // Creates pod namespace for host i (after its subnet.env exists) and returns the pod's IP.
  Result<std::string> addPod(int i);
  Netns& pod(int i) { return *pods_.at(i); }
  std::string podIp(int i) const { return pod_ips_.at(i); }
  std::string flanneldLog(int i);

  // startAll(), then for every host: wait for subnet.env and add its pod. Returns each host's
  // subnet (1-based).
  Result<std::map<int, IpNet>> startAllWithPods(std::chrono::milliseconds per_host_timeout);
  // Every pod pings every other pod; one line per pair that failed (with that host's log), empty
  // when all pairs answered.
  std::vector<std::string> meshFailures(std::chrono::milliseconds per_pair);
  // After startFlanneld(i) on a host that ran before: waits until the log says "flanneld is
  // running" a second time.
  bool waitRunningAgain(int i, std::chrono::milliseconds timeout);

 private:
  FlannelCluster() = default;
  FlannelClusterSpec spec_;
  std::unique_ptr<TestRun> run_;
  std::unique_ptr<Topology> topo_;
  std::unique_ptr<EtcdCluster> etcd_;
  std::map<int, std::unique_ptr<ChildProcess>> flanneld_;
  std::map<int, std::unique_ptr<Netns>> pods_;
  std::map<int, std::string> pod_ips_;
  int starts_ = 0;
};

}  // namespace flannel::test
