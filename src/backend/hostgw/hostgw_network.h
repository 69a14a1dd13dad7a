// DOC: the host-gw backend (SPEC.md §5.2): a route per peer subnet via the peer's PublicIP on
// the external interface. Peers must share the L2 segment; a peer that does not is reported
// once (naming it) and gets no route. No device, no BackendData; NAT is not supported.
#pragma once

#include <set>

#include "backend/backend.h"

namespace flannel::backend::hostgw {

class HostGwNetwork final : public Network {
 public:
  static Result<std::unique_ptr<Network>> create(const Context& ctx);
  HostGwNetwork(NetworkConfig config, kernel::ExternalInterface ext);

  LeaseAttrs leaseAttrs() const override;
  uint32_t mtu() const override { return ext_.mtu(); }
  Result<void> configure(const Lease&) override { return {}; }
  Result<void> acceptPeer(const Lease& peer) const override;
  bool needsOnLinkInfo() const override { return true; }
  kernel::DesiredState desiredState(const std::vector<Peer>& peers) const override;
  kernel::Ownership ownership() const override;

 private:
  NetworkConfig config_;
  kernel::ExternalInterface ext_;
  mutable std::set<std::string> reported_;  // peers already reported as off-segment
};

}  // namespace flannel::backend::hostgw
