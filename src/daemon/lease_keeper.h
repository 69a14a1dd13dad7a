// DOC: keeping this host's lease (SPEC.md §3.4, §3.9): renew it `margin` before it expires,
// retry failed renewals, and notice when it is lost.
//
//        renewAt(expiration, margin) reached             renew ok
//   held ──────────────────────────────────▶ renewing ───────────▶ held (new expiration)
//                                               │ store unavailable: retry every retry_interval
//                                               │ Errc::Conflict (deleted, expired, taken)
//                                               ▼
//                                             lost  → run() returns the reason
//
// Reservations never expire and are never renewed. Timing decisions are the pure functions
// below; the loop uses real timers (exercised by the etcd and e2e tests).
#pragma once

#include <chrono>

#include "async/asio.h"
#include "core/lease.h"
#include "store/store.h"

namespace flannel::daemon {

// When to renew: `margin` before expiry (never in the past relative to the expiry itself).
SystemTime renewAt(SystemTime expiration, std::chrono::seconds margin);

enum class OwnLeaseState { Held, Revoked, TakenOver };

// What a batch of lease events means for our own lease: a removal of our subnet = revoked (key
// deleted or its etcd lease expired); an addition of our subnet with other attributes = taken
// over by another host; anything else leaves it held.
OwnLeaseState ownLeaseAfter(const Lease& own, const store::LeaseBatch& batch);

// Retries store.networkConfig() every `interval` until it succeeds (SPEC.md §1.4 step 6),
// logging the first failure and then whenever the reason changes or every `log_every`.
// Cancellable; returns only a valid config.
async::Awaitable<NetworkConfig> waitForNetworkConfig(store::SubnetStore& store,
                                                     std::chrono::milliseconds interval,
                                                     std::chrono::seconds log_every);

class LeaseKeeper {
 public:
  LeaseKeeper(store::SubnetStore& store, Lease lease, std::chrono::seconds margin,
              std::chrono::milliseconds retry_interval = std::chrono::minutes(1));

  // Renews for as long as the lease is held; returns the reason once it is lost. Cancellable.
  async::Awaitable<Error> run();

  const Lease& lease() const noexcept { return lease_; }

 private:
  store::SubnetStore& store_;
  Lease lease_;
  std::chrono::seconds margin_;
  std::chrono::milliseconds retry_interval_;
};

}  // namespace flannel::daemon
