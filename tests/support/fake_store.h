// DOC: FakeStore, the in-memory SubnetStore for unit tests of lease keeping and watching.
//
// Several FakeStore objects share one FakeStoreState, the way several hosts share one etcd:
// revisions, a change log that can be compacted, reservations (entries without expiry) and
// injectable failures. It follows the SubnetStore contract (store/store.h); the contract suite
// in tests/contract/store runs the same cases against it and against EtcdStore on a real etcd.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "store/store.h"

namespace flannel::test {

struct FakeStoreState {
  struct Entry {
    LeaseAttrs attrs{};
    bool reservation = false;
    store::Revision mod_revision = 0;
  };
  struct Change {
    store::Revision revision = 0;
    SubnetKey key{};
    std::optional<Entry> entry{};  // nullopt = deleted
  };

  std::optional<std::string> config_json{};
  std::map<SubnetKey, Entry> entries{};
  std::deque<Change> log{};
  store::Revision revision = 1;
  store::Revision compacted = 0;  // changes at or below this revision are gone from the log
  // Fault injection: the next N calls of any method fail with this error.
  int fail_next = 0;
  Error failure{Errc::Unavailable, "injected failure", 0};

  void put(const SubnetKey& key, LeaseAttrs attrs, bool reservation);
  void erase(const SubnetKey& key);
  void compact() {
    compacted = revision;
    log.clear();
  }
};

class FakeStore final : public store::SubnetStore {
 public:
  explicit FakeStore(std::shared_ptr<FakeStoreState> state,
                     std::function<size_t(size_t)> pick = {});

  async::Awaitable<Result<NetworkConfig>> networkConfig() override;
  async::Awaitable<Result<Lease>> acquireLease(NetworkConfig config,
                                               store::AcquireRequest request) override;
  async::Awaitable<Result<Lease>> renewLease(Lease lease) override;
  async::Awaitable<Result<store::LeaseSnapshot>> leases() override;
  async::Awaitable<Result<store::LeaseBatch>> nextEvents(store::Revision since) override;

 private:
  std::optional<Error> injected();
  Lease toLease(const SubnetKey& key, const FakeStoreState::Entry& e) const;

  std::shared_ptr<FakeStoreState> state_;
  std::function<size_t(size_t)> pick_;
  std::map<SubnetKey, Lease> known_;
  std::optional<SubnetKey> own_;
};

}  // namespace flannel::test
