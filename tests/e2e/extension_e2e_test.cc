// The extension backend end to end (SPEC.md §5.8, our behaviour): real flanneld in a host
// namespace, real etcd, hook scripts written by the test into the run's temp dir.
//
//   PreStartupCommand    pre.sh: echoes a token    -> the own lease's BackendData is that token
//                                                     as a JSON string
//   SubnetAddCommand     hook.sh add ...           -> appends its argv, SUBNET, PUBLIC_IP and
//   SubnetRemoveCommand  hook.sh remove ...           stdin to hooks.log
//
// Our commands run WITHOUT a shell: words are split once, `$VAR` / `${VAR}` are expanded inside a
// word and never re-split, and shell syntax ($(...), `...`, ;) is plain text. A peer lease whose
// BackendData is full of shell metacharacters reaches the add hook verbatim on stdin and runs
// nothing. Files the test checks for ("pwned-*") live in the run's temp dir. Needs root (the host
// namespace); skipped otherwise.
#include <unistd.h>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/json_util.h"
#include "core/lease.h"
#include "support/e2e_helpers.h"
#include "support/flannel_cluster.h"
#include "support/poll.h"

namespace flannel::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr const char* kSubnetsPrefix = "/coreos.com/network/subnets/";

class ExtensionPrivileged : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root: runs flanneld inside a network namespace";
    }
  }
  void TearDown() override {
    if (flanneld_) {
      (void)flanneld_->stop(std::chrono::milliseconds(5000));
    }
  }

  std::string leaseKey(const IpNet& subnet) const {
    return kSubnetsPrefix + subnetKeyName(SubnetKey{.ipv4 = subnet, .ipv6 = std::nullopt});
  }

  // One hook record as hook.sh writes it.
  static std::string record(const std::vector<std::string>& args, const std::string& subnet,
                            const std::string& public_ip) {
    std::string r = fmt::format("argc={}\n", args.size());
    for (const auto& a : args) {
      r += fmt::format("arg=[{}]\n", a);
    }
    r += fmt::format("SUBNET=[{}]\nPUBLIC_IP=[{}]\n", subnet, public_ip);
    return r;
  }

  // Polls until `log` holds a complete record (hook.sh ends each with "---") with `marker`.
  static bool waitForRecord(const fs::path& log, const std::string& marker) {
    return pollUntil(
        [&] {
          const std::string text = readTextFile(log);
          const auto at = text.find(marker);
          return at != std::string::npos && text.find("\n---\n", at) != std::string::npos;
        },
        10s, 100ms);
  }

  std::unique_ptr<FlannelCluster> cluster_;
  std::unique_ptr<ChildProcess> flanneld_;  // after cluster_: stopped first
};

TEST_F(ExtensionPrivileged, HooksRunWithoutAShellAndGetPeerDataVerbatim) {
  FlannelClusterSpec spec;
  spec.hosts = 1;
  spec.flanneld_binary = FLANNELD_BINARY;
  auto c = FlannelCluster::create(spec);
  ASSERT_TRUE(c) << c.error().message;
  cluster_ = std::move(*c);
  const fs::path dir = cluster_->run().dir();
  const fs::path log = dir / "hooks.log";
  const std::string token = fmt::format("ext-token-{}", ::getpid());

  ASSERT_TRUE(writeExecutable(dir / "pre.sh", fmt::format("#!/bin/sh\necho '  {}  '\n", token)));
  ASSERT_TRUE(writeExecutable(dir / "hook.sh", fmt::format(R"(#!/bin/sh
{{
  printf 'argc=%s\n' "$#"
  for a in "$@"; do printf 'arg=[%s]\n' "$a"; done
  printf 'SUBNET=[%s]\n' "$SUBNET"
  printf 'PUBLIC_IP=[%s]\n' "$PUBLIC_IP"
  printf 'stdin=['
  cat
  printf ']\n'
  echo ---
}} >> '{}'
)",
                                                           log.string())));

  // Shell syntax in the command itself, and a variable whose value has spaces and shell syntax.
  const std::string pwned_cmd = (dir / "pwned-cmd").string();
  const std::string pwned_subst = (dir / "pwned-subst").string();
  const std::string pwned_env = (dir / "pwned-env").string();
  const std::string pwned_data = (dir / "pwned-data").string();
  const std::string tag = fmt::format("two words; touch {} $(touch {})", pwned_env, pwned_env);
  const std::string add_command =
      fmt::format("{} add subnet=$SUBNET ${{PUBLIC_IP}}:8472 $EXT_TAG ;touch {} $(touch {}) `id`",
                  (dir / "hook.sh").string(), pwned_cmd, pwned_subst);
  const std::string remove_command =
      fmt::format("{} remove $SUBNET $PUBLIC_IP", (dir / "hook.sh").string());
  Json backend = {{"Type", "extension"},
                  {"PreStartupCommand", (dir / "pre.sh").string()},
                  {"SubnetAddCommand", add_command},
                  {"SubnetRemoveCommand", remove_command}};
  Json config = {{"Network", "10.5.0.0/16"}, {"Backend", backend}};
  ASSERT_TRUE(cluster_->etcd().etcdctl({"put", "/coreos.com/network/config", config.dump()}));

  // flanneld as FlannelCluster starts it, plus EXT_TAG in its environment.
  ChildSpec child;
  child.argv = {FLANNELD_BINARY, "-subnet-file=" + cluster_->subnetFile(1).string(), "-iface=eth0",
                "-etcd-endpoints=" + cluster_->etcd().clientEndpoints()};
  child.env_add = {{"EXT_TAG", tag}};
  child.log_path = dir / "h1-flanneld.log";
  auto started = cluster_->host(1).spawn(child);
  ASSERT_TRUE(started) << started.error().message;
  flanneld_ = std::move(*started);
  auto env = cluster_->waitSubnetEnv(1, 20s);
  ASSERT_TRUE(env) << env.error().message;
  const IpNet own = *env->subnet;
  EXPECT_EQ(env->mtu, 1500u) << "extension: MTU = the external interface's";

  // PreStartupCommand's trimmed output became BackendData, as a JSON string.
  auto own_value = cluster_->etcd().etcdctl({"get", leaseKey(own), "--print-value-only"});
  ASSERT_TRUE(own_value) << own_value.error().message;
  auto own_lease = parseJson(own_value->out, "own lease");
  ASSERT_TRUE(own_lease) << own_lease.error().message << ": " << own_value->out;
  EXPECT_EQ(own_lease->value("BackendType", ""), "extension") << own_lease->dump();
  ASSERT_TRUE(own_lease->contains("BackendData")) << own_lease->dump();
  EXPECT_EQ((*own_lease)["BackendData"], Json(token)) << own_lease->dump();

  // Peers in subnets other than ours.
  auto pick = [&](int third) {
    auto n = IpNet::parse(fmt::format("10.5.{}.0/24", third)).value();
    return n == own ? IpNet::parse(fmt::format("10.5.{}.0/24", third + 100)).value() : n;
  };
  const IpNet other_type = pick(78);
  const IpNet peer = pick(77);
  const std::string peer_ip = "192.168.91.77";
  const std::string evil = fmt::format(R"("$(touch {}); `id`; rm -rf x" && touch {} | 'q' \ $HOME)",
                                       pwned_data, pwned_data);

  // A vxlan lease is not for us: no hook runs for it.
  Json vxlan_lease = {{"PublicIP", "192.168.91.78"},
                      {"BackendType", "vxlan"},
                      {"BackendData", {{"VNI", 1}, {"VtepMAC", "aa:bb:cc:dd:ee:ff"}}}};
  ASSERT_TRUE(cluster_->etcd().etcdctl({"put", leaseKey(other_type), vxlan_lease.dump()}));
  Json peer_lease = {{"PublicIP", peer_ip}, {"BackendType", "extension"}, {"BackendData", evil}};
  ASSERT_TRUE(cluster_->etcd().etcdctl({"put", leaseKey(peer), peer_lease.dump()}));

  const std::string add_record = record({"add", "subnet=" + peer.toString(), peer_ip + ":8472", tag,
                                         ";touch", pwned_cmd, "$(touch", pwned_subst + ")", "`id`"},
                                        peer.toString(), peer_ip) +
                                 "stdin=[" + evil + "\n]\n---\n";
  ASSERT_TRUE(waitForRecord(log, "arg=[add]")) << "SubnetAddCommand never ran\n"
                                               << cluster_->flanneldLog(1);
  EXPECT_EQ(readTextFile(log), add_record) << "flanneld log:\n" << cluster_->flanneldLog(1);
  EXPECT_THAT(readTextFile(log), Not(HasSubstr(other_type.toString())));

  // Deleting the lease runs the remove hook for that peer.
  ASSERT_TRUE(cluster_->etcd().etcdctl({"del", leaseKey(peer)}));
  ASSERT_TRUE(waitForRecord(log, "arg=[remove]")) << "SubnetRemoveCommand never ran\n"
                                                  << cluster_->flanneldLog(1);
  const std::string text = readTextFile(log);
  const std::string remove_part = text.substr(std::min(text.size(), add_record.size()));
  // The deleted lease's attributes are remembered: the hook gets its PublicIP and, as for an
  // add, its BackendData on stdin (SPEC.md §5.8).
  EXPECT_EQ(remove_part, record({"remove", peer.toString(), peer_ip}, peer.toString(), peer_ip) +
                             "stdin=[" + evil + "\n]\n---\n")
      << "flanneld log:\n"
      << cluster_->flanneldLog(1);

  // Nothing any of that text asked a shell to do was done.
  for (const auto& f : {pwned_cmd, pwned_subst, pwned_env, pwned_data}) {
    EXPECT_FALSE(fs::exists(f)) << f << " was created: something ran through a shell";
  }
  EXPECT_TRUE(flanneld_->running()) << cluster_->flanneldLog(1);
}

}  // namespace
}  // namespace flannel::test
