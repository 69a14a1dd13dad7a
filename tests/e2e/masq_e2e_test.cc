// flanneld --ip-masq end to end (SPEC.md §6), in iptables mode and in nftables mode
// ("EnableNFTables": true): real flanneld in host namespaces, real etcd, real netfilter.
//
//   pod p1 10.5.a.2 ─ h1 (.11) ┐                       ┌ out: eth0 192.168.91.200/24
//   pod p2 10.5.b.2 ─ h2 (.12) ┴── br0 in sw (.1) ─────┘ (not a flannel host, outside 10.5/16)
//
// A pod's datagram to the outside node must arrive from its host's underlay address; pod-to-pod
// datagrams keep the pod address. Our rules are counted inside the host namespace with
// `iptables-save` / `nft -j list ruleset`: a restart neither drops nor doubles them, and a rule
// deleted behind flanneld's back is put back by the resync (-iptables-resync=1). Traffic stays
// inside namespaces this test created. Needs root; skipped otherwise.
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "core/lease.h"
#include "core/subnet_env.h"
#include "support/e2e_helpers.h"
#include "support/flannel_cluster.h"
#include "support/poll.h"

namespace flannel::test {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using namespace std::chrono_literals;

constexpr const char* kOutsideAddress = "192.168.91.200";

enum class Mode { Iptables, Nftables };

// How GoogleTest and CTest name the parameter.
void PrintTo(Mode mode, std::ostream* os) {
  *os << (mode == Mode::Iptables ? "Iptables" : "Nftables");
}

std::string modeName(const ::testing::TestParamInfo<Mode>& info) {
  return info.param == Mode::Iptables ? "Iptables" : "Nftables";
}

class MasqPrivileged : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root: creates network namespaces and netfilter rules inside them";
    }
  }

  static std::string config(Mode mode) {
    return mode == Mode::Nftables ? R"({"Network": "10.5.0.0/16", "EnableNFTables": true,)"
                                    R"( "Backend": {"Type": "vxlan"}})"
                                  : R"({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})";
  }

  // A cluster of `hosts` hosts running flanneld --ip-masq plus `args`, each with a pod.
  void start(int hosts, std::vector<std::string> args = {}) {
    FlannelClusterSpec spec;
    spec.hosts = hosts;
    spec.network_config = config(GetParam());
    spec.flanneld_args = {"-ip-masq"};
    spec.flanneld_args.insert(spec.flanneld_args.end(), args.begin(), args.end());
    spec.flanneld_binary = FLANNELD_BINARY;
    auto c = FlannelCluster::create(spec);
    ASSERT_TRUE(c) << c.error().message;
    cluster_ = std::move(*c);
    ASSERT_TRUE(cluster_->startAll());
    for (int i = 1; i <= hosts; ++i) {
      auto env = cluster_->waitSubnetEnv(i, 20s);
      ASSERT_TRUE(env) << env.error().message;
      EXPECT_EQ(env->ipmasq, true);
      // subnet.env is written before the rules; "running" is logged once they are in place.
      ASSERT_TRUE(pollUntil(
          [&] { return cluster_->flanneldLog(i).find("flanneld is running") != std::string::npos; },
          20s))
          << cluster_->flanneldLog(i);
      auto pod = cluster_->addPod(i);
      ASSERT_TRUE(pod) << pod.error().message;
    }
  }

  // Our rules on host i, one line each, comparable across runs (no counters, no handles).
  std::vector<std::string> ourRules(int i) { return ourRules(i, GetParam()); }
  std::vector<std::string> ourRules(int i, Mode mode) {
    if (mode == Mode::Iptables) {
      auto r = iptablesRules(cluster_->host(i));
      EXPECT_TRUE(r) << r.error().message;
      return r ? r->all() : std::vector<std::string>{};
    }
    auto r = nftRules(cluster_->host(i));
    EXPECT_TRUE(r) << r.error().message;
    return r ? r->describe() : std::vector<std::string>{};
  }

  // How a prefix is spelled in ourRules(): "10.5.7.0/24" in iptables-save, a JSON prefix object
  // in `nft -j`.
  static std::string asInRules(const IpNet& net) {
    return GetParam() == Mode::Iptables
               ? net.toString()
               : fmt::format(R"({{"addr":"{}","len":{}}})", net.addr().toString(), net.prefix());
  }

  // The whole of what we see on host i, for failure messages.
  std::string dump(int i) {
    std::ostringstream s;
    for (const auto& line : ourRules(i)) {
      s << "  " << line << "\n";
    }
    return s.str() + "flanneld log:\n" + cluster_->flanneldLog(i);
  }

  // The rule set SPEC.md §6.2 / §6.6 describes, as counted in the host namespace.
  void expectCompleteRules(int i) { expectCompleteRules(i, GetParam()); }
  void expectCompleteRules(int i, Mode mode) {
    if (mode == Mode::Iptables) {
      auto r = iptablesRules(cluster_->host(i));
      ASSERT_TRUE(r) << r.error().message;
      EXPECT_THAT(r->masq_jumps, SizeIs(1)) << r->raw;
      EXPECT_THAT(r->masq_rules, SizeIs(6)) << r->raw;
      EXPECT_THAT(r->fwd_jumps, SizeIs(1)) << r->raw;
      EXPECT_THAT(r->fwd_rules, SizeIs(2)) << r->raw;
      EXPECT_THAT(r->chain_decls, SizeIs(2)) << r->raw;
      for (const auto& line : r->masq_rules) {
        EXPECT_THAT(line, HasSubstr(R"(--comment "flanneld masq")"));
      }
      // Not the other mode's objects.
      auto nft = nftRules(cluster_->host(i));
      ASSERT_TRUE(nft) << nft.error().message;
      EXPECT_THAT(nft->chains, IsEmpty()) << nft->raw;
    } else {
      auto r = nftRules(cluster_->host(i));
      ASSERT_TRUE(r) << r.error().message;
      EXPECT_THAT(r->of("flannel-ipv4", "postrtg"), SizeIs(6)) << r->raw;
      EXPECT_THAT(r->of("flannel-ipv4", "forward"), SizeIs(2)) << r->raw;
      EXPECT_THAT(r->rules, SizeIs(8)) << r->raw;
      auto ipt = iptablesRules(cluster_->host(i));
      ASSERT_TRUE(ipt) << ipt.error().message;
      EXPECT_THAT(ipt->all(), IsEmpty()) << ipt->raw;
    }
  }

  // Polls until host i's rules are exactly `want` again (the resync repaired them).
  void expectRulesRestored(int i, const std::vector<std::string>& want, const char* what) {
    std::vector<std::string> seen;
    const bool back = pollUntil(
        [&] {
          seen = ourRules(i);
          return seen == want;
        },
        10s, 100ms);
    EXPECT_TRUE(back) << what << " was not put back within 10 s; now:\n" << dump(i);
    EXPECT_THAT(seen, ElementsAreArray(want));
  }

  std::unique_ptr<FlannelCluster> cluster_;
  std::unique_ptr<Netns> outside_;  // declared after cluster_: destroyed first
};

TEST_P(MasqPrivileged, PodTrafficLeavesWithTheHostAddressButPodToPodKeepsThePodAddress) {
  start(2);
  auto out = addUnderlayNode(cluster_->run(), cluster_->topology(), "out", kOutsideAddress);
  ASSERT_TRUE(out) << out.error().message;
  outside_ = std::move(*out);
  expectCompleteRules(1);
  expectCompleteRules(2);

  auto listener = UdpListener::open(*outside_);
  ASSERT_TRUE(listener) << listener.error().message;
  for (int h = 1; h <= 2; ++h) {
    const std::string payload = fmt::format("from pod {}", h);
    auto got = sendUntilReceived(cluster_->pod(h), *listener, kOutsideAddress, payload, 15s);
    ASSERT_TRUE(got) << got.error().message << "\n" << dump(h);
    EXPECT_EQ(got->source, Topology::hostAddress(h))
        << "pod " << h << " (" << cluster_->podIp(h) << ") was not masqueraded to its host's "
        << "underlay address\n"
        << dump(h);
  }

  // Across the overlay the source stays the pod's own address, both ways.
  for (auto [from, to] : {std::pair{1, 2}, std::pair{2, 1}}) {
    auto in_pod = UdpListener::open(cluster_->pod(to));
    ASSERT_TRUE(in_pod) << in_pod.error().message;
    const std::string payload = fmt::format("pod {} to pod {}", from, to);
    auto got = sendUntilReceived(cluster_->pod(from), *in_pod, cluster_->podIp(to), payload, 15s);
    ASSERT_TRUE(got) << got.error().message << "\n" << dump(from);
    EXPECT_EQ(got->source, cluster_->podIp(from)) << "pod-to-pod traffic was masqueraded\n"
                                                  << dump(from);
  }
}

TEST_P(MasqPrivileged, ARestartNeitherDropsNorDuplicatesRules) {
  start(1);
  expectCompleteRules(1);
  const auto before = ourRules(1);
  ASSERT_FALSE(before.empty());

  auto status = cluster_->stopFlanneld(1);
  ASSERT_TRUE(status) << status.error().message;
  EXPECT_EQ(status->exit_code, 0);
  // No cleanup on exit (SPEC.md §6.7): the rules stay while flanneld is down.
  EXPECT_THAT(ourRules(1), ElementsAreArray(before)) << dump(1);

  ASSERT_TRUE(cluster_->startFlanneld(1));
  const bool running = pollUntil(
      [&] {
        const auto log = cluster_->flanneldLog(1);
        return log.find("flanneld is running") != log.rfind("flanneld is running");
      },
      20s);
  ASSERT_TRUE(running) << cluster_->flanneldLog(1);
  EXPECT_THAT(ourRules(1), ElementsAreArray(before)) << dump(1);
  expectCompleteRules(1);
}

TEST_P(MasqPrivileged, ANewSubnetAfterARestartReplacesTheOldSubnetsRules) {
  start(1);
  expectCompleteRules(1);
  auto first = readSubnetEnv(cluster_->subnetFile(1).string());
  ASSERT_TRUE(first && first->subnet);
  const std::string old_subnet = asInRules(*first->subnet);
  ASSERT_THAT(fmt::format("{}", fmt::join(ourRules(1), "\n")), HasSubstr(old_subnet));

  // While h1 is down another node takes its subnet, so the restart must pick a new one.
  auto status = cluster_->stopFlanneld(1);
  ASSERT_TRUE(status) << status.error().message;
  const std::string key = "/coreos.com/network/subnets/" +
                          subnetKeyName(SubnetKey{.ipv4 = *first->subnet, .ipv6 = std::nullopt});
  ASSERT_TRUE(
      cluster_->etcd().etcdctl({"put", key,
                                R"({"PublicIP":"192.168.91.99","BackendType":"vxlan",)"
                                R"("BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}})"}));
  ASSERT_TRUE(cluster_->startFlanneld(1));
  std::optional<SubnetEnv> second;
  const bool moved = pollUntil(
      [&] {
        auto env = readSubnetEnv(cluster_->subnetFile(1).string());
        if (env && env->subnet && *env->subnet != *first->subnet) {
          second = *env;
          return true;
        }
        return false;
      },
      20s);
  ASSERT_TRUE(moved) << cluster_->flanneldLog(1);
  const std::string new_subnet = asInRules(*second->subnet);
  // subnet.env is written before the rules; "running" is logged once they are in place.
  ASSERT_TRUE(pollUntil(
      [&] {
        const auto log = cluster_->flanneldLog(1);
        return log.find("flanneld is running") != log.rfind("flanneld is running");
      },
      20s))
      << cluster_->flanneldLog(1);
  expectCompleteRules(1);
  const std::string rules = fmt::format("{}", fmt::join(ourRules(1), "\n"));
  EXPECT_THAT(rules, HasSubstr(new_subnet)) << dump(1);
  EXPECT_THAT(rules, ::testing::Not(HasSubstr(old_subnet)))
      << "rules of the old subnet " << old_subnet << " survived\n"
      << dump(1);
}

TEST_P(MasqPrivileged, SwitchingModesRemovesTheOtherModesRules) {
  start(1);
  expectCompleteRules(1);
  const Mode other = GetParam() == Mode::Iptables ? Mode::Nftables : Mode::Iptables;
  auto status = cluster_->stopFlanneld(1);
  ASSERT_TRUE(status) << status.error().message;
  ASSERT_TRUE(cluster_->etcd().etcdctl({"put", "/coreos.com/network/config", config(other)}));
  ASSERT_TRUE(cluster_->startFlanneld(1));
  const bool running = pollUntil(
      [&] {
        const auto log = cluster_->flanneldLog(1);
        return log.find("flanneld is running") != log.rfind("flanneld is running");
      },
      20s);
  ASSERT_TRUE(running) << cluster_->flanneldLog(1);
  // The other mode's full set, and none of the first mode's objects (SPEC.md §6.6).
  expectCompleteRules(1, other);
  EXPECT_THAT(ourRules(1, GetParam()), IsEmpty()) << dump(1);
}

TEST_P(MasqPrivileged, ARuleDeletedBehindOurBackComesBack) {
  start(1, {"-iptables-resync=1"});
  expectCompleteRules(1);
  const auto want = ourRules(1);
  ASSERT_FALSE(want.empty());
  Netns& host = cluster_->host(1);

  if (GetParam() == Mode::Iptables) {
    // One rule of our chain.
    ASSERT_TRUE(host.execChecked({"iptables", "-t", "nat", "-D", "FLANNEL-POSTRTG", "2"}));
    auto gone = iptablesRules(host);
    ASSERT_TRUE(gone) << gone.error().message;
    ASSERT_THAT(gone->masq_rules, SizeIs(5)) << gone->raw;
    expectRulesRestored(1, want, "rule 2 of FLANNEL-POSTRTG");

    // The jump to it from POSTROUTING.
    auto listing =
        host.execChecked({"iptables", "-t", "nat", "-L", "POSTROUTING", "-n", "--line-numbers"});
    ASSERT_TRUE(listing) << listing.error().message;
    std::string position;
    std::istringstream lines(listing->out);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("FLANNEL-POSTRTG") != std::string::npos) {
        position = line.substr(0, line.find(' '));
      }
    }
    ASSERT_FALSE(position.empty()) << listing->out;
    ASSERT_TRUE(host.execChecked({"iptables", "-t", "nat", "-D", "POSTROUTING", position}));
    expectRulesRestored(1, want, "the POSTROUTING jump to FLANNEL-POSTRTG");
  } else {
    // One rule of our chain, by handle.
    auto listed = nftRules(host);
    ASSERT_TRUE(listed) << listed.error().message;
    const auto masq = listed->of("flannel-ipv4", "postrtg");
    ASSERT_THAT(masq, SizeIs(6)) << listed->raw;
    ASSERT_TRUE(host.execChecked({"nft", "delete", "rule", "ip", "flannel-ipv4", "postrtg",
                                  "handle", std::to_string(masq[1].handle)}));
    auto gone = nftRules(host);
    ASSERT_TRUE(gone) << gone.error().message;
    ASSERT_THAT(gone->of("flannel-ipv4", "postrtg"), SizeIs(5)) << gone->raw;
    expectRulesRestored(1, want, "rule 2 of chain postrtg");

    // The whole table.
    ASSERT_TRUE(host.execChecked({"nft", "delete", "table", "ip", "flannel-ipv4"}));
    expectRulesRestored(1, want, "table ip flannel-ipv4");
  }
  expectCompleteRules(1);
  EXPECT_TRUE(cluster_->flanneld(1)->running()) << cluster_->flanneldLog(1);
}

INSTANTIATE_TEST_SUITE_P(Modes, MasqPrivileged, ::testing::Values(Mode::Iptables, Mode::Nftables),
                         modeName);

}  // namespace
}  // namespace flannel::test
