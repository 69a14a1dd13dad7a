// DOC: Topology, the declared underlay of an e2e test: N hosts and M etcd nodes on one L2
// segment, each in its own network namespace, all plugged into a Linux bridge in a "switch"
// namespace.
//
//            namespace sw: br0 192.168.91.1/24 (router / default gateway)
//              |p-e1      |p-e2  ...   |p-h1         |p-h2         |p-h3   (veth, MTU 1500)
//    e1: eth0 .2    e2: eth0 .3   h1: eth0 .11  h2: eth0 .12  h3: eth0 .13
//
// Address plan (underlay 192.168.91.0/24, only ever inside our namespaces):
//   192.168.91.1        br0 in the switch namespace; every node's default route goes via it, so
//                       "the interface of the default route" is eth0 on every node
//   192.168.91.2 .. .9  etcd nodes e1..e8 (etcd listens on <addr>:2379, peers on <addr>:2380)
//   192.168.91.11 ..    hosts h1..hN (N <= 200)
// Device names are fixed and short (eth0, br0, p-h<i>, p-e<i>), at most 15 characters.
// Namespace names follow TestRun: fct-<pid>-<n>-sw, -h1, -e1, ...
//
// Nothing is created in the root namespace: veth pairs are created inside a node's namespace with
// their peer placed directly into the switch namespace (`ip -n <node> link add eth0 type veth
// peer name p-h1 netns <sw>`).
//
// Teardown: the destructor deletes the node namespaces, then the switch (Netns destructors kill
// what runs inside first). Stop processes you started (EtcdCluster, ChildProcess) before
// destroying the Topology, i.e. declare them after it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "support/netns.h"

namespace flannel::test {

class TestRun;

struct TopologySpec {
  int hosts = 2;       // h1..hN, 1..200
  int etcd_nodes = 0;  // e1..eM, 0..8
  int mtu = 1500;      // of every veth and the bridge
};

class Topology {
 public:
  static constexpr const char* kUnderlayCidr = "192.168.91.0/24";
  static constexpr int kPrefixLen = 24;
  static constexpr const char* kRouterAddress = "192.168.91.1";
  static constexpr const char* kNodeDevice = "eth0";
  static constexpr const char* kBridgeDevice = "br0";

  static std::string hostAddress(int i);  // 1-based: "192.168.91.(10 + i)"
  static std::string etcdAddress(int i);  // 1-based: "192.168.91.(1 + i)"

  static Result<std::unique_ptr<Topology>> create(TestRun& run, TopologySpec spec);

  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;
  ~Topology();

  const TopologySpec& spec() const { return spec_; }
  Netns& switchNs() { return *switch_; }
  Netns& host(int i);      // 1-based
  Netns& etcdNode(int i);  // 1-based
  int hostCount() const { return static_cast<int>(hosts_.size()); }
  int etcdNodeCount() const { return static_cast<int>(etcd_nodes_.size()); }

  // Names of every namespace of the topology (switch, etcd nodes, hosts).
  std::vector<std::string> namespaceNames() const;

  // Deletes all namespaces (nodes first, then the switch). Idempotent.
  Result<void> destroy();

 private:
  explicit Topology(TopologySpec spec) : spec_(spec) {}
  Result<std::unique_ptr<Netns>> addNode(TestRun& run, const std::string& role,
                                         const std::string& address);

  TopologySpec spec_;
  std::unique_ptr<Netns> switch_;
  std::vector<std::unique_ptr<Netns>> etcd_nodes_;
  std::vector<std::unique_ptr<Netns>> hosts_;
};

}  // namespace flannel::test
