#include "support/etcd_cluster.h"

#include <fstream>
#include <map>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "support/free_port.h"
#include "support/netns.h"
#include "support/poll.h"
#include "support/test_run.h"
#include "support/topology.h"

namespace flannel::test {

namespace {

using namespace std::chrono_literals;

constexpr int kLoopbackAttempts = 3;
constexpr auto kStartTimeout = 20s;

auto log() {
  return logger("test.etcd");
}

std::string joinEndpoints(const std::vector<std::unique_ptr<EtcdProcess>>& members,
                          const std::vector<size_t>& which) {
  std::string out;
  for (size_t i : which) {
    if (!out.empty()) {
      out += ",";
    }
    out += members[i]->member().clientUrl();
  }
  return out;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

}  // namespace

std::string EtcdMember::clientUrl() const {
  return fmt::format("http://{}:{}", ip, client_port);
}

std::string EtcdMember::peerUrl() const {
  return fmt::format("http://{}:{}", ip, peer_port);
}

EtcdProcess::EtcdProcess(EtcdMember member, std::vector<std::string> args,
                         std::filesystem::path data_dir, std::filesystem::path log_path, int run_id)
    : member_(std::move(member)),
      args_(std::move(args)),
      data_dir_(std::move(data_dir)),
      log_path_(std::move(log_path)),
      run_id_(run_id) {}

EtcdProcess::~EtcdProcess() {
  if (auto stopped = stop(); !stopped) {
    log()->warn("stopping etcd member {}: {}", member_.name, stopped.error().message);
  }
}

Result<void> EtcdProcess::start() {
  if (proc_ && proc_->running()) {
    return makeError(Errc::Conflict, fmt::format("etcd member {} is already running (pid {})",
                                                 member_.name, proc_->pid()));
  }
  ChildSpec spec;
  spec.argv.push_back("etcd");
  spec.argv.insert(spec.argv.end(), args_.begin(), args_.end());
  spec.log_path = log_path_;
  spec.run_id = run_id_;
  auto started = member_.netns != nullptr ? member_.netns->spawn(std::move(spec))
                                          : ChildProcess::start(std::move(spec));
  if (!started) {
    return started.error().context("etcd member " + member_.name);
  }
  proc_ = std::move(*started);
  pids_.push_back(proc_->pid());
  return ok();
}

Result<void> EtcdProcess::stop(std::chrono::milliseconds grace) {
  if (!proc_) {
    return ok();
  }
  auto stopped = proc_->stop(grace);
  if (!stopped) {
    return stopped.error().context("etcd member " + member_.name);
  }
  proc_.reset();
  return ok();
}

bool EtcdProcess::running() {
  return proc_ && proc_->running();
}

pid_t EtcdProcess::pid() const {
  return proc_ ? proc_->pid() : 0;
}

std::string EtcdProcess::logTail(size_t max_bytes) const {
  std::ifstream in(log_path_, std::ios::binary | std::ios::ate);
  if (!in) {
    return {};
  }
  const auto size = static_cast<size_t>(in.tellg());
  const size_t start = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(start));
  std::string tail(size - start, '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  return tail;
}

Result<std::unique_ptr<EtcdCluster>> EtcdCluster::startMembers(
    TestRun& run, std::vector<EtcdMember> members, Netns* vantage,
    std::vector<std::string> extra_args) {
  std::unique_ptr<EtcdCluster> cluster(new EtcdCluster(run.uniqueName("etcd"), vantage));
  cluster->runner_ = run.sharedRunner();
  std::string initial_cluster;
  for (const auto& m : members) {
    initial_cluster += (initial_cluster.empty() ? "" : ",") + m.name + "=" + m.peerUrl();
  }
  for (auto& m : members) {
    const auto data_dir = run.dir() / fmt::format("{}-{}.data", cluster->token_, m.name);
    const auto log_path = run.dir() / fmt::format("{}-{}.log", cluster->token_, m.name);
    std::vector<std::string> args = {
        "--name",
        m.name,
        "--data-dir",
        data_dir.string(),
        "--listen-client-urls",
        m.clientUrl(),
        "--advertise-client-urls",
        m.clientUrl(),
        "--listen-peer-urls",
        m.peerUrl(),
        "--initial-advertise-peer-urls",
        m.peerUrl(),
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        cluster->token_,
        // etcd's defaults; stated so a reader knows how long leader election takes.
        "--heartbeat-interval",
        "100",
        "--election-timeout",
        "1000",
        "--logger",
        "zap",
        "--log-outputs",
        "stderr",
    };
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    cluster->members_.push_back(
        std::make_unique<EtcdProcess>(m, std::move(args), data_dir, log_path, run.id()));
  }
  for (auto& member : cluster->members_) {
    if (auto started = member->start(); !started) {
      return started.error();
    }
  }
  if (auto healthy = cluster->waitHealthy(kStartTimeout); !healthy) {
    return healthy.error();
  }
  log()->debug("etcd {} healthy: {}", cluster->token_, cluster->clientEndpoints());
  return cluster;
}

Result<std::unique_ptr<EtcdCluster>> EtcdCluster::startOnLoopback(
    TestRun& run, int members, std::vector<std::string> extra_args) {
  if (members < 1 || members > 9) {
    return invalidInput(fmt::format("etcd on loopback: 1..9 members, got {}", members));
  }
  Error last = makeError(Errc::Internal, "no attempt made");
  for (int attempt = 1; attempt <= kLoopbackAttempts; ++attempt) {
    auto ports = pickFreeLoopbackPorts(static_cast<size_t>(2 * members));
    if (!ports) {
      return ports.error();
    }
    std::vector<EtcdMember> placement;
    for (int i = 0; i < members; ++i) {
      EtcdMember m;
      m.name = fmt::format("m{}", i + 1);
      m.ip = "127.0.0.1";
      m.client_port = (*ports)[static_cast<size_t>(2 * i)];
      m.peer_port = (*ports)[static_cast<size_t>(2 * i + 1)];
      placement.push_back(std::move(m));
    }
    auto cluster = startMembers(run, std::move(placement), nullptr, extra_args);
    if (cluster) {
      return cluster;
    }
    // Most likely a port was taken between our probe and etcd's bind: try fresh ones.
    last = cluster.error();
    log()->warn("etcd on loopback, attempt {}/{}: {}", attempt, kLoopbackAttempts, last.message);
  }
  return last;
}

Result<std::unique_ptr<EtcdCluster>> EtcdCluster::startOnTopology(TestRun& run, Topology& topo) {
  if (topo.etcdNodeCount() < 1) {
    return invalidInput("etcd on topology: the topology has no etcd nodes");
  }
  std::vector<std::pair<Netns*, std::string>> nodes;
  for (int i = 1; i <= topo.etcdNodeCount(); ++i) {
    nodes.emplace_back(&topo.etcdNode(i), Topology::etcdAddress(i));
  }
  return startInNamespaces(run, std::move(nodes));
}

Result<std::unique_ptr<EtcdCluster>> EtcdCluster::startInNamespaces(
    TestRun& run, std::vector<std::pair<Netns*, std::string>> nodes) {
  if (nodes.empty()) {
    return invalidInput("etcd in namespaces: no nodes");
  }
  std::vector<EtcdMember> placement;
  for (auto& [ns, ip] : nodes) {
    EtcdMember m;
    m.name = ns->role();
    m.netns = ns;
    m.ip = ip;
    placement.push_back(std::move(m));
  }
  Netns* vantage = nodes.front().first;
  return startMembers(run, std::move(placement), vantage);
}

EtcdCluster::~EtcdCluster() {
  if (auto stopped = stop(); !stopped) {
    log()->warn("stopping etcd {}: {}", token_, stopped.error().message);
  }
}

std::string EtcdCluster::clientEndpoints() const {
  std::vector<size_t> all(members_.size());
  for (size_t i = 0; i < all.size(); ++i) {
    all[i] = i;
  }
  return joinEndpoints(members_, all);
}

Result<CommandOutput> EtcdCluster::etcdctlRaw(std::vector<std::string> args, Netns* from,
                                              std::chrono::milliseconds timeout) {
  return runEtcdctl(clientEndpoints(), std::move(args), from, timeout);
}

Result<CommandOutput> EtcdCluster::runEtcdctl(const std::string& endpoints,
                                              std::vector<std::string> args, Netns* from,
                                              std::chrono::milliseconds timeout) {
  if (from == nullptr) {
    from = vantage_;
  }
  // --endpoints is a list flag: given twice, etcdctl would append, so it is set only here.
  std::vector<std::string> argv = {"etcdctl", "--endpoints=" + endpoints};
  argv.insert(argv.end(), std::make_move_iterator(args.begin()),
              std::make_move_iterator(args.end()));
  std::map<std::string, std::string> env = {{"ETCDCTL_API", "3"}};
  if (from != nullptr) {
    return from->exec(std::move(argv), timeout, std::move(env));
  }
  auto path = toolPath("etcdctl");
  if (!path) {
    return path.error();
  }
  Command cmd;
  cmd.argv = std::move(argv);
  cmd.argv.front() = *path;
  cmd.env_add = std::move(env);
  cmd.timeout = timeout;
  return runner_->run(cmd);
}

Result<CommandOutput> EtcdCluster::etcdctl(std::vector<std::string> args, Netns* from,
                                           std::chrono::milliseconds timeout) {
  const std::string what = describeCommand(args);
  auto out = etcdctlRaw(std::move(args), from, timeout);
  if (!out) {
    return out.error().context("etcdctl " + what);
  }
  if (!out->success()) {
    return makeError(Errc::Unavailable, fmt::format("etcdctl {}: exit {}: {}", what, out->exit_code,
                                                    trimmed(out->err)));
  }
  return out;
}

Result<void> EtcdCluster::waitHealthyOn(const std::string& endpoints,
                                        const std::vector<size_t>& watch,
                                        std::chrono::milliseconds timeout) {
  std::optional<size_t> died;
  std::string last_problem = "no probe finished";
  const bool healthy = pollUntil(
      [&] {
        for (size_t i : watch) {
          if (!members_[i]->running()) {
            died = i;
            return true;
          }
        }
        auto out = runEtcdctl(endpoints,
                              {"--dial-timeout=1s", "--command-timeout=2s", "endpoint", "health"},
                              nullptr, 5s);
        if (!out) {
          last_problem = out.error().message;
          return false;
        }
        if (!out->success()) {
          last_problem = trimmed(out->err.empty() ? out->out : out->err);
          return false;
        }
        return true;
      },
      timeout, 100ms);
  if (died) {
    auto& m = *members_[*died];
    return makeError(Errc::Unavailable,
                     fmt::format("etcd member {} exited during start-up; log {} ends with:\n{}",
                                 m.member().name, m.logPath().string(), m.logTail()));
  }
  if (!healthy) {
    std::string tails;
    for (size_t i : watch) {
      tails += fmt::format("\n--- {} ({}):\n{}", members_[i]->member().name,
                           members_[i]->logPath().string(), members_[i]->logTail(1500));
    }
    return makeError(Errc::Timeout, fmt::format("etcd {} not healthy after {} ms: {}{}", endpoints,
                                                timeout.count(), last_problem, tails));
  }
  return ok();
}

Result<void> EtcdCluster::waitHealthy(std::chrono::milliseconds timeout) {
  std::vector<size_t> all(members_.size());
  for (size_t i = 0; i < all.size(); ++i) {
    all[i] = i;
  }
  return waitHealthyOn(clientEndpoints(), all, timeout);
}

Result<void> EtcdCluster::waitMemberHealthy(size_t i, std::chrono::milliseconds timeout) {
  if (i >= members_.size()) {
    return invalidInput(fmt::format("no etcd member {}", i));
  }
  return waitHealthyOn(members_[i]->member().clientUrl(), {i}, timeout);
}

Result<size_t> EtcdCluster::leader(Netns* from) {
  auto out = etcdctlRaw(
      {"--dial-timeout=1s", "--command-timeout=2s", "endpoint", "status", "-w", "json"}, from, 10s);
  if (!out) {
    return out.error().context("finding the etcd leader");
  }
  // With a member down etcdctl exits non-zero but still prints the reachable ones.
  const auto json = nlohmann::json::parse(out->out, nullptr, false);
  if (json.is_discarded() || !json.is_array()) {
    return makeError(Errc::Unavailable,
                     fmt::format("finding the etcd leader: unexpected output {:?}; stderr: {}",
                                 out->out, trimmed(out->err)));
  }
  for (const auto& entry : json) {
    const auto endpoint = entry.value("Endpoint", std::string());
    const auto& status = entry.value("Status", nlohmann::json::object());
    if (!status.contains("header") || !status.contains("leader")) {
      continue;
    }
    const auto member_id = status["header"].value("member_id", uint64_t{0});
    const auto leader_id = status.value("leader", uint64_t{0});
    if (member_id == 0 || member_id != leader_id) {
      continue;
    }
    for (size_t i = 0; i < members_.size(); ++i) {
      const auto url = members_[i]->member().clientUrl();
      if (endpoint == url || "http://" + endpoint == url) {
        return i;
      }
    }
  }
  return makeError(
      Errc::Unavailable,
      "finding the etcd leader: no reachable member is the leader; stderr: " + trimmed(out->err));
}

Result<void> EtcdCluster::stopMember(size_t i) {
  if (i >= members_.size()) {
    return invalidInput(fmt::format("no etcd member {}", i));
  }
  return members_[i]->stop();
}

Result<void> EtcdCluster::killMember(size_t i) {
  if (i >= members_.size()) {
    return invalidInput(fmt::format("no etcd member {}", i));
  }
  return members_[i]->kill();
}

Result<void> EtcdCluster::restartMember(size_t i) {
  if (i >= members_.size()) {
    return invalidInput(fmt::format("no etcd member {}", i));
  }
  if (auto started = members_[i]->start(); !started) {
    return started;
  }
  return waitMemberHealthy(i);
}

Result<void> EtcdCluster::stop() {
  std::string problems;
  for (auto& m : members_) {
    if (auto stopped = m->stop(); !stopped) {
      problems += (problems.empty() ? "" : "; ") + stopped.error().message;
    }
  }
  if (!problems.empty()) {
    return makeError(Errc::Internal, problems);
  }
  return ok();
}

std::vector<pid_t> EtcdCluster::pidsEverStarted() const {
  std::vector<pid_t> pids;
  for (const auto& m : members_) {
    pids.insert(pids.end(), m->pidsEverStarted().begin(), m->pidsEverStarted().end());
  }
  return pids;
}

}  // namespace flannel::test
