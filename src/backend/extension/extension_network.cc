#include "backend/extension/extension_network.h"

#include <fmt/format.h>
#include <cstdlib>

#include "core/json_util.h"
#include "core/log.h"
#include "core/strings.h"

namespace flannel::backend::extension {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("backend.extension");
}

bool isNameChar(char c, bool first) {
  return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (!first && c >= '0' && c <= '9');
}

std::optional<std::string> processEnv(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  return v ? std::optional<std::string>(v) : std::nullopt;
}

}  // namespace

Result<ExtensionConfig> parseExtensionConfig(std::string_view backend_json) noexcept {
  try {
    auto doc = parseJsonObject(backend_json, "Backend");
    if (!doc) {
      return doc.error();
    }
    ExtensionConfig c;
    for (auto [name, dest] : {std::pair{"PreStartupCommand", &c.pre_startup},
                              std::pair{"PostStartupCommand", &c.post_startup},
                              std::pair{"SubnetAddCommand", &c.subnet_add},
                              std::pair{"SubnetRemoveCommand", &c.subnet_remove}}) {
      auto v = getString(*doc, name, fmt::format("Backend.{}", name));
      if (!v) {
        return v.error().context("extension backend config");
      }
      *dest = v->value_or("");
    }
    return c;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("extension backend config: {}", e.what()));
  }
}

Result<std::vector<std::string>> expandCommand(std::string_view command,
                                               const std::map<std::string, std::string>& vars,
                                               const EnvLookup& env) {
  auto lookup = [&](const std::string& name) -> std::string {
    if (auto it = vars.find(name); it != vars.end()) {
      return it->second;
    }
    return env ? env(name).value_or("") : std::string();
  };
  std::vector<std::string> words;
  size_t i = 0;
  while (i < command.size()) {
    while (i < command.size() && (command[i] == ' ' || command[i] == '\t' || command[i] == '\n')) {
      ++i;
    }
    if (i >= command.size()) {
      break;
    }
    std::string word;
    while (i < command.size() && command[i] != ' ' && command[i] != '\t' && command[i] != '\n') {
      char c = command[i];
      if (c != '$' || i + 1 >= command.size()) {
        word += c;
        ++i;
        continue;
      }
      if (command[i + 1] == '{') {
        auto close = command.find('}', i + 2);
        if (close == std::string_view::npos) {
          return invalidInput(
              fmt::format("command {}: unterminated ${{", quoteForMessage(command)));
        }
        word += lookup(std::string(command.substr(i + 2, close - i - 2)));
        i = close + 1;
      } else if (isNameChar(command[i + 1], true)) {
        size_t j = i + 1;
        while (j < command.size() && isNameChar(command[j], false)) {
          ++j;
        }
        word += lookup(std::string(command.substr(i + 1, j - i - 1)));
        i = j;
      } else {
        word += c;
        ++i;
      }
    }
    words.push_back(std::move(word));
  }
  if (words.empty()) {
    return invalidInput("empty command");
  }
  return words;
}

ExtensionNetwork::ExtensionNetwork(NetworkConfig config, ExtensionConfig cfg,
                                   kernel::ExternalInterface ext, CommandRunner* runner,
                                   std::string backend_data)
    : config_(std::move(config)),
      cfg_(std::move(cfg)),
      ext_(std::move(ext)),
      runner_(runner),
      backend_data_(std::move(backend_data)) {}

Result<std::unique_ptr<Network>> ExtensionNetwork::create(const Context& ctx) {
  auto cfg = parseExtensionConfig(ctx.config.backend_json);
  if (!cfg) {
    return cfg.error();
  }
  std::unique_ptr<ExtensionNetwork> net(
      new ExtensionNetwork(ctx.config, *cfg, ctx.ext, ctx.runner, ""));
  if (!cfg->pre_startup.empty()) {
    auto out = net->runHook("PreStartupCommand", cfg->pre_startup, {}, "");
    if (!out) {
      return out.error();
    }
    if (!out->empty()) {
      net->backend_data_ = Json(*out).dump(-1, ' ', false, Json::error_handler_t::replace);
    }
  }
  return std::unique_ptr<Network>(std::move(net));
}

Result<std::string> ExtensionNetwork::runHook(std::string_view which, const std::string& command,
                                              std::map<std::string, std::string> vars,
                                              std::string stdin_data) {
  if (runner_ == nullptr) {
    return makeError(Errc::Internal, "extension backend without a command runner");
  }
  auto argv = expandCommand(command, vars, processEnv);
  if (!argv) {
    return argv.error().context(fmt::format("extension {}", which));
  }
  Command cmd;
  cmd.argv = std::move(*argv);
  cmd.env_add = std::move(vars);
  cmd.stdin_data = std::move(stdin_data);
  cmd.timeout = std::chrono::seconds(30);
  auto out = runChecked(*runner_, cmd);
  if (!out) {
    return out.error().context(fmt::format("extension {}", which));
  }
  return std::string(trimSpace(out->out + out->err));
}

LeaseAttrs ExtensionNetwork::leaseAttrs() const {
  LeaseAttrs a;
  if (ext_.ext_addr && config_.enable_ipv4) {
    a.public_ip = *ext_.ext_addr;
  }
  if (ext_.ext_v6_addr && config_.enable_ipv6) {
    a.public_ipv6 = *ext_.ext_v6_addr;
  }
  a.backend_type = "extension";
  a.backend_data = backend_data_;
  return a;
}

Result<void> ExtensionNetwork::configure(const Lease& own) {
  if (cfg_.post_startup.empty()) {
    return {};
  }
  std::map<std::string, std::string> vars;
  if (config_.network) {
    vars["NETWORK"] = config_.network->toString();
  }
  if (own.subnet.ipv4) {
    vars["SUBNET"] = own.subnet.ipv4->toString();
  }
  if (own.subnet.ipv6) {
    vars["IPV6SUBNET"] = own.subnet.ipv6->toString();
  }
  vars["PUBLIC_IP"] = own.attrs.public_ip.toString();
  if (own.attrs.public_ipv6) {
    vars["PUBLIC_IPV6"] = own.attrs.public_ipv6->toString();
  }
  auto out = runHook("PostStartupCommand", cfg_.post_startup, std::move(vars), "");
  if (!out) {
    return out.error();
  }
  return {};
}

Result<void> ExtensionNetwork::acceptPeer(const Lease& peer) const {
  if (peer.attrs.backend_type != "extension") {
    return invalidInput(
        fmt::format("BackendType {} is not extension", quoteForMessage(peer.attrs.backend_type)));
  }
  return {};
}

void ExtensionNetwork::runPeerHook(std::string_view which, const std::string& command,
                                   const Lease& peer) {
  std::map<std::string, std::string> vars;
  if (peer.subnet.ipv4) {
    vars["SUBNET"] = peer.subnet.ipv4->toString();
  }
  if (peer.subnet.ipv6) {
    vars["IPV6SUBNET"] = peer.subnet.ipv6->toString();
  }
  vars["PUBLIC_IP"] = peer.attrs.public_ip.toString();
  if (peer.attrs.public_ipv6) {
    vars["PUBLIC_IPV6"] = peer.attrs.public_ipv6->toString();
  }
  // The peer's BackendData is a JSON string; its text goes to stdin.
  std::string data = peer.attrs.backend_data;
  if (auto j = parseJson(data, "BackendData"); j && j->is_string()) {
    data = j->get<std::string>();
  }
  auto out = runHook(which, command, std::move(vars), data + "\n");
  if (!out) {
    log()->error("peer {}: {}", subnetKeyName(peer.subnet), out.error().message);
  } else {
    log()->info("peer {}: {} ran{}{}", subnetKeyName(peer.subnet), which, out->empty() ? "" : ": ",
                *out);
  }
}

void ExtensionNetwork::peersAdded(const std::vector<Lease>& added) {
  if (cfg_.subnet_add.empty()) {
    return;
  }
  for (const auto& l : added) {
    runPeerHook("SubnetAddCommand", cfg_.subnet_add, l);
  }
}

void ExtensionNetwork::peersRemoved(const std::vector<Lease>& removed) {
  if (cfg_.subnet_remove.empty()) {
    return;
  }
  for (const auto& l : removed) {
    runPeerHook("SubnetRemoveCommand", cfg_.subnet_remove, l);
  }
}

}  // namespace flannel::backend::extension
