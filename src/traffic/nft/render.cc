#include "traffic/nft/render.h"

#include <algorithm>

#include <fmt/format.h>

namespace flannel::traffic::nft {

namespace {

Json tableRef(Family family) {
  Json t = Json::object();
  t["family"] = nftFamily(family);
  t["name"] = nftTableName(family);
  return t;
}

Json chainRef(Family family, ChainKind kind) {
  Json c = Json::object();
  c["family"] = nftFamily(family);
  c["table"] = nftTableName(family);
  c["name"] = chainNames(kind).nft_chain;
  return c;
}

Json command(std::string_view verb, std::string_view what, Json object) {
  Json inner = Json::object();
  inner[std::string(what)] = std::move(object);
  Json cmd = Json::object();
  cmd[std::string(verb)] = std::move(inner);
  return cmd;
}

// nft prints a full-length prefix as a plain address, so we write it that way too.
Json addrValue(const IpNet& net) {
  if (net.prefix() == IpNet::maxPrefix(net.family())) {
    return net.addr().toString();
  }
  Json prefix = Json::object();
  prefix["addr"] = net.addr().toString();
  prefix["len"] = net.prefix();
  Json v = Json::object();
  v["prefix"] = std::move(prefix);
  return v;
}

Json addrMatch(Family family, std::string_view field, const AddrMatch& m) {
  Json payload = Json::object();
  payload["protocol"] = nftFamily(family);
  payload["field"] = field;
  Json left = Json::object();
  left["payload"] = std::move(payload);
  Json match = Json::object();
  match["op"] = m.negated ? "!=" : "==";
  match["left"] = std::move(left);
  match["right"] = addrValue(m.net);
  Json stmt = Json::object();
  stmt["match"] = std::move(match);
  return stmt;
}

Json markMatch() {
  Json meta = Json::object();
  meta["key"] = "mark";
  Json meta_expr = Json::object();
  meta_expr["meta"] = std::move(meta);
  Json left = Json::object();
  left["&"] = Json::array({std::move(meta_expr), kKubeProxyMark});
  Json match = Json::object();
  match["op"] = "==";
  match["left"] = std::move(left);
  match["right"] = kKubeProxyMark;
  Json stmt = Json::object();
  stmt["match"] = std::move(match);
  return stmt;
}

Json verdict(std::string_view name) {
  Json stmt = Json::object();
  stmt[std::string(name)] = nullptr;
  return stmt;
}

Json ruleObject(Family family, ChainKind kind, const Rule& rule) {
  Json r = Json::object();
  r["family"] = nftFamily(family);
  r["table"] = nftTableName(family);
  r["chain"] = chainNames(kind).nft_chain;
  r["comment"] = chainNames(kind).comment;
  r["expr"] = ruleExpr(rule, family);
  return r;
}

template <class T>
std::optional<T> optionalField(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    return std::nullopt;
  }
  if constexpr (std::is_same_v<T, std::string>) {
    if (it->is_string()) {
      return it->template get<std::string>();
    }
  } else {
    if (it->is_number_integer()) {
      return it->template get<T>();
    }
  }
  return std::nullopt;
}

std::string head(Family family, std::string_view chain) {
  return fmt::format("{} {} {}/{}: ", familyName(family), nftFamily(family), nftTableName(family),
                     chain);
}

std::string describeStatements(const nlohmann::json& expr) {
  return expr.dump();
}

// Our rendering as an unordered, normalised document, comparable with a listing.
nlohmann::json plainExpr(const Rule& rule, Family family) {
  return normalizeExpr(nlohmann::json::parse(ruleExpr(rule, family).dump()));
}

}  // namespace

Json ruleExpr(const Rule& rule, Family family) {
  Json expr = Json::array();
  if (rule.kube_proxy_mark) {
    expr.push_back(markMatch());
  }
  if (rule.src) {
    expr.push_back(addrMatch(family, "saddr", *rule.src));
  }
  if (rule.dst) {
    expr.push_back(addrMatch(family, "daddr", *rule.dst));
  }
  switch (rule.action) {
    case Action::Return:
      expr.push_back(verdict("return"));
      break;
    case Action::Accept:
      expr.push_back(verdict("accept"));
      break;
    case Action::Masquerade:
      if (rule.fully_random) {
        Json flags = Json::object();
        flags["flags"] = "fully-random";
        Json stmt = Json::object();
        stmt["masquerade"] = std::move(flags);
        expr.push_back(std::move(stmt));
      } else {
        expr.push_back(verdict("masquerade"));
      }
      break;
  }
  return expr;
}

Json chainObject(Family family, ChainKind kind) {
  const ChainNames& n = chainNames(kind);
  Json c = chainRef(family, kind);
  c["type"] = n.nft_type;
  c["hook"] = n.nft_hook;
  c["prio"] = n.nft_priority;
  c["policy"] = "accept";
  return c;
}

Json renderApply(const FamilyRules& rules, const std::set<ChainKind>& recreate) {
  Json cmds = Json::array();
  cmds.push_back(command("add", "table", tableRef(rules.family)));
  for (const auto& chain : rules.chains) {
    if (recreate.contains(chain.kind)) {
      cmds.push_back(command("flush", "chain", chainRef(rules.family, chain.kind)));
      cmds.push_back(command("delete", "chain", chainRef(rules.family, chain.kind)));
    }
    cmds.push_back(command("add", "chain", chainObject(rules.family, chain.kind)));
    cmds.push_back(command("flush", "chain", chainRef(rules.family, chain.kind)));
    for (const auto& rule : chain.rules) {
      cmds.push_back(command("add", "rule", ruleObject(rules.family, chain.kind, rule)));
    }
  }
  Json doc = Json::object();
  doc["nftables"] = std::move(cmds);
  return doc;
}

Json renderRemoveAll(Family family) {
  Json cmds = Json::array();
  cmds.push_back(command("add", "table", tableRef(family)));
  cmds.push_back(command("delete", "table", tableRef(family)));
  Json doc = Json::object();
  doc["nftables"] = std::move(cmds);
  return doc;
}

Json renderDeleteRules(Family family, const std::vector<RuleRef>& rules) {
  Json cmds = Json::array();
  for (const auto& ref : rules) {
    Json r = Json::object();
    r["family"] = nftFamily(family);
    r["table"] = nftTableName(family);
    r["chain"] = ref.chain;
    r["handle"] = ref.handle;
    cmds.push_back(command("delete", "rule", std::move(r)));
  }
  Json doc = Json::object();
  doc["nftables"] = std::move(cmds);
  return doc;
}

const ListedChain* ListedTable::findChain(std::string_view name) const noexcept {
  for (const auto& c : chains) {
    if (c.name == name) {
      return &c;
    }
  }
  return nullptr;
}

std::vector<const ListedRule*> ListedTable::rulesOf(std::string_view name) const {
  std::vector<const ListedRule*> out;
  for (const auto& r : rules) {
    if (r.chain == name) {
      out.push_back(&r);
    }
  }
  return out;
}

nlohmann::json normalizeExpr(const nlohmann::json& expr) {
  nlohmann::json out = expr;
  if (!out.is_array()) {
    return out;
  }
  for (auto& stmt : out) {
    if (!stmt.is_object()) {
      continue;
    }
    for (const char* nat : {"masquerade", "snat", "dnat", "redirect"}) {
      auto it = stmt.find(nat);
      if (it == stmt.end() || !it->is_object()) {
        continue;
      }
      auto flags = it->find("flags");
      if (flags != it->end() && flags->is_array()) {
        if (flags->empty()) {
          it->erase(flags);
        } else if (flags->size() == 1) {
          nlohmann::json only = flags->front();
          *flags = std::move(only);
        }
      }
      if (it->empty()) {
        *it = nullptr;
      }
    }
  }
  return out;
}

Result<ListedTable> parseListing(const nlohmann::json& listing, std::string_view family,
                                 std::string_view table) {
  const nlohmann::json* items = &listing;
  if (listing.is_object()) {
    auto it = listing.find("nftables");
    if (it == listing.end()) {
      return invalidInput("nft listing: no \"nftables\" member");
    }
    items = &*it;
  }
  if (!items->is_array()) {
    return invalidInput("nft listing: \"nftables\" is not an array");
  }
  ListedTable out;
  for (const auto& item : *items) {
    if (!item.is_object()) {
      continue;
    }
    const auto mine = [&](const nlohmann::json& obj) {
      return optionalField<std::string>(obj, "family") == family &&
             optionalField<std::string>(obj, "table") == table;
    };
    if (auto c = item.find("chain"); c != item.end() && c->is_object() && mine(*c)) {
      auto name = optionalField<std::string>(*c, "name");
      if (!name) {
        continue;
      }
      out.chains.push_back(ListedChain{
          .name = *name,
          .type = optionalField<std::string>(*c, "type"),
          .hook = optionalField<std::string>(*c, "hook"),
          .prio = optionalField<int64_t>(*c, "prio"),
          .policy = optionalField<std::string>(*c, "policy"),
      });
    } else if (auto r = item.find("rule"); r != item.end() && r->is_object() && mine(*r)) {
      auto chain = optionalField<std::string>(*r, "chain");
      auto expr = r->find("expr");
      if (!chain || expr == r->end()) {
        continue;
      }
      out.rules.push_back(ListedRule{
          .chain = *chain,
          .handle = optionalField<uint64_t>(*r, "handle").value_or(0),
          .comment = optionalField<std::string>(*r, "comment").value_or(""),
          .expr = normalizeExpr(*expr),
      });
    }
  }
  // Rules come grouped by chain in nft's output already; keep each chain's order, group anyway.
  std::stable_sort(out.rules.begin(), out.rules.end(),
                   [&](const ListedRule& a, const ListedRule& b) {
                     const auto pos = [&](const std::string& name) {
                       for (size_t i = 0; i < out.chains.size(); ++i) {
                         if (out.chains[i].name == name) {
                           return i;
                         }
                       }
                       return out.chains.size();
                     };
                     return pos(a.chain) < pos(b.chain);
                   });
  return out;
}

bool hasTable(const nlohmann::json& listing, std::string_view family, std::string_view table) {
  const nlohmann::json* items = &listing;
  if (listing.is_object()) {
    auto it = listing.find("nftables");
    if (it == listing.end()) {
      return false;
    }
    items = &*it;
  }
  if (!items->is_array()) {
    return false;
  }
  for (const auto& item : *items) {
    if (!item.is_object()) {
      continue;
    }
    auto t = item.find("table");
    if (t != item.end() && t->is_object() && optionalField<std::string>(*t, "family") == family &&
        optionalField<std::string>(*t, "name") == table) {
      return true;
    }
  }
  return false;
}

bool needsRecreate(ChainKind kind, const ListedChain& chain) {
  const ChainNames& n = chainNames(kind);
  return chain.type != n.nft_type || chain.hook != n.nft_hook || chain.prio != n.nft_priority;
}

std::vector<std::string> diffListing(Family family, const ChainRules& want,
                                     const ListedTable& seen) {
  const ChainNames& n = chainNames(want.kind);
  const std::string h = head(family, n.nft_chain);
  std::vector<std::string> out;
  const ListedChain* chain = seen.findChain(n.nft_chain);
  if (chain == nullptr) {
    out.push_back(h + "chain does not exist");
    return out;
  }
  if (needsRecreate(want.kind, *chain)) {
    out.push_back(h + fmt::format("chain is type {} hook {} priority {}, want {} {} {}",
                                  chain->type.value_or("-"), chain->hook.value_or("-"),
                                  chain->prio ? std::to_string(*chain->prio) : std::string("-"),
                                  n.nft_type, n.nft_hook, n.nft_priority));
  }
  if (chain->policy && *chain->policy != "accept") {
    out.push_back(h + fmt::format("chain policy is {}, want accept", *chain->policy));
  }
  const auto have = seen.rulesOf(n.nft_chain);
  const size_t count = std::max(have.size(), want.rules.size());
  for (size_t i = 0; i < count; ++i) {
    if (i >= have.size()) {
      out.push_back(h + fmt::format("rule {} is missing: {}", i + 1, describeRule(want.rules[i])));
      continue;
    }
    if (i >= want.rules.size()) {
      out.push_back(
          h + fmt::format("unexpected rule {}: {}", i + 1, describeStatements(have[i]->expr)));
      continue;
    }
    const auto expected = plainExpr(want.rules[i], family);
    if (have[i]->expr != expected || have[i]->comment != n.comment) {
      out.push_back(h + fmt::format("rule {} is {} (comment \"{}\"), want {}", i + 1,
                                    describeStatements(have[i]->expr), have[i]->comment,
                                    describeRule(want.rules[i])));
    }
  }
  return out;
}

std::vector<RuleRef> staleRules(Family family, const ChainRules& stale, const ListedTable& seen) {
  const ChainNames& n = chainNames(stale.kind);
  std::vector<nlohmann::json> wanted;
  for (const auto& rule : stale.rules) {
    Rule r = rule;
    r.fully_random = false;
    wanted.push_back(plainExpr(r, family));
    if (r.action == Action::Masquerade) {
      r.fully_random = true;
      wanted.push_back(plainExpr(r, family));
    }
  }
  std::vector<RuleRef> out;
  for (const auto* rule : seen.rulesOf(n.nft_chain)) {
    if (std::find(wanted.begin(), wanted.end(), rule->expr) != wanted.end()) {
      out.push_back(RuleRef{.chain = rule->chain, .handle = rule->handle});
    }
  }
  return out;
}

}  // namespace flannel::traffic::nft
