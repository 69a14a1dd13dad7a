#include "daemon/lease_keeper.h"

#include <fmt/format.h>
#include <boost/asio/steady_timer.hpp>

#include "core/log.h"

namespace flannel::daemon {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("daemon.lease");
}

async::Awaitable<void> sleepFor(std::chrono::milliseconds d) {
  net::steady_timer timer(co_await net::this_coro::executor, d);
  co_await timer.async_wait(async::use_awaitable);  // throws operation_aborted on cancel
}

}  // namespace

SystemTime renewAt(SystemTime expiration, std::chrono::seconds margin) {
  return expiration - margin;
}

OwnLeaseState ownLeaseAfter(const Lease& own, const store::LeaseBatch& batch) {
  OwnLeaseState state = OwnLeaseState::Held;
  for (const auto& ev : batch.events) {
    if (!(ev.lease.subnet == own.subnet)) {
      continue;
    }
    if (ev.type == store::LeaseEventType::Removed) {
      state = OwnLeaseState::Revoked;
    } else {
      state = ev.lease.attrs == own.attrs ? OwnLeaseState::Held : OwnLeaseState::TakenOver;
    }
  }
  return state;
}

async::Awaitable<NetworkConfig> waitForNetworkConfig(store::SubnetStore& store,
                                                     std::chrono::milliseconds interval,
                                                     std::chrono::seconds log_every) {
  std::string last_reason;
  auto last_log = std::chrono::steady_clock::time_point{};
  for (;;) {
    auto config = co_await store.networkConfig();
    if (config) {
      if (!last_reason.empty()) {
        log()->info("network config found");
      }
      co_return std::move(*config);
    }
    auto now = std::chrono::steady_clock::now();
    if (config.error().message != last_reason || now - last_log >= log_every) {
      log()->error("waiting for the network config (retrying every {} ms): {}", interval.count(),
                   config.error().message);
      last_reason = config.error().message;
      last_log = now;
    }
    co_await sleepFor(interval);
  }
}

LeaseKeeper::LeaseKeeper(store::SubnetStore& store, Lease lease, std::chrono::seconds margin,
                         std::chrono::milliseconds retry_interval)
    : store_(store), lease_(std::move(lease)), margin_(margin), retry_interval_(retry_interval) {}

async::Awaitable<Error> LeaseKeeper::run() {
  const auto key = subnetKeyName(lease_.subnet);
  if (lease_.reservation || !lease_.expiration) {
    log()->info("lease {} is a reservation: it never expires and is not renewed", key);
    // Nothing to do until cancelled; a lost reservation is noticed by the lease watch.
    for (;;) {
      co_await sleepFor(std::chrono::hours(24));
    }
  }
  for (;;) {
    auto due = renewAt(*lease_.expiration, margin_);
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        due - std::chrono::system_clock::now());
    if (wait > std::chrono::milliseconds(0)) {
      co_await sleepFor(wait);
    }
    auto renewed = co_await store_.renewLease(lease_);
    if (renewed) {
      lease_ = std::move(*renewed);
      log()->info("renewed lease {}; it now expires at {}", key, rfc3339Utc(*lease_.expiration));
      continue;
    }
    if (renewed.error().code == Errc::Conflict) {
      co_return renewed.error();
    }
    log()->error("renewing lease {} failed (retrying in {} s): {}", key,
                 retry_interval_.count() / 1000, renewed.error().message);
    co_await sleepFor(retry_interval_);
  }
}

}  // namespace flannel::daemon
