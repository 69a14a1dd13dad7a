// DOC: the CNI_* environment a runtime hands a plugin (CNI spec 1.0.0, "Parameters"), parsed and
// validated (pure).
//
// Required variables follow the CNI Go library that runtimes and the reference plugins use:
//   CNI_COMMAND      always
//   CNI_CONTAINERID  ADD, DEL, CHECK
//   CNI_NETNS        ADD, CHECK          (DEL must work when the namespace is already gone)
//   CNI_IFNAME       ADD, DEL, CHECK
//   CNI_PATH         ADD, DEL, CHECK     (where the delegate plugin is looked up)
//   CNI_ARGS         never (passed through to the delegate)
// The container ID names the plugin's scratch file, so it is held to the spec's grammar
// (an alphanumeric, then alphanumerics, '_', '.', '-'): "../x" can never escape dataDir.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "cni/cni_error.h"

namespace flannel::cni {

enum class CniCommand { Add, Del, Check, Version };

// "ADD", "DEL", "CHECK", "VERSION".
std::string_view commandName(CniCommand command) noexcept;
std::optional<CniCommand> parseCommand(std::string_view text) noexcept;

namespace env_var {
inline constexpr std::string_view kCommand = "CNI_COMMAND";
inline constexpr std::string_view kContainerId = "CNI_CONTAINERID";
inline constexpr std::string_view kNetns = "CNI_NETNS";
inline constexpr std::string_view kIfname = "CNI_IFNAME";
inline constexpr std::string_view kArgs = "CNI_ARGS";
inline constexpr std::string_view kPath = "CNI_PATH";
}  // namespace env_var

using EnvMap = std::map<std::string, std::string, std::less<>>;

struct CniEnv {
  CniCommand command = CniCommand::Version;
  std::string container_id{};
  std::string netns{};
  std::string ifname{};
  std::string args{};
  std::string path{};  // CNI_PATH, colon-separated

  friend bool operator==(const CniEnv&, const CniEnv&) = default;
};

// Errors (all CniCode::InvalidEnvironment): CNI_COMMAND unset or unknown; required variables
// missing (all of them named in one message); a container ID or interface name that breaks the
// spec's rules.
CniResult<CniEnv> parseCniEnv(const EnvMap& env) noexcept;

// The spec's rules, exposed for tests and for the scratch store.
bool isValidContainerId(std::string_view id) noexcept;
bool isValidIfname(std::string_view name) noexcept;

}  // namespace flannel::cni
