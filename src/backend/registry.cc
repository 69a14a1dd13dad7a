// The backend registry: one explicit table (DESIGN.md: no static self-registration).
#include <fmt/format.h>

#include "backend/alloc/alloc_network.h"
#include "backend/backend.h"
#include "backend/extension/extension_network.h"
#include "backend/hostgw/hostgw_network.h"
#include "backend/udp/udp_network.h"
#include "backend/vxlan/vxlan_network.h"
#include "core/strings.h"

namespace flannel::backend {

namespace {

using Factory = Result<std::unique_ptr<Network>> (*)(const Context&);

Result<std::unique_ptr<Network>> makeAlloc(const Context& ctx) {
  return std::unique_ptr<Network>(new alloc::AllocNetwork(ctx));
}

struct Entry {
  std::string_view name;
  Factory factory;  // nullptr: known to flannel, not available in this build
  std::string_view why;
};

constexpr Entry kBackends[] = {
    {"vxlan", &vxlan::VxlanNetwork::create, ""},
    {"host-gw", &hostgw::HostGwNetwork::create, ""},
    {"alloc", &makeAlloc, ""},
    {"extension", &extension::ExtensionNetwork::create, ""},
    {"udp", &udp::UdpNetwork::create, ""},
    {"ipip", nullptr, "not implemented"},
    {"wireguard", nullptr, "not implemented"},
    {"ipsec", nullptr, "not implemented"},
    {"tencent-vpc", nullptr, "not implemented (a cloud route backend)"},
};

}  // namespace

std::vector<std::string_view> knownBackends() {
  std::vector<std::string_view> out;
  for (const auto& e : kBackends) {
    if (e.factory != nullptr) {
      out.push_back(e.name);
    }
  }
  return out;
}

Result<std::unique_ptr<Network>> createNetwork(const Context& ctx) {
  for (const auto& e : kBackends) {
    if (e.name != ctx.config.backend_type) {
      continue;
    }
    if (e.factory == nullptr) {
      return invalidInput(fmt::format("backend {}: {} in flannel-cpp (available: {})", e.name,
                                      e.why, fmt::join(knownBackends(), ", ")));
    }
    if (ctx.kernel == nullptr) {
      return makeError(Errc::Internal, "createNetwork without a kernel");
    }
    auto net = e.factory(ctx);
    if (!net) {
      return net.error().context(fmt::format("backend {}", e.name));
    }
    return net;
  }
  return invalidInput(
      fmt::format("unknown backend type {} in the network config (Backend.Type); "
                  "available: {}",
                  quoteForMessage(ctx.config.backend_type), fmt::join(knownBackends(), ", ")));
}

}  // namespace flannel::backend
