#include "daemon/network_runner.h"

#include <fmt/format.h>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <random>

#include "core/backoff.h"
#include "core/log.h"
#include "daemon/lease_keeper.h"
#include "kernel/reconcile.h"

namespace flannel::daemon {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("daemon.network");
}

double unitRandom() {
  static thread_local std::mt19937 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace

NetworkRunner::NetworkRunner(store::SubnetStore& store, backend::Network& network,
                             kernel::Kernel& kernel, Lease own,
                             std::chrono::milliseconds resync_period)
    : store_(store),
      network_(network),
      kernel_(kernel),
      own_(std::move(own)),
      resync_period_(resync_period) {}

void NetworkRunner::wake() {
  dirty_ = true;
  if (wakeup_) {
    wakeup_->cancel();
  }
}

backend::Peer NetworkRunner::makePeer(const Lease& lease) {
  backend::Peer p;
  p.lease = lease;
  if (network_.needsOnLinkInfo()) {
    auto onLink = [&](const IpAddr& ip) {
      auto r = kernel_.routeGet(ip);
      return r && !r->via.has_value();
    };
    if (!lease.attrs.public_ip.isUnspecified()) {
      p.v4_on_link = onLink(lease.attrs.public_ip);
    }
    if (lease.attrs.public_ipv6) {
      p.v6_on_link = onLink(*lease.attrs.public_ipv6);
    }
  }
  return p;
}

void NetworkRunner::applyEvents(const std::vector<store::LeaseEvent>& events, bool resync) {
  std::vector<Lease> added;
  std::vector<Lease> removed;
  for (const auto& ev : events) {
    if (ev.lease.subnet == own_.subnet) {
      continue;  // our own lease is not a peer (handled by ownLeaseAfter)
    }
    const auto key = subnetKeyName(ev.lease.subnet);
    if (ev.type == store::LeaseEventType::Removed) {
      if (peers_.erase(ev.lease.subnet) > 0) {
        log()->info("peer {} ({}) left", key, ev.lease.attrs.public_ip.toString());
        removed.push_back(ev.lease);
      }
      continue;
    }
    if (auto ok = network_.acceptPeer(ev.lease); !ok) {
      // A lease we cannot use: drop what we had for that subnet, say why once per change.
      if (peers_.erase(ev.lease.subnet) > 0) {
        removed.push_back(ev.lease);
      }
      log()->error("lease {} (PublicIP {}): {}; lease ignored", key,
                   ev.lease.attrs.public_ip.toString(), ok.error().message);
      continue;
    }
    auto it = peers_.find(ev.lease.subnet);
    if (it != peers_.end() && it->second.lease == ev.lease) {
      continue;
    }
    log()->info("peer {} ({}) {}", key, ev.lease.attrs.public_ip.toString(),
                it == peers_.end() ? "joined" : "changed");
    peers_[ev.lease.subnet] = makePeer(ev.lease);
    added.push_back(ev.lease);
  }
  (void)resync;
  stats_.peers = peers_.size();
  if (!removed.empty()) {
    network_.peersRemoved(removed);
  }
  if (!added.empty()) {
    network_.peersAdded(added);
  }
  wake();
}

void NetworkRunner::reconcileOnce() {
  if (network_.needsOnLinkInfo()) {
    for (auto& [key, peer] : peers_) {
      peer = makePeer(peer.lease);  // routes to peers may have changed
    }
  }
  std::vector<backend::Peer> peers;
  peers.reserve(peers_.size());
  for (const auto& [key, peer] : peers_) {
    peers.push_back(peer);
  }
  auto desired = network_.desiredState(peers);
  auto own = network_.ownership();
  auto observed = kernel::listObserved(kernel_, own);
  ++stats_.reconciles;
  if (!observed) {
    log()->error("reading kernel state: {}; keeping what is installed", observed.error().message);
    stats_.last_reconcile_clean = false;
    return;
  }
  auto plan = kernel::diff(desired, *observed, own);
  if (!have_listing_) {
    // Until the first lease listing arrives we do not know which peers exist: an entry left by
    // an earlier run may belong to a live peer, and removing it now would cut that peer's
    // traffic until the listing puts it back. Only additions run before then; stale entries go
    // with the first reconcile after the listing.
    std::erase_if(plan.ops,
                  [](const kernel::Op& op) { return op.action == kernel::Action::Delete; });
  }
  if (plan.empty()) {
    stats_.last_reconcile_clean = true;
    if (have_listing_) {
      ready_ = true;
    }
    return;
  }
  for (const auto& op : plan.ops) {
    log()->debug("reconcile: {}", kernel::describe(op));
  }
  auto report = kernel::apply(kernel_, plan);
  stats_.ops_applied += report.applied;
  stats_.op_failures += report.failures.size();
  stats_.last_reconcile_clean = report.clean();
  for (const auto& f : report.failures) {
    log()->error("reconcile: {}: {}", kernel::describe(f.op), f.error.message);
  }
  if (report.applied > 0) {
    log()->info("reconcile: applied {} change(s){}", report.applied,
                report.clean() ? "" : fmt::format(", {} failed", report.failures.size()));
  }
  if (report.clean() && have_listing_) {
    ready_ = true;
  }
}

async::Awaitable<void> NetworkRunner::reconcileLoop() {
  wakeup_.emplace(co_await net::this_coro::executor);
  for (;;) {
    if (dirty_) {
      dirty_ = false;
      reconcileOnce();
    }
    wakeup_->expires_after(resync_period_);
    auto [ec] = co_await wakeup_->async_wait(async::use_nothrow);
    if (!ec) {
      dirty_ = true;  // the period passed: scan for drift
    } else if (ec != net::error::operation_aborted) {
      co_return;
    }
    auto cs = co_await net::this_coro::cancellation_state;
    if (cs.cancelled() != net::cancellation_type::none) {
      co_return;
    }
  }
}

async::Awaitable<Error> NetworkRunner::watchLoop() {
  Backoff backoff{.initial = std::chrono::milliseconds(100),
                  .cap = std::chrono::milliseconds(5000),
                  .factor = 2.0,
                  .jitter = 0.2};
  unsigned failures = 0;
  auto executor = co_await net::this_coro::executor;
  auto pause = [&]() -> async::Awaitable<void> {
    net::steady_timer t(executor, backoff.delay(failures++, unitRandom()));
    co_await t.async_wait(async::use_awaitable);
  };
  store::Revision revision = 0;
  for (;;) {
    if (!have_listing_) {
      auto snap = co_await store_.leases();
      if (!snap) {
        ++stats_.watch_errors;
        if (failures == 0 || failures % 20 == 0) {
          log()->error("listing leases: {}; keeping the installed routes, retrying",
                       snap.error().message);
        }
        co_await pause();
        continue;
      }
      // A fresh listing replaces the peer set: peers missing from it are gone.
      std::vector<store::LeaseEvent> events;
      for (const auto& [key, peer] : peers_) {
        bool present = false;
        for (const auto& l : snap->leases) {
          present = present || l.subnet == key;
        }
        if (!present) {
          events.push_back({store::LeaseEventType::Removed, peer.lease});
        }
      }
      for (const auto& l : snap->leases) {
        events.push_back({store::LeaseEventType::Added, l});
      }
      store::LeaseBatch batch{.events = events, .revision = snap->revision, .resync = true};
      // Our own lease is not looked for here: the Kubernetes store never lists our own node as
      // a lease. Losing it shows up as a removal event (etcd) or a failed renewal.
      applyEvents(batch.events, true);
      revision = snap->revision;
      have_listing_ = true;
      failures = 0;
      log()->info("watching leases from revision {} ({} peers)", revision, peers_.size());
      continue;
    }
    auto batch = co_await store_.nextEvents(revision);
    if (!batch) {
      ++stats_.watch_errors;
      if (failures == 0 || failures % 20 == 0) {
        log()->warn("lease watch: {}; keeping the installed routes, retrying",
                    batch.error().message);
      }
      co_await pause();
      continue;
    }
    failures = 0;
    // if/else, not switch: GCC 12 mishandles co_return in switch cases.
    const auto own_state = ownLeaseAfter(own_, *batch);
    if (own_state != OwnLeaseState::Held) {
      co_return makeError(Errc::Conflict,
                          own_state == OwnLeaseState::Revoked
                              ? fmt::format("our lease {} was revoked", subnetKeyName(own_.subnet))
                              : fmt::format("our subnet {} was taken over by another host",
                                            subnetKeyName(own_.subnet)));
    }
    applyEvents(batch->events, batch->resync);
    revision = batch->revision;
  }
}

async::Awaitable<Error> NetworkRunner::run() {
  using namespace boost::asio::experimental::awaitable_operators;
  auto result = co_await (watchLoop() || reconcileLoop());
  if (result.index() == 0) {
    co_return std::get<0>(std::move(result));
  }
  co_return makeError(Errc::Internal, "reconcile loop ended");
}

}  // namespace flannel::daemon
