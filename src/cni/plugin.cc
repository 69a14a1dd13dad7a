#include "cni/plugin.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "cni/delegate.h"
#include "cni/flannel_env.h"
#include "cni/scratch_store.h"
#include "core/json_util.h"

namespace flannel::cni {

namespace {

std::string compact(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

CniError ioError(std::string_view what, const Error& e) {
  return cniError(CniCode::IoFailure, fmt::format("{}: {}", what, e.message));
}

// The subnets a saved delegate config's ipam.ranges hands out (ours: one per family).
std::vector<IpNet> savedSubnets(const Json& config) {
  std::vector<IpNet> out;
  auto ipam = config.find("ipam");
  if (ipam == config.end() || !ipam->is_object()) {
    return out;
  }
  auto ranges = ipam->find("ranges");
  if (ranges == ipam->end() || !ranges->is_array()) {
    return out;
  }
  for (const auto& set : *ranges) {
    if (!set.is_array()) {
      continue;
    }
    for (const auto& range : set) {
      if (!range.is_object()) {
        continue;
      }
      if (auto subnet = range.find("subnet"); subnet != range.end() && subnet->is_string()) {
        if (auto net = IpNet::parseMasked(subnet->get<std::string>())) {
          out.push_back(*net);
        }
      }
    }
  }
  return out;
}

std::string joinNets(const std::vector<IpNet>& nets) {
  std::string out;
  for (const auto& n : nets) {
    out += out.empty() ? "" : ", ";
    out += n.toString();
  }
  return out.empty() ? "none" : out;
}

}  // namespace

PluginOutput Plugin::run(const EnvMap& env_map, std::string_view stdin_data) noexcept {
  PluginOutput out;
  std::string version = std::string(kPreferredVersion);
  std::string label = "flannel";
  auto fail = [&](const CniError& e) {
    out.exit_code = 1;
    out.out = renderCniError(e, version);
    out.err += fmt::format("{}: error {}: {}{}{}\n", label, static_cast<int>(e.code), e.msg,
                           e.details.empty() ? "" : ": ", e.details);
    return out;
  };
  try {
    auto env = parseCniEnv(env_map);
    if (!env) {
      version = errorVersionFor(stdin_data);
      return fail(env.error());
    }
    if (env->command == CniCommand::Version) {
      out.out = renderVersionInfo();
      return out;
    }
    label = fmt::format("flannel {} {}", commandName(env->command), env->container_id);
    version = errorVersionFor(stdin_data);
    auto conf = parseNetConf(stdin_data);
    if (!conf) {
      return fail(conf.error());
    }
    if (auto ok = checkVersion(conf->cni_version); !ok) {
      return fail(ok.error());
    }
    CniResult<std::string> result = std::string();
    switch (env->command) {
      case CniCommand::Add:
        result = add(*env, *conf, out.err);
        break;
      case CniCommand::Del:
        result = del(*env, *conf, out.err);
        break;
      case CniCommand::Check:
        result = check(*env, *conf, out.err);
        break;
      case CniCommand::Version:
        break;
    }
    if (!result) {
      return fail(result.error());
    }
    out.out = std::move(*result);
    return out;
  } catch (const std::exception& e) {
    return fail(cniError(CniCode::Internal, e.what()));
  }
}

CniResult<std::string> Plugin::add(const CniEnv& env, const NetConf& conf, std::string& log) {
  auto flannel_env = loadFlannelEnv(conf.subnet_file);
  if (!flannel_env) {
    return flannel_env.error();
  }
  auto delegate = buildDelegateConfig(conf, *flannel_env);
  if (!delegate) {
    return delegate.error();
  }
  auto type = delegateType(*delegate);
  if (!type) {
    return type.error();
  }
  // Resolve before saving: a delegate that is not installed allocated nothing, so nothing must be
  // left for DEL to undo.
  auto binary = resolveDelegate(*type, env.path);
  if (!binary) {
    return binary.error();
  }
  const std::string bytes = compact(*delegate);
  const ScratchStore store(conf.data_dir);
  if (auto saved = store.save(env.container_id, bytes); !saved) {
    return ioError("saving the delegate config", saved.error());
  }
  log += fmt::format("flannel ADD {}: delegate config saved to {}: {}\n", env.container_id,
                     store.pathFor(env.container_id), bytes);
  return runDelegate(runner_, env,
                     DelegateCall{.binary = *binary,
                                  .command = CniCommand::Add,
                                  .config = bytes,
                                  .timeout = options_.delegate_timeout},
                     log);
}

CniResult<std::string> Plugin::del(const CniEnv& env, const NetConf& conf, std::string& log) {
  const ScratchStore store(conf.data_dir);
  const std::string path = store.pathFor(env.container_id);
  auto saved = store.load(env.container_id);
  if (!saved) {
    return ioError("reading the saved delegate config", saved.error());
  }
  if (!*saved) {
    log += fmt::format("flannel DEL {}: no saved delegate config at {}; nothing to do\n",
                       env.container_id, path);
    return std::string();
  }
  auto parsed = parseJson(**saved, path);
  CniResult<std::string> type = cniError(CniCode::DecodeFailure, "");
  if (parsed && parsed->is_object()) {
    type = delegateType(*parsed);
  }
  if (!type) {
    // Nothing can be handed to a delegate: drop the file, or every later DEL would trip on it.
    log += fmt::format(
        "flannel DEL {}: saved delegate config {} is unusable ({}); removing it, nothing else "
        "done\n",
        env.container_id, path,
        parsed ? (parsed->is_object() ? type.error().msg : "not a JSON object")
               : parsed.error().message);
    if (auto removed = store.remove(env.container_id); !removed) {
      return ioError("removing the unusable delegate config", removed.error());
    }
    return std::string();
  }
  auto binary = resolveDelegate(*type, env.path);
  if (!binary) {
    log += fmt::format("flannel DEL {}: kept {} for a retry\n", env.container_id, path);
    return binary.error();
  }
  auto deleted = runDelegate(runner_, env,
                             DelegateCall{.binary = *binary,
                                          .command = CniCommand::Del,
                                          .config = **saved,
                                          .timeout = options_.delegate_timeout},
                             log);
  if (!deleted) {
    log += fmt::format("flannel DEL {}: delegate DEL failed; kept {} so a retried DEL can finish\n",
                       env.container_id, path);
    return deleted.error();
  }
  if (auto removed = store.remove(env.container_id); !removed) {
    return ioError("removing the saved delegate config", removed.error());
  }
  return std::string();
}

CniResult<std::string> Plugin::check(const CniEnv& env, const NetConf& conf, std::string& log) {
  if (auto ok = checkVersionAllowsCheck(conf.cni_version); !ok) {
    return ok.error();
  }
  const ScratchStore store(conf.data_dir);
  const std::string path = store.pathFor(env.container_id);
  auto saved = store.load(env.container_id);
  if (!saved) {
    return ioError("reading the saved delegate config", saved.error());
  }
  if (!*saved) {
    return cniError(CniCode::UnknownContainer,
                    fmt::format("container {} is not attached to network {}: no saved delegate "
                                "config at {}",
                                env.container_id, conf.name, path),
                    "ADD was never run for it, or DEL has already removed it");
  }
  auto parsed = parseJson(**saved, path);
  if (!parsed || !parsed->is_object()) {
    return cniError(CniCode::DecodeFailure,
                    fmt::format("saved delegate config {} is unusable: {}", path,
                                parsed ? "not a JSON object" : parsed.error().message));
  }
  Json config = std::move(*parsed);
  auto type = delegateType(config);
  if (!type) {
    return type.error();
  }
  // The pod's addresses come from this node's flannel subnet; if flanneld now holds another one
  // (a new lease), no other node routes the pod's subnet here any more.
  auto flannel_env = loadFlannelEnv(conf.subnet_file);
  if (!flannel_env) {
    return flannel_env.error();
  }
  std::vector<IpNet> current;
  for (const auto& subnet : {flannel_env->subnet, flannel_env->ipv6_subnet}) {
    if (subnet) {
      current.push_back(*subnet);
    }
  }
  for (const auto& subnet : savedSubnets(config)) {
    if (std::find(current.begin(), current.end(), subnet) == current.end()) {
      return cniError(CniCode::SubnetChanged,
                      fmt::format("the pod's subnet {} is no longer this node's flannel subnet "
                                  "({} has {})",
                                  subnet.toString(), conf.subnet_file, joinNets(current)),
                      "flanneld holds a different lease now; the pod must be recreated");
    }
  }
  // The runtime's prevResult (what ADD returned) is what the delegate checks against; it is in
  // the format of the runtime's cniVersion.
  if (conf.prev_result) {
    config["prevResult"] = prevResultForCheck(*conf.prev_result);
  }
  if (!conf.cni_version.empty()) {
    config["cniVersion"] = conf.cni_version;
  }
  auto binary = resolveDelegate(*type, env.path);
  if (!binary) {
    return binary.error();
  }
  auto checked = runDelegate(runner_, env,
                             DelegateCall{.binary = *binary,
                                          .command = CniCommand::Check,
                                          .config = compact(config),
                                          .timeout = options_.delegate_timeout},
                             log);
  if (!checked) {
    return checked.error();
  }
  return std::string();
}

}  // namespace flannel::cni
