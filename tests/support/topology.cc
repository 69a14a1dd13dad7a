#include "support/topology.h"

#include <stdexcept>

#include <fmt/format.h>

#include "core/log.h"
#include "support/test_run.h"

namespace flannel::test {

std::string Topology::hostAddress(int i) {
  return fmt::format("192.168.91.{}", 10 + i);
}

std::string Topology::etcdAddress(int i) {
  return fmt::format("192.168.91.{}", 1 + i);
}

Result<std::unique_ptr<Topology>> Topology::create(TestRun& run, TopologySpec spec) {
  if (spec.hosts < 1 || spec.hosts > 200) {
    return invalidInput(fmt::format("topology: hosts must be 1..200, got {}", spec.hosts));
  }
  if (spec.etcd_nodes < 0 || spec.etcd_nodes > 8) {
    return invalidInput(fmt::format("topology: etcd nodes must be 0..8, got {}", spec.etcd_nodes));
  }
  if (spec.mtu < 576 || spec.mtu > 9000) {
    return invalidInput(fmt::format("topology: MTU must be 576..9000, got {}", spec.mtu));
  }
  std::unique_ptr<Topology> topo(new Topology(spec));
  auto sw = Netns::create(run, "sw");
  if (!sw) {
    return sw.error();
  }
  topo->switch_ = std::move(*sw);
  auto bridge = topo->switch_->ipBatch(
      fmt::format("link add {br} mtu {mtu} type bridge stp_state 0 forward_delay 0\n"
                  "addr add {router}/{len} dev {br}\n"
                  "link set {br} up\n",
                  fmt::arg("br", kBridgeDevice), fmt::arg("mtu", spec.mtu),
                  fmt::arg("router", kRouterAddress), fmt::arg("len", kPrefixLen)));
  if (!bridge) {
    return bridge.error().context("creating the switch");
  }
  for (int i = 1; i <= spec.etcd_nodes; ++i) {
    auto node = topo->addNode(run, fmt::format("e{}", i), etcdAddress(i));
    if (!node) {
      return node.error();
    }
    topo->etcd_nodes_.push_back(std::move(*node));
  }
  for (int i = 1; i <= spec.hosts; ++i) {
    auto node = topo->addNode(run, fmt::format("h{}", i), hostAddress(i));
    if (!node) {
      return node.error();
    }
    topo->hosts_.push_back(std::move(*node));
  }
  logger("test.topology")
      ->debug("topology up: switch {}, {} etcd nodes, {} hosts", topo->switch_->name(),
              spec.etcd_nodes, spec.hosts);
  return topo;
}

Result<std::unique_ptr<Netns>> Topology::addNode(TestRun& run, const std::string& role,
                                                 const std::string& address) {
  auto ns = Netns::create(run, role);
  if (!ns) {
    return ns.error();
  }
  const std::string port = "p-" + role;
  // The veth is born inside the node; its peer is created straight in the switch namespace.
  auto node_side = (*ns)->ipBatch(
      fmt::format("link add {dev} mtu {mtu} type veth peer name {port} mtu {mtu} netns {sw}\n"
                  "addr add {addr}/{len} dev {dev}\n"
                  "link set {dev} up\n"
                  "route add default via {router} dev {dev}\n",
                  fmt::arg("dev", kNodeDevice), fmt::arg("mtu", spec_.mtu), fmt::arg("port", port),
                  fmt::arg("sw", switch_->name()), fmt::arg("addr", address),
                  fmt::arg("len", kPrefixLen), fmt::arg("router", kRouterAddress)));
  if (!node_side) {
    return node_side.error().context("creating node " + role);
  }
  auto switch_side =
      switch_->ipBatch(fmt::format("link set {port} master {br}\n"
                                   "link set {port} up\n",
                                   fmt::arg("port", port), fmt::arg("br", kBridgeDevice)));
  if (!switch_side) {
    return switch_side.error().context("plugging node " + role + " into the switch");
  }
  return ns;
}

Netns& Topology::host(int i) {
  if (i < 1 || i > hostCount()) {
    throw std::out_of_range(fmt::format("no host h{} in this topology", i));
  }
  return *hosts_[static_cast<size_t>(i - 1)];
}

Netns& Topology::etcdNode(int i) {
  if (i < 1 || i > etcdNodeCount()) {
    throw std::out_of_range(fmt::format("no etcd node e{} in this topology", i));
  }
  return *etcd_nodes_[static_cast<size_t>(i - 1)];
}

std::vector<std::string> Topology::namespaceNames() const {
  std::vector<std::string> names;
  if (switch_) {
    names.push_back(switch_->name());
  }
  for (const auto& n : etcd_nodes_) {
    names.push_back(n->name());
  }
  for (const auto& n : hosts_) {
    names.push_back(n->name());
  }
  return names;
}

Result<void> Topology::destroy() {
  std::string problems;
  auto destroyAll = [&problems](std::vector<std::unique_ptr<Netns>>& nodes) {
    for (auto& n : nodes) {
      if (auto done = n->destroy(); !done) {
        problems += (problems.empty() ? "" : "; ") + done.error().message;
      }
    }
  };
  destroyAll(hosts_);
  destroyAll(etcd_nodes_);
  if (switch_) {
    if (auto done = switch_->destroy(); !done) {
      problems += (problems.empty() ? "" : "; ") + done.error().message;
    }
  }
  if (!problems.empty()) {
    return makeError(Errc::Internal, "destroying topology: " + problems);
  }
  return ok();
}

Topology::~Topology() {
  if (auto done = destroy(); !done) {
    logger("test.topology")->warn("{}", done.error().message);
  }
}

}  // namespace flannel::test
