#include "store/kube/peer_tracker.h"

#include <set>

namespace flannel::store::kube {

PeerTracker::PeerTracker(AnnotationKeys keys, bool enable_ipv4, bool enable_ipv6,
                         std::string own_node)
    : keys_(std::move(keys)),
      ipv4_(enable_ipv4),
      ipv6_(enable_ipv6),
      own_node_(std::move(own_node)) {}

void PeerTracker::setFamilies(bool enable_ipv4, bool enable_ipv6) {
  ipv4_ = enable_ipv4;
  ipv6_ = enable_ipv6;
}

Result<std::optional<Lease>> PeerTracker::convert(const Node& node) const {
  if (node.name == own_node_) {
    return std::optional<Lease>{};  // our own lease is not a peer (SPEC.md §4.5)
  }
  return nodeToLease(node, keys_, ipv4_, ipv6_);
}

void PeerTracker::apply(const std::string& name, std::optional<Lease> lease, Update& out) {
  auto it = known_.find(name);
  if (!lease) {
    if (it != known_.end()) {
      out.events.push_back({LeaseEventType::Removed, it->second});
      known_.erase(it);
    }
    return;
  }
  if (it == known_.end()) {
    known_.emplace(name, *lease);
    out.events.push_back({LeaseEventType::Added, std::move(*lease)});
    return;
  }
  if (it->second == *lease) {
    return;
  }
  if (!(it->second.subnet == lease->subnet)) {
    out.events.push_back({LeaseEventType::Removed, it->second});
  }
  it->second = *lease;
  out.events.push_back({LeaseEventType::Added, std::move(*lease)});
}

PeerTracker::Update PeerTracker::upsert(const Node& node) {
  Update out;
  auto lease = convert(node);
  if (!lease) {
    auto& last = malformed_[node.name];
    if (last != lease.error().message) {
      last = lease.error().message;
      out.skipped.push_back(lease.error());
    }
    return out;  // keep the last good lease (if any)
  }
  malformed_.erase(node.name);
  apply(node.name, std::move(*lease), out);
  return out;
}

PeerTracker::Update PeerTracker::remove(const std::string& name) {
  Update out;
  malformed_.erase(name);
  apply(name, std::nullopt, out);
  return out;
}

PeerTracker::Update PeerTracker::replaceAll(const std::vector<Node>& nodes) {
  Update removals;
  Update additions;
  std::set<std::string> present;
  std::map<std::string, std::optional<Lease>> wanted;
  for (const auto& node : nodes) {
    present.insert(node.name);
    auto lease = convert(node);
    if (!lease) {
      auto& last = malformed_[node.name];
      if (last != lease.error().message) {
        last = lease.error().message;
        additions.skipped.push_back(lease.error());
      }
      continue;  // keep the last good lease, as upsert() does
    }
    malformed_.erase(node.name);
    wanted[node.name] = std::move(*lease);
  }
  for (auto it = malformed_.begin(); it != malformed_.end();) {
    it = present.count(it->first) ? std::next(it) : malformed_.erase(it);
  }
  // Removed first: nodes gone, no longer flannel nodes, or moved to another subnet.
  std::vector<std::string> names;
  for (const auto& [name, lease] : known_) {
    names.push_back(name);
  }
  for (const auto& name : names) {
    if (!present.count(name)) {
      apply(name, std::nullopt, removals);
      continue;
    }
    auto w = wanted.find(name);
    if (w == wanted.end()) {
      continue;  // present but malformed: unchanged
    }
    if (!w->second) {
      apply(name, std::nullopt, removals);
    } else if (!(known_.at(name).subnet == w->second->subnet)) {
      removals.events.push_back({LeaseEventType::Removed, known_.at(name)});
      known_.erase(name);
    }
  }
  for (auto& [name, lease] : wanted) {
    if (lease) {
      apply(name, std::move(lease), additions);
    }
  }
  Update out;
  out.events = std::move(removals.events);
  out.events.insert(out.events.end(), std::make_move_iterator(additions.events.begin()),
                    std::make_move_iterator(additions.events.end()));
  out.skipped = std::move(additions.skipped);
  return out;
}

std::vector<Lease> PeerTracker::leases() const {
  std::vector<Lease> out;
  out.reserve(known_.size());
  for (const auto& [name, lease] : known_) {
    out.push_back(lease);
  }
  return out;
}

}  // namespace flannel::store::kube
