// DOC: Plugin, the flannel CNI plugin's commands: environment + stdin in, stdout + stderr + exit
// status out. main.cc is only the process around it; tests call run() directly.
//
//   VERSION  {"cniVersion":"1.0.0","supportedVersions":[...]}; stdin is ignored.
//   ADD      subnet.env -> delegate config (cni_config.h) -> resolve the delegate on CNI_PATH ->
//            save the config to <dataDir>/<containerID> -> delegate ADD -> its result on stdout.
//   DEL      saved config -> delegate DEL with those exact bytes -> remove the file.
//              no file            -> success, nothing done (DEL twice is fine)
//              unusable file      -> a note on stderr, file removed, success
//              delegate DEL fails -> its error, and the file is KEPT so the runtime's retry can
//                                    still release what the delegate holds
//   CHECK    (cniVersion 0.4.0 or later) saved config -> subnet.env still gives this node the
//            pod's subnet -> delegate CHECK with the saved config plus the runtime's prevResult.
//              no file            -> CniCode::UnknownContainer
// Every failure is one CNI error JSON line on stdout and exit status 1; stderr gets a log line.
//
// Seams: the CommandRunner (delegates) is injected; files (subnet.env, dataDir) are real files at
// the paths the config names.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "cni/cni_config.h"
#include "cni/cni_env.h"
#include "cni/cni_error.h"
#include "core/exec.h"

namespace flannel::cni {

struct PluginOptions {
  std::chrono::milliseconds delegate_timeout{300'000};
};

struct PluginOutput {
  int exit_code = 0;
  std::string out{};  // stdout: a CNI result, VERSION info, an error, or nothing
  std::string err{};  // stderr: log lines
};

class Plugin {
 public:
  explicit Plugin(CommandRunner& runner, PluginOptions options = {})
      : runner_(runner), options_(options) {}

  PluginOutput run(const EnvMap& env, std::string_view stdin_data) noexcept;

 private:
  CniResult<std::string> add(const CniEnv& env, const NetConf& conf, std::string& log);
  CniResult<std::string> del(const CniEnv& env, const NetConf& conf, std::string& log);
  CniResult<std::string> check(const CniEnv& env, const NetConf& conf, std::string& log);

  CommandRunner& runner_;
  PluginOptions options_;
};

}  // namespace flannel::cni
