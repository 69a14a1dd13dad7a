// DOC: the node annotations flannel publishes in Kubernetes mode, and the PATCH bodies that
// carry them (pure; SPEC.md §4.3, §4.4, §4.6).
//
//   --kube-annotation-prefix --normaliseAnnotationPrefix--> "<p>" --> AnnotationKeys
//   LeaseAttrs + the node's current annotations --desiredAnnotations--> what we want published
//   current vs desired --changedAnnotations--> only what differs --annotationPatchBody--> PATCH
//
// Bodies are encoded the way Go's encoding/json encodes a map[string]string: keys sorted by
// bytes, no spaces, and <, >, & escaped as \u003c, \u003e, \u0026, so they match what Go
// flannel sends byte for byte.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/lease.h"
#include "core/result.h"

namespace flannel::store::kube {

// Default of --kube-annotation-prefix (SPEC.md §1.1).
inline constexpr std::string_view kDefaultAnnotationPrefix = "flannel.alpha.coreos.com";

// Content type of every PATCH flannel sends (SPEC.md §4.4, §4.6).
inline constexpr std::string_view kStrategicMergePatch = "application/strategic-merge-patch+json";

// SPEC.md §4.3: more than one '/' is an error; no '/' appends "/"; a result ending in neither
// '/' nor '-' gets a '-'; the result must match
// ^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+/(?:[a-z0-9_-]+-)?$
// "flannel.alpha.coreos.com" -> "flannel.alpha.coreos.com/"; "example.com/net" ->
// "example.com/net-". Errors quote the flag value and say which rule failed.
Result<std::string> normaliseAnnotationPrefix(std::string_view prefix) noexcept;

// The annotation names under one normalised prefix (wire names: SPEC.md §4.3).
struct AnnotationKeys {
  std::string kube_subnet_manager{};    // "<p>kube-subnet-manager"
  std::string backend_type{};           // "<p>backend-type"
  std::string backend_data{};           // "<p>backend-data"
  std::string public_ip{};              // "<p>public-ip"
  std::string backend_v6_data{};        // "<p>backend-v6-data"
  std::string public_ipv6{};            // "<p>public-ipv6"
  std::string public_ip_overwrite{};    // "<p>public-ip-overwrite" (operator input)
  std::string public_ipv6_overwrite{};  // "<p>public-ipv6-overwrite" (operator input)
  std::string node_public_ip{};         // "<p>node-public-ip" (operator input, newest flannel)
  std::string node_public_ipv6{};       // "<p>node-public-ipv6"

  // Precondition: `normalised` came from normaliseAnnotationPrefix().
  static AnnotationKeys forPrefix(std::string_view normalised);
};

using Annotations = std::map<std::string, std::string>;

// The annotations flannel owns, with the values it wants for `attrs` (SPEC.md §4.3 "Which keys
// are written"). `current` is the node's annotations: a non-empty public-ip(-v6)-overwrite
// there replaces the detected address when it parses as an address of the right family (an
// unusable overwrite is ignored and reported through `warning`, if given).
//
// backend-data is the raw JSON text, literally "null" when the backend has none (host-gw, ipip,
// ipsec), as Go's json.RawMessage renders a nil value.
Annotations desiredAnnotations(const AnnotationKeys& keys, const LeaseAttrs& attrs,
                               const Annotations& current, std::string* warning = nullptr);

// The entries of `desired` whose value is absent from, or different in, `current`.
Annotations changedAnnotations(const Annotations& current, const Annotations& desired);

// The attributes peers will read back from what `desiredAnnotations` publishes (PublicIP is the
// overwrite when one applies). Precondition: `published` came from desiredAnnotations().
LeaseAttrs publishedAttrs(const AnnotationKeys& keys, const LeaseAttrs& attrs,
                          const Annotations& published);

// {"metadata":{"annotations":{...}}}, keys sorted (SPEC.md §4.4 step 4).
std::string annotationPatchBody(const Annotations& changed);

// SPEC.md §4.6, byte for byte in that key order; `now` is rendered as RFC 3339 UTC with
// seconds precision ("2024-05-01T10:20:30Z"), as Go's metav1.Time marshals.
std::string networkUnavailablePatchBody(SystemTime now);

// A JSON string literal (with quotes) encoded as Go's encoding/json does by default.
std::string goJsonString(std::string_view text);

}  // namespace flannel::store::kube
