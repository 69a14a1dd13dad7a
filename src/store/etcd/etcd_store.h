// DOC: EtcdStore, the SubnetStore over etcd v3 (SPEC.md §3), wire-compatible with Go flannel.
//
// Keys:  <prefix>/config                 network config JSON (written by the operator)
//        <prefix>/subnets/<subnet key>   lease value JSON, attached to a 24 h etcd lease
// A key without an etcd lease is a reservation: it is honoured (never handed to another host,
// never deleted) and its owner (matched by PublicIP) keeps it lease-less.
//
// Differences from Go flannel, each deliberate (SPEC.md §10): a lost creation race retries with
// another subnet; renewal keeps the same etcd lease alive instead of leaking a new one per
// renewal; the watch never loses events (resumes from the last revision, re-lists after
// compaction); IPv6-only hosts are matched by PublicIPv6, so they no longer share one lease.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "store/etcd/etcd_kv.h"
#include "store/store.h"

namespace flannel::store::etcd {

struct EtcdStoreOptions {
  std::string prefix = "/coreos.com/network";  // -etcd-prefix
  std::chrono::seconds lease_ttl{24 * 3600};   // SPEC.md §3.4
  // Reconnect an idle watch after this long without any message (the watch resumes from the
  // last revision, so nothing is lost); TCP keepalive catches dead peers sooner.
  std::chrono::milliseconds watch_idle_timeout{std::chrono::minutes(10)};
  int max_acquire_attempts = 10;
};

class EtcdStore final : public SubnetStore {
 public:
  // `pick(n)` draws an index in [0, n) for random allocation (injected for tests).
  EtcdStore(std::unique_ptr<EtcdKv> kv, EtcdStoreOptions options,
            std::function<size_t(size_t)> pick = {});

  async::Awaitable<Result<NetworkConfig>> networkConfig() override;
  async::Awaitable<Result<Lease>> acquireLease(NetworkConfig config,
                                               AcquireRequest request) override;
  async::Awaitable<Result<Lease>> renewLease(Lease lease) override;
  async::Awaitable<Result<LeaseSnapshot>> leases() override;
  async::Awaitable<Result<LeaseBatch>> nextEvents(Revision since) override;

  EtcdKv& kv() noexcept { return *kv_; }
  std::string configKey() const;
  std::string subnetsPrefix() const;  // "<prefix>/subnets/"
  std::string leaseKey(const SubnetKey& key) const;

 private:
  struct Entry {
    SubnetKey subnet;
    KeyValue kv;
    LeaseAttrs attrs;
  };
  // Lists and decodes every lease; malformed ones are logged (naming the key) and skipped.
  async::Awaitable<Result<std::vector<Entry>>> listEntries(Revision* revision);
  Result<Entry> decodeEntry(const KeyValue& kv) const;
  Lease toLease(const Entry& e) const;
  async::Awaitable<Result<Lease>> takeOver(const Entry& e, const LeaseAttrs& attrs);
  async::Awaitable<Result<std::optional<Lease>>> tryCreate(const SubnetKey& key,
                                                           const LeaseAttrs& attrs);
  async::Awaitable<Result<LeaseBatch>> resync();
  void noteOwn(const SubnetKey& key, int64_t etcd_lease);

  std::unique_ptr<EtcdKv> kv_;
  EtcdStoreOptions options_;
  std::function<size_t(size_t)> pick_;
  std::map<SubnetKey, Lease> known_;         // last seen lease per subnet (for removals)
  std::map<SubnetKey, int64_t> own_leases_;  // etcd lease ID of each lease we hold (0 = none)
  std::optional<SubnetKey> own_;             // our current subnet, for overlap checks
  std::unique_ptr<EtcdWatch> watch_;
  Revision watch_from_ = 0;  // start revision of the open watch
};

}  // namespace flannel::store::etcd
