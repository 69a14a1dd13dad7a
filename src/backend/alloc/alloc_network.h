// DOC: the alloc backend (SPEC.md §5.7): takes a lease and does nothing else; someone else
// routes. Publishes only the PublicIP, installs and owns nothing.
#pragma once

#include "backend/backend.h"

namespace flannel::backend::alloc {

class AllocNetwork final : public Network {
 public:
  explicit AllocNetwork(const Context& ctx) : config_(ctx.config), ext_(ctx.ext) {}
  LeaseAttrs leaseAttrs() const override {
    LeaseAttrs a;
    if (ext_.ext_addr && config_.enable_ipv4) {
      a.public_ip = *ext_.ext_addr;
    }
    if (ext_.ext_v6_addr && config_.enable_ipv6) {
      a.public_ipv6 = *ext_.ext_v6_addr;
    }
    return a;
  }
  uint32_t mtu() const override { return ext_.mtu(); }
  Result<void> configure(const Lease&) override { return {}; }
  Result<void> acceptPeer(const Lease&) const override { return {}; }
  kernel::DesiredState desiredState(const std::vector<Peer>&) const override { return {}; }
  kernel::Ownership ownership() const override { return {}; }

 private:
  NetworkConfig config_;
  kernel::ExternalInterface ext_;
};

}  // namespace flannel::backend::alloc
