// DOC: a real etcd (/usr/bin/etcd, 3.4) for contract and e2e tests: one member or a cluster.
//
// Placement, two ways:
//   - startOnLoopback(run, n): n members on 127.0.0.1 in the caller's namespace, client and peer
//     ports picked free by binding port 0 (retried with fresh ports if a start fails).
//   - startOnTopology(run, topo) / startInNamespaces(...): one member per namespace, listening on
//     the node's underlay address with the standard ports 2379 (client) and 2380 (peer); there is
//     nothing else in our namespaces to collide with. Hosts reach it over the underlay.
// Each cluster gets a unique --initial-cluster-token (fct-<pid>-<n>-etcd) and its members data
// dirs under the TestRun's temp dir (removed with it). Logs go to <run dir>/etcd-<member>.log.
//
// Health: start*() returns once `etcdctl endpoint health` passes for every member, polling with
// a deadline (and failing early, with the log tail, if a member process exits). No fixed sleeps.
//
// Member lifecycle (for leader-failure tests):
//
//     Running ──stopMember()/killMember()──> Stopped ──restartMember()──> Running
//
// restartMember() reuses the data dir, so the member rejoins with its identity. Every PID ever
// started is kept in pidsEverStarted() so tests can check that none survives teardown.
//
// etcdctl(): runs `etcdctl --endpoints=<all members> args...` with ETCDCTL_API=3, in the given
// namespace (nullptr: the default vantage point, which is the caller's namespace for loopback
// clusters and the first member's namespace otherwise).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/exec.h"
#include "core/result.h"
#include "support/child_process.h"

namespace flannel::test {

class Netns;
class TestRun;
class Topology;

struct EtcdMember {
  std::string name;        // etcd --name
  Netns* netns = nullptr;  // nullptr: the namespace of the test process
  std::string ip;
  uint16_t client_port = 2379;
  uint16_t peer_port = 2380;

  std::string clientUrl() const;
  std::string peerUrl() const;
};

// One etcd member process.
class EtcdProcess {
 public:
  EtcdProcess(EtcdMember member, std::vector<std::string> args, std::filesystem::path data_dir,
              std::filesystem::path log_path, int run_id);
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;
  ~EtcdProcess();

  // Starts the process (does not wait for health). Errc::Conflict if already running.
  Result<void> start();
  // SIGTERM, then SIGKILL after `grace`; reaped. Success if not running.
  Result<void> stop(std::chrono::milliseconds grace = std::chrono::milliseconds(3000));
  // SIGKILL at once; reaped.
  Result<void> kill() { return stop(std::chrono::milliseconds(0)); }
  bool running();
  pid_t pid() const;  // 0 when not running

  const EtcdMember& member() const { return member_; }
  const std::filesystem::path& dataDir() const { return data_dir_; }
  const std::filesystem::path& logPath() const { return log_path_; }
  const std::vector<pid_t>& pidsEverStarted() const { return pids_; }
  std::string logTail(size_t max_bytes = 3000) const;

 private:
  EtcdMember member_;
  std::vector<std::string> args_;
  std::filesystem::path data_dir_;
  std::filesystem::path log_path_;
  int run_id_;
  std::unique_ptr<ChildProcess> proc_;
  std::vector<pid_t> pids_;
};

class EtcdCluster {
 public:
  // `extra_args` are appended to every member's command line (e.g. "--auth-token-ttl=2").
  static Result<std::unique_ptr<EtcdCluster>> startOnLoopback(
      TestRun& run, int members = 1, std::vector<std::string> extra_args = {});
  // One member per etcd node of the topology (TopologySpec::etcd_nodes >= 1).
  static Result<std::unique_ptr<EtcdCluster>> startOnTopology(TestRun& run, Topology& topo);
  // One member per (namespace, address) pair.
  static Result<std::unique_ptr<EtcdCluster>> startInNamespaces(
      TestRun& run, std::vector<std::pair<Netns*, std::string>> nodes);

  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;
  ~EtcdCluster();

  size_t size() const { return members_.size(); }
  EtcdProcess& member(size_t i) { return *members_.at(i); }  // 0-based
  // "http://ip:port,http://ip:port,..." of every member (running or not).
  std::string clientEndpoints() const;
  const std::string& token() const { return token_; }

  // Polls until every member (or only member `i`) reports healthy, or `timeout` passes.
  Result<void> waitHealthy(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  Result<void> waitMemberHealthy(size_t i,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // `etcdctl --endpoints=<all> args...` (see DOC). Raw: a non-zero exit is in the output.
  Result<CommandOutput> etcdctlRaw(std::vector<std::string> args, Netns* from = nullptr,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Same, with a non-zero exit turned into an error carrying etcdctl's stderr.
  Result<CommandOutput> etcdctl(std::vector<std::string> args, Netns* from = nullptr,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Index of the current leader, from `etcdctl endpoint status -w json` over the endpoints of
  // the members whose process runs. Errc::Unavailable if no reachable member names one.
  Result<size_t> leader(Netns* from = nullptr);

  Result<void> stopMember(size_t i);
  Result<void> killMember(size_t i);
  // Starts a stopped member again on its data dir and waits until it is healthy.
  Result<void> restartMember(size_t i);

  // Stops every member. Idempotent; the destructor calls it.
  Result<void> stop();

  std::vector<pid_t> pidsEverStarted() const;

 private:
  EtcdCluster(std::string token, Netns* vantage) : token_(std::move(token)), vantage_(vantage) {}
  static Result<std::unique_ptr<EtcdCluster>> startMembers(
      TestRun& run, std::vector<EtcdMember> members, Netns* vantage,
      std::vector<std::string> extra_args = {});
  Result<CommandOutput> runEtcdctl(const std::string& endpoints, std::vector<std::string> args,
                                   Netns* from, std::chrono::milliseconds timeout);
  Result<void> waitHealthyOn(const std::string& endpoints, const std::vector<size_t>& watch,
                             std::chrono::milliseconds timeout);

  std::string token_;
  Netns* vantage_;
  std::shared_ptr<CommandRunner> runner_;
  std::vector<std::unique_ptr<EtcdProcess>> members_;
};

}  // namespace flannel::test
