#include "traffic/nft/nft_chain_reader.h"

#include <fmt/format.h>

#include "traffic/rules.h"

namespace flannel::traffic::nft {

namespace {

Json listCommand(std::string_view what, Json object) {
  Json inner = Json::object();
  inner[std::string(what)] = std::move(object);
  Json cmd = Json::object();
  cmd["list"] = std::move(inner);
  Json doc = Json::object();
  doc["nftables"] = Json::array({std::move(cmd)});
  return doc;
}

bool chainListed(const nlohmann::json& listing, std::string_view family, std::string_view table,
                 std::string_view chain) {
  auto items = listing.find("nftables");
  if (!listing.is_object() || items == listing.end() || !items->is_array()) {
    return false;
  }
  for (const auto& item : *items) {
    auto c = item.find("chain");
    if (!item.is_object() || c == item.end() || !c->is_object()) {
      continue;
    }
    if (c->value("family", "") == family && c->value("table", "") == table &&
        c->value("name", "") == chain) {
      return true;
    }
  }
  return false;
}

bool jumpsTo(const nlohmann::json& expr, std::string_view chain) {
  if (!expr.is_array()) {
    return false;
  }
  for (const auto& stmt : expr) {
    if (!stmt.is_object()) {
      continue;
    }
    for (const char* verdict : {"jump", "goto"}) {
      auto it = stmt.find(verdict);
      if (it != stmt.end() && it->is_object() && it->value("target", "") == chain) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace

Result<std::unique_ptr<NftChainReader>> NftChainReader::create() {
  auto ns = NftNamespace::here();
  if (!ns) {
    return ns.error();
  }
  if (auto api = NftLibrary::acquire(); !api) {
    return api.error();
  }
  return std::unique_ptr<NftChainReader>(new NftChainReader(std::move(*ns)));
}

Result<std::optional<nlohmann::json>> NftChainReader::listChain(NftSession& session,
                                                                std::string_view family,
                                                                std::string_view table,
                                                                std::string_view chain) {
  Json ref = Json::object();
  ref["family"] = family;
  ref["table"] = table;
  ref["name"] = chain;
  auto listing = session.run(listCommand("chain", std::move(ref)));
  if (!listing) {
    // Listing a chain that does not exist fails; tell that apart from real failures by listing
    // the family's chains (cheap: no rules).
    Json filter = Json::object();
    filter["family"] = family;
    auto chains = session.run(listCommand("chains", std::move(filter)));
    if (chains && !chainListed(*chains, family, table, chain)) {
      return std::optional<nlohmann::json>{};
    }
    return listing.error();
  }
  nlohmann::json rules = nlohmann::json::array();
  auto items = listing->find("nftables");
  if (listing->is_object() && items != listing->end() && items->is_array()) {
    for (const auto& item : *items) {
      auto r = item.find("rule");
      if (!item.is_object() || r == item.end() || !r->is_object() ||
          r->value("chain", "") != chain || r->value("table", "") != table) {
        continue;
      }
      nlohmann::json entry = nlohmann::json::object();
      entry["comment"] = r->value("comment", "");
      entry["expr"] = r->contains("expr") ? r->at("expr") : nlohmann::json();
      rules.push_back(std::move(entry));
    }
  }
  return std::optional<nlohmann::json>{std::move(rules)};
}

Result<std::string> NftChainReader::snapshot(Family family, std::string_view table,
                                             std::string_view chain, std::string_view hook_chain) {
  const auto fam = nftFamily(family);
  const auto ctx = fmt::format("listing {} {}/{} in-process", familyName(family), table, chain);
  const auto key = fmt::format("{} {} {} {}", fam, table, chain, hook_chain);
  // Read before listing: a change that lands during the listing moves it again, so the next
  // call lists once more rather than trusting a snapshot older than the generation it carries.
  auto generation = ns_->generation();
  auto known = remembered_.find(key);
  if (generation && known != remembered_.end() && known->second.generation == *generation) {
    return known->second.text;
  }
  auto session = ns_->openSession();
  if (!session) {
    return session.error().context(ctx);
  }
  ++listings_;
  auto ours = listChain(**session, fam, table, chain);
  if (!ours) {
    return ours.error().context(ctx);
  }
  auto hook = listChain(**session, fam, table, hook_chain);
  if (!hook) {
    return hook.error().context(ctx);
  }
  nlohmann::json jumps = nlohmann::json::array();
  if (*hook) {
    for (const auto& rule : **hook) {
      if (jumpsTo(rule["expr"], chain)) {
        jumps.push_back(rule);
      }
    }
  }
  nlohmann::json snap = nlohmann::json::object();
  snap["chain_exists"] = ours->has_value();
  snap["rules"] = *ours ? **ours : nlohmann::json::array();
  snap["hook_exists"] = hook->has_value();
  snap["jumps"] = std::move(jumps);
  // nlohmann::json keeps keys sorted, so dump() is canonical.
  std::string text = snap.dump();
  if (generation) {
    remembered_[key] = Remembered{.generation = *generation, .text = text};
  } else {
    remembered_.erase(key);  // no generation to compare with: list every time
  }
  return text;
}

}  // namespace flannel::traffic::nft
