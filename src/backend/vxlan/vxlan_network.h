// DOC: the vxlan backend (SPEC.md §5.1), wire-compatible with Go flannel.
//
// Devices flannel.<VNI> (IPv4) and flannel-v6.<VNI> (IPv6) carry the VXLAN tunnel. For each
// peer lease: an FDB entry (peer VtepMAC -> peer PublicIP), a permanent neighbour (peer subnet
// address -> VtepMAC) and an onlink route (peer subnet via peer subnet address dev flannel.N).
// With DirectRouting, a peer on the same L2 segment gets a plain route via its PublicIP instead.
// The device's own address is the own subnet's network address /32 (/128).
#pragma once

#include <optional>
#include <string>

#include "backend/backend.h"

namespace flannel::backend::vxlan {

struct VxlanConfig {
  uint32_t vni = 1;
  uint16_t port = 0;  // 0 = kernel default 8472
  bool gbp = false;
  bool learning = false;
  bool direct_routing = false;
  uint32_t mtu = 0;  // 0 = the external interface's MTU (newest flannel's MTU option)
  friend bool operator==(const VxlanConfig&, const VxlanConfig&) = default;
};

// Parses the Backend object (keys case-insensitive: VNI, Port, GBP, Learning, DirectRouting,
// MTU). Errors name the field.
Result<VxlanConfig> parseVxlanConfig(std::string_view backend_json) noexcept;

// BackendData as flannel writes it: {"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}.
std::string encodeVxlanData(uint32_t vni, const Mac& mac);
// The VtepMAC of a peer's BackendData; errors name the field.
Result<Mac> decodeVtepMac(std::string_view backend_data) noexcept;

inline constexpr uint32_t kVxlanOverheadV4 = 50;  // outer IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14
inline constexpr uint32_t kVxlanOverheadV6 = 70;  // outer IPv6 40 + UDP 8 + VXLAN 8 + Ethernet 14

class VxlanNetwork final : public Network {
 public:
  static Result<std::unique_ptr<Network>> create(const Context& ctx);

  LeaseAttrs leaseAttrs() const override;
  uint32_t mtu() const override;
  Result<void> configure(const Lease& own) override;
  Result<void> acceptPeer(const Lease& peer) const override;
  bool needsOnLinkInfo() const override { return cfg_.direct_routing; }
  kernel::DesiredState desiredState(const std::vector<Peer>& peers) const override;
  kernel::Ownership ownership() const override;

  // For tests: a network over devices that already exist (no kernel calls).
  VxlanNetwork(NetworkConfig config, VxlanConfig cfg, kernel::ExternalInterface ext,
               std::optional<kernel::Link> dev4, std::optional<kernel::Link> dev6,
               kernel::Kernel* kernel);

 private:
  NetworkConfig config_;
  VxlanConfig cfg_;
  kernel::ExternalInterface ext_;
  std::optional<kernel::Link> dev4_;
  std::optional<kernel::Link> dev6_;
  kernel::Kernel* kernel_ = nullptr;
  std::optional<Lease> own_;
};

}  // namespace flannel::backend::vxlan
