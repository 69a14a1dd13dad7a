#include "traffic/iptables/render.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

namespace flannel::traffic::iptables {

namespace {

std::string addrSpec(std::string_view flag, const std::optional<AddrMatch>& m) {
  if (!m) {
    return {};
  }
  return fmt::format("{}{} {} ", m->negated ? "! " : "", flag, m->net.toString());
}

std::string commentSpec(ChainKind kind) {
  return fmt::format("-m comment --comment \"{}\"", chainNames(kind).comment);
}

std::string_view trimLine(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
    line.remove_suffix(1);
  }
  while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
    line.remove_prefix(1);
  }
  return line;
}

// Splits a rule spec into arguments the way iptables-restore does: on blanks, with double quotes
// grouping (and \" escaping a quote inside them).
std::vector<std::string> splitArgs(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  bool in_arg = false;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '\\' && i + 1 < text.size() && text[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
      in_arg = true;
    } else if (c == ' ' || c == '\t') {
      if (in_arg) {
        out.push_back(std::move(cur));
        cur.clear();
        in_arg = false;
      }
    } else {
      cur += c;
      in_arg = true;
    }
  }
  if (in_arg) {
    out.push_back(std::move(cur));
  }
  return out;
}

bool jumpsTo(std::string_view spec, std::string_view chain) {
  const auto args = splitArgs(spec);
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    const auto& a = args[i];
    if ((a == "-j" || a == "--jump" || a == "-g" || a == "--goto") && args[i + 1] == chain) {
      return true;
    }
  }
  return false;
}

std::string head(Family family, std::string_view table, std::string_view chain) {
  return fmt::format("{} {}/{}: ", familyName(family), table, chain);
}

}  // namespace

std::string ruleSpec(const Rule& rule, ChainKind kind) {
  std::string out = addrSpec("-s", rule.src) + addrSpec("-d", rule.dst);
  if (rule.kube_proxy_mark) {
    out += fmt::format("-m mark --mark {:#x}/{:#x} ", kKubeProxyMark, kKubeProxyMark);
  }
  out += commentSpec(kind);
  switch (rule.action) {
    case Action::Return:
      out += " -j RETURN";
      break;
    case Action::Accept:
      out += " -j ACCEPT";
      break;
    case Action::Masquerade:
      out += rule.fully_random ? " -j MASQUERADE --random-fully" : " -j MASQUERADE";
      break;
  }
  return out;
}

std::string jumpSpec(ChainKind kind) {
  return fmt::format("{} -j {}", commentSpec(kind), chainNames(kind).iptables_chain);
}

SavedChain parseSave(std::string_view save_text, ChainKind kind) {
  const ChainNames& n = chainNames(kind);
  const std::string chain_prefix = fmt::format("-A {} ", n.iptables_chain);
  const std::string hook_prefix = fmt::format("-A {} ", n.iptables_hook_chain);
  SavedChain out;
  bool in_table = false;
  while (!save_text.empty()) {
    const size_t nl = save_text.find('\n');
    std::string_view line =
        trimLine(nl == std::string_view::npos ? save_text : save_text.substr(0, nl));
    save_text.remove_prefix(nl == std::string_view::npos ? save_text.size() : nl + 1);
    if (line.empty() || line.front() == '#') {
      continue;
    }
    if (line.front() == '*') {
      in_table = line.substr(1) == n.iptables_table;
      continue;
    }
    if (line == "COMMIT") {
      in_table = false;
      continue;
    }
    if (!in_table) {
      continue;
    }
    if (line.front() == ':') {
      const auto name =
          line.substr(1, line.find(' ') == std::string_view::npos ? std::string_view::npos
                                                                  : line.find(' ') - 1);
      if (name == n.iptables_chain) {
        out.exists = true;
      }
    } else if (line.starts_with(chain_prefix)) {
      out.rules.emplace_back(trimLine(line.substr(chain_prefix.size())));
    } else if (line.starts_with(hook_prefix)) {
      const auto spec = trimLine(line.substr(hook_prefix.size()));
      if (jumpsTo(spec, n.iptables_chain)) {
        out.jumps.emplace_back(spec);
      }
    }
  }
  return out;
}

std::vector<std::string> diffSaved(Family family, const ChainRules& want, const SavedChain& seen) {
  const ChainNames& n = chainNames(want.kind);
  std::vector<std::string> out;
  const std::string chain_head = head(family, n.iptables_table, n.iptables_chain);
  const std::string hook_head = head(family, n.iptables_table, n.iptables_hook_chain);
  const std::string jump = jumpSpec(want.kind);
  if (seen.jumps.empty()) {
    out.push_back(hook_head + fmt::format("no rule jumps to {}", n.iptables_chain));
  } else if (seen.jumps.size() > 1) {
    out.push_back(hook_head +
                  fmt::format("{} rules jump to {}, want 1", seen.jumps.size(), n.iptables_chain));
  } else if (seen.jumps.front() != jump) {
    out.push_back(hook_head + fmt::format("the jump to {} is `{}`, want `{}`", n.iptables_chain,
                                          seen.jumps.front(), jump));
  }
  if (!seen.exists) {
    out.push_back(chain_head + "chain does not exist");
    return out;
  }
  const size_t count = std::max(want.rules.size(), seen.rules.size());
  for (size_t i = 0; i < count; ++i) {
    if (i >= seen.rules.size()) {
      out.push_back(chain_head + fmt::format("rule {} is missing: `{}`", i + 1,
                                             ruleSpec(want.rules[i], want.kind)));
    } else if (i >= want.rules.size()) {
      out.push_back(chain_head + fmt::format("unexpected rule {}: `{}`", i + 1, seen.rules[i]));
    } else if (const auto spec = ruleSpec(want.rules[i], want.kind); spec != seen.rules[i]) {
      out.push_back(chain_head +
                    fmt::format("rule {} is `{}`, want `{}`", i + 1, seen.rules[i], spec));
    }
  }
  return out;
}

std::string renderApply(const FamilyRules& rules, const std::map<ChainKind, SavedChain>& seen) {
  std::string out;
  for (const auto& chain : rules.chains) {
    const ChainNames& n = chainNames(chain.kind);
    out += fmt::format("*{}\n", n.iptables_table);
    out += fmt::format(":{} - [0:0]\n", n.iptables_chain);
    if (auto it = seen.find(chain.kind); it != seen.end()) {
      for (const auto& old : it->second.jumps) {
        out += fmt::format("-D {} {}\n", n.iptables_hook_chain, old);
      }
    }
    out += fmt::format("-A {} {}\n", n.iptables_hook_chain, jumpSpec(chain.kind));
    for (const auto& rule : chain.rules) {
      out += fmt::format("-A {} {}\n", n.iptables_chain, ruleSpec(rule, chain.kind));
    }
    out += "COMMIT\n";
  }
  return out;
}

std::string renderRemoveRules(ChainKind kind, const std::vector<std::string>& specs) {
  if (specs.empty()) {
    return {};
  }
  const ChainNames& n = chainNames(kind);
  std::string out = fmt::format("*{}\n", n.iptables_table);
  for (const auto& spec : specs) {
    out += fmt::format("-D {} {}\n", n.iptables_chain, spec);
  }
  out += "COMMIT\n";
  return out;
}

std::string renderRemoveAll(ChainKind kind, const SavedChain& seen) {
  if (!seen.exists && seen.jumps.empty()) {
    return {};
  }
  const ChainNames& n = chainNames(kind);
  std::string out = fmt::format("*{}\n", n.iptables_table);
  for (const auto& old : seen.jumps) {
    out += fmt::format("-D {} {}\n", n.iptables_hook_chain, old);
  }
  if (seen.exists) {
    out += fmt::format("-F {}\n-X {}\n", n.iptables_chain, n.iptables_chain);
  }
  out += "COMMIT\n";
  return out;
}

std::vector<std::string> staleSpecs(ChainKind kind, const std::vector<Rule>& stale,
                                    const SavedChain& seen) {
  std::vector<std::string> wanted;
  for (const auto& rule : stale) {
    Rule r = rule;
    r.fully_random = false;
    wanted.push_back(ruleSpec(r, kind));
    if (r.action == Action::Masquerade) {
      r.fully_random = true;
      wanted.push_back(ruleSpec(r, kind));
    }
  }
  std::vector<std::string> out;
  for (const auto& spec : seen.rules) {
    if (std::find(wanted.begin(), wanted.end(), spec) != wanted.end()) {
      out.push_back(spec);
    }
  }
  return out;
}

std::string failedLine(std::string_view stderr_text, std::string_view payload) {
  // iptables-legacy-restore: "iptables-restore: line 5 failed";
  // iptables-nft-restore:    "Error occurred at line: 5".
  size_t line_no = 0;
  for (std::string_view marker : {std::string_view("line: "), std::string_view("line ")}) {
    for (size_t pos = stderr_text.find(marker); pos != std::string_view::npos;
         pos = stderr_text.find(marker, pos + 1)) {
      const char* first = stderr_text.data() + pos + marker.size();
      const char* last = stderr_text.data() + stderr_text.size();
      size_t value = 0;
      auto [ptr, ec] = std::from_chars(first, last, value);
      if (ec == std::errc() && ptr != first && value > 0) {
        line_no = value;
        break;
      }
    }
    if (line_no != 0) {
      break;
    }
  }
  if (line_no == 0) {
    return {};
  }
  size_t n = 1;
  while (!payload.empty()) {
    const size_t nl = payload.find('\n');
    const auto line = nl == std::string_view::npos ? payload : payload.substr(0, nl);
    if (n == line_no) {
      return fmt::format("line {} of the input: `{}`", line_no, line);
    }
    payload.remove_prefix(nl == std::string_view::npos ? payload.size() : nl + 1);
    ++n;
  }
  return {};
}

}  // namespace flannel::traffic::iptables
