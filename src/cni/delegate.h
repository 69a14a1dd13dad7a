// DOC: running the delegate plugin (bridge, or whatever delegate.type names) the way a CNI
// runtime runs a plugin: through the CommandRunner seam, argv = {absolute path} only, never a
// shell; our environment inherited, with CNI_COMMAND set to the delegate command and the other
// CNI_* variables set from ours; the delegate config on stdin.
//
// Finding the binary (resolveDelegate) is separate from running it (runDelegate), so ADD can
// refuse a delegate that is not installed before it saves anything.
//
// Outcomes of runDelegate:
//   exit 0                        -> its stdout (the CNI result for ADD; empty for DEL/CHECK).
//                                    ADD output must be a JSON object (else DelegateFailed).
//   exit != 0, stdout is a CNI error object {"code":N,"msg":...}
//                                 -> that error, code/msg/details as the delegate gave them.
//   exit != 0 otherwise, or killed, or timed out
//                                 -> CniCode::DelegateFailed, stderr's tail in the details.
// The delegate's stderr is always appended to `diagnostics` (the plugin forwards it to its own
// stderr, where runtimes log it).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "cni/cni_env.h"
#include "cni/cni_error.h"
#include "core/exec.h"

namespace flannel::cni {

struct DelegateCall {
  std::string binary{};                        // absolute path, from resolveDelegate()
  CniCommand command = CniCommand::Add;        // ADD, DEL or CHECK
  std::string config{};                        // stdin
  std::chrono::milliseconds timeout{300'000};  // generous: an IPAM plugin may wait on DHCP
};

// The plugin file `type` on CNI_PATH (`cni_path`, colon-separated), as an absolute path.
// CniCode::DelegateNotFound when it is missing or not executable, naming CNI_PATH.
CniResult<std::string> resolveDelegate(std::string_view type, std::string_view cni_path) noexcept;

// The Command the runner receives (exposed for tests).
Command delegateCommand(const CniEnv& env, const DelegateCall& call);

CniResult<std::string> runDelegate(CommandRunner& runner, const CniEnv& env,
                                   const DelegateCall& call, std::string& diagnostics) noexcept;

}  // namespace flannel::cni
