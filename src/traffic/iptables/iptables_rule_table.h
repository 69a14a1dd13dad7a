// DOC: IptablesRuleTable, the RuleTable of iptables mode (SPEC.md §6.1-§6.5).
//
// Writes go through `iptables-restore --noflush --wait` (`ip6tables-restore` for IPv6), fed the
// payload of iptables/render.h on stdin, through the CommandRunner seam: argv only, no shell. One
// restore per family; each table section commits atomically.
//
// Reads: `iptables-save -t <table>` (a fork) gives the exact text of our chains and jumps; it is
// used before every write (the -D lines need the jumps' exact text) and for checks when nothing
// cheaper is known. Checks are the hot path (every --iptables-resync seconds), so when the
// iptables in use is iptables-nft (Debian 12's default: `iptables --version` says "(nf_tables)")
// and a ChainReader is given, a check that finds nothing changed forks nothing:
//
//   missing(chain):  snapshot recorded for these exact rules?
//        yes ── ChainReader::snapshot() (libnftables, in-process) equal? ── yes ──> in place
//        │                                                      └─ no ──┐
//        no ───────────────────────────────────────────────────────────┴─> iptables-save, exact
//                                            diff; if clean, record a new snapshot
//   apply():  iptables-save, restore, then record a snapshot of what was just written
//
// With iptables-legacy the rules live in x_tables, which libnftables cannot see, so every check
// runs iptables-save.
//
// `iptables --version` runs once, at create(): it gives the variant and the version; --wait and
// --random-fully are used from 1.6.2 on, as Go flannel does (SPEC.md §6.1, §6.4).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/exec.h"
#include "core/result.h"
#include "traffic/chain_reader.h"
#include "traffic/rule_table.h"

namespace flannel::traffic::iptables {

enum class IptablesVariant { Legacy, Nft, Unknown };

struct IptablesVersion {
  int major = 0;
  int minor = 0;
  int patch = 0;
  IptablesVariant variant = IptablesVariant::Unknown;

  bool atLeast(int ma, int mi, int pa) const noexcept;
};

// Parses `iptables --version` output: "iptables v1.8.9 (nf_tables)", "iptables v1.8.9 (legacy)",
// "iptables v1.6.1" (no variant before 1.8: legacy). Errc::InvalidInput otherwise.
Result<IptablesVersion> parseIptablesVersion(std::string_view text) noexcept;

// Program names (looked up on PATH) or paths.
struct IptablesBinaries {
  std::string iptables = "iptables";  // only for `--version`
  std::string iptables_restore = "iptables-restore";
  std::string iptables_save = "iptables-save";
  std::string ip6tables_restore = "ip6tables-restore";
  std::string ip6tables_save = "ip6tables-save";
};

struct IptablesOptions {
  IptablesBinaries binaries{};
  // Limit for one iptables-save / iptables-restore run (--wait may queue behind kube-proxy).
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
};

class IptablesRuleTable final : public RuleTable {
 public:
  // Runs `iptables --version` once. `reader` (may be null) is kept only when the variant is
  // iptables-nft. Errors: Errc::NotFound when the iptables binary is missing (message says iptables
  // mode needs it), Errc::Internal / Errc::Timeout when it fails to run. Output that cannot be
  // parsed is not an error: the table then uses neither --wait nor --random-fully nor the reader.
  static Result<std::unique_ptr<IptablesRuleTable>> create(
      std::shared_ptr<CommandRunner> runner, IptablesOptions options = {},
      std::unique_ptr<ChainReader> reader = nullptr);

  std::string_view mechanism() const noexcept override { return "iptables"; }
  bool supportsFullyRandom() const noexcept override;
  Result<void> apply(const RuleSet& rules) override;
  Result<RuleDrift> missing(const RuleSet& rules) override;
  Result<void> removeRules(const RuleSet& stale) override;
  Result<void> removeAll(Family family) override;

  // nullopt when `iptables --version` could not be parsed.
  const std::optional<IptablesVersion>& version() const noexcept { return version_; }
  // Whether checks use the in-process ChainReader (iptables-nft and a reader given).
  bool checksInProcess() const noexcept { return reader_ != nullptr; }

 private:
  IptablesRuleTable(std::shared_ptr<CommandRunner> runner, IptablesOptions options,
                    std::optional<IptablesVersion> version, std::unique_ptr<ChainReader> reader);

  struct Snapshot {
    std::string expected{};  // the rendered rules the snapshot was taken for
    std::string text{};      // ChainReader::snapshot() at that time
  };
  using SnapshotKey = std::pair<Family, ChainKind>;

  bool useWait() const noexcept;
  const std::string& restoreBinary(Family family) const;
  const std::string& saveBinary(Family family) const;
  Result<std::string> save(Family family, std::string_view table);
  Result<void> restore(Family family, const std::string& payload);
  // Records a snapshot of `chain` (after it was verified or written), or forgets it on failure.
  void remember(Family family, const ChainRules& chain);
  void forget(Family family);

  std::shared_ptr<CommandRunner> runner_;
  IptablesOptions options_;
  std::optional<IptablesVersion> version_;
  std::unique_ptr<ChainReader> reader_;
  std::map<SnapshotKey, Snapshot> snapshots_;
};

}  // namespace flannel::traffic::iptables
