#include "traffic/nft/nft_rule_table.h"

#include <set>

#include <fmt/format.h>

#include "core/log.h"

namespace flannel::traffic::nft {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("traffic.nft");
}

Json listCommand(std::string_view what, Json object) {
  Json inner = Json::object();
  inner[std::string(what)] = std::move(object);
  Json cmd = Json::object();
  cmd["list"] = std::move(inner);
  Json doc = Json::object();
  doc["nftables"] = Json::array({std::move(cmd)});
  return doc;
}

// A masquerade rule with fully-random in a chain that is never installed: a dry run only checks
// that libnftables understands the statement.
Json fullyRandomProbe() {
  Rule probe{.kube_proxy_mark = false,
             .src = std::nullopt,
             .dst = std::nullopt,
             .action = Action::Masquerade,
             .fully_random = true};
  FamilyRules rules{.family = Family::V4,
                    .chains = {ChainRules{.kind = ChainKind::Masquerade, .rules = {probe}}}};
  return renderApply(rules);
}

}  // namespace

Result<std::unique_ptr<NftRuleTable>> NftRuleTable::create() {
  auto ns = NftNamespace::here();
  if (!ns) {
    return ns.error().context("nftables mode");
  }
  auto session = (*ns)->openSession();
  if (!session) {
    return session.error().context("nftables mode");
  }
  auto probe = (*session)->run(fullyRandomProbe(), /*dry_run=*/true);
  if (!probe) {
    log()->warn(
        "masquerade fully-random is not usable (a dry run failed: {}); masquerading "
        "without it",
        probe.error().message);
  }
  return std::unique_ptr<NftRuleTable>(new NftRuleTable(std::move(*ns), probe.has_value()));
}

Result<std::optional<ListedTable>> NftRuleTable::listOurTable(NftSession& session, Family family) {
  const auto fam = nftFamily(family);
  const auto name = nftTableName(family);
  Json filter = Json::object();
  filter["family"] = fam;
  auto tables = session.run(listCommand("tables", std::move(filter)));
  if (!tables) {
    return tables.error();
  }
  if (!hasTable(*tables, fam, name)) {
    return std::optional<ListedTable>{};
  }
  Json table = Json::object();
  table["family"] = fam;
  table["name"] = name;
  auto listing = session.run(listCommand("table", std::move(table)));
  if (!listing) {
    return listing.error();
  }
  auto parsed = parseListing(*listing, fam, name);
  if (!parsed) {
    return parsed.error();
  }
  return std::optional<ListedTable>{std::move(*parsed)};
}

Result<void> NftRuleTable::apply(const RuleSet& rules) {
  verified_.reset();
  auto session = ns_->openSession();
  if (!session) {
    return session.error().context("applying nftables rules");
  }
  for (const auto& fam : rules.families) {
    if (fam.chains.empty()) {
      continue;
    }
    const auto ctx = fmt::format("applying {} nftables rules (table {} {})", familyName(fam.family),
                                 nftFamily(fam.family), nftTableName(fam.family));
    auto seen = listOurTable(**session, fam.family);
    if (!seen) {
      return seen.error().context(ctx);
    }
    std::set<ChainKind> recreate;
    if (*seen) {
      for (const auto& chain : fam.chains) {
        const ListedChain* existing = (*seen)->findChain(chainNames(chain.kind).nft_chain);
        if (existing != nullptr && needsRecreate(chain.kind, *existing)) {
          log()->info("re-creating chain {} of table {} {}: wrong type, hook or priority",
                      chainNames(chain.kind).nft_chain, nftFamily(fam.family),
                      nftTableName(fam.family));
          recreate.insert(chain.kind);
        }
      }
    }
    if (auto r = (*session)->run(renderApply(fam, recreate)); !r) {
      return r.error().context(ctx);
    }
  }
  return ok();
}

Result<RuleDrift> NftRuleTable::missing(const RuleSet& rules) {
  RuleDrift drift;
  auto generation = ns_->generation();
  if (generation && verified_ && verified_->generation == *generation &&
      verified_->rules == rules) {
    return drift;  // no nftables commit since these rules were found complete
  }
  verified_.reset();
  auto session = ns_->openSession();
  if (!session) {
    return session.error().context("checking nftables rules");
  }
  for (const auto& fam : rules.families) {
    if (fam.chains.empty()) {
      continue;
    }
    auto seen = listOurTable(**session, fam.family);
    if (!seen) {
      return seen.error().context(
          fmt::format("checking {} nftables rules", familyName(fam.family)));
    }
    if (!*seen) {
      drift.findings.push_back(fmt::format("{} table {} {} does not exist", familyName(fam.family),
                                           nftFamily(fam.family), nftTableName(fam.family)));
      continue;
    }
    for (const auto& chain : fam.chains) {
      for (auto& f : diffListing(fam.family, chain, **seen)) {
        drift.findings.push_back(std::move(f));
      }
    }
  }
  if (drift.findings.empty() && generation) {
    verified_ = Verified{.generation = *generation, .rules = rules};
  }
  return drift;
}

Result<void> NftRuleTable::removeRules(const RuleSet& stale) {
  verified_.reset();
  auto session = ns_->openSession();
  if (!session) {
    return session.error().context("removing stale nftables rules");
  }
  for (const auto& fam : stale.families) {
    const auto ctx = fmt::format("removing stale {} nftables rules", familyName(fam.family));
    auto seen = listOurTable(**session, fam.family);
    if (!seen) {
      return seen.error().context(ctx);
    }
    if (!*seen) {
      continue;
    }
    std::vector<RuleRef> doomed;
    for (const auto& chain : fam.chains) {
      for (auto& ref : staleRules(fam.family, chain, **seen)) {
        doomed.push_back(std::move(ref));
      }
    }
    if (doomed.empty()) {
      continue;
    }
    log()->info("removing {} stale {} rule(s) from table {} {}", doomed.size(),
                familyName(fam.family), nftFamily(fam.family), nftTableName(fam.family));
    if (auto r = (*session)->run(renderDeleteRules(fam.family, doomed)); !r) {
      return r.error().context(ctx);
    }
  }
  return ok();
}

Result<void> NftRuleTable::removeAll(Family family) {
  verified_.reset();
  const auto ctx =
      fmt::format("removing nftables table {} {}", nftFamily(family), nftTableName(family));
  auto session = ns_->openSession();
  if (!session) {
    return session.error().context(ctx);
  }
  if (auto r = (*session)->run(renderRemoveAll(family)); !r) {
    return r.error().context(ctx);
  }
  return ok();
}

}  // namespace flannel::traffic::nft
