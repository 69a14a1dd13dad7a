#include "store/etcd/etcd_store.h"

#include <fmt/format.h>
#include <random>

#include "core/log.h"
#include "core/strings.h"
#include "store/allocator.h"

namespace flannel::store::etcd {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("store.etcd");
}

std::string joinPrefix(const std::string& prefix, std::string_view leaf) {
  std::string p = prefix;
  while (p.size() > 1 && p.back() == '/') {
    p.pop_back();
  }
  if (p.empty() || p.back() != '/') {
    p += '/';
  }
  p += leaf;
  return p;
}

size_t randomPick(size_t n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_int_distribution<size_t>(0, n - 1)(rng);
}

bool overlapsKey(const SubnetKey& a, const SubnetKey& b) {
  return (a.ipv4 && b.ipv4 && a.ipv4->overlaps(*b.ipv4)) ||
         (a.ipv6 && b.ipv6 && a.ipv6->overlaps(*b.ipv6));
}

// The lease that carries our public address: IPv4 when we have one, else IPv6 (fixes the
// IPv6-only sharing of SPEC.md §3.10).
bool sameHost(const LeaseAttrs& theirs, const LeaseAttrs& ours) {
  if (!ours.public_ip.isUnspecified()) {
    return theirs.public_ip == ours.public_ip;
  }
  return ours.public_ipv6 && theirs.public_ipv6 && *ours.public_ipv6 == *theirs.public_ipv6;
}

}  // namespace

EtcdStore::EtcdStore(std::unique_ptr<EtcdKv> kv, EtcdStoreOptions options,
                     std::function<size_t(size_t)> pick)
    : kv_(std::move(kv)), options_(std::move(options)), pick_(std::move(pick)) {
  if (!pick_) {
    pick_ = randomPick;
  }
}

std::string EtcdStore::configKey() const {
  return joinPrefix(options_.prefix, "config");
}

std::string EtcdStore::subnetsPrefix() const {
  return joinPrefix(options_.prefix, "subnets/");
}

std::string EtcdStore::leaseKey(const SubnetKey& key) const {
  return subnetsPrefix() + subnetKeyName(key);
}

async::Awaitable<Result<NetworkConfig>> EtcdStore::networkConfig() {
  auto res = co_await kv_->get(configKey());
  if (!res) {
    co_return res.error().context("reading the network config");
  }
  if (res->kvs.empty()) {
    co_return makeError(Errc::NotFound,
                        fmt::format("network config key {} does not exist in etcd (write it with "
                                    "etcdctl put; flannel-cpp speaks the etcd v3 API only)",
                                    configKey()));
  }
  auto config = loadNetworkConfig(res->kvs.front().value);
  if (!config) {
    co_return config.error().context(fmt::format("etcd key {}", configKey()));
  }
  co_return config;
}

Result<EtcdStore::Entry> EtcdStore::decodeEntry(const KeyValue& kv) const {
  auto ctx = [&](const Error& e) {
    return e.context(fmt::format("lease at key {}", quoteForMessage(kv.key, 512)));
  };
  auto key = parseSubnetKeyName(kv.key);
  if (!key) {
    return ctx(key.error());
  }
  if (leaseKey(*key) != kv.key && kv.key.rfind(subnetsPrefix(), 0) != 0) {
    return ctx(invalidInput("key is outside the subnets prefix"));
  }
  auto attrs = decodeLeaseAttrs(kv.value);
  if (!attrs) {
    return ctx(attrs.error());
  }
  if (key->ipv4 && attrs->public_ip.isUnspecified()) {
    return ctx(invalidInput("it has an IPv4 subnet but PublicIP is 0.0.0.0"));
  }
  if (key->ipv6 && !key->ipv4 && !attrs->public_ipv6) {
    return ctx(invalidInput("it has only an IPv6 subnet but no PublicIPv6"));
  }
  if (own_ && !(*key == *own_) && overlapsKey(*key, *own_)) {
    return ctx(
        invalidInput(fmt::format("its subnet overlaps our own lease {}", subnetKeyName(*own_))));
  }
  return Entry{*key, kv, std::move(*attrs)};
}

Lease EtcdStore::toLease(const Entry& e) const {
  Lease l;
  l.subnet = e.subnet;
  l.attrs = e.attrs;
  l.reservation = e.kv.lease == 0;
  return l;
}

async::Awaitable<Result<std::vector<EtcdStore::Entry>>> EtcdStore::listEntries(Revision* revision) {
  auto prefix = subnetsPrefix();
  auto res = co_await kv_->range(prefix, prefixRangeEnd(prefix));
  if (!res) {
    co_return res.error().context("listing leases");
  }
  if (revision != nullptr) {
    *revision = res->revision;
  }
  std::vector<Entry> out;
  out.reserve(res->kvs.size());
  for (const auto& kv : res->kvs) {
    auto e = decodeEntry(kv);
    if (!e) {
      log()->error("{}; lease ignored", e.error().message);
      continue;
    }
    out.push_back(std::move(*e));
  }
  co_return out;
}

void EtcdStore::noteOwn(const SubnetKey& key, int64_t etcd_lease) {
  own_ = key;
  own_leases_[key] = etcd_lease;
}

async::Awaitable<Result<Lease>> EtcdStore::takeOver(const Entry& e, const LeaseAttrs& attrs) {
  auto key = e.kv.key;
  auto value = encodeLeaseAttrs(attrs);
  Lease lease = toLease(e);
  lease.attrs = attrs;
  if (e.kv.lease == 0) {
    // A reservation stays a reservation (Go flannel would attach a 24 h lease here).
    if (!(e.attrs == attrs)) {
      auto put = co_await kv_->put(key, value, 0);
      if (!put) {
        co_return put.error().context(fmt::format("updating reservation {}", key));
      }
    }
    noteOwn(e.subnet, 0);
    log()->info("found reservation {} for our public address; using it", key);
    co_return lease;
  }
  // The etcd lease that holds the key is still alive after a restart: keep it (renewals keep
  // it alive), and write only if what we publish changed. A restart with the same VTEP MAC
  // then writes nothing at all.
  auto ttl = co_await kv_->leaseTimeToLive(e.kv.lease);
  if (ttl && *ttl > 0) {
    if (!(e.attrs == attrs)) {
      auto put = co_await kv_->put(key, value, e.kv.lease);
      if (!put) {
        co_return put.error().context(fmt::format("updating lease {}", key));
      }
    }
    noteOwn(e.subnet, e.kv.lease);
    lease.reservation = false;
    lease.expiration = std::chrono::system_clock::now() + std::chrono::seconds(*ttl);
    log()->info("found lease {} for our public address; reusing it", key);
    co_return lease;
  }
  auto grant = co_await kv_->grantLease(options_.lease_ttl);
  if (!grant) {
    co_return grant.error().context("granting an etcd lease");
  }
  auto put = co_await kv_->put(key, value, grant->id);
  if (!put) {
    (void)co_await kv_->revokeLease(grant->id);
    co_return put.error().context(fmt::format("re-taking lease {}", key));
  }
  noteOwn(e.subnet, grant->id);
  lease.reservation = false;
  lease.expiration = std::chrono::system_clock::now() + std::chrono::seconds(grant->ttl);
  log()->info("found lease {} for our public address; reusing it", key);
  co_return lease;
}

async::Awaitable<Result<std::optional<Lease>>> EtcdStore::tryCreate(const SubnetKey& subnet,
                                                                    const LeaseAttrs& attrs) {
  auto key = leaseKey(subnet);
  auto grant = co_await kv_->grantLease(options_.lease_ttl);
  if (!grant) {
    co_return grant.error().context("granting an etcd lease");
  }
  KeyValue existing;
  auto created = co_await kv_->createIfAbsent(key, encodeLeaseAttrs(attrs), grant->id, &existing);
  if (!created) {
    (void)co_await kv_->revokeLease(grant->id);
    co_return created.error().context(fmt::format("creating lease {}", key));
  }
  if (!*created && existing.lease != grant->id) {
    (void)co_await kv_->revokeLease(grant->id);
    log()->info("subnet {} was taken by another host meanwhile; trying another", key);
    co_return std::optional<Lease>{};
  }
  // Created (or created by an earlier attempt whose answer was lost: the key holds our lease).
  noteOwn(subnet, grant->id);
  Lease lease;
  lease.subnet = subnet;
  lease.attrs = attrs;
  lease.expiration = std::chrono::system_clock::now() + std::chrono::seconds(grant->ttl);
  co_return std::optional<Lease>{lease};
}

async::Awaitable<Result<Lease>> EtcdStore::acquireLease(NetworkConfig config,
                                                        AcquireRequest request) {
  for (int attempt = 0; attempt < options_.max_acquire_attempts; ++attempt) {
    auto entries = co_await listEntries(nullptr);
    if (!entries) {
      co_return entries.error();
    }
    // 1. A lease (or reservation) that already carries our public address.
    bool retry = false;
    for (const auto& e : *entries) {
      if (!sameHost(e.attrs, request.attrs)) {
        continue;
      }
      if (subnetFitsConfig(e.subnet, config)) {
        co_return co_await takeOver(e, request.attrs);
      }
      if (e.kv.lease == 0) {
        log()->error(
            "reservation {} carries our public address but does not fit the network "
            "config; leaving it alone",
            e.kv.key);
        continue;
      }
      log()->info(
          "lease {} carries our public address but does not fit the network config; "
          "deleting it",
          e.kv.key);
      auto del = co_await kv_->deleteKey(e.kv.key);
      if (!del) {
        co_return del.error().context(fmt::format("deleting stale lease {}", e.kv.key));
      }
      retry = true;
    }
    if (retry) {
      continue;  // list again without the deleted keys
    }
    std::vector<SubnetKey> taken;
    taken.reserve(entries->size());
    for (const auto& e : *entries) {
      taken.push_back(e.subnet);
    }
    // 2. The subnet of the previous run (subnet.env), when it is still free.
    std::optional<SubnetKey> wanted;
    if (request.previous_subnet || request.previous_ipv6_subnet) {
      SubnetKey prev;
      if (config.enable_ipv4) {
        prev.ipv4 = request.previous_subnet;
      }
      if (config.enable_ipv6) {
        prev.ipv6 = request.previous_ipv6_subnet;
      }
      bool free = subnetFitsConfig(prev, config);
      for (const auto& t : taken) {
        free = free && !overlapsKey(prev, t);
      }
      if (free && attempt == 0) {
        log()->info("previously leased subnet {} is free; reusing it", subnetKeyName(prev));
        wanted = prev;
      }
    }
    // 3. Free subnets in random order; after a lost race, the next one (no re-listing).
    std::vector<SubnetKey> order;
    if (wanted) {
      order.push_back(*wanted);
    } else {
      auto candidates = candidateSubnets(config, taken, pick_);
      if (!candidates) {
        co_return candidates.error();
      }
      order = std::move(*candidates);
    }
    for (const auto& candidate : order) {
      auto lease = co_await tryCreate(candidate, request.attrs);
      if (!lease) {
        co_return lease.error();
      }
      if (*lease) {
        log()->info("acquired lease {}", leaseKey(candidate));
        co_return std::move(**lease);
      }
    }
  }
  co_return makeError(
      Errc::Conflict,
      fmt::format("could not acquire a lease: lost every creation race in {} rounds",
                  options_.max_acquire_attempts));
}

async::Awaitable<Result<Lease>> EtcdStore::renewLease(Lease lease) {
  auto key = leaseKey(lease.subnet);
  auto own = own_leases_.find(lease.subnet);
  if (own == own_leases_.end()) {
    co_return makeError(Errc::Conflict, fmt::format("renewing {}: not a lease we hold", key));
  }
  auto current = co_await kv_->get(key);
  if (!current) {
    co_return current.error().context(fmt::format("renewing {}", key));
  }
  if (current->kvs.empty() || current->kvs.front().lease != own->second) {
    co_return makeError(Errc::Conflict,
                        fmt::format("renewing {}: the key was deleted or taken over", key));
  }
  if (own->second == 0) {
    co_return lease;  // a reservation never expires
  }
  auto ttl = co_await kv_->keepAliveOnce(own->second);
  if (!ttl) {
    co_return ttl.error().context(fmt::format("renewing {}", key));
  }
  if (*ttl <= 0) {
    co_return makeError(Errc::Conflict, fmt::format("renewing {}: the etcd lease expired", key));
  }
  lease.expiration = std::chrono::system_clock::now() + std::chrono::seconds(*ttl);
  co_return lease;
}

async::Awaitable<Result<LeaseSnapshot>> EtcdStore::leases() {
  LeaseSnapshot snap;
  auto entries = co_await listEntries(&snap.revision);
  if (!entries) {
    co_return entries.error();
  }
  known_.clear();
  for (const auto& e : *entries) {
    auto l = toLease(e);
    known_[e.subnet] = l;
    snap.leases.push_back(std::move(l));
  }
  co_return snap;
}

async::Awaitable<Result<LeaseBatch>> EtcdStore::resync() {
  auto old = std::move(known_);
  auto snap = co_await leases();
  if (!snap) {
    known_ = std::move(old);
    co_return snap.error();
  }
  LeaseBatch batch;
  batch.resync = true;
  batch.revision = snap->revision;
  batch.events = diffLeaseSets(old, known_);
  co_return batch;
}

async::Awaitable<Result<LeaseBatch>> EtcdStore::nextEvents(Revision since) {
  auto prefix = subnetsPrefix();
  for (;;) {
    if (!watch_ || watch_from_ != since + 1) {
      watch_.reset();
      auto w = co_await kv_->watch(prefix, prefixRangeEnd(prefix), since + 1);
      if (!w) {
        co_return w.error();
      }
      watch_ = std::move(*w);
      watch_from_ = since + 1;
    }
    auto batch = co_await watch_->next(options_.watch_idle_timeout);
    if (!batch) {
      watch_.reset();
      if (batch.error().code == Errc::Timeout) {
        continue;  // idle: reopen from the same revision (nothing can be lost)
      }
      co_return batch.error();
    }
    if (batch->compact_revision > 0 || batch->canceled) {
      watch_.reset();
      log()->warn("lease watch from revision {} was cancelled ({}); re-listing leases", since + 1,
                  batch->compact_revision > 0
                      ? fmt::format("history compacted up to revision {}", batch->compact_revision)
                      : batch->cancel_reason);
      co_return co_await resync();
    }
    if (batch->events.empty()) {
      continue;  // "created" or progress notification
    }
    LeaseBatch out;
    for (const auto& ev : batch->events) {
      out.revision = std::max(out.revision, ev.kv.mod_revision);
      if (ev.type == EventType::Put) {
        auto e = decodeEntry(ev.kv);
        if (!e) {
          log()->error("{}; lease ignored", e.error().message);
          continue;
        }
        auto l = toLease(*e);
        known_[e->subnet] = l;
        out.events.push_back({LeaseEventType::Added, std::move(l)});
      } else {
        auto key = parseSubnetKeyName(ev.kv.key);
        if (!key) {
          continue;  // a malformed key was never reported as added
        }
        auto it = known_.find(*key);
        Lease l;
        if (it != known_.end()) {
          l = it->second;
          known_.erase(it);
        } else {
          l.subnet = *key;
        }
        out.events.push_back({LeaseEventType::Removed, std::move(l)});
      }
    }
    if (out.revision == 0) {
      out.revision = batch->revision;
    }
    watch_from_ = out.revision + 1;  // the open stream continues after these events
    since = out.revision;
    if (out.events.empty()) {
      continue;  // only malformed leases: keep watching
    }
    co_return out;
  }
}

}  // namespace flannel::store::etcd
