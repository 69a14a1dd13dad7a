// DOC: the flannel CNI plugin's network config and the delegate config built from it
// (SPEC.md §7.5), pure.
//
// Input (stdin, one entry of a conflist as the runtime passes it):
//   {"cniVersion":"0.3.1","name":"cbr0","type":"flannel",
//    "subnetFile":"/run/flannel/subnet.env",      default kDefaultSubnetFile
//    "dataDir":"/var/lib/cni/flannel",            default kDefaultDataDir
//    "delegate":{"hairpinMode":true,"isDefaultGateway":true},
//    "ipam":{...}, "runtimeConfig":{...}, "prevResult":{...}}
// Top-level keys match case-insensitively (Go's encoding/json, as flannel reads them); keys
// inside delegate and ipam are exact.
//
// The delegate config (what bridge, or delegate.type, receives):
//   cniVersion  the input's, when not empty
//   name        the network's name                 ("delegate.name" is rejected)
//   type        delegate.type, default "bridge"    (must be a plain file name)
//   ...         every other delegate key, as given
//   ipMasq      default !FLANNEL_IPMASQ (flanneld masquerades itself when that is true)
//   mtu         default FLANNEL_MTU
//   isGateway   default true when the type is bridge
//   ipam        the input's ipam (or {}), type default "host-local", "ranges" REPLACED by this
//               node's subnets [[{"subnet":v4}],[{"subnet":v6}]], "routes" = the input's routes
//               plus {"dst":<network>} per flannel network ("delegate.ipam" is rejected)
//   runtimeConfig  the input's, when present
//
// Errors: JSON that does not parse, or is not an object: CniCode::DecodeFailure (6); a field of
// the wrong type or a forbidden key: CniCode::InvalidConfig (7); an unsupported cniVersion:
// CniCode::IncompatibleVersion (1).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "cni/cni_error.h"
#include "cni/flannel_env.h"
#include "core/json_util.h"

namespace flannel::cni {

inline constexpr std::string_view kDefaultDataDir = "/var/lib/cni/flannel";
inline constexpr std::string_view kDefaultDelegateType = "bridge";
inline constexpr std::string_view kDefaultIpamType = "host-local";

// Every version the plugin accepts, as VERSION reports them (the Go library's "All").
inline constexpr std::array<std::string_view, 6> kSupportedVersions = {"0.1.0", "0.2.0", "0.3.0",
                                                                       "0.3.1", "0.4.0", "1.0.0"};
// The version of our own output when the config's is not known (VERSION, early errors).
inline constexpr std::string_view kPreferredVersion = "1.0.0";
// A config without cniVersion is read as this one (CNI library convention).
inline constexpr std::string_view kImplicitVersion = "0.1.0";

struct NetConf {
  std::string cni_version{};  // as given; may be empty
  std::string name{};
  std::string type{};
  std::string subnet_file{};             // defaulted: never empty
  std::string data_dir{};                // defaulted: never empty
  std::optional<Json> delegate{};        // an object when present
  std::optional<Json> ipam{};            // an object when present
  std::optional<Json> runtime_config{};  // an object when present
  std::optional<Json> prev_result{};     // any JSON when present
};

CniResult<NetConf> parseNetConf(std::string_view text) noexcept;

// The config's cniVersion if `text` is a JSON object holding a supported one, else
// kPreferredVersion: the version to stamp on an error about this input.
std::string errorVersionFor(std::string_view text) noexcept;

// Success when `version` (empty = kImplicitVersion) is in kSupportedVersions.
CniResult<void> checkVersion(std::string_view version) noexcept;
// CHECK exists from CNI 0.4.0 on: IncompatibleVersion for older configs.
CniResult<void> checkVersionAllowsCheck(std::string_view version) noexcept;

// The delegate config for ADD (see the DOC above).
CniResult<Json> buildDelegateConfig(const NetConf& conf, const FlannelEnv& env) noexcept;

// The delegate's type from a delegate config (ours or a saved one): a non-empty string that is
// a plain file name. InvalidConfig otherwise.
CniResult<std::string> delegateType(const Json& delegate_config) noexcept;

// The prevResult handed to the delegate's CHECK: `prev_result` with every route that has no
// "gw" given the gateway of the result's IP of its family, when there is one. That is the route
// bridge/ptp actually installed at ADD time; containernetworking-plugins before v1.3.0 (Debian 12
// ships v1.1.1) look for a gateway-less route in the kernel and fail CHECK on every flannel pod
// without this (their PR #887). Anything that is not a result object is returned unchanged.
Json prevResultForCheck(Json prev_result) noexcept;

// The version `{"cniVersion":...,"supportedVersions":[...]}` line printed for VERSION.
std::string renderVersionInfo();

}  // namespace flannel::cni
