// DOC: NetworkRunner keeps the kernel in line with the lease set (DESIGN.md "The flow" step 2).
//
//   store.leases() ──▶ peers ──▶ network.desiredState(peers) ──diff vs kernel──▶ apply
//        ▲                ▲                                                  │
//        │ nextEvents()   │ periodic scan (drift repair) ◀───────────────────┘
//
// Two coroutines share the peer set on the control thread: the watcher folds lease events
// into it and wakes the reconciler; the reconciler runs on every wake-up and at least every
// `resync_period`, so entries deleted behind our back come back within one period. Store
// errors never touch installed state: the last good peer set stays programmed, the watch is
// retried with backoff (DESIGN.md rule 5). Events about our own subnet are not peers; if they
// say the lease was revoked or taken over, run() returns the reason.
#pragma once

#include <chrono>
#include <map>
#include <optional>

#include <boost/asio/steady_timer.hpp>

#include "async/asio.h"
#include "backend/backend.h"
#include "kernel/kernel.h"
#include "store/store.h"

namespace flannel::daemon {

struct RunnerStats {
  uint64_t reconciles = 0;
  uint64_t ops_applied = 0;
  uint64_t op_failures = 0;
  uint64_t watch_errors = 0;
  bool last_reconcile_clean = false;
  size_t peers = 0;
};

class NetworkRunner {
 public:
  NetworkRunner(store::SubnetStore& store, backend::Network& network, kernel::Kernel& kernel,
                Lease own, std::chrono::milliseconds resync_period);

  // Watches and reconciles until cancelled (never returns then) or until our own lease is
  // revoked or taken over (returns the reason).
  async::Awaitable<Error> run();

  const RunnerStats& stats() const noexcept { return stats_; }
  // True once a reconcile after the first full listing applied cleanly.
  bool ready() const noexcept { return ready_; }

 private:
  async::Awaitable<void> reconcileLoop();
  async::Awaitable<Error> watchLoop();
  // Folds events into peers_; returns our own lease's state after them.
  void applyEvents(const std::vector<store::LeaseEvent>& events, bool resync);
  void reconcileOnce();
  backend::Peer makePeer(const Lease& lease);
  void wake();

  store::SubnetStore& store_;
  backend::Network& network_;
  kernel::Kernel& kernel_;
  Lease own_;
  std::chrono::milliseconds resync_period_;
  std::map<SubnetKey, backend::Peer> peers_;
  std::optional<net::steady_timer> wakeup_;
  bool have_listing_ = false;
  bool ready_ = false;
  bool dirty_ = true;
  std::optional<Error> lost_;
  RunnerStats stats_;
};

}  // namespace flannel::daemon
