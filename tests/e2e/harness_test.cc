// Self-test of the namespace harness (tests/support): topologies come up and reach each other,
// etcd runs on the underlay (one member and three), and everything is gone after teardown,
// including after the owning process was SIGKILLed. Needs root; skipped otherwise.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/etcd_cluster.h"
#include "support/netns.h"
#include "support/poll.h"
#include "support/test_run.h"
#include "support/topology.h"

namespace flannel::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

#define SKIP_UNLESS_ROOT()                                                                    \
  do {                                                                                        \
    if (::geteuid() != 0) {                                                                   \
      GTEST_SKIP() << "needs root (creates network namespaces); CI runs these tests as root"; \
    }                                                                                         \
  } while (0)

// `auto name = <Result<unique_ptr<T>>>` or fail the test with the error message.
#define ASSIGN_OR_FAIL(name, expr)                             \
  auto name##_result = (expr);                                 \
  ASSERT_TRUE(name##_result) << name##_result.error().message; \
  auto name = std::move(*name##_result)

#define ASSERT_OK(expr)                                    \
  do {                                                     \
    auto ok_result_ = (expr);                              \
    ASSERT_TRUE(ok_result_) << ok_result_.error().message; \
  } while (0)

struct ScopeExit {
  std::function<void()> fn;
  ~ScopeExit() {
    if (fn) {
      fn();
    }
  }
};

// What a test created, recorded before teardown, to check afterwards that nothing survived.
struct Footprint {
  std::vector<std::string> namespaces;
  std::vector<pid_t> pids;
  fs::path dir;
};

std::vector<std::string> ourNamespaces() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/run/netns", ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind(processPrefix(), 0) == 0) {
      names.push_back(name);
    }
  }
  return names;
}

void expectAllGone(const Footprint& footprint) {
  EXPECT_FALSE(footprint.pids.empty());
  EXPECT_TRUE(ourNamespaces().empty()) << "namespaces left: " << ourNamespaces().front();
  for (const auto& name : footprint.namespaces) {
    EXPECT_FALSE(fs::exists(fs::path("/run/netns") / name)) << name;
  }
  for (pid_t pid : footprint.pids) {
    EXPECT_FALSE(isPidAlive(pid)) << "pid " << pid << " survived teardown";
  }
  EXPECT_FALSE(footprint.dir.empty());
  EXPECT_FALSE(fs::exists(footprint.dir)) << footprint.dir;
}

void expectHostsReachEachOther(Topology& topo) {
  for (int i = 1; i <= topo.hostCount(); ++i) {
    for (int j = 1; j <= topo.hostCount(); ++j) {
      if (i != j) {
        auto pinged = topo.host(i).ping(Topology::hostAddress(j));
        EXPECT_TRUE(pinged) << pinged.error().message;
      }
    }
    auto gateway = topo.host(i).ping(Topology::kRouterAddress);
    EXPECT_TRUE(gateway) << gateway.error().message;
  }
}

TEST(HarnessPrivileged, ThreeHostsPingAndShareEtcdOnTheUnderlay) {
  SKIP_UNLESS_ROOT();
  Footprint footprint;
  {
    ASSIGN_OR_FAIL(run, TestRun::create());
    ASSIGN_OR_FAIL(topo, Topology::create(*run, {.hosts = 3, .etcd_nodes = 1, .mtu = 1500}));
    ASSIGN_OR_FAIL(etcd, EtcdCluster::startOnTopology(*run, *topo));
    footprint = {
        .namespaces = topo->namespaceNames(), .pids = etcd->pidsEverStarted(), .dir = run->dir()};

    // Names and the address plan.
    for (const auto& name : footprint.namespaces) {
      EXPECT_EQ(name.rfind(processPrefix(), 0), 0u) << name;
    }
    EXPECT_EQ(etcd->clientEndpoints(), "http://192.168.91.2:2379");
    // The default route is what interface auto-detection will look at.
    ASSIGN_OR_FAIL(route, topo->host(2).ip({"-4", "route", "show", "default"}));
    EXPECT_EQ(route.out.rfind("default via 192.168.91.1 dev eth0", 0), 0u) << route.out;
    ASSIGN_OR_FAIL(mtu, topo->host(3).ip({"-o", "link", "show", "eth0"}));
    EXPECT_NE(mtu.out.find(" mtu 1500 "), std::string::npos) << mtu.out;

    expectHostsReachEachOther(*topo);
    // ...and the probe can fail: nobody has .99.
    auto nobody = topo->host(1).ping("192.168.91.99", 300ms);
    ASSERT_FALSE(nobody);
    EXPECT_EQ(nobody.error().code, Errc::Timeout) << nobody.error().message;

    // etcd over the underlay: written from h1, read back from h2.
    ASSERT_OK(etcd->etcdctl({"put", "/fct/harness", "written-from-h1"}, &topo->host(1)));
    ASSIGN_OR_FAIL(got,
                   etcd->etcdctl({"get", "--print-value-only", "/fct/harness"}, &topo->host(2)));
    EXPECT_EQ(got.out, "written-from-h1\n");

    // The etcd process really lives in the etcd node's namespace.
    ASSIGN_OR_FAIL(inside, topo->etcdNode(1).pids());
    EXPECT_NE(std::find(inside.begin(), inside.end(), etcd->member(0).pid()), inside.end());

    // Explicit teardown, in the order a fixture would use.
    ASSERT_OK(etcd->stop());
    etcd.reset();
    ASSERT_OK(topo->destroy());
    topo.reset();
    ASSERT_OK(run->teardown());
  }
  expectAllGone(footprint);
}

TEST(HarnessPrivileged, EtcdClusterSurvivesLeaderLoss) {
  SKIP_UNLESS_ROOT();
  Footprint footprint;
  {
    ASSIGN_OR_FAIL(run, TestRun::create());
    ASSIGN_OR_FAIL(topo, Topology::create(*run, {.hosts = 3, .etcd_nodes = 3, .mtu = 1500}));
    ASSIGN_OR_FAIL(etcd, EtcdCluster::startOnTopology(*run, *topo));
    EXPECT_EQ(etcd->clientEndpoints(),
              "http://192.168.91.2:2379,http://192.168.91.3:2379,http://192.168.91.4:2379");
    expectHostsReachEachOther(*topo);

    ASSERT_OK(etcd->etcdctl({"put", "/fct/before", "1"}, &topo->host(1)));
    ASSIGN_OR_FAIL(leader, etcd->leader(&topo->host(1)));
    const pid_t leader_pid = etcd->member(leader).pid();
    ASSERT_OK(etcd->killMember(leader));
    EXPECT_FALSE(isPidAlive(leader_pid));

    // The two survivors elect a new leader; a put succeeds again within the deadline.
    std::string last_error;
    const bool put = pollUntil(
        [&] {
          auto r =
              etcd->etcdctl({"--command-timeout=2s", "put", "/fct/after", "2"}, &topo->host(2), 5s);
          if (!r) {
            last_error = r.error().message;
          }
          return static_cast<bool>(r);
        },
        15s, 100ms);
    ASSERT_TRUE(put) << last_error;
    ASSIGN_OR_FAIL(got, etcd->etcdctl({"get", "--print-value-only", "/fct/after"}, &topo->host(3)));
    EXPECT_EQ(got.out, "2\n");
    ASSIGN_OR_FAIL(new_leader, etcd->leader(&topo->host(3)));
    EXPECT_NE(new_leader, leader);

    // The killed member comes back on its data dir and catches up.
    ASSERT_OK(etcd->restartMember(leader));
    ASSERT_OK(etcd->waitHealthy(10s));

    footprint = {
        .namespaces = topo->namespaceNames(), .pids = etcd->pidsEverStarted(), .dir = run->dir()};
    EXPECT_EQ(footprint.pids.size(), 4u);  // three members plus the restarted one
    // No explicit teardown here: the destructors must do it (etcd, then topology, then run).
  }
  expectAllGone(footprint);
}

TEST(HarnessPrivileged, LoopbackEtcdOnFreePortsInTheRootNamespace) {
  SKIP_UNLESS_ROOT();
  Footprint footprint;
  {
    ASSIGN_OR_FAIL(run, TestRun::create());
    ASSIGN_OR_FAIL(etcd, EtcdCluster::startOnLoopback(*run, 1));
    EXPECT_EQ(etcd->clientEndpoints().rfind("http://127.0.0.1:", 0), 0u);
    EXPECT_NE(etcd->clientEndpoints(), "http://127.0.0.1:2379");
    ASSERT_OK(etcd->etcdctl({"put", "/fct/loopback", "yes"}));
    ASSIGN_OR_FAIL(got, etcd->etcdctl({"get", "--print-value-only", "/fct/loopback"}));
    EXPECT_EQ(got.out, "yes\n");
    footprint = {.namespaces = {}, .pids = etcd->pidsEverStarted(), .dir = run->dir()};
  }
  expectAllGone(footprint);
}

// Writes `n` in decimal into `out` (async-signal-safe, for the forked child below).
char* appendNumber(char* out, long n) {
  char digits[24];
  int len = 0;
  do {
    digits[len++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n > 0);
  while (len > 0) {
    *out++ = digits[--len];
  }
  return out;
}

char* appendText(char* out, const char* text) {
  while (*text != '\0') {
    *out++ = *text++;
  }
  return out;
}

// The forked "earlier test run": creates fct-<own pid>-1-orphan and a temp dir named the same
// way, leaves a process inside the namespace (one that does not die with it, like a stray
// daemon), reports that process's PID and waits to be SIGKILLed. Async-signal-safe calls only:
// the test process may have threads.
[[noreturn]] void orphanMaker(int report_fd, const char* ip_path, const char* sleep_path,
                              const char* tmp_dir) {
  char name[64];
  char* end = appendText(name, "fct-");
  end = appendNumber(end, ::getpid());
  end = appendText(end, "-1-orphan");
  *end = '\0';

  char dir[512];
  end = appendText(dir, tmp_dir);
  end = appendText(end, "/fct-");
  end = appendNumber(end, ::getpid());
  end = appendText(end, "-2-run");
  *end = '\0';
  if (::mkdir(dir, 0700) != 0) {
    ::_exit(10);
  }

  const pid_t adder = ::fork();
  if (adder == 0) {
    const char* argv[] = {ip_path, "netns", "add", name, nullptr};
    ::execve(ip_path, const_cast<char* const*>(argv), environ);
    ::_exit(127);
  }
  int status = 0;
  if (adder < 0 || ::waitpid(adder, &status, 0) != adder || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    ::_exit(11);
  }

  char ns_path[128];
  end = appendText(ns_path, "/run/netns/");
  end = appendText(end, name);
  *end = '\0';
  const pid_t squatter = ::fork();
  if (squatter == 0) {
    const int ns = ::open(ns_path, O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) {
      ::_exit(12);
    }
    ::setsid();
    const char* argv[] = {sleep_path, "60", nullptr};
    ::execve(sleep_path, const_cast<char* const*>(argv), environ);
    ::_exit(127);
  }
  if (squatter < 0) {
    ::_exit(13);
  }
  ssize_t written = ::write(report_fd, &squatter, sizeof squatter);
  (void)written;
  for (;;) {
    ::pause();
  }
}

TEST(HarnessPrivileged, SweepRemovesLeftoversOfAKilledRun) {
  SKIP_UNLESS_ROOT();
  // A live run of this process: the sweep must leave it alone.
  ASSIGN_OR_FAIL(run, TestRun::create());
  ASSIGN_OR_FAIL(mine, Netns::create(*run, "keep"));

  ASSIGN_OR_FAIL(ip_path, toolPath("ip"));
  ASSIGN_OR_FAIL(sleep_path, toolPath("sleep"));
  const std::string tmp_dir = fs::temp_directory_path().string();
  int report[2];
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  const pid_t owner = ::fork();
  ASSERT_GE(owner, 0) << std::strerror(errno);
  if (owner == 0) {
    ::close(report[0]);
    orphanMaker(report[1], ip_path.c_str(), sleep_path.c_str(), tmp_dir.c_str());
  }
  ::close(report[1]);
  const std::string orphan_ns = "fct-" + std::to_string(owner) + "-1-orphan";
  const fs::path orphan_dir = fs::path(tmp_dir) / ("fct-" + std::to_string(owner) + "-2-run");
  pid_t squatter = -1;
  bool owner_reaped = false;
  bool squatter_gone = false;
  // Whatever happens below, nothing of the fake run survives this test. PIDs are only signalled
  // while we know they still name our processes.
  ScopeExit cleanup{[&] {
    if (!owner_reaped) {
      ::kill(owner, SIGKILL);
      ::waitpid(owner, nullptr, 0);
    }
    if (squatter > 0 && !squatter_gone) {
      ::kill(squatter, SIGKILL);
    }
    SpawnCommandRunner runner;
    (void)destroyNamespace(runner, orphan_ns);
    std::error_code ec;
    fs::remove_all(orphan_dir, ec);
    ::close(report[0]);
  }};

  // Wait (bounded) for the child's report.
  ASSERT_TRUE(pollUntil(
      [&] {
        const int flags = ::fcntl(report[0], F_GETFL);
        ::fcntl(report[0], F_SETFL, flags | O_NONBLOCK);
        return ::read(report[0], &squatter, sizeof squatter) == sizeof squatter;
      },
      10s, 10ms))
      << "the orphan maker did not report (exit status of pid " << owner << " unknown)";
  ASSERT_TRUE(fs::exists(fs::path("/run/netns") / orphan_ns));
  ASSERT_TRUE(fs::exists(orphan_dir));
  ASSERT_TRUE(isPidAlive(squatter));

  // The owner dies the hard way: no destructor, no signal handler.
  ASSERT_EQ(::kill(owner, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(owner, &status, 0), owner);
  owner_reaped = true;
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_TRUE(isPidAlive(squatter)) << "the stray process must outlive its owner for this test";
  EXPECT_TRUE(fs::exists(fs::path("/run/netns") / orphan_ns));

  SpawnCommandRunner runner;
  const SweepReport report_out = sweepLeftovers(runner);
  EXPECT_TRUE(report_out.problems.empty()) << report_out.problems.front();
  EXPECT_NE(std::find(report_out.namespaces.begin(), report_out.namespaces.end(), orphan_ns),
            report_out.namespaces.end());
  EXPECT_NE(std::find(report_out.killed.begin(), report_out.killed.end(), squatter),
            report_out.killed.end());
  EXPECT_NE(std::find(report_out.dirs.begin(), report_out.dirs.end(), orphan_dir),
            report_out.dirs.end());
  EXPECT_FALSE(fs::exists(fs::path("/run/netns") / orphan_ns));
  EXPECT_FALSE(fs::exists(orphan_dir));
  squatter_gone = pollUntil([&] { return !isPidAlive(squatter); }, 5s, 10ms);
  EXPECT_TRUE(squatter_gone) << "squatter " << squatter << " still alive";

  // Our own live run was not touched.
  EXPECT_TRUE(fs::exists(fs::path("/run/netns") / mine->name()));
  EXPECT_TRUE(fs::exists(run->dir()));
}

}  // namespace
}  // namespace flannel::test
