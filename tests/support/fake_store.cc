#include "support/fake_store.h"

#include <fmt/format.h>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

#include "store/allocator.h"

namespace flannel::test {

using store::LeaseBatch;
using store::LeaseEvent;
using store::LeaseEventType;
using store::LeaseSnapshot;

void FakeStoreState::put(const SubnetKey& key, LeaseAttrs attrs, bool reservation) {
  ++revision;
  Entry e{std::move(attrs), reservation, revision};
  entries[key] = e;
  log.push_back({revision, key, e});
}

void FakeStoreState::erase(const SubnetKey& key) {
  if (entries.erase(key) == 0) {
    return;
  }
  ++revision;
  log.push_back({revision, key, std::nullopt});
}

FakeStore::FakeStore(std::shared_ptr<FakeStoreState> state, std::function<size_t(size_t)> pick)
    : state_(std::move(state)), pick_(std::move(pick)) {
  if (!pick_) {
    pick_ = [](size_t) { return size_t{0}; };
  }
}

std::optional<Error> FakeStore::injected() {
  if (state_->fail_next > 0) {
    --state_->fail_next;
    return state_->failure;
  }
  return std::nullopt;
}

Lease FakeStore::toLease(const SubnetKey& key, const FakeStoreState::Entry& e) const {
  Lease l;
  l.subnet = key;
  l.attrs = e.attrs;
  l.reservation = e.reservation;
  return l;
}

async::Awaitable<Result<NetworkConfig>> FakeStore::networkConfig() {
  co_await net::post(co_await net::this_coro::executor, async::use_awaitable);
  if (auto e = injected()) {
    co_return *e;
  }
  if (!state_->config_json) {
    co_return makeError(Errc::NotFound, "network config does not exist (fake store)");
  }
  co_return loadNetworkConfig(*state_->config_json);
}

async::Awaitable<Result<Lease>> FakeStore::acquireLease(NetworkConfig config,
                                                        store::AcquireRequest request) {
  co_await net::post(co_await net::this_coro::executor, async::use_awaitable);
  if (auto e = injected()) {
    co_return *e;
  }
  auto same_host = [&](const LeaseAttrs& a) {
    if (!request.attrs.public_ip.isUnspecified()) {
      return a.public_ip == request.attrs.public_ip;
    }
    return request.attrs.public_ipv6 && a.public_ipv6 &&
           *a.public_ipv6 == *request.attrs.public_ipv6;
  };
  for (auto it = state_->entries.begin(); it != state_->entries.end();) {
    if (!same_host(it->second.attrs)) {
      ++it;
      continue;
    }
    if (store::subnetFitsConfig(it->first, config)) {
      SubnetKey key = it->first;
      bool reservation = it->second.reservation;
      state_->put(key, request.attrs, reservation);
      own_ = key;
      Lease l = toLease(key, state_->entries[key]);
      if (!reservation) {
        l.expiration = std::chrono::system_clock::now() + std::chrono::hours(24);
      }
      co_return l;
    }
    if (it->second.reservation) {
      ++it;
      continue;
    }
    SubnetKey stale = it->first;
    ++it;
    state_->erase(stale);
  }
  std::vector<SubnetKey> taken;
  for (const auto& [key, e] : state_->entries) {
    taken.push_back(key);
  }
  SubnetKey wanted;
  bool have = false;
  if (request.previous_subnet || request.previous_ipv6_subnet) {
    SubnetKey prev;
    if (config.enable_ipv4) {
      prev.ipv4 = request.previous_subnet;
    }
    if (config.enable_ipv6) {
      prev.ipv6 = request.previous_ipv6_subnet;
    }
    bool free = store::subnetFitsConfig(prev, config);
    for (const auto& t : taken) {
      free = free && !((prev.ipv4 && t.ipv4 && prev.ipv4->overlaps(*t.ipv4)) ||
                       (prev.ipv6 && t.ipv6 && prev.ipv6->overlaps(*t.ipv6)));
    }
    if (free) {
      wanted = prev;
      have = true;
    }
  }
  if (!have) {
    auto pick = store::allocateSubnet(config, taken, pick_);
    if (!pick) {
      co_return pick.error();
    }
    wanted = *pick;
  }
  state_->put(wanted, request.attrs, false);
  own_ = wanted;
  Lease l = toLease(wanted, state_->entries[wanted]);
  l.expiration = std::chrono::system_clock::now() + std::chrono::hours(24);
  co_return l;
}

async::Awaitable<Result<Lease>> FakeStore::renewLease(Lease lease) {
  co_await net::post(co_await net::this_coro::executor, async::use_awaitable);
  if (auto e = injected()) {
    co_return *e;
  }
  auto it = state_->entries.find(lease.subnet);
  if (it == state_->entries.end() || !own_ || !(*own_ == lease.subnet) ||
      !(it->second.attrs == lease.attrs)) {
    co_return makeError(
        Errc::Conflict,
        fmt::format("renewing {}: the key was deleted or taken over", subnetKeyName(lease.subnet)));
  }
  if (!it->second.reservation) {
    lease.expiration = std::chrono::system_clock::now() + std::chrono::hours(24);
  }
  co_return lease;
}

async::Awaitable<Result<LeaseSnapshot>> FakeStore::leases() {
  co_await net::post(co_await net::this_coro::executor, async::use_awaitable);
  if (auto e = injected()) {
    co_return *e;
  }
  LeaseSnapshot snap;
  snap.revision = state_->revision;
  known_.clear();
  for (const auto& [key, e] : state_->entries) {
    auto l = toLease(key, e);
    known_[key] = l;
    snap.leases.push_back(l);
  }
  co_return snap;
}

async::Awaitable<Result<LeaseBatch>> FakeStore::nextEvents(store::Revision since) {
  // Polls the shared state: a fake only ever runs in tests with a bounded io_context.
  auto exec = co_await net::this_coro::executor;
  for (;;) {
    if (auto e = injected()) {
      co_return *e;
    }
    if (since < state_->compacted) {
      auto old = known_;
      auto snap = co_await leases();
      if (!snap) {
        co_return snap.error();
      }
      LeaseBatch batch;
      batch.resync = true;
      batch.revision = snap->revision;
      batch.events = store::diffLeaseSets(old, known_);
      co_return batch;
    }
    LeaseBatch batch;
    for (const auto& change : state_->log) {
      if (change.revision <= since) {
        continue;
      }
      batch.revision = change.revision;
      if (change.entry) {
        auto l = toLease(change.key, *change.entry);
        known_[change.key] = l;
        batch.events.push_back({LeaseEventType::Added, l});
      } else {
        auto it = known_.find(change.key);
        Lease l = it != known_.end() ? it->second : Lease{};
        l.subnet = change.key;
        if (it != known_.end()) {
          known_.erase(it);
        }
        batch.events.push_back({LeaseEventType::Removed, l});
      }
    }
    if (!batch.events.empty()) {
      co_return batch;
    }
    net::steady_timer timer(exec, std::chrono::milliseconds(5));
    co_await timer.async_wait(async::use_awaitable);
  }
}

}  // namespace flannel::test
