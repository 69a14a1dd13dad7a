// DOC: the SubnetStore seam: where leases and the network config live (etcd or Kubernetes).
//
// A store hands out this host's lease and tells about every other host's lease. It owns no
// kernel state. All methods are coroutines on the control thread; none may be called
// concurrently with itself on the same store (the daemon runs one lease keeper and one
// watcher, which use disjoint methods).
//
// Lease lifecycle as the daemon sees it:
//
//        acquireLease()               renewLease() before expiry - margin
//   none ─────────────────▶ held ─────────────────────────────────▶ held
//                            │ key deleted / lease expired / taken by another host
//                            ▼
//                          lost  (LeaseBatch shows `removed` for our own subnet; the daemon
//                                 exits as SPEC.md §3.9 says)
//
// Watch contract: leases() returns a snapshot and its revision R; nextEvents(R) returns the
// changes after R (blocking until there is at least one, or until cancelled) and the revision
// to pass next. No change is ever lost: after a disconnect the watch resumes from the last
// revision seen; when the history was compacted, the store re-lists and returns the difference
// with `resync = true`. Removal events carry the last known lease of that subnet.
//
// Malformed leases written by other nodes (bad key, bad JSON, wrong family) are skipped with
// an error log that names the key; they never end a watch.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "async/asio.h"
#include "core/lease.h"
#include "core/network_config.h"
#include "core/result.h"

namespace flannel::store {

using Revision = int64_t;

enum class LeaseEventType { Added, Removed };

struct LeaseEvent {
  LeaseEventType type = LeaseEventType::Added;
  Lease lease{};

  friend bool operator==(const LeaseEvent&, const LeaseEvent&) = default;
};

struct LeaseSnapshot {
  std::vector<Lease> leases{};
  Revision revision = 0;
};

struct LeaseBatch {
  std::vector<LeaseEvent> events{};
  Revision revision = 0;  // pass to the next nextEvents()
  bool resync = false;    // true when the batch is a diff against a fresh listing
};

// The events that turn lease set `before` into `after` (both keyed by subnet): Removed for each
// subnet only in `before` (carrying its last lease), Added for each new or changed one. This is
// what a resync after compaction or a relist reports. Pure.
std::vector<LeaseEvent> diffLeaseSets(const std::map<SubnetKey, Lease>& before,
                                      const std::map<SubnetKey, Lease>& after);

struct AcquireRequest {
  LeaseAttrs attrs{};                      // what we publish (PublicIP, backend data)
  std::optional<IpNet> previous_subnet{};  // FLANNEL_SUBNET of the old subnet.env
  std::optional<IpNet> previous_ipv6_subnet{};
};

class SubnetStore {
 public:
  virtual ~SubnetStore() = default;

  // Reads and validates the network config once. Errc::NotFound when it does not exist yet;
  // Errc::InvalidInput when it is malformed (message names the field); Errc::Unavailable /
  // Timeout when the store cannot be reached. The caller retries (SPEC.md §1.4 step 6).
  virtual async::Awaitable<Result<NetworkConfig>> networkConfig() = 0;

  // Acquires (or re-takes) this host's lease as SPEC.md §3.5 describes. Errc::Conflict with
  // "network is full" when no subnet is free.
  virtual async::Awaitable<Result<Lease>> acquireLease(NetworkConfig config,
                                                       AcquireRequest request) = 0;

  // Extends the lease; returns it with the new expiration. Errc::Conflict when the lease is
  // no longer ours (deleted, expired or taken).
  virtual async::Awaitable<Result<Lease>> renewLease(Lease lease) = 0;

  virtual async::Awaitable<Result<LeaseSnapshot>> leases() = 0;

  // Blocks until there are changes after `since`; see the watch contract above.
  virtual async::Awaitable<Result<LeaseBatch>> nextEvents(Revision since) = 0;
};

}  // namespace flannel::store
