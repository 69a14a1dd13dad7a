#include "cni/cni_config.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/strings.h"
#include "core/subnet_env.h"

namespace flannel::cni {

namespace {

CniError configError(std::string msg, std::string details = {}) {
  return cniError(CniCode::InvalidConfig, std::move(msg), std::move(details));
}

// A JSON value as it appears in the input, for a message (already escaped by the encoder; cut
// after 64 characters).
std::string shown(const Json& v) {
  std::string text = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 64) {
    text.resize(64);
    text += "...";
  }
  return text;
}

// "an integer 5", "a string \"x\"", "null".
std::string describe(const Json& v) {
  if (v.is_null()) {
    return "null";
  }
  return fmt::format("{} {}", jsonTypeName(v), shown(v));
}

// Optional top-level string member (case-insensitive key); absent or null -> "".
CniResult<std::string> stringMember(const Json& obj, std::string_view key) {
  const Json* v = findMember(obj, key);
  if (v == nullptr || v->is_null()) {
    return std::string();
  }
  if (!v->is_string()) {
    return configError(
        fmt::format("network config: \"{}\" must be a string, not {}", key, describe(*v)));
  }
  return v->get<std::string>();
}

// Optional top-level object member (case-insensitive key); absent or null -> nullopt.
CniResult<std::optional<Json>> objectMember(const Json& obj, std::string_view key) {
  const Json* v = findMember(obj, key);
  if (v == nullptr || v->is_null()) {
    return std::optional<Json>();
  }
  if (!v->is_object()) {
    return configError(
        fmt::format("network config: \"{}\" must be an object, not {}", key, describe(*v)));
  }
  return std::optional<Json>(*v);
}

std::string supportedList() {
  std::string out;
  for (auto v : kSupportedVersions) {
    out += out.empty() ? "" : ", ";
    out += v;
  }
  return out;
}

bool isPlainFileName(std::string_view s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string_view::npos &&
         s.find('\0') == std::string_view::npos;
}

// ipam.routes plus one {"dst": network} per flannel network, unless a route to exactly that
// destination is already given (the kernel refuses a second one, which would fail the ADD).
CniResult<Json> buildRoutes(const Json& ipam, const FlannelEnv& env) {
  Json routes = Json::array();
  if (auto it = ipam.find("routes"); it != ipam.end() && !it->is_null()) {
    if (!it->is_array()) {
      return configError(
          fmt::format("network config: \"ipam.routes\" must be an array, not {}", describe(*it)));
    }
    routes = *it;
  }
  std::vector<IpNet> given;
  for (const auto& route : routes) {
    if (!route.is_object()) {
      return configError(
          fmt::format("network config: every entry of \"ipam.routes\" must be an object, not {}",
                      describe(route)));
    }
    if (auto dst = route.find("dst"); dst != route.end() && dst->is_string()) {
      if (auto net = IpNet::parseMasked(dst->get<std::string>())) {
        given.push_back(*net);
      }
    }
  }
  auto add = [&](const IpNet& net) {
    if (std::find(given.begin(), given.end(), net) == given.end()) {
      routes.push_back(Json{{"dst", net.toString()}});
    }
  };
  std::for_each(env.networks.begin(), env.networks.end(), add);
  std::for_each(env.ipv6_networks.begin(), env.ipv6_networks.end(), add);
  return CniResult<Json>(boost::system::in_place_value, std::move(routes));
}

CniResult<Json> buildIpam(const NetConf& conf, const FlannelEnv& env) {
  Json ipam = conf.ipam.value_or(Json::object());
  if (auto it = ipam.find("type"); it == ipam.end()) {
    ipam["type"] = std::string(kDefaultIpamType);
  } else if (!it->is_string()) {
    return configError(
        fmt::format("network config: \"ipam.type\" must be a string, not {}", describe(*it)));
  }
  Json ranges = Json::array();
  for (const auto& subnet : {env.subnet, env.ipv6_subnet}) {
    if (subnet) {
      ranges.push_back(Json::array({Json{{"subnet", subnet->toString()}}}));
    }
  }
  ipam["ranges"] = std::move(ranges);
  auto routes = buildRoutes(ipam, env);
  if (!routes) {
    return routes.error();
  }
  ipam["routes"] = std::move(*routes);
  return CniResult<Json>(boost::system::in_place_value, std::move(ipam));
}

}  // namespace

CniResult<NetConf> parseNetConf(std::string_view text) noexcept {
  try {
    auto parsed = parseJson(text, "network config");
    if (!parsed) {
      return cniError(CniCode::DecodeFailure, parsed.error().message);
    }
    const Json& obj = *parsed;
    if (!obj.is_object()) {
      return cniError(
          CniCode::DecodeFailure,
          fmt::format("network config must be a JSON object, not {}", jsonTypeName(obj)));
    }
    NetConf conf;
    for (auto [key, field] :
         {std::pair{"cniVersion", &conf.cni_version}, std::pair{"name", &conf.name},
          std::pair{"type", &conf.type}, std::pair{"subnetFile", &conf.subnet_file},
          std::pair{"dataDir", &conf.data_dir}}) {
      auto value = stringMember(obj, key);
      if (!value) {
        return value.error();
      }
      *field = std::move(*value);
    }
    if (conf.subnet_file.empty()) {
      conf.subnet_file = std::string(kDefaultSubnetFile);
    }
    if (conf.data_dir.empty()) {
      conf.data_dir = std::string(kDefaultDataDir);
    }
    for (auto [key, field] : {std::pair{"delegate", &conf.delegate}, std::pair{"ipam", &conf.ipam},
                              std::pair{"runtimeConfig", &conf.runtime_config}}) {
      auto value = objectMember(obj, key);
      if (!value) {
        return value.error();
      }
      *field = std::move(*value);
    }
    if (const Json* prev = findMember(obj, "prevResult"); prev != nullptr && !prev->is_null()) {
      conf.prev_result = *prev;
    }
    return conf;
  } catch (const std::exception& e) {
    return cniError(CniCode::Internal, fmt::format("reading the network config: {}", e.what()));
  }
}

std::string errorVersionFor(std::string_view text) noexcept {
  try {
    auto parsed = parseJson(text, "network config");
    if (parsed && parsed->is_object()) {
      if (const Json* v = findMember(*parsed, "cniVersion"); v != nullptr && v->is_string()) {
        const auto version = v->get<std::string>();
        if (checkVersion(version) && !version.empty()) {
          return version;
        }
      }
    }
  } catch (...) {
    // Fall through to the preferred version: this only decorates an error.
  }
  return std::string(kPreferredVersion);
}

CniResult<void> checkVersion(std::string_view version) noexcept {
  const std::string_view effective = version.empty() ? kImplicitVersion : version;
  if (std::find(kSupportedVersions.begin(), kSupportedVersions.end(), effective) !=
      kSupportedVersions.end()) {
    return {};
  }
  return cniError(
      CniCode::IncompatibleVersion, "incompatible CNI versions",
      fmt::format("config is {}, plugin supports {}", quoteForMessage(version), supportedList()));
}

CniResult<void> checkVersionAllowsCheck(std::string_view version) noexcept {
  if (auto ok = checkVersion(version); !ok) {
    return ok;
  }
  if (version != "0.4.0" && version != "1.0.0") {
    return cniError(CniCode::IncompatibleVersion,
                    fmt::format("config version {} does not allow CHECK",
                                quoteForMessage(version.empty() ? kImplicitVersion : version)),
                    "CHECK exists from CNI 0.4.0 on; set \"cniVersion\" to \"0.4.0\" or later");
  }
  return {};
}

CniResult<std::string> delegateType(const Json& delegate_config) noexcept {
  try {
    if (!delegate_config.is_object()) {
      return configError("delegate config must be a JSON object");
    }
    auto it = delegate_config.find("type");
    if (it == delegate_config.end()) {
      return configError("delegate config has no \"type\"");
    }
    if (!it->is_string()) {
      return configError(fmt::format("\"delegate.type\" must be a string, not {}", describe(*it)));
    }
    auto type = it->get<std::string>();
    if (!isPlainFileName(type)) {
      return configError(
          fmt::format("\"delegate.type\" {} is not a plugin name", quoteForMessage(type)),
          "the type names a plugin binary on CNI_PATH, e.g. \"bridge\"");
    }
    return type;
  } catch (const std::exception& e) {
    return cniError(CniCode::Internal, fmt::format("reading delegate.type: {}", e.what()));
  }
}

CniResult<Json> buildDelegateConfig(const NetConf& conf, const FlannelEnv& env) noexcept {
  try {
    if (conf.name.empty()) {
      return configError("network config has no \"name\"",
                         "the name becomes the delegate's name (host-local keeps its leases "
                         "under it)");
    }
    const Json delegate = conf.delegate.value_or(Json::object());
    if (auto it = delegate.find("type"); it != delegate.end() && !it->is_string()) {
      return configError(fmt::format("\"delegate.type\" must be a string, not {}", describe(*it)));
    }
    if (delegate.contains("name")) {
      return configError("\"delegate\" must not have a \"name\" key",
                         fmt::format("the delegate is always named after the network ({})",
                                     quoteForMessage(conf.name)));
    }
    if (delegate.contains("ipam")) {
      return configError("\"delegate\" must not have an \"ipam\" key",
                         "put IPAM settings in the top-level \"ipam\" object; the plugin fills "
                         "in its ranges and routes from subnet.env");
    }

    Json out = Json::object();
    if (!conf.cni_version.empty()) {
      out["cniVersion"] = conf.cni_version;
    } else if (auto it = delegate.find("cniVersion"); it != delegate.end()) {
      out["cniVersion"] = *it;
    }
    out["name"] = conf.name;
    out["type"] = delegate.value("type", std::string(kDefaultDelegateType));
    auto type = delegateType(out);
    if (!type) {
      return type.error();
    }
    for (auto it = delegate.begin(); it != delegate.end(); ++it) {
      if (it.key() == "type" || it.key() == "cniVersion") {
        continue;
      }
      if (it.key() == "runtimeConfig" && conf.runtime_config) {
        out["runtimeConfig"] = *conf.runtime_config;
        continue;
      }
      out[it.key()] = it.value();
    }
    if (!out.contains("ipMasq")) {
      out["ipMasq"] = !env.ipmasq;
    }
    if (!out.contains("mtu")) {
      out["mtu"] = env.mtu;
    }
    if (*type == kDefaultDelegateType && !out.contains("isGateway")) {
      out["isGateway"] = true;
    }
    auto ipam = buildIpam(conf, env);
    if (!ipam) {
      return ipam.error();
    }
    out["ipam"] = std::move(*ipam);
    if (conf.runtime_config && !out.contains("runtimeConfig")) {
      out["runtimeConfig"] = *conf.runtime_config;
    }
    return CniResult<Json>(boost::system::in_place_value, std::move(out));
  } catch (const std::exception& e) {
    return cniError(CniCode::Internal, fmt::format("building the delegate config: {}", e.what()));
  }
}

Json prevResultForCheck(Json prev) noexcept {
  try {
    if (!prev.is_object()) {
      return prev;
    }
    auto ips = prev.find("ips");
    auto routes = prev.find("routes");
    if (ips == prev.end() || !ips->is_array() || routes == prev.end() || !routes->is_array()) {
      return prev;
    }
    std::optional<IpAddr> gw4;
    std::optional<IpAddr> gw6;
    for (const auto& ip : *ips) {
      if (!ip.is_object()) {
        continue;
      }
      auto gw = ip.find("gateway");
      if (gw == ip.end() || !gw->is_string()) {
        continue;
      }
      if (auto addr = IpAddr::parse(gw->get<std::string>())) {
        auto& slot = addr->is4() ? gw4 : gw6;
        if (!slot) {
          slot = *addr;
        }
      }
    }
    for (auto& route : *routes) {
      if (!route.is_object()) {
        continue;
      }
      if (auto gw = route.find("gw"); gw != route.end() && !gw->is_null()) {
        continue;
      }
      auto dst = route.find("dst");
      if (dst == route.end() || !dst->is_string()) {
        continue;
      }
      auto net = IpNet::parseMasked(dst->get<std::string>());
      if (!net) {
        continue;
      }
      const auto& gw = net->is4() ? gw4 : gw6;
      if (gw) {
        route["gw"] = gw->toString();
      }
    }
    return prev;
  } catch (...) {
    return prev;
  }
}

std::string renderVersionInfo() {
  Json out = Json::object();
  out["cniVersion"] = std::string(kPreferredVersion);
  Json versions = Json::array();
  for (auto v : kSupportedVersions) {
    versions.push_back(std::string(v));
  }
  out["supportedVersions"] = std::move(versions);
  return out.dump() + "\n";
}

}  // namespace flannel::cni
