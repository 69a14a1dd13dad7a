#include "traffic/iptables/iptables_rule_table.h"

#include <charconv>

#include <fmt/format.h>

#include "core/log.h"
#include "core/strings.h"
#include "traffic/iptables/render.h"

namespace flannel::traffic::iptables {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("traffic.iptables");
}

// Last few non-empty lines of a program's stderr, joined with " / ".
std::string stderrTail(std::string_view err) {
  std::vector<std::string_view> lines;
  while (!err.empty()) {
    const size_t nl = err.find('\n');
    auto line = trimSpace(nl == std::string_view::npos ? err : err.substr(0, nl));
    err.remove_prefix(nl == std::string_view::npos ? err.size() : nl + 1);
    // iptables-nft warns about legacy tables on every run; it is noise here.
    if (!line.empty() && !line.starts_with("# Warning: iptables-legacy tables present")) {
      lines.push_back(line);
    }
  }
  const size_t keep = 4;
  const size_t from = lines.size() > keep ? lines.size() - keep : 0;
  std::string out;
  for (size_t i = from; i < lines.size(); ++i) {
    if (!out.empty()) {
      out += " / ";
    }
    out += lines[i];
  }
  return out;
}

std::string expectedText(const ChainRules& chain) {
  std::string out = jumpSpec(chain.kind);
  for (const auto& rule : chain.rules) {
    out += '\n';
    out += ruleSpec(rule, chain.kind);
  }
  return out;
}

int parseNumber(std::string_view& text, bool& ok) {
  int value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr == text.data()) {
    ok = false;
    return 0;
  }
  text.remove_prefix(static_cast<size_t>(ptr - text.data()));
  return value;
}

}  // namespace

bool IptablesVersion::atLeast(int ma, int mi, int pa) const noexcept {
  if (major != ma) {
    return major > ma;
  }
  if (minor != mi) {
    return minor > mi;
  }
  return patch >= pa;
}

Result<IptablesVersion> parseIptablesVersion(std::string_view text) noexcept {
  const auto bad = [&] {
    return invalidInput(
        fmt::format("unrecognised `iptables --version` output {}", quoteForMessage(text)));
  };
  const size_t v = text.find(" v");
  if (v == std::string_view::npos) {
    return bad();
  }
  std::string_view rest = text.substr(v + 2);
  bool ok = true;
  IptablesVersion out;
  out.major = parseNumber(rest, ok);
  if (!ok || !rest.starts_with('.')) {
    return bad();
  }
  rest.remove_prefix(1);
  out.minor = parseNumber(rest, ok);
  if (!ok) {
    return bad();
  }
  if (rest.starts_with('.')) {
    rest.remove_prefix(1);
    out.patch = parseNumber(rest, ok);
    if (!ok) {
      return bad();
    }
  }
  rest = trimSpace(rest);
  if (rest.starts_with("(nf_tables)")) {
    out.variant = IptablesVariant::Nft;
  } else if (rest.starts_with("(legacy)") || (rest.empty() && !out.atLeast(1, 8, 0))) {
    out.variant = IptablesVariant::Legacy;
  }
  return out;
}

Result<std::unique_ptr<IptablesRuleTable>> IptablesRuleTable::create(
    std::shared_ptr<CommandRunner> runner, IptablesOptions options,
    std::unique_ptr<ChainReader> reader) {
  Command cmd{.argv = {options.binaries.iptables, "--version"},
              .env_add = {},
              .inherit_env = true,
              .stdin_data = {},
              .timeout = options.timeout};
  auto out = runner->run(cmd);
  if (!out) {
    return out.error().context("iptables mode needs the iptables programs");
  }
  if (!out->success()) {
    return makeError(Errc::Internal,
                     fmt::format("iptables mode: running {} --version: exited with status {}: {}",
                                 options.binaries.iptables, out->exit_code, stderrTail(out->err)));
  }
  std::optional<IptablesVersion> version;
  // Old versions print the version on stderr.
  auto parsed = parseIptablesVersion(trimSpace(out->out.empty() ? out->err : out->out));
  if (parsed) {
    version = *parsed;
  } else {
    log()->warn("{}; using neither --wait nor --random-fully", parsed.error().message);
  }
  // Only iptables-nft keeps its rules where libnftables can list them (see chain_reader.h).
  if (!version || version->variant != IptablesVariant::Nft) {
    reader.reset();
  }
  if (version) {
    log()->info("iptables v{}.{}.{} ({}): --random-fully {}, checks {}", version->major,
                version->minor, version->patch,
                version->variant == IptablesVariant::Nft      ? "nf_tables"
                : version->variant == IptablesVariant::Legacy ? "legacy"
                                                              : "unknown variant",
                version->atLeast(1, 6, 2) ? "supported" : "not supported",
                reader ? "in-process through libnftables" : "with iptables-save");
  }
  return std::unique_ptr<IptablesRuleTable>(
      new IptablesRuleTable(std::move(runner), std::move(options), version, std::move(reader)));
}

IptablesRuleTable::IptablesRuleTable(std::shared_ptr<CommandRunner> runner, IptablesOptions options,
                                     std::optional<IptablesVersion> version,
                                     std::unique_ptr<ChainReader> reader)
    : runner_(std::move(runner)),
      options_(std::move(options)),
      version_(version),
      reader_(std::move(reader)) {}

bool IptablesRuleTable::supportsFullyRandom() const noexcept {
  return version_ && version_->atLeast(1, 6, 2);
}

bool IptablesRuleTable::useWait() const noexcept {
  return version_ && version_->atLeast(1, 6, 2);
}

const std::string& IptablesRuleTable::restoreBinary(Family family) const {
  return family == Family::V4 ? options_.binaries.iptables_restore
                              : options_.binaries.ip6tables_restore;
}

const std::string& IptablesRuleTable::saveBinary(Family family) const {
  return family == Family::V4 ? options_.binaries.iptables_save : options_.binaries.ip6tables_save;
}

Result<std::string> IptablesRuleTable::save(Family family, std::string_view table) {
  const auto& bin = saveBinary(family);
  Command cmd{.argv = {bin, "-t", std::string(table)},
              .env_add = {},
              .inherit_env = true,
              .stdin_data = {},
              .timeout = options_.timeout};
  log()->debug("running {}", describeCommand(cmd.argv));
  auto out = runner_->run(cmd);
  if (!out) {
    return out.error();
  }
  if (!out->success()) {
    return makeError(Errc::Kernel,
                     fmt::format("running {}: exited with status {}: {}", describeCommand(cmd.argv),
                                 out->exit_code, stderrTail(out->err)));
  }
  return std::move(out->out);
}

Result<void> IptablesRuleTable::restore(Family family, const std::string& payload) {
  Command cmd{.argv = {restoreBinary(family), "--noflush"},
              .env_add = {},
              .inherit_env = true,
              .stdin_data = payload,
              .timeout = options_.timeout};
  if (useWait()) {
    cmd.argv.emplace_back("--wait");
  }
  log()->debug("running {} with input:\n{}", describeCommand(cmd.argv), payload);
  auto out = runner_->run(cmd);
  if (!out) {
    return out.error();
  }
  if (!out->success()) {
    std::string msg =
        fmt::format("running {}: {}", describeCommand(cmd.argv),
                    out->term_signal != 0 ? fmt::format("killed by signal {}", out->term_signal)
                                          : fmt::format("exited with status {}", out->exit_code));
    if (auto tail = stderrTail(out->err); !tail.empty()) {
      msg += ": " + tail;
    }
    if (auto line = failedLine(out->err, payload); !line.empty()) {
      msg += " (" + line + ")";
    }
    return makeError(Errc::Kernel, std::move(msg));
  }
  return ok();
}

void IptablesRuleTable::remember(Family family, const ChainRules& chain) {
  const SnapshotKey key{family, chain.kind};
  if (!reader_) {
    return;
  }
  const ChainNames& n = chainNames(chain.kind);
  auto snap = reader_->snapshot(family, n.iptables_table, n.iptables_chain, n.iptables_hook_chain);
  if (!snap) {
    log()->debug("no in-process snapshot of {} {}/{}: {}", familyName(family), n.iptables_table,
                 n.iptables_chain, snap.error().message);
    snapshots_.erase(key);
    return;
  }
  snapshots_[key] = Snapshot{.expected = expectedText(chain), .text = std::move(*snap)};
}

void IptablesRuleTable::forget(Family family) {
  snapshots_.erase({family, ChainKind::Masquerade});
  snapshots_.erase({family, ChainKind::Forward});
}

Result<void> IptablesRuleTable::apply(const RuleSet& rules) {
  for (const auto& fam : rules.families) {
    if (fam.chains.empty()) {
      continue;
    }
    const auto ctx = fmt::format("applying {} iptables rules", familyName(fam.family));
    std::map<ChainKind, SavedChain> seen;
    for (const auto& chain : fam.chains) {
      auto text = save(fam.family, chainNames(chain.kind).iptables_table);
      if (!text) {
        forget(fam.family);
        return text.error().context(ctx);
      }
      seen[chain.kind] = parseSave(*text, chain.kind);
    }
    if (auto r = restore(fam.family, renderApply(fam, seen)); !r) {
      forget(fam.family);
      return r.error().context(ctx);
    }
    for (const auto& chain : fam.chains) {
      remember(fam.family, chain);
    }
  }
  return ok();
}

Result<RuleDrift> IptablesRuleTable::missing(const RuleSet& rules) {
  RuleDrift drift;
  for (const auto& fam : rules.families) {
    for (const auto& chain : fam.chains) {
      const ChainNames& n = chainNames(chain.kind);
      const SnapshotKey key{fam.family, chain.kind};
      if (auto it = snapshots_.find(key);
          reader_ && it != snapshots_.end() && it->second.expected == expectedText(chain)) {
        auto now = reader_->snapshot(fam.family, n.iptables_table, n.iptables_chain,
                                     n.iptables_hook_chain);
        if (now && *now == it->second.text) {
          continue;  // unchanged since verified or written: nothing forked
        }
        // Changed (or unreadable): find out exactly what with iptables-save.
        snapshots_.erase(it);
      }
      auto text = save(fam.family, n.iptables_table);
      if (!text) {
        return text.error().context(
            fmt::format("checking {} iptables rules", familyName(fam.family)));
      }
      auto findings = diffSaved(fam.family, chain, parseSave(*text, chain.kind));
      if (findings.empty()) {
        remember(fam.family, chain);
      } else {
        snapshots_.erase(key);
        for (auto& f : findings) {
          drift.findings.push_back(std::move(f));
        }
      }
    }
  }
  return drift;
}

Result<void> IptablesRuleTable::removeRules(const RuleSet& stale) {
  for (const auto& fam : stale.families) {
    const auto ctx = fmt::format("removing stale {} iptables rules", familyName(fam.family));
    std::string payload;
    for (const auto& chain : fam.chains) {
      auto text = save(fam.family, chainNames(chain.kind).iptables_table);
      if (!text) {
        return text.error().context(ctx);
      }
      const auto specs = staleSpecs(chain.kind, chain.rules, parseSave(*text, chain.kind));
      for (const auto& spec : specs) {
        log()->info("removing stale {} rule from {}: {}", familyName(fam.family),
                    chainNames(chain.kind).iptables_chain, spec);
      }
      payload += renderRemoveRules(chain.kind, specs);
    }
    if (payload.empty()) {
      continue;
    }
    forget(fam.family);
    if (auto r = restore(fam.family, payload); !r) {
      return r.error().context(ctx);
    }
  }
  return ok();
}

Result<void> IptablesRuleTable::removeAll(Family family) {
  const auto ctx = fmt::format("removing {} iptables chains", familyName(family));
  std::string payload;
  for (ChainKind kind : {ChainKind::Masquerade, ChainKind::Forward}) {
    auto text = save(family, chainNames(kind).iptables_table);
    if (!text) {
      return text.error().context(ctx);
    }
    payload += renderRemoveAll(kind, parseSave(*text, kind));
  }
  forget(family);
  if (payload.empty()) {
    return ok();
  }
  log()->info("removing {} iptables chains {} and {}", familyName(family),
              names::kIptablesMasqChain, names::kIptablesForwardChain);
  if (auto r = restore(family, payload); !r) {
    return r.error().context(ctx);
  }
  return ok();
}

}  // namespace flannel::traffic::iptables
