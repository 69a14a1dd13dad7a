// DOC: the extension backend (SPEC.md §5.8): operator-supplied commands run at start-up and for
// each peer added or removed.
//
// Commands are split on whitespace and run WITHOUT a shell (newest flannel's behaviour), after
// $VAR / ${VAR} expansion inside each word; expansion never creates new words, so no lease
// text can inject arguments or run anything. Environment: flanneld's, plus NETWORK, SUBNET,
// PUBLIC_IP (and IPV6SUBNET, PUBLIC_IPV6); stdin: the peer's BackendData string.
//   PreStartupCommand   before the lease; its output becomes our BackendData (a JSON string)
//   PostStartupCommand  after the lease (NETWORK, SUBNET, PUBLIC_IP of this host)
//   SubnetAddCommand    per added peer with BackendType "extension" (SUBNET, PUBLIC_IP of it)
//   SubnetRemoveCommand per removed peer
// Start-up command failures are fatal; peer command failures are logged.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace flannel::backend::extension {

struct ExtensionConfig {
  std::string pre_startup{};
  std::string post_startup{};
  std::string subnet_add{};
  std::string subnet_remove{};
};

Result<ExtensionConfig> parseExtensionConfig(std::string_view backend_json) noexcept;

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// Splits `command` on whitespace and expands $NAME / ${NAME} in each word from `vars`, then
// `env`; unknown names expand to "". A "$" not followed by a name stays literal.
Result<std::vector<std::string>> expandCommand(std::string_view command,
                                               const std::map<std::string, std::string>& vars,
                                               const EnvLookup& env);

class ExtensionNetwork final : public Network {
 public:
  static Result<std::unique_ptr<Network>> create(const Context& ctx);

  LeaseAttrs leaseAttrs() const override;
  uint32_t mtu() const override { return ext_.mtu(); }
  Result<void> configure(const Lease& own) override;
  Result<void> acceptPeer(const Lease& peer) const override;
  kernel::DesiredState desiredState(const std::vector<Peer>&) const override { return {}; }
  kernel::Ownership ownership() const override { return {}; }
  void peersAdded(const std::vector<Lease>& added) override;
  void peersRemoved(const std::vector<Lease>& removed) override;

  ExtensionNetwork(NetworkConfig config, ExtensionConfig cfg, kernel::ExternalInterface ext,
                   CommandRunner* runner, std::string backend_data);

 private:
  Result<std::string> runHook(std::string_view which, const std::string& command,
                              std::map<std::string, std::string> vars, std::string stdin_data);
  void runPeerHook(std::string_view which, const std::string& command, const Lease& peer);

  NetworkConfig config_;
  ExtensionConfig cfg_;
  kernel::ExternalInterface ext_;
  CommandRunner* runner_ = nullptr;
  std::string backend_data_;  // JSON string from PreStartupCommand, or empty
};

}  // namespace flannel::backend::extension
