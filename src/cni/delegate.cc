#include "cni/delegate.h"

#include <fmt/format.h>

#include <filesystem>

#include "core/json_util.h"
#include "core/strings.h"

namespace flannel::cni {

namespace {

// The last `max` bytes of `text`, trimmed, for an error's details.
std::string tail(std::string_view text, size_t max = 2048) {
  text = trimSpace(text);
  if (text.size() > max) {
    text = text.substr(text.size() - max);
  }
  return std::string(text);
}

// A CNI error object as a delegate prints it, or nullopt when `out` is something else.
std::optional<CniError> parseDelegateError(std::string_view out) {
  auto parsed = parseJson(out, "delegate output");
  if (!parsed || !parsed->is_object()) {
    return std::nullopt;
  }
  const Json& obj = *parsed;
  auto code = obj.find("code");
  auto msg = obj.find("msg");
  if (code == obj.end() || !code->is_number_integer() || msg == obj.end() || !msg->is_string()) {
    return std::nullopt;
  }
  // Any positive code passes through as the delegate gave it; nonsense becomes DelegateFailed.
  const int64_t raw = code->get<int64_t>();
  const int value = raw > 0 && raw < (int64_t{1} << 30) ? static_cast<int>(raw)
                                                        : static_cast<int>(CniCode::DelegateFailed);
  CniError error{
      .code = static_cast<CniCode>(value), .msg = msg->get<std::string>(), .details = {}};
  if (auto details = obj.find("details"); details != obj.end() && details->is_string()) {
    error.details = details->get<std::string>();
  }
  return error;
}

}  // namespace

CniResult<std::string> resolveDelegate(std::string_view type, std::string_view cni_path) noexcept {
  try {
    auto binary = findOnPath(type, cni_path);
    if (binary) {
      return *binary;
    }
    if (binary.error().code == Errc::NotFound) {
      return cniError(
          CniCode::DelegateNotFound,
          fmt::format("delegate plugin {} not found on CNI_PATH", quoteForMessage(type)),
          fmt::format("CNI_PATH={}; install the plugin there (Debian: "
                      "containernetworking-plugins) or fix \"delegate.type\"",
                      cni_path));
    }
    return cniError(CniCode::DelegateNotFound,
                    fmt::format("delegate plugin {} cannot be run: {}", quoteForMessage(type),
                                binary.error().message),
                    fmt::format("CNI_PATH={}", cni_path));
  } catch (const std::exception& e) {
    return cniError(CniCode::Internal, fmt::format("looking up delegate plugin: {}", e.what()));
  }
}

Command delegateCommand(const CniEnv& env, const DelegateCall& call) {
  Command cmd;
  cmd.argv = {call.binary};
  cmd.inherit_env = true;
  cmd.env_add[std::string(env_var::kCommand)] = std::string(commandName(call.command));
  const std::pair<std::string_view, const std::string*> pass[] = {
      {env_var::kContainerId, &env.container_id},
      {env_var::kNetns, &env.netns},
      {env_var::kIfname, &env.ifname},
      {env_var::kArgs, &env.args},
      {env_var::kPath, &env.path},
  };
  for (const auto& [name, value] : pass) {
    if (!value->empty()) {
      cmd.env_add[std::string(name)] = *value;
    }
  }
  cmd.stdin_data = call.config;
  cmd.timeout = call.timeout;
  return cmd;
}

CniResult<std::string> runDelegate(CommandRunner& runner, const CniEnv& env,
                                   const DelegateCall& call, std::string& diagnostics) noexcept {
  try {
    const auto command = commandName(call.command);
    const std::string name = std::filesystem::path(call.binary).filename().string();
    auto ran = runner.run(delegateCommand(env, call));
    if (!ran) {
      const auto& e = ran.error();
      if (e.code == Errc::NotFound) {
        return cniError(CniCode::DelegateNotFound,
                        fmt::format("delegate plugin {} {}: {}", name, command, e.message));
      }
      return cniError(CniCode::DelegateFailed,
                      fmt::format("delegate plugin {} {}: {}", name, command,
                                  e.code == Errc::Timeout ? "timed out" : "could not be run"),
                      e.message);
    }
    const CommandOutput& out = *ran;
    diagnostics += out.err;
    if (!out.err.empty() && out.err.back() != '\n') {
      diagnostics += '\n';
    }
    if (!out.success()) {
      if (auto error = parseDelegateError(out.out)) {
        return *error;
      }
      const std::string status = out.term_signal != 0
                                     ? fmt::format("killed by signal {}", out.term_signal)
                                     : fmt::format("exit status {}", out.exit_code);
      std::string details = tail(out.err);
      if (auto stdout_tail = tail(out.out); !stdout_tail.empty()) {
        details += details.empty() ? "" : "\n";
        details += "stdout: " + stdout_tail;
      }
      return cniError(CniCode::DelegateFailed,
                      fmt::format("delegate plugin {} {} failed ({})", name, command, status),
                      std::move(details));
    }
    if (call.command == CniCommand::Add) {
      auto result = parseJson(out.out, "delegate result");
      if (!result || !result->is_object()) {
        return cniError(
            CniCode::DelegateFailed,
            fmt::format("delegate plugin {} ADD succeeded but printed no CNI result", name),
            fmt::format("stdout: {}", tail(out.out)));
      }
    }
    return out.out;
  } catch (const std::exception& e) {
    return cniError(CniCode::Internal,
                    fmt::format("running delegate plugin {}: {}", call.binary, e.what()));
  }
}

}  // namespace flannel::cni
