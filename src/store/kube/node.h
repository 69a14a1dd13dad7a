// DOC: the parts of the Kubernetes API objects flannel reads, and how a Node becomes a lease
// (pure; SPEC.md §4.4, §4.5).
//
// Parsers are total: JSON text in, Result out, never a throw. Only the fields flannel uses are
// kept: a Node's name, resourceVersion, annotations, spec.podCIDR(s); a NodeList's items,
// resourceVersion and continue token; a watch event's type and object; a Status's message,
// reason and code. A Node without annotations is valid (the API omits an empty map; SPEC.md
// §10.19).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/json_util.h"
#include "core/lease.h"
#include "core/network_config.h"
#include "core/result.h"
#include "store/kube/annotations.h"

namespace flannel::store::kube {

struct Node {
  std::string name{};
  std::string resource_version{};
  Annotations annotations{};
  std::string pod_cidr{};                // spec.podCIDR
  std::vector<std::string> pod_cidrs{};  // spec.podCIDRs

  friend bool operator==(const Node&, const Node&) = default;
};

// From a parsed Node object (a list item or a watch event's object).
Result<Node> nodeFromJson(const Json& object) noexcept;
Result<Node> parseNode(std::string_view json) noexcept;

struct NodeList {
  std::vector<Node> items{};
  std::string resource_version{};  // metadata.resourceVersion of the list
  std::string continue_token{};    // metadata.continue; "" = last page
};

// Items that are not valid Node objects (e.g. without a name) make the whole list an error.
Result<NodeList> parseNodeList(std::string_view json) noexcept;

// metav1.Status, the body of every API error and of watch ERROR events.
struct ApiStatus {
  std::string message{};
  std::string reason{};  // "NotFound", "Forbidden", "Expired", ...
  int code = 0;          // HTTP status code
};

// nullopt when the text is not a Status object (e.g. an HTML error page of a proxy).
std::optional<ApiStatus> parseStatus(std::string_view json) noexcept;
std::optional<ApiStatus> statusFromJson(const Json& object) noexcept;

enum class WatchEventType { Added, Modified, Deleted, Bookmark, Error };

struct WatchEvent {
  WatchEventType type = WatchEventType::Added;
  std::optional<Node> node{};         // Added, Modified, Deleted
  std::string resource_version{};     // of the object (Bookmark: the bookmark's version)
  std::optional<ApiStatus> status{};  // Error
};

// One line of a watch stream: {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}.
Result<WatchEvent> parseWatchEvent(std::string_view line) noexcept;

// The node's pod CIDRs per family (SPEC.md §4.4 step 3): spec.podCIDRs when non-empty, else
// spec.podCIDR; at most one per family, at most two in all.
struct PodCidrs {
  std::optional<IpNet> v4{};
  std::optional<IpNet> v6{};
  bool empty() const noexcept { return !v4 && !v6; }
};
Result<PodCidrs> nodePodCidrs(const Node& node) noexcept;

// SPEC.md §4.5 node -> lease, for an enabled family set:
//  - nullopt: not a flannel node (no `<p>kube-subnet-manager: "true"`);
//  - error:   a flannel node whose annotations or pod CIDRs are unusable (message names the
//             node and the field);
//  - a lease: subnet = the enabled families' pod CIDRs, attrs from the annotations.
// Expiration is left empty (no TTL in Kubernetes mode).
Result<std::optional<Lease>> nodeToLease(const Node& node, const AnnotationKeys& keys,
                                         bool enable_ipv4, bool enable_ipv6) noexcept;

// Kubernetes-mode config checks (the §2.2 SubnetLen/Min/Max rules do not apply: the node's
// podCIDR is authoritative). Checked: at least one family is enabled; for each enabled family
// the network used for containment (Networks[0] / IPv6Networks[0] when given, else Network /
// IPv6Network) exists; every network given has the right family (Network IPv4, IPv6Network
// IPv6). Errors name the field.
Result<NetworkConfig> validateKubeNetworkConfig(NetworkConfig config) noexcept;

// Containment of the pod CIDRs in the configured networks for the enabled families (SPEC.md
// §4.4 step 5, checked only for enabled families as newest flannel does).
Result<SubnetKey> leaseSubnetFor(const std::string& node_name, const PodCidrs& cidrs,
                                 const NetworkConfig& config) noexcept;

}  // namespace flannel::store::kube
