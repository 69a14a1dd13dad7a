// Fuzz target: the flannel CNI plugin's parsers (src/cni) must be total, and whatever delegate
// config they build must be a well-formed object that names its delegate.
//
// Input: "<network config JSON>\n---\n<subnet.env text>"; without the separator the whole input
// is fed to both parsers.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "cni/cni_config.h"
#include "cni/flannel_env.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flannel;
  using namespace flannel::cni;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view conf_text = input;
  std::string_view env_text = input;
  if (auto sep = input.find("\n---\n"); sep != std::string_view::npos) {
    conf_text = input.substr(0, sep);
    env_text = input.substr(sep + 5);
  }

  (void)errorVersionFor(conf_text);
  auto conf = parseNetConf(conf_text);
  auto env = parseFlannelEnv(env_text, "subnet.env");
  if (!conf && conf.error().msg.empty()) {
    std::abort();
  }
  if (!env && env.error().msg.empty()) {
    std::abort();
  }
  if (!conf || !env) {
    return 0;
  }
  (void)checkVersion(conf->cni_version);
  (void)checkVersionAllowsCheck(conf->cni_version);
  if (conf->prev_result) {
    (void)prevResultForCheck(*conf->prev_result);
  }
  auto delegate = buildDelegateConfig(*conf, *env);
  if (!delegate) {
    if (delegate.error().msg.empty()) {
      std::abort();
    }
    return 0;
  }
  // What ADD saves and hands to the delegate must read back as the same object, name a plugin
  // and carry one range set per subnet family.
  auto text = delegate->dump(-1, ' ', false, Json::error_handler_t::replace);
  auto again = parseJson(text, "delegate");
  if (!again || !again->is_object() || !delegateType(*again)) {
    std::abort();
  }
  const size_t families = (env->subnet ? 1 : 0) + (env->ipv6_subnet ? 1 : 0);
  const auto& ranges = (*again)["ipam"]["ranges"];
  if (!ranges.is_array() || ranges.size() != families) {
    std::abort();
  }
  return 0;
}
