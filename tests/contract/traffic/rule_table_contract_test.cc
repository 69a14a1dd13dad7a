// Contract suite of the RuleTable seam (DESIGN.md "The seams" item 5), run against the real
// implementations in a fresh network namespace each:
//   NftRuleTable                          (libnftables, tables flannel-ipv4 / flannel-ipv6)
//   IptablesRuleTable over iptables-nft   (Debian 12's `iptables`; checks in-process)
//   IptablesRuleTable over iptables-legacy (when installed)
//
// The test thread enters the namespace with setns() for the whole test and goes back to its own
// namespace in TearDown: netfilter state is per namespace, the libnftables context stays in the
// namespace it was created in, and iptables-restore children inherit the thread's namespace.
// What the tables did is observed independently, with the `nft` / `iptables-save` programs run
// through `ip netns exec`.
//
// Needs root; skips with a message otherwise. Traffic stays inside namespaces the test created,
// on private addresses.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/exec.h"
#include "support/netns.h"
#include "support/test_run.h"
#include "traffic/iptables/iptables_rule_table.h"
#include "traffic/nft/nft_chain_reader.h"
#include "traffic/nft/nft_library.h"
#include "traffic/nft/nft_namespace.h"
#include "traffic/nft/nft_rule_table.h"
#include "traffic/plan.h"

namespace flannel::traffic {
namespace {

using namespace std::chrono_literals;
using test::Netns;
using test::TestRun;

IpNet net(std::string_view text) {
  return *IpNet::parse(text);
}

NetworkConfig dualConfig() {
  NetworkConfig c;
  c.enable_ipv4 = true;
  c.enable_ipv6 = true;
  c.network = net("10.5.0.0/16");
  c.ipv6_network = net("fd00:10::/48");
  return c;
}

SubnetKey ownSubnets(std::string_view v4 = "10.5.1.0/24") {
  return SubnetKey{.ipv4 = net(v4), .ipv6 = net("fd00:10:0:1::/64")};
}

RuleSet dualPlan(bool fully_random, std::string_view v4_subnet = "10.5.1.0/24") {
  auto rs = plan(dualConfig(), ownSubnets(v4_subnet),
                 PlanOptions{.ip_masq = true, .forward_rules = true, .fully_random = fully_random});
  EXPECT_TRUE(rs);
  return rs ? *rs : RuleSet{};
}

// Enters a named network namespace on the calling thread; leave() (or the destructor) goes back.
class NetnsEntry {
 public:
  NetnsEntry() = default;
  NetnsEntry(const NetnsEntry&) = delete;
  NetnsEntry& operator=(const NetnsEntry&) = delete;
  ~NetnsEntry() { leave(); }

  Result<void> enter(const std::string& name) {
    original_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (original_ < 0) {
      return makeError(Errc::Internal, fmt::format("open own netns: {}", std::strerror(errno)));
    }
    const std::string path = "/run/netns/" + name;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      const int err = errno;
      if (fd >= 0) {
        ::close(fd);
      }
      ::close(original_);
      original_ = -1;
      return makeError(Errc::Internal, fmt::format("entering {}: {}", path, std::strerror(err)));
    }
    ::close(fd);
    return ok();
  }

  void leave() {
    if (original_ < 0) {
      return;
    }
    if (::setns(original_, CLONE_NEWNET) != 0) {
      // Carrying on in the wrong namespace would touch the host's netfilter state.
      std::perror("returning to the original network namespace");
      std::abort();
    }
    ::close(original_);
    original_ = -1;
  }

 private:
  int original_ = -1;
};

// Counts the commands a table starts.
class CountingRunner final : public CommandRunner {
 public:
  explicit CountingRunner(std::shared_ptr<CommandRunner> inner) : inner_(std::move(inner)) {}
  Result<CommandOutput> run(const Command& cmd) override {
    ++count_;
    return inner_->run(cmd);
  }
  int count() const { return count_.load(); }

 private:
  std::shared_ptr<CommandRunner> inner_;
  std::atomic<int> count_{0};
};

// What an observer sees of one chain of ours.
struct Counts {
  bool chain = false;
  int rules = 0;
  // Ways into the chain: jump rules in the hook chain (iptables), or 1 for a base chain on the
  // right hook (nftables).
  int entries = 0;
};

std::string writeFile(TestRun& run, const std::string& name, const std::string& text) {
  const auto path = (run.dir() / name).string();
  std::ofstream(path) << text;
  return path;
}

std::string outputOf(Result<CommandOutput> r) {
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  return r ? r->out : std::string();
}

// ---------------------------------------------------------------------------------------------
// Per-implementation traits: how to create the table and how to look at / damage its state from
// the outside.

struct NftTraits {
  static constexpr const char* kName = "nftables";
  static std::optional<std::string> unavailable() {
    if (!test::toolPath("nft")) {
      return "the nft program (observer) is not installed";
    }
    return std::nullopt;
  }
  static Result<std::unique_ptr<RuleTable>> create(std::shared_ptr<CommandRunner>) {
    auto t = nft::NftRuleTable::create();
    if (!t) {
      return t.error();
    }
    return std::unique_ptr<RuleTable>(std::move(*t));
  }
  static nlohmann::json ruleset(Netns& ns) {
    auto text = outputOf(ns.execChecked({"nft", "-j", "-a", "list", "ruleset"}));
    return nlohmann::json::parse(text, nullptr, false);
  }
  static Counts count(Netns& ns, Family family, ChainKind kind) {
    const auto doc = ruleset(ns);
    const ChainNames& n = chainNames(kind);
    Counts c;
    for (const auto& item : doc.value("nftables", nlohmann::json::array())) {
      const auto matches = [&](const nlohmann::json& o) {
        return o.value("family", "") == nftFamily(family) &&
               o.value("table", "") == nftTableName(family);
      };
      if (item.contains("chain") && matches(item["chain"]) &&
          item["chain"].value("name", "") == n.nft_chain) {
        c.chain = true;
        c.entries = item["chain"].value("hook", "") == n.nft_hook ? 1 : 0;
      }
      if (item.contains("rule") && matches(item["rule"]) &&
          item["rule"].value("chain", "") == n.nft_chain) {
        ++c.rules;
      }
    }
    return c;
  }
  static void deleteRule(Netns& ns, Family family, ChainKind kind, int index) {
    const auto doc = ruleset(ns);
    int seen = 0;
    for (const auto& item : doc.value("nftables", nlohmann::json::array())) {
      if (item.contains("rule") && item["rule"].value("table", "") == nftTableName(family) &&
          item["rule"].value("family", "") == nftFamily(family) &&
          item["rule"].value("chain", "") == chainNames(kind).nft_chain && ++seen == index) {
        const auto handle = std::to_string(item["rule"]["handle"].get<uint64_t>());
        ASSERT_TRUE(ns.execChecked({"nft", "delete", "rule", std::string(nftFamily(family)),
                                    std::string(nftTableName(family)),
                                    std::string(chainNames(kind).nft_chain), "handle", handle}));
        return;
      }
    }
    FAIL() << "no rule " << index;
  }
  static void deleteEntry(Netns& ns, Family family, ChainKind kind) {
    const std::vector<std::string> ref = {std::string(nftFamily(family)),
                                          std::string(nftTableName(family)),
                                          std::string(chainNames(kind).nft_chain)};
    std::vector<std::string> flush = {"nft", "flush", "chain"};
    flush.insert(flush.end(), ref.begin(), ref.end());
    std::vector<std::string> del = {"nft", "delete", "chain"};
    del.insert(del.end(), ref.begin(), ref.end());
    ASSERT_TRUE(ns.execChecked(flush));
    ASSERT_TRUE(ns.execChecked(del));
  }
  static void installForeign(Netns& ns, TestRun& run) {
    const auto path = writeFile(run, "foreign.nft",
                                "table ip someone {\n"
                                "  chain post {\n"
                                "    type nat hook postrouting priority 50; policy accept;\n"
                                "    ip saddr 172.17.0.0/16 masquerade\n"
                                "  }\n"
                                "}\n");
    ASSERT_TRUE(ns.execChecked({"nft", "-f", path}));
  }
  static bool foreignIntact(Netns& ns) {
    auto out = ns.exec({"nft", "list", "table", "ip", "someone"});
    return out && out->success() &&
           out->out.find("ip saddr 172.17.0.0/16 masquerade") != std::string::npos;
  }
  // Go flannel's nftables mode (SPEC.md §6.6): exact mark match, `saddr != P` in rule 4, no
  // comments.
  static void installGoLeftovers(Netns& ns, TestRun& run) {
    const auto path =
        writeFile(run, "go-flannel.nft",
                  "table ip flannel-ipv4 {\n"
                  "  chain postrtg {\n"
                  "    type nat hook postrouting priority srcnat; policy accept;\n"
                  "    meta mark 0x4000 return\n"
                  "    ip saddr 10.5.1.0/24 ip daddr 10.5.0.0/16 return\n"
                  "    ip saddr 10.5.0.0/16 ip daddr 10.5.1.0/24 return\n"
                  "    ip saddr != 10.5.1.0/24 ip daddr 10.5.0.0/16 return\n"
                  "    ip saddr 10.5.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random\n"
                  "    ip saddr != 10.5.0.0/16 ip daddr 10.5.0.0/16 masquerade fully-random\n"
                  "  }\n"
                  "  chain forward {\n"
                  "    type filter hook forward priority filter; policy accept;\n"
                  "    ip saddr 10.5.0.0/16 accept\n"
                  "    ip daddr 10.5.0.0/16 accept\n"
                  "  }\n"
                  "}\n");
    ASSERT_TRUE(ns.execChecked({"nft", "-f", path}));
  }
  static std::string dump(Netns& ns) {
    auto out = ns.exec({"nft", "list", "ruleset"});
    return out ? out->out : out.error().message;
  }
};

template <bool kLegacy>
struct IptablesTraits {
  static constexpr const char* kName = kLegacy ? "iptables-legacy" : "iptables-nft";
  // "iptables-nft-save", "ip6tables-legacy", ...: explicit variants, whatever the alternatives
  // point `iptables` at.
  static std::string bin(Family family, std::string_view suffix = "") {
    return fmt::format("{}{}{}", family == Family::V4 ? "iptables" : "ip6tables",
                       kLegacy ? "-legacy" : "-nft", suffix);
  }
  static std::optional<std::string> unavailable() {
    for (Family f : {Family::V4, Family::V6}) {
      for (std::string_view suffix : {"", "-save", "-restore"}) {
        if (!test::toolPath(bin(f, suffix))) {
          return bin(f, suffix) + " is not installed";
        }
      }
    }
    return std::nullopt;
  }
  static Result<std::unique_ptr<RuleTable>> create(std::shared_ptr<CommandRunner> runner) {
    iptables::IptablesOptions options{.binaries = {.iptables = bin(Family::V4),
                                                   .iptables_restore = bin(Family::V4, "-restore"),
                                                   .iptables_save = bin(Family::V4, "-save"),
                                                   .ip6tables_restore = bin(Family::V6, "-restore"),
                                                   .ip6tables_save = bin(Family::V6, "-save")},
                                      .timeout = 60s};
    std::unique_ptr<ChainReader> reader;
    if (!kLegacy) {
      auto r = nft::NftChainReader::create();
      if (!r) {
        return r.error();
      }
      reader = std::move(*r);
    }
    auto t = iptables::IptablesRuleTable::create(std::move(runner), options, std::move(reader));
    if (!t) {
      return t.error();
    }
    return std::unique_ptr<RuleTable>(std::move(*t));
  }
  static std::string save(Netns& ns, Family family, std::string_view table) {
    return outputOf(ns.execChecked({bin(family, "-save"), "-t", std::string(table)}));
  }
  static Counts count(Netns& ns, Family family, ChainKind kind) {
    const ChainNames& n = chainNames(kind);
    const auto text = save(ns, family, n.iptables_table);
    Counts c;
    std::istringstream in(text);
    std::string line;
    const std::string decl = fmt::format(":{} ", n.iptables_chain);
    const std::string rule = fmt::format("-A {} ", n.iptables_chain);
    const std::string hook = fmt::format("-A {} ", n.iptables_hook_chain);
    const std::string jump = fmt::format(" -j {}", n.iptables_chain);
    while (std::getline(in, line)) {
      if (line.starts_with(decl)) {
        c.chain = true;
      } else if (line.starts_with(rule)) {
        ++c.rules;
      } else if (line.starts_with(hook) && line.ends_with(jump)) {
        ++c.entries;
      }
    }
    return c;
  }
  static void deleteRule(Netns& ns, Family family, ChainKind kind, int index) {
    const ChainNames& n = chainNames(kind);
    ASSERT_TRUE(ns.execChecked({bin(family), "-t", std::string(n.iptables_table), "-D",
                                std::string(n.iptables_chain), std::to_string(index)}));
  }
  static void deleteEntry(Netns& ns, Family family, ChainKind kind) {
    const ChainNames& n = chainNames(kind);
    ASSERT_TRUE(ns.execChecked({bin(family), "-t", std::string(n.iptables_table), "-D",
                                std::string(n.iptables_hook_chain), "-m", "comment", "--comment",
                                std::string(n.comment), "-j", std::string(n.iptables_chain)}));
  }
  static void installForeign(Netns& ns, TestRun&) {
    for (std::vector<std::string> args : {
             std::vector<std::string>{"-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!",
                                      "-o", "docker0", "-j", "MASQUERADE"},
             std::vector<std::string>{"-t", "filter", "-N", "DOCKER"},
             std::vector<std::string>{"-t", "filter", "-A", "FORWARD", "-o", "docker0", "-j",
                                      "DOCKER"},
         }) {
      args.insert(args.begin(), bin(Family::V4));
      ASSERT_TRUE(ns.execChecked(args));
    }
    ASSERT_TRUE(ns.execChecked({bin(Family::V6), "-t", "nat", "-A", "POSTROUTING", "-s",
                                "fd99::/64", "-j", "MASQUERADE"}));
  }
  static bool foreignIntact(Netns& ns) {
    const auto nat = save(ns, Family::V4, "nat");
    const auto filter = save(ns, Family::V4, "filter");
    const auto nat6 = save(ns, Family::V6, "nat");
    return nat.find("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n") !=
               std::string::npos &&
           filter.find(":DOCKER - [0:0]\n") != std::string::npos &&
           filter.find("-A FORWARD -o docker0 -j DOCKER\n") != std::string::npos &&
           nat6.find("-A POSTROUTING -s fd99::/64 -j MASQUERADE\n") != std::string::npos;
  }
  // What Go flannel v0.20.2 leaves (SPEC.md §6.1, §6.3): its jumps inserted at position 1 (here
  // twice, as after an unlucky restart), its five masquerade rules and two forward rules.
  static void installGoLeftovers(Netns& ns, TestRun& run) {
    const std::string payload =
        "*nat\n"
        ":FLANNEL-POSTRTG - [0:0]\n"
        "-I POSTROUTING 1 -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n"
        "-I POSTROUTING 1 -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n"
        "-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" "
        "-j RETURN\n"
        "-A FLANNEL-POSTRTG -s 10.5.0.0/16 -d 10.5.0.0/16 -m comment --comment \"flanneld masq\" "
        "-j RETURN\n"
        "-A FLANNEL-POSTRTG -s 10.5.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld "
        "masq\" -j MASQUERADE --random-fully\n"
        "-A FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.1.0/24 -m comment --comment \"flanneld "
        "masq\" -j RETURN\n"
        "-A FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.0.0/16 -m comment --comment \"flanneld "
        "masq\" -j MASQUERADE --random-fully\n"
        "COMMIT\n"
        "*filter\n"
        ":FLANNEL-FWD - [0:0]\n"
        "-I FORWARD 1 -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n"
        "-A FLANNEL-FWD -s 10.5.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n"
        "-A FLANNEL-FWD -d 10.5.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n"
        "COMMIT\n";
    const auto path = writeFile(run, "go-flannel.rules", payload);
    ASSERT_TRUE(ns.execChecked({bin(Family::V4, "-restore"), "--noflush", path}));
  }
  static std::string dump(Netns& ns) {
    return save(ns, Family::V4, "nat") + save(ns, Family::V4, "filter") +
           save(ns, Family::V6, "nat") + save(ns, Family::V6, "filter");
  }
};

using IptablesNftTraits = IptablesTraits<false>;
using IptablesLegacyTraits = IptablesTraits<true>;

// ---------------------------------------------------------------------------------------------

template <class T>
class RuleTableContract : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "RuleTable contract (" << T::kName
                   << ") needs root: it creates a network namespace and changes netfilter state "
                      "inside it; run the privileged tests as root";
    }
    if (auto why = T::unavailable()) {
      // A missing program is a missing install step (scripts/setup installs nftables and
      // iptables), not a kernel limit: fail rather than skip.
      FAIL() << T::kName << ": " << *why << " (scripts/setup installs it)";
    }
    auto run = TestRun::create();
    ASSERT_TRUE(run) << run.error().message;
    run_ = std::move(*run);
    auto ns = Netns::create(*run_, "rt");
    ASSERT_TRUE(ns) << ns.error().message;
    host_ = std::move(*ns);
    auto entered = entry_.enter(host_->name());
    ASSERT_TRUE(entered) << entered.error().message;
    runner_ = std::make_shared<CountingRunner>(std::make_shared<SpawnCommandRunner>());
    auto table = T::create(runner_);
    ASSERT_TRUE(table) << table.error().message;
    table_ = std::move(*table);
    rules_ = dualPlan(table_->supportsFullyRandom());
  }

  void TearDown() override {
    table_.reset();
    entry_.leave();
    out_.reset();
    pod_.reset();
    host_.reset();
    run_.reset();
  }

  // Every chain of rules_ holds exactly its rules and has exactly one way in.
  void expectExactlyOurs(const RuleSet& rules) {
    for (const auto& fam : rules.families) {
      for (const auto& chain : fam.chains) {
        const Counts c = T::count(*host_, fam.family, chain.kind);
        EXPECT_TRUE(c.chain) << familyName(fam.family) << " " << chainNames(chain.kind).comment
                             << "\n"
                             << T::dump(*host_);
        EXPECT_EQ(c.rules, static_cast<int>(chain.rules.size()))
            << familyName(fam.family) << " " << chainNames(chain.kind).comment << "\n"
            << T::dump(*host_);
        EXPECT_EQ(c.entries, 1) << familyName(fam.family) << " " << chainNames(chain.kind).comment
                                << "\n"
                                << T::dump(*host_);
      }
    }
    auto drift = table_->missing(rules);
    ASSERT_TRUE(drift) << drift.error().message;
    EXPECT_FALSE(drift->any()) << drift->summary() << "\n" << T::dump(*host_);
  }

  // Applies rules_, checks once (apply moved the ruleset generation, so that check lists), then
  // 20 more times with nothing changed: none of those may load libnftables, and it is unloaded
  // between checks. `loads` gets NftLibrary::loads() after the first check.
  void applyThenCheckWhileNothingChanges(uint64_t& loads) {
    ASSERT_TRUE(table_->apply(rules_));
    auto first = table_->missing(rules_);
    ASSERT_TRUE(first) << first.error().message;
    ASSERT_FALSE(first->any()) << first->summary();
    loads = nft::NftLibrary::loads();
    EXPECT_FALSE(nft::NftLibrary::loaded()) << "libnftables stays mapped after the check";
    for (int i = 0; i < 20; ++i) {
      auto drift = table_->missing(rules_);
      ASSERT_TRUE(drift) << drift.error().message;
      ASSERT_FALSE(drift->any()) << drift->summary();
    }
    EXPECT_EQ(nft::NftLibrary::loads(), loads) << "checks with nothing changed loaded libnftables";
    EXPECT_FALSE(nft::NftLibrary::loaded());
  }

  std::unique_ptr<TestRun> run_;
  std::unique_ptr<Netns> host_;
  std::unique_ptr<Netns> pod_;
  std::unique_ptr<Netns> out_;
  NetnsEntry entry_;
  std::shared_ptr<CountingRunner> runner_;
  std::unique_ptr<RuleTable> table_;
  RuleSet rules_;
};

using Implementations = ::testing::Types<NftTraits, IptablesNftTraits, IptablesLegacyTraits>;

class TraitsNames {
 public:
  template <class T>
  static std::string GetName(int) {
    std::string name = T::kName;
    for (auto& ch : name) {
      if (ch == '-') {
        ch = '_';
      }
    }
    return name;
  }
};

TYPED_TEST_SUITE(RuleTableContract, Implementations, TraitsNames);

TYPED_TEST(RuleTableContract, EmptyNamespaceMissesEverythingPrivileged) {
  auto drift = this->table_->missing(this->rules_);
  ASSERT_TRUE(drift) << drift.error().message;
  EXPECT_TRUE(drift->any());
}

TYPED_TEST(RuleTableContract, ApplyTwiceInstallsEachRuleOncePrivileged) {
  ASSERT_TRUE(this->table_->apply(this->rules_));
  this->expectExactlyOurs(this->rules_);
  auto again = this->table_->apply(this->rules_);
  ASSERT_TRUE(again) << again.error().message;
  this->expectExactlyOurs(this->rules_);
}

TYPED_TEST(RuleTableContract, DeletedRuleIsMissingUntilApplyBringsItBackPrivileged) {
  ASSERT_TRUE(this->table_->apply(this->rules_));
  ASSERT_FALSE(this->table_->missing(this->rules_)->any());
  TypeParam::deleteRule(*this->host_, Family::V4, ChainKind::Masquerade, 3);
  auto drift = this->table_->missing(this->rules_);
  ASSERT_TRUE(drift) << drift.error().message;
  EXPECT_TRUE(drift->any());
  ASSERT_TRUE(this->table_->apply(this->rules_));
  this->expectExactlyOurs(this->rules_);

  TypeParam::deleteRule(*this->host_, Family::V6, ChainKind::Forward, 2);
  EXPECT_TRUE(this->table_->missing(this->rules_)->any());
  ASSERT_TRUE(this->table_->apply(this->rules_));
  this->expectExactlyOurs(this->rules_);
}

TYPED_TEST(RuleTableContract, DeletedJumpOrChainIsMissingUntilApplyPrivileged) {
  ASSERT_TRUE(this->table_->apply(this->rules_));
  TypeParam::deleteEntry(*this->host_, Family::V4, ChainKind::Forward);
  auto drift = this->table_->missing(this->rules_);
  ASSERT_TRUE(drift) << drift.error().message;
  EXPECT_TRUE(drift->any());
  ASSERT_TRUE(this->table_->apply(this->rules_));
  this->expectExactlyOurs(this->rules_);
}

TYPED_TEST(RuleTableContract, NewLeaseReplacesTheRulesInsteadOfAddingPrivileged) {
  ASSERT_TRUE(this->table_->apply(this->rules_));
  const auto moved = dualPlan(this->table_->supportsFullyRandom(), "10.5.9.0/24");
  EXPECT_TRUE(this->table_->missing(moved)->any());
  ASSERT_TRUE(this->table_->apply(moved));
  this->expectExactlyOurs(moved);
  EXPECT_TRUE(this->table_->missing(this->rules_)->any());
}

TYPED_TEST(RuleTableContract, OtherProgramsRulesAreLeftAlonePrivileged) {
  TypeParam::installForeign(*this->host_, *this->run_);
  ASSERT_TRUE(TypeParam::foreignIntact(*this->host_));
  ASSERT_TRUE(this->table_->apply(this->rules_));
  ASSERT_TRUE(this->table_->apply(this->rules_));
  this->expectExactlyOurs(this->rules_);
  EXPECT_TRUE(TypeParam::foreignIntact(*this->host_)) << TypeParam::dump(*this->host_);
  ASSERT_TRUE(this->table_->removeAll(Family::V4));
  ASSERT_TRUE(this->table_->removeAll(Family::V6));
  EXPECT_TRUE(TypeParam::foreignIntact(*this->host_)) << TypeParam::dump(*this->host_);
}

TYPED_TEST(RuleTableContract, GoFlannelLeftoversAreReplacedNotDoubledPrivileged) {
  TypeParam::installForeign(*this->host_, *this->run_);
  TypeParam::installGoLeftovers(*this->host_, *this->run_);
  auto drift = this->table_->missing(this->rules_);
  ASSERT_TRUE(drift) << drift.error().message;
  EXPECT_TRUE(drift->any());
  auto applied = this->table_->apply(this->rules_);
  ASSERT_TRUE(applied) << applied.error().message;
  this->expectExactlyOurs(this->rules_);
  EXPECT_TRUE(TypeParam::foreignIntact(*this->host_)) << TypeParam::dump(*this->host_);
}

TYPED_TEST(RuleTableContract, RemoveAllCleansOnlyOursAndIsIdempotentPrivileged) {
  TypeParam::installForeign(*this->host_, *this->run_);
  ASSERT_TRUE(this->table_->apply(this->rules_));
  auto removed = this->table_->removeAll(Family::V4);
  ASSERT_TRUE(removed) << removed.error().message;
  for (ChainKind kind : {ChainKind::Masquerade, ChainKind::Forward}) {
    const Counts c = TypeParam::count(*this->host_, Family::V4, kind);
    EXPECT_FALSE(c.chain) << TypeParam::dump(*this->host_);
    EXPECT_EQ(c.entries, 0) << TypeParam::dump(*this->host_);
  }
  // IPv6 untouched.
  EXPECT_EQ(TypeParam::count(*this->host_, Family::V6, ChainKind::Masquerade).rules, 6);
  EXPECT_TRUE(TypeParam::foreignIntact(*this->host_)) << TypeParam::dump(*this->host_);
  auto again = this->table_->removeAll(Family::V4);
  EXPECT_TRUE(again) << again.error().message;
}

TYPED_TEST(RuleTableContract, RemoveRulesRecyclesStaleMasqueradeRulesPrivileged) {
  // A previous run had subnet 10.5.1.0/24 and --random-fully; this one has 10.5.9.0/24.
  ASSERT_TRUE(this->table_->apply(this->rules_));
  SubnetEnv previous;
  previous.network = net("10.5.0.0/16");
  previous.subnet = net("10.5.1.0/24");
  previous.ipv6_network = net("fd00:10::/48");
  previous.ipv6_subnet = net("fd00:10:0:1::/64");
  const auto stale = staleMasqRules(previous, dualConfig(), ownSubnets("10.5.9.0/24"));
  ASSERT_EQ(stale.families.size(), 1u);
  auto removed = this->table_->removeRules(stale);
  ASSERT_TRUE(removed) << removed.error().message;
  const Counts masq = TypeParam::count(*this->host_, Family::V4, ChainKind::Masquerade);
  EXPECT_TRUE(masq.chain);
  EXPECT_EQ(masq.rules, 0) << TypeParam::dump(*this->host_);
  EXPECT_EQ(masq.entries, 1);
  EXPECT_EQ(TypeParam::count(*this->host_, Family::V4, ChainKind::Forward).rules, 2);
  EXPECT_EQ(TypeParam::count(*this->host_, Family::V6, ChainKind::Masquerade).rules, 6);
  // Nothing stale left: a second pass is a no-op.
  EXPECT_TRUE(this->table_->removeRules(stale));
  const auto now = dualPlan(this->table_->supportsFullyRandom(), "10.5.9.0/24");
  ASSERT_TRUE(this->table_->apply(now));
  this->expectExactlyOurs(now);
}

// --- end to end: a pod's packet leaves the host with the host's address -----------------------

Result<void> sysctl(Netns& ns, const std::string& setting) {
  auto out = ns.execChecked({"sysctl", "-q", "-w", setting});
  if (!out) {
    return out.error();
  }
  return ok();
}

// Sends UDP datagrams from `pod` to 192.168.77.2 (in `out`) until one arrives, and returns the
// source address the receiver saw. New sockets each call: a new flow, a fresh conntrack entry.
Result<std::string> sourceSeenOutside(Netns& pod, Netns& out) {
  auto rx = out.openSocket(AF_INET, SOCK_DGRAM, 0);
  if (!rx) {
    return rx.error();
  }
  auto tx = pod.openSocket(AF_INET, SOCK_DGRAM, 0);
  if (!tx) {
    ::close(*rx);
    return tx.error();
  }
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  ::inet_pton(AF_INET, "192.168.77.2", &dst.sin_addr);
  socklen_t len = sizeof dst;
  Result<std::string> result = makeError(Errc::Timeout, "no datagram arrived outside");
  if (::bind(*rx, reinterpret_cast<const sockaddr*>(&dst), sizeof dst) != 0 ||
      ::getsockname(*rx, reinterpret_cast<sockaddr*>(&dst), &len) != 0) {
    result = makeError(Errc::Internal, fmt::format("bind: {}", std::strerror(errno)));
  } else {
    for (int attempt = 0; attempt < 25; ++attempt) {
      (void)::sendto(*tx, "flannel", 7, 0, reinterpret_cast<const sockaddr*>(&dst), sizeof dst);
      pollfd pfd{.fd = *rx, .events = POLLIN, .revents = 0};
      if (::poll(&pfd, 1, 200) == 1) {
        char buf[64];
        sockaddr_in src{};
        socklen_t src_len = sizeof src;
        if (::recvfrom(*rx, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&src), &src_len) > 0) {
          char text[INET_ADDRSTRLEN] = {};
          ::inet_ntop(AF_INET, &src.sin_addr, text, sizeof text);
          result = std::string(text);
          break;
        }
      }
    }
  }
  ::close(*rx);
  ::close(*tx);
  return result;
}

//   pod ns                  host ns (the table's)                 out ns
//   eth0 10.5.1.2/24 ---- vpod 10.5.1.1/24   vout 192.168.77.1/24 ---- eth0 192.168.77.2/24
//   default via 10.5.1.1         ip_forward=1, our rules
TYPED_TEST(RuleTableContract, PodTrafficLeavesWithTheHostAddressPrivileged) {
  auto pod = Netns::create(*this->run_, "pod");
  ASSERT_TRUE(pod) << pod.error().message;
  this->pod_ = std::move(*pod);
  auto out = Netns::create(*this->run_, "out");
  ASSERT_TRUE(out) << out.error().message;
  this->out_ = std::move(*out);
  const auto& host = this->host_->name();
  ASSERT_TRUE(
      this->pod_->ipBatch(fmt::format("link add eth0 type veth peer name vpod netns {}\n"
                                      "addr add 10.5.1.2/24 dev eth0\n"
                                      "link set eth0 up\n",
                                      host)));
  ASSERT_TRUE(
      this->out_->ipBatch(fmt::format("link add eth0 type veth peer name vout netns {}\n"
                                      "addr add 192.168.77.2/24 dev eth0\n"
                                      "link set eth0 up\n",
                                      host)));
  ASSERT_TRUE(
      this->host_->ipBatch("addr add 10.5.1.1/24 dev vpod\nlink set vpod up\n"
                           "addr add 192.168.77.1/24 dev vout\nlink set vout up\n"));
  auto route = this->pod_->ip({"route", "add", "default", "via", "10.5.1.1"});
  ASSERT_TRUE(route) << route.error().message;
  ASSERT_TRUE(sysctl(*this->host_, "net.ipv4.ip_forward=1"));

  // Without our rules the pod's own address arrives (the topology forwards at all).
  auto before = sourceSeenOutside(*this->pod_, *this->out_);
  ASSERT_TRUE(before) << before.error().message;
  EXPECT_EQ(*before, "10.5.1.2");

  ASSERT_TRUE(this->table_->apply(this->rules_));
  auto after = sourceSeenOutside(*this->pod_, *this->out_);
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(*after, "192.168.77.1") << TypeParam::dump(*this->host_);
}

// --- iptables-nft only: the resync check forks nothing while nothing changed ------------------

class IptablesNftChecks : public RuleTableContract<IptablesNftTraits> {};

TEST_F(IptablesNftChecks, CheckForksNothingWhileNothingChangedPrivileged) {
  auto* table = dynamic_cast<iptables::IptablesRuleTable*>(table_.get());
  ASSERT_NE(table, nullptr);
  ASSERT_TRUE(table->checksInProcess());
  ASSERT_TRUE(table_->apply(rules_));
  const int after_apply = runner_->count();
  for (int i = 0; i < 20; ++i) {
    auto drift = table_->missing(rules_);
    ASSERT_TRUE(drift) << drift.error().message;
    ASSERT_FALSE(drift->any()) << drift->summary();
  }
  EXPECT_EQ(runner_->count(), after_apply) << "checks with nothing changed started processes";

  // A change made behind our back is still seen (and then costs one iptables-save per table).
  IptablesNftTraits::deleteRule(*host_, Family::V6, ChainKind::Masquerade, 5);
  auto drift = table_->missing(rules_);
  ASSERT_TRUE(drift) << drift.error().message;
  EXPECT_TRUE(drift->any());
  EXPECT_EQ(runner_->count(), after_apply + 1);
}

TEST_F(IptablesNftChecks, ChecksLoadNoLibnftablesWhileTheGenerationStaysPrivileged) {
  uint64_t loads = 0;
  ASSERT_NO_FATAL_FAILURE(applyThenCheckWhileNothingChanges(loads));

  // A change elsewhere moves the generation: the chains are listed again (one session, so one
  // load, per chain snapshot: at most 2 chains x 2 families), the library is unloaded again, the
  // rules are the same and nothing is forked.
  const int forks = runner_->count();
  NftTraits::installForeign(*host_, *run_);
  auto after_foreign = table_->missing(rules_);
  ASSERT_TRUE(after_foreign) << after_foreign.error().message;
  EXPECT_FALSE(after_foreign->any()) << after_foreign->summary();
  EXPECT_GT(nft::NftLibrary::loads(), loads);
  EXPECT_LE(nft::NftLibrary::loads(), loads + 4);
  EXPECT_FALSE(nft::NftLibrary::loaded());
  EXPECT_EQ(runner_->count(), forks);

  IptablesNftTraits::deleteRule(*host_, Family::V4, ChainKind::Forward, 1);
  auto drift = table_->missing(rules_);
  ASSERT_TRUE(drift) << drift.error().message;
  EXPECT_TRUE(drift->any());
}

// --- nftables only: a chain someone else put in our table survives apply -------------------

class NftOnly : public RuleTableContract<NftTraits> {};

TEST_F(NftOnly, ForeignChainInOurTableSurvivesApplyPrivileged) {
  ASSERT_TRUE(table_->apply(rules_));
  ASSERT_TRUE(host_->execChecked({"nft", "add", "chain", "ip", "flannel-ipv4", "someone-else"}));
  ASSERT_TRUE(host_->execChecked(
      {"nft", "add", "rule", "ip", "flannel-ipv4", "someone-else", "counter", "accept"}));
  ASSERT_TRUE(table_->apply(rules_));
  auto listing = host_->execChecked({"nft", "list", "chain", "ip", "flannel-ipv4", "someone-else"});
  ASSERT_TRUE(listing) << listing.error().message;
  EXPECT_NE(listing->out.find("accept"), std::string::npos);
  expectExactlyOurs(rules_);
}

TEST_F(NftOnly, ChecksLoadNoLibnftablesWhileTheGenerationStaysPrivileged) {
  uint64_t loads = 0;
  ASSERT_NO_FATAL_FAILURE(applyThenCheckWhileNothingChanges(loads));

  // Other rules for the same table state are checked again, not taken from the remembered check.
  auto other = dualPlan(table_->supportsFullyRandom(), "10.5.2.0/24");
  auto other_drift = table_->missing(other);
  ASSERT_TRUE(other_drift) << other_drift.error().message;
  EXPECT_TRUE(other_drift->any());
  EXPECT_EQ(nft::NftLibrary::loads(), loads + 1);

  // A rule deleted behind our back moves the generation and is found.
  NftTraits::deleteRule(*host_, Family::V6, ChainKind::Masquerade, 2);
  auto drift = table_->missing(rules_);
  ASSERT_TRUE(drift) << drift.error().message;
  EXPECT_TRUE(drift->any());
  ASSERT_TRUE(table_->apply(rules_));
  expectExactlyOurs(rules_);
  EXPECT_FALSE(nft::NftLibrary::loaded());
}

// NftNamespace: the generation moves with every commit, and a session opened from a thread in
// another namespace still works on the namespace the NftNamespace was made in.
TEST_F(NftOnly, GenerationMovesAndSessionsOpenInTheRememberedNamespacePrivileged) {
  auto ns = nft::NftNamespace::here();
  ASSERT_TRUE(ns) << ns.error().message;
  auto g0 = (*ns)->generation();
  ASSERT_TRUE(g0) << g0.error().message;
  auto same = (*ns)->generation();
  ASSERT_TRUE(same) << same.error().message;
  EXPECT_EQ(*same, *g0);
  ASSERT_TRUE(host_->execChecked({"nft", "add", "table", "ip", "generation-marker"}));
  auto g1 = (*ns)->generation();
  ASSERT_TRUE(g1) << g1.error().message;
  EXPECT_NE(*g1, *g0);

  const auto inode = [] {
    struct stat st {};
    EXPECT_EQ(::stat("/proc/thread-self/ns/net", &st), 0);
    return st.st_ino;
  };
  const auto inside = inode();
  entry_.leave();  // back in the test's own namespace (only read there)
  const auto outside = inode();
  ASSERT_NE(inside, outside);
  {
    auto session = (*ns)->openSession();
    ASSERT_TRUE(session) << session.error().message;
    EXPECT_EQ(inode(), outside) << "openSession() left the thread in another namespace";
    auto tables =
        (*session)->run(Json::parse(R"({"nftables": [{"list": {"tables": {"family": "ip"}}}]})"));
    ASSERT_TRUE(tables) << tables.error().message;
    EXPECT_NE(tables->dump().find("generation-marker"), std::string::npos) << tables->dump();
  }
  // The generation socket also stays in the namespace it was opened in.
  ASSERT_TRUE(host_->execChecked({"nft", "delete", "table", "ip", "generation-marker"}));
  auto g2 = (*ns)->generation();
  ASSERT_TRUE(g2) << g2.error().message;
  EXPECT_NE(*g2, *g1);
}

}  // namespace
}  // namespace flannel::traffic
