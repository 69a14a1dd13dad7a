#include "store/kube/node.h"

#include <fmt/format.h>

#include "core/strings.h"

namespace flannel::store::kube {

namespace {

const Json* member(const Json& obj, std::string_view key) {
  if (!obj.is_object()) {
    return nullptr;
  }
  auto it = obj.find(std::string(key));
  return it == obj.end() ? nullptr : &*it;
}

std::string stringMember(const Json& obj, std::string_view key) {
  const Json* v = member(obj, key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : std::string();
}

Result<WatchEventType> eventType(std::string_view t) {
  if (t == "ADDED") {
    return WatchEventType::Added;
  }
  if (t == "MODIFIED") {
    return WatchEventType::Modified;
  }
  if (t == "DELETED") {
    return WatchEventType::Deleted;
  }
  if (t == "BOOKMARK") {
    return WatchEventType::Bookmark;
  }
  if (t == "ERROR") {
    return WatchEventType::Error;
  }
  return invalidInput(fmt::format("unknown watch event type {}", quoteForMessage(t)));
}

}  // namespace

Result<Node> nodeFromJson(const Json& object) noexcept {
  try {
    if (!object.is_object()) {
      return invalidInput(fmt::format("node object is {}", jsonTypeName(object)));
    }
    Node node;
    const Json* meta = member(object, "metadata");
    if (meta == nullptr || !meta->is_object()) {
      return invalidInput("node object has no metadata");
    }
    node.name = stringMember(*meta, "name");
    if (node.name.empty()) {
      return invalidInput("node object has no metadata.name");
    }
    node.resource_version = stringMember(*meta, "resourceVersion");
    auto ctx = [&](std::string_view what) {
      return invalidInput(fmt::format("node {}: {}", quoteForMessage(node.name), what));
    };
    if (const Json* ann = member(*meta, "annotations"); ann != nullptr && !ann->is_null()) {
      if (!ann->is_object()) {
        return ctx(fmt::format("metadata.annotations is {}", jsonTypeName(*ann)));
      }
      for (const auto& [key, value] : ann->items()) {
        if (!value.is_string()) {
          return ctx(fmt::format("annotation {} is {}, not a string", quoteForMessage(key),
                                 jsonTypeName(value)));
        }
        node.annotations[key] = value.get<std::string>();
      }
    }
    if (const Json* spec = member(object, "spec"); spec != nullptr && spec->is_object()) {
      if (const Json* cidr = member(*spec, "podCIDR"); cidr != nullptr && !cidr->is_null()) {
        if (!cidr->is_string()) {
          return ctx(fmt::format("spec.podCIDR is {}", jsonTypeName(*cidr)));
        }
        node.pod_cidr = cidr->get<std::string>();
      }
      if (const Json* cidrs = member(*spec, "podCIDRs"); cidrs != nullptr && !cidrs->is_null()) {
        if (!cidrs->is_array()) {
          return ctx(fmt::format("spec.podCIDRs is {}", jsonTypeName(*cidrs)));
        }
        for (const auto& c : *cidrs) {
          if (!c.is_string()) {
            return ctx(fmt::format("spec.podCIDRs has {}", jsonTypeName(c)));
          }
          node.pod_cidrs.push_back(c.get<std::string>());
        }
      }
    }
    return node;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("node object: {}", e.what()));
  }
}

Result<Node> parseNode(std::string_view json) noexcept {
  auto j = parseJson(json, "node");
  if (!j) {
    return j.error();
  }
  return nodeFromJson(*j);
}

Result<NodeList> parseNodeList(std::string_view json) noexcept {
  try {
    auto j = parseJson(json, "node list");
    if (!j) {
      return j.error();
    }
    if (!j->is_object()) {
      return invalidInput(fmt::format("node list is {}", jsonTypeName(*j)));
    }
    NodeList list;
    if (const Json* meta = member(*j, "metadata"); meta != nullptr) {
      list.resource_version = stringMember(*meta, "resourceVersion");
      list.continue_token = stringMember(*meta, "continue");
    }
    const Json* items = member(*j, "items");
    if (items != nullptr && !items->is_null()) {
      if (!items->is_array()) {
        return invalidInput(fmt::format("node list: items is {}", jsonTypeName(*items)));
      }
      list.items.reserve(items->size());
      for (const auto& item : *items) {
        auto node = nodeFromJson(item);
        if (!node) {
          return node.error().context("node list");
        }
        list.items.push_back(std::move(*node));
      }
    }
    return list;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("node list: {}", e.what()));
  }
}

std::optional<ApiStatus> statusFromJson(const Json& object) noexcept {
  try {
    if (!object.is_object() || stringMember(object, "kind") != "Status") {
      return std::nullopt;
    }
    ApiStatus s;
    s.message = stringMember(object, "message");
    s.reason = stringMember(object, "reason");
    if (const Json* code = member(object, "code"); code != nullptr && code->is_number_integer()) {
      s.code = code->get<int>();
    }
    return s;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<ApiStatus> parseStatus(std::string_view json) noexcept {
  auto j = parseJson(json, "status");
  if (!j) {
    return std::nullopt;
  }
  return statusFromJson(*j);
}

Result<WatchEvent> parseWatchEvent(std::string_view line) noexcept {
  try {
    auto j = parseJson(line, "watch event");
    if (!j) {
      return j.error();
    }
    if (!j->is_object()) {
      return invalidInput(fmt::format("watch event is {}", jsonTypeName(*j)));
    }
    auto type = eventType(stringMember(*j, "type"));
    if (!type) {
      return type.error();
    }
    const Json* object = member(*j, "object");
    if (object == nullptr || !object->is_object()) {
      return invalidInput("watch event has no object");
    }
    WatchEvent ev;
    ev.type = *type;
    switch (ev.type) {
      case WatchEventType::Error: {
        ev.status = statusFromJson(*object);
        if (!ev.status) {
          ev.status = ApiStatus{.message = object->dump(), .reason = "", .code = 0};
        }
        return ev;
      }
      case WatchEventType::Bookmark: {
        if (const Json* meta = member(*object, "metadata"); meta != nullptr) {
          ev.resource_version = stringMember(*meta, "resourceVersion");
        }
        if (ev.resource_version.empty()) {
          return invalidInput("BOOKMARK event without metadata.resourceVersion");
        }
        return ev;
      }
      default:
        break;
    }
    auto node = nodeFromJson(*object);
    if (!node) {
      return node.error();
    }
    ev.resource_version = node->resource_version;
    ev.node = std::move(*node);
    return ev;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("watch event: {}", e.what()));
  }
}

Result<PodCidrs> nodePodCidrs(const Node& node) noexcept {
  try {
    std::vector<std::string> texts = node.pod_cidrs;
    if (texts.empty() && !node.pod_cidr.empty()) {
      texts.push_back(node.pod_cidr);
    }
    auto ctx = [&](std::string_view what) {
      return invalidInput(fmt::format("node {}: {}", quoteForMessage(node.name), what));
    };
    if (texts.size() > 2) {
      return ctx(fmt::format("spec.podCIDRs has {} entries (at most one IPv4 and one IPv6)",
                             texts.size()));
    }
    PodCidrs out;
    for (const auto& t : texts) {
      auto n = IpNet::parse(t);
      if (!n) {
        return ctx(
            fmt::format("pod CIDR {} is not a CIDR: {}", quoteForMessage(t), n.error().message));
      }
      auto& slot = n->is4() ? out.v4 : out.v6;
      if (slot) {
        return ctx(fmt::format("spec.podCIDRs has two {} ranges", familyName(n->family())));
      }
      slot = *n;
    }
    return out;
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, e.what());
  }
}

Result<std::optional<Lease>> nodeToLease(const Node& node, const AnnotationKeys& keys,
                                         bool enable_ipv4, bool enable_ipv6) noexcept {
  try {
    auto get = [&](const std::string& key) -> std::optional<std::string> {
      auto it = node.annotations.find(key);
      if (it == node.annotations.end()) {
        return std::nullopt;
      }
      return it->second;
    };
    if (get(keys.kube_subnet_manager) != std::optional<std::string>("true")) {
      return std::optional<Lease>{};
    }
    auto bad = [&](std::string_view what) {
      return invalidInput(fmt::format("node {}: {}", quoteForMessage(node.name), what));
    };
    auto cidrs = nodePodCidrs(node);
    if (!cidrs) {
      return cidrs.error();
    }
    auto data = [&](const std::string& key) -> Result<std::string> {
      auto raw = get(key).value_or("");
      if (raw.empty() || raw == "null") {
        return std::string();
      }
      auto compact = compactJson(raw, key);
      if (!compact) {
        return bad(fmt::format("annotation {} is not JSON: {}", key, compact.error().message));
      }
      return compact;
    };
    Lease lease;
    lease.attrs.backend_type = get(keys.backend_type).value_or("");
    if (enable_ipv4) {
      if (!cidrs->v4) {
        return bad("it has no IPv4 pod CIDR (spec.podCIDR/podCIDRs) but IPv4 is enabled");
      }
      auto text = get(keys.public_ip).value_or("");
      auto ip = Ip4::parse(text);
      if (!ip) {
        return bad(fmt::format("annotation {} = {} is not an IPv4 address", keys.public_ip,
                               quoteForMessage(text)));
      }
      auto d = data(keys.backend_data);
      if (!d) {
        return d.error();
      }
      lease.subnet.ipv4 = cidrs->v4;
      lease.attrs.public_ip = *ip;
      lease.attrs.backend_data = std::move(*d);
    }
    if (enable_ipv6) {
      if (!cidrs->v6) {
        return bad("it has no IPv6 pod CIDR (spec.podCIDRs) but IPv6 is enabled");
      }
      auto text = get(keys.public_ipv6).value_or("");
      auto ip = Ip6::parse(text);
      if (!ip) {
        return bad(fmt::format("annotation {} = {} is not an IPv6 address", keys.public_ipv6,
                               quoteForMessage(text)));
      }
      auto d = data(keys.backend_v6_data);
      if (!d) {
        return d.error();
      }
      lease.subnet.ipv6 = cidrs->v6;
      lease.attrs.public_ipv6 = *ip;
      lease.attrs.backend_v6_data = std::move(*d);
    }
    if (!lease.subnet.ipv4 && !lease.subnet.ipv6) {
      return bad("no IP family is enabled");
    }
    return std::optional<Lease>{std::move(lease)};
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, e.what());
  }
}

Result<NetworkConfig> validateKubeNetworkConfig(NetworkConfig config) noexcept {
  try {
    if (!config.enable_ipv4 && !config.enable_ipv6) {
      return invalidInput("network config: EnableIPv4 and EnableIPv6 are both false");
    }
    auto wrong = [](std::string_view field, const IpNet& n, Family want) -> std::optional<Error> {
      if (n.family() == want) {
        return std::nullopt;
      }
      return invalidInput(fmt::format("network config: {} {} is not an {} prefix", field,
                                      n.toString(), familyName(want)));
    };
    if (config.network) {
      if (auto e = wrong(config_key::kNetwork, *config.network, Family::V4)) {
        return *e;
      }
    }
    for (const auto& n : config.networks) {
      if (auto e = wrong(config_key::kNetworks, n, Family::V4)) {
        return *e;
      }
    }
    if (config.ipv6_network) {
      if (auto e = wrong(config_key::kIPv6Network, *config.ipv6_network, Family::V6)) {
        return *e;
      }
    }
    for (const auto& n : config.ipv6_networks) {
      if (auto e = wrong(config_key::kIPv6Networks, n, Family::V6)) {
        return *e;
      }
    }
    if (config.enable_ipv4 && !config.ruleNetwork()) {
      return invalidInput(
          "network config: EnableIPv4 is true (the default) but Network is missing; the pod "
          "CIDRs must lie inside it");
    }
    if (config.enable_ipv6 && !config.ruleIPv6Network()) {
      return invalidInput(
          "network config: EnableIPv6 is true but IPv6Network is missing; the IPv6 pod CIDRs "
          "must lie inside it");
    }
    return config;
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, e.what());
  }
}

Result<SubnetKey> leaseSubnetFor(const std::string& node_name, const PodCidrs& cidrs,
                                 const NetworkConfig& config) noexcept {
  try {
    auto bad = [&](std::string_view what) {
      return invalidInput(fmt::format("node {}: {}", quoteForMessage(node_name), what));
    };
    SubnetKey key;
    if (config.enable_ipv4) {
      auto network = config.ruleNetwork();
      if (!cidrs.v4) {
        return bad("EnableIPv4 is true but the node has no IPv4 pod CIDR");
      }
      if (!network || !network->contains(*cidrs.v4)) {
        return bad(fmt::format("pod CIDR {} is not inside the network {}", cidrs.v4->toString(),
                               network ? network->toString() : std::string("(none)")));
      }
      key.ipv4 = cidrs.v4;
    }
    if (config.enable_ipv6) {
      auto network = config.ruleIPv6Network();
      if (!cidrs.v6) {
        return bad("EnableIPv6 is true but the node has no IPv6 pod CIDR");
      }
      if (!network || !network->contains(*cidrs.v6)) {
        return bad(fmt::format("IPv6 pod CIDR {} is not inside IPv6Network {}",
                               cidrs.v6->toString(),
                               network ? network->toString() : std::string("(none)")));
      }
      key.ipv6 = cidrs.v6;
    }
    return key;
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, e.what());
  }
}

}  // namespace flannel::store::kube
