// DOC: PeerTracker, the node -> lease bookkeeping behind KubeStore's leases()/nextEvents()
// (pure; SPEC.md §4.5, corrected as §10.18 asks).
//
// It remembers the last good lease of every flannel node (keyed by node name, excluding our own
// node) and turns node changes into lease events:
//
//   node seen, lease new                      -> Added(lease)
//   node seen, lease differs, same subnet     -> Added(new)            (any annotation or CIDR)
//   node seen, subnet differs                 -> Removed(old), Added(new)
//   node seen, lease identical                -> nothing               (status heartbeats)
//   node deleted / no longer a flannel node   -> Removed(last known lease)
//   node malformed                            -> nothing; the last good lease stays, and the
//                                                error is reported once per distinct message
//
// replaceAll() applies a fresh listing by the same rules, so a relist after a lost watch yields
// exactly the difference: no peer is lost or reported twice. Removals come before additions.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "store/kube/node.h"
#include "store/store.h"

namespace flannel::store::kube {

class PeerTracker {
 public:
  PeerTracker(AnnotationKeys keys, bool enable_ipv4, bool enable_ipv6, std::string own_node);

  struct Update {
    std::vector<LeaseEvent> events{};
    // Set when a node was skipped as malformed and this message was not reported before.
    std::vector<Error> skipped{};
  };

  Update upsert(const Node& node);
  Update remove(const std::string& name);
  Update replaceAll(const std::vector<Node>& nodes);

  std::vector<Lease> leases() const;
  size_t size() const noexcept { return known_.size(); }
  void setFamilies(bool enable_ipv4, bool enable_ipv6);

 private:
  void apply(const std::string& name, std::optional<Lease> lease, Update& out);
  // nullopt = not a peer (not a flannel node, or our own node); an error = malformed.
  Result<std::optional<Lease>> convert(const Node& node) const;

  AnnotationKeys keys_;
  bool ipv4_;
  bool ipv6_;
  std::string own_node_;
  std::map<std::string, Lease> known_;
  std::map<std::string, std::string> malformed_;  // node -> last reported error message
};

}  // namespace flannel::store::kube
