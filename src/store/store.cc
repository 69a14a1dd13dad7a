#include "store/store.h"

namespace flannel::store {

std::vector<LeaseEvent> diffLeaseSets(const std::map<SubnetKey, Lease>& before,
                                      const std::map<SubnetKey, Lease>& after) {
  std::vector<LeaseEvent> events;
  for (const auto& [key, lease] : before) {
    if (after.count(key) == 0) {
      events.push_back({LeaseEventType::Removed, lease});
    }
  }
  for (const auto& [key, lease] : after) {
    auto it = before.find(key);
    if (it == before.end() || !(it->second == lease)) {
      events.push_back({LeaseEventType::Added, lease});
    }
  }
  return events;
}

}  // namespace flannel::store
