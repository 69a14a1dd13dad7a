#include "cni/cni_env.h"

#include <fmt/format.h>

#include <vector>

#include "core/strings.h"

namespace flannel::cni {

namespace {

bool isAlnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string_view lookup(const EnvMap& env, std::string_view name) {
  auto it = env.find(name);
  return it == env.end() ? std::string_view{} : std::string_view(it->second);
}

}  // namespace

std::string_view commandName(CniCommand command) noexcept {
  switch (command) {
    case CniCommand::Add:
      return "ADD";
    case CniCommand::Del:
      return "DEL";
    case CniCommand::Check:
      return "CHECK";
    case CniCommand::Version:
      return "VERSION";
  }
  return "?";
}

std::optional<CniCommand> parseCommand(std::string_view text) noexcept {
  for (auto c : {CniCommand::Add, CniCommand::Del, CniCommand::Check, CniCommand::Version}) {
    if (text == commandName(c)) {
      return c;
    }
  }
  return std::nullopt;
}

bool isValidContainerId(std::string_view id) noexcept {
  // CNI spec 1.0.0: "must start with an alphanumeric character, optionally followed by any
  // combination of one or more alphanumeric characters, underscore, dot or hyphen". 255 is the
  // longest file name the scratch store can create.
  if (id.empty() || id.size() > 255 || !isAlnum(id.front())) {
    return false;
  }
  for (char c : id) {
    if (!isAlnum(c) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

bool isValidIfname(std::string_view name) noexcept {
  // Linux rules as the spec words them: non-empty, shorter than 16, not "." or "..", and no '/',
  // ':' or whitespace.
  if (name.empty() || name.size() >= 16 || name == "." || name == "..") {
    return false;
  }
  for (char c : name) {
    if (c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
        c == '\f' || c == '\0') {
      return false;
    }
  }
  return true;
}

CniResult<CniEnv> parseCniEnv(const EnvMap& env) noexcept {
  try {
    const auto command_text = lookup(env, env_var::kCommand);
    if (command_text.empty()) {
      return cniError(CniCode::InvalidEnvironment,
                      "CNI_COMMAND is not set (expected ADD, DEL, CHECK or VERSION)");
    }
    auto command = parseCommand(command_text);
    if (!command) {
      return cniError(CniCode::InvalidEnvironment,
                      fmt::format("unknown CNI_COMMAND {} (expected ADD, DEL, CHECK or VERSION)",
                                  quoteForMessage(command_text)));
    }
    CniEnv out{
        .command = *command,
        .container_id = std::string(lookup(env, env_var::kContainerId)),
        .netns = std::string(lookup(env, env_var::kNetns)),
        .ifname = std::string(lookup(env, env_var::kIfname)),
        .args = std::string(lookup(env, env_var::kArgs)),
        .path = std::string(lookup(env, env_var::kPath)),
    };
    if (*command == CniCommand::Version) {
      return out;
    }
    std::vector<std::string_view> missing;
    if (out.container_id.empty()) {
      missing.push_back(env_var::kContainerId);
    }
    if (out.netns.empty() && *command != CniCommand::Del) {
      missing.push_back(env_var::kNetns);
    }
    if (out.ifname.empty()) {
      missing.push_back(env_var::kIfname);
    }
    if (out.path.empty()) {
      missing.push_back(env_var::kPath);
    }
    if (!missing.empty()) {
      return cniError(CniCode::InvalidEnvironment,
                      fmt::format("required environment variables missing for {}: {}",
                                  commandName(*command), fmt::join(missing, ", ")));
    }
    if (!isValidContainerId(out.container_id)) {
      return cniError(CniCode::InvalidEnvironment,
                      fmt::format("CNI_CONTAINERID {} is not a valid container ID",
                                  quoteForMessage(out.container_id)),
                      "it must start with a letter or digit, followed by letters, digits, '_', "
                      "'.' or '-' (at most 255 characters)");
    }
    if (!isValidIfname(out.ifname)) {
      return cniError(
          CniCode::InvalidEnvironment,
          fmt::format("CNI_IFNAME {} is not a valid interface name", quoteForMessage(out.ifname)),
          "it must be 1 to 15 characters, not \".\" or \"..\", without '/', ':' or "
          "whitespace");
    }
    return out;
  } catch (const std::exception& e) {
    return cniError(CniCode::Internal, fmt::format("reading the CNI environment: {}", e.what()));
  }
}

}  // namespace flannel::cni
