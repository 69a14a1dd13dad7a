#include "core/network_config.h"

#include <fmt/format.h>

#include "core/json_util.h"
#include "core/strings.h"

namespace flannel {

namespace {

namespace key = config_key;

Error fieldError(std::string_view field, std::string_view text, std::string_view problem) {
  return invalidInput(fmt::format("field {}: {} {}", field, quoteForMessage(text), problem));
}

// A CIDR string field; host bits are masked as flannel does (10.5.3.4/16 -> 10.5.0.0/16).
Result<std::optional<IpNet>> getNet(const Json& obj, std::string_view name, Family family) {
  auto s = getString(obj, name, name);
  if (!s) {
    return s.error();
  }
  if (!*s) {
    return std::optional<IpNet>{};
  }
  auto net = IpNet::parseMasked(**s);
  if (!net) {
    return invalidInput(fmt::format("field {}: {}", name, net.error().message));
  }
  if (net->family() != family) {
    return fieldError(name, **s,
                      family == Family::V4 ? "is an IPv6 prefix; put IPv6 networks in IPv6Network"
                                           : "is an IPv4 prefix; put IPv4 networks in Network");
  }
  return std::optional<IpNet>{*net};
}

Result<std::vector<IpNet>> getNetList(const Json& obj, std::string_view name, Family family) {
  std::vector<IpNet> out;
  const Json* v = findMember(obj, name);
  if (v == nullptr || v->is_null()) {
    return out;
  }
  if (!v->is_array()) {
    return invalidInput(
        fmt::format("field {}: expected an array of CIDR strings, got {}", name, jsonTypeName(*v)));
  }
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& item = (*v)[i];
    std::string field = fmt::format("{}[{}]", name, i);
    if (!item.is_string()) {
      return invalidInput(
          fmt::format("field {}: expected a CIDR string, got {}", field, jsonTypeName(item)));
    }
    auto text = item.get<std::string>();
    auto net = IpNet::parseMasked(text);
    if (!net) {
      return invalidInput(fmt::format("field {}: {}", field, net.error().message));
    }
    if (net->family() != family) {
      return fieldError(field, text,
                        family == Family::V4 ? "is not an IPv4 prefix" : "is not an IPv6 prefix");
    }
    out.push_back(*net);
  }
  return out;
}

template <class IpT>
Result<std::optional<IpT>> getAddr(const Json& obj, std::string_view name) {
  auto s = getString(obj, name, name);
  if (!s) {
    return s.error();
  }
  if (!*s) {
    return std::optional<IpT>{};
  }
  auto ip = IpT::parse(**s);
  if (!ip) {
    return invalidInput(fmt::format("field {}: {}", name, ip.error().message));
  }
  if (ip->isUnspecified()) {
    return std::optional<IpT>{};  // "0.0.0.0" / "::" mean unset (SPEC.md §2.1)
  }
  return std::optional<IpT>{*ip};
}

// The shape shared by IPv4 and IPv6 in SPEC.md §2.2.
struct FamilyRules {
  Family family;
  std::string_view network_field;
  std::string_view len_field;
  std::string_view min_field;
  std::string_view max_field;
  uint8_t max_subnet_len;     // 30 / 126
  uint8_t max_derive_prefix;  // 28 / 124: a smaller network cannot hold four subnets
  uint8_t default_len_below;  // 22 / 62: networks at least this big get default subnets
  uint8_t default_len;        // 24 / 64
};

constexpr FamilyRules kV4Rules{
    Family::V4, key::kNetwork, key::kSubnetLen, key::kSubnetMin, key::kSubnetMax, 30, 28, 22, 24};
constexpr FamilyRules kV6Rules{Family::V6,
                               key::kIPv6Network,
                               key::kIPv6SubnetLen,
                               key::kIPv6SubnetMin,
                               key::kIPv6SubnetMax,
                               126,
                               124,
                               62,
                               64};

struct FamilyRange {
  uint8_t subnet_len;
  IpAddr min;
  IpAddr max;
};

Result<FamilyRange> validateFamily(const FamilyRules& r, const std::optional<IpNet>& network,
                                   uint8_t subnet_len, std::optional<IpAddr> min,
                                   std::optional<IpAddr> max) {
  if (!network || network->prefix() == 0) {
    return invalidInput(
        fmt::format("field {}: missing{} (it names the cluster network the node subnets come from)",
                    r.network_field, network ? " (a /0 network is not allowed)" : ""));
  }
  const IpNet& net = *network;
  if (subnet_len != 0) {
    if (subnet_len > r.max_subnet_len) {
      return invalidInput(fmt::format("field {}: {} is larger than /{}", r.len_field, subnet_len,
                                      r.max_subnet_len));
    }
    if (subnet_len < net.prefix() + 2) {
      return invalidInput(
          fmt::format("field {}: /{} leaves room for fewer than 4 subnets in {} (use at least /{})",
                      r.len_field, subnet_len, net.toString(), net.prefix() + 2));
    }
  } else if (net.prefix() > r.max_derive_prefix) {
    return invalidInput(fmt::format(
        "field {}: {} is too small to derive a subnet length (the minimum is /{}); set {}",
        r.network_field, net.toString(), r.max_derive_prefix, r.len_field));
  } else if (net.prefix() <= r.default_len_below) {
    subnet_len = r.default_len;
  } else {
    subnet_len = static_cast<uint8_t>(net.prefix() + 2);
  }

  auto first = net.nthSubnet(subnet_len, 1);
  auto last = net.nthSubnet(subnet_len, net.subnetCount(subnet_len) - 1);
  IpAddr lo = min ? *min : first->addr();
  IpAddr hi = max ? *max : last->addr();
  for (auto [field, ip] : {std::pair{r.min_field, lo}, std::pair{r.max_field, hi}}) {
    if (!net.contains(ip)) {
      return invalidInput(fmt::format("field {}: {} is not inside {} {}", field, ip.toString(),
                                      r.network_field, net.toString()));
    }
    if (IpNet::masked(ip, subnet_len).addr() != ip) {
      return invalidInput(fmt::format("field {}: {} is not aligned to the subnet length /{}", field,
                                      ip.toString(), subnet_len));
    }
  }
  if (hi < lo) {
    return invalidInput(
        fmt::format("field {}: {} is greater than {} {}; no subnet could ever be "
                    "allocated",
                    r.min_field, lo.toString(), r.max_field, hi.toString()));
  }
  return FamilyRange{subnet_len, lo, hi};
}

}  // namespace

std::optional<IpNet> NetworkConfig::ruleNetwork() const {
  return networks.empty() ? network : std::optional<IpNet>{networks.front()};
}

std::optional<IpNet> NetworkConfig::ruleIPv6Network() const {
  return ipv6_networks.empty() ? ipv6_network : std::optional<IpNet>{ipv6_networks.front()};
}

Result<NetworkConfig> parseNetworkConfig(std::string_view text) noexcept {
  try {
    auto doc = parseJsonObject(text, "network config");
    if (!doc) {
      return doc.error();
    }
    const Json& obj = *doc;
    NetworkConfig c;
    auto fail = [&](const Error& e) { return e.context("network config"); };

    if (auto v = getBool(obj, key::kEnableIPv4, key::kEnableIPv4); !v) {
      return fail(v.error());
    } else if (*v) {
      c.enable_ipv4 = **v;
    }
    if (auto v = getBool(obj, key::kEnableIPv6, key::kEnableIPv6); !v) {
      return fail(v.error());
    } else if (*v) {
      c.enable_ipv6 = **v;
    }
    if (auto v = getBool(obj, key::kEnableNFTables, key::kEnableNFTables); !v) {
      return fail(v.error());
    } else if (*v) {
      c.enable_nftables = **v;
    }
    if (auto v = getNet(obj, key::kNetwork, Family::V4); !v) {
      return fail(v.error());
    } else {
      c.network = *v;
    }
    if (auto v = getNet(obj, key::kIPv6Network, Family::V6); !v) {
      return fail(v.error());
    } else {
      c.ipv6_network = *v;
    }
    if (auto v = getUint(obj, key::kSubnetLen, key::kSubnetLen, 255); !v) {
      return fail(v.error());
    } else if (*v) {
      c.subnet_len = static_cast<uint8_t>(**v);
    }
    if (auto v = getUint(obj, key::kIPv6SubnetLen, key::kIPv6SubnetLen, 255); !v) {
      return fail(v.error());
    } else if (*v) {
      c.ipv6_subnet_len = static_cast<uint8_t>(**v);
    }
    if (auto v = getAddr<Ip4>(obj, key::kSubnetMin); !v) {
      return fail(v.error());
    } else {
      c.subnet_min = *v;
    }
    if (auto v = getAddr<Ip4>(obj, key::kSubnetMax); !v) {
      return fail(v.error());
    } else {
      c.subnet_max = *v;
    }
    if (auto v = getAddr<Ip6>(obj, key::kIPv6SubnetMin); !v) {
      return fail(v.error());
    } else {
      c.ipv6_subnet_min = *v;
    }
    if (auto v = getAddr<Ip6>(obj, key::kIPv6SubnetMax); !v) {
      return fail(v.error());
    } else {
      c.ipv6_subnet_max = *v;
    }
    if (auto v = getNetList(obj, key::kNetworks, Family::V4); !v) {
      return fail(v.error());
    } else {
      c.networks = std::move(*v);
    }
    if (auto v = getNetList(obj, key::kIPv6Networks, Family::V6); !v) {
      return fail(v.error());
    } else {
      c.ipv6_networks = std::move(*v);
    }

    const Json* backend = findMember(obj, key::kBackend);
    if (backend == nullptr) {
      c.backend_type = std::string(kDefaultBackendType);
      c.backend_defaulted = true;
    } else if (backend->is_null()) {
      c.backend_type.clear();  // flannel: "unknown backend type" (SPEC.md §2.1)
      c.backend_json = "null";
    } else if (!backend->is_object()) {
      return fail(invalidInput(fmt::format("field {}: expected an object with a \"Type\", got {}",
                                           key::kBackend, jsonTypeName(*backend))));
    } else {
      auto type = getString(*backend, key::kType, "Backend.Type");
      if (!type) {
        return fail(type.error());
      }
      c.backend_type = type->has_value() ? asciiLower(**type) : std::string();
      c.backend_json = backend->dump(-1, ' ', false, Json::error_handler_t::replace);
    }
    return c;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("network config: {}", e.what()));
  }
}

Result<NetworkConfig> validateNetworkConfig(NetworkConfig c) noexcept {
  try {
    if (!c.enable_ipv4 && !c.enable_ipv6) {
      return invalidInput(
          "network config: EnableIPv4 and EnableIPv6 are both false; enable at least one family");
    }
    if (c.enable_ipv4) {
      std::optional<IpAddr> min;
      std::optional<IpAddr> max;
      if (c.subnet_min) {
        min = *c.subnet_min;
      }
      if (c.subnet_max) {
        max = *c.subnet_max;
      }
      auto r = validateFamily(kV4Rules, c.network, c.subnet_len, min, max);
      if (!r) {
        return r.error().context("network config");
      }
      c.subnet_len = r->subnet_len;
      c.subnet_min = r->min.v4();
      c.subnet_max = r->max.v4();
    }
    if (c.enable_ipv6) {
      std::optional<IpAddr> min;
      std::optional<IpAddr> max;
      if (c.ipv6_subnet_min) {
        min = *c.ipv6_subnet_min;
      }
      if (c.ipv6_subnet_max) {
        max = *c.ipv6_subnet_max;
      }
      auto r = validateFamily(kV6Rules, c.ipv6_network, c.ipv6_subnet_len, min, max);
      if (!r) {
        return r.error().context("network config");
      }
      c.ipv6_subnet_len = r->subnet_len;
      c.ipv6_subnet_min = r->min.v6();
      c.ipv6_subnet_max = r->max.v6();
    }
    return c;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("network config: {}", e.what()));
  }
}

Result<NetworkConfig> loadNetworkConfig(std::string_view text) noexcept {
  auto c = parseNetworkConfig(text);
  if (!c) {
    return c.error();
  }
  return validateNetworkConfig(std::move(*c));
}

}  // namespace flannel
