// DOC: the backend seam (DESIGN.md seam 3). A backend turns the lease set into the kernel state
// it wants; it never diffs or applies anything itself (kernel/reconcile does).
//
//   Backend::create(config, ext iface, kernel, runner)     registry.cc: name -> factory
//     └─▶ Network           devices created, leaseAttrs() known (e.g. the VtepMAC)
//           configure(own lease)    own addresses on our devices, links up
//           desiredState(peers)     pure: addresses, routes, neighbours, FDB for this lease set
//           ownership()             what reconcile may delete: our devices and Network(s)
//           run()                   data path or hooks (udp, extension); returns on cancel
//
// Lifecycle, as the daemon drives it:
//
//   Down ──create──▶ Starting ──configure(lease) ok──▶ Up ──cancel──▶ Stopping ──▶ Down
//                        │ error: exit 1 before the data plane was touched
//
// Readiness means Up and the last reconcile applied cleanly. Peers whose backend data a network
// cannot use are rejected by acceptPeer() once, when their lease arrives, with an error naming
// the lease; desiredState() only ever sees accepted peers.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "async/asio.h"
#include "core/exec.h"
#include "core/lease.h"
#include "core/network_config.h"
#include "core/result.h"
#include "kernel/iface_select.h"
#include "kernel/kernel.h"
#include "kernel/packet_io.h"
#include "kernel/reconcile.h"

namespace flannel::backend {

// A peer's lease plus what the daemon learned about reaching it.
struct Peer {
  Lease lease{};
  // The kernel reaches the peer's PublicIP (PublicIPv6) without a gateway: same L2 segment.
  bool v4_on_link = false;
  bool v6_on_link = false;
  friend bool operator==(const Peer&, const Peer&) = default;
};

// One value a backend reports for /metrics (a Prometheus counter unless `counter` is false).
struct Stat {
  std::string name{};
  std::string help{};
  std::vector<std::pair<std::string, std::string>> labels{};
  double value = 0;
  bool counter = true;
};

class Network {
 public:
  virtual ~Network() = default;

  // BackendType, BackendData and PublicIP(s) to publish in the lease (SPEC.md §3.3, §5).
  virtual LeaseAttrs leaseAttrs() const = 0;
  // The MTU written to subnet.env (SPEC.md §5.0).
  virtual uint32_t mtu() const = 0;
  // After the lease is known: own addresses, links up. Idempotent (restart adopts).
  virtual Result<void> configure(const Lease& own) = 0;
  // Checks a peer's lease (type filter, backend data). An error names what is wrong; the
  // daemon logs it with the lease key and ignores that peer.
  virtual Result<void> acceptPeer(const Lease& peer) const = 0;
  // Whether the daemon must find out which peers are on-link (DirectRouting, host-gw).
  virtual bool needsOnLinkInfo() const { return false; }
  // Pure: the kernel state for the own lease (after configure) and these accepted peers.
  virtual kernel::DesiredState desiredState(const std::vector<Peer>& peers) const = 0;
  virtual kernel::Ownership ownership() const = 0;
  // Peer changes for backends that act on events rather than state (extension hooks).
  virtual void peersAdded(const std::vector<Lease>& /*added*/) {}
  virtual void peersRemoved(const std::vector<Lease>& /*removed*/) {}
  // Long-running work (data path); the default has none.
  virtual async::Awaitable<void> run() { co_return; }
  // Counters of the backend's own work (the udp data path); read on the control thread.
  virtual std::vector<Stat> stats() const { return {}; }
};

struct Context {
  NetworkConfig config{};
  kernel::ExternalInterface ext{};
  kernel::Kernel* kernel = nullptr;       // not owned; outlives the network
  CommandRunner* runner = nullptr;        // not owned; for hook-running backends
  kernel::PacketIo* packet_io = nullptr;  // not owned; TUN and UDP sockets (udp backend)
};

// Creates the backend named by config.backend_type (lower case). Unknown names are an error
// listing the known ones. Errors of the backend's own config name the field.
Result<std::unique_ptr<Network>> createNetwork(const Context& ctx);

// The backend names this build knows, for messages.
std::vector<std::string_view> knownBackends();

}  // namespace flannel::backend
