// DOC: KubeStore, the SubnetStore of --kube-subnet-mgr (SPEC.md §4): the node's podCIDR is the
// lease, node annotations carry the lease attributes, and a list+watch of Nodes tells about
// peers.
//
//   create()         node name (NODE_NAME, else GET pod POD_NAMESPACE/POD_NAME -> spec.nodeName)
//                    -> net-conf.json read and checked -> annotation prefix normalised
//   networkConfig()  re-reads --net-config-path (parse + validateKubeNetworkConfig)
//   acquireLease()   GET own node; while it has no podCIDR: log every `wait_log_every` and poll
//                    (cancellable; never exits as flannel does, §10.19) -> containment check ->
//                    PATCH nodes/<name>/status with only the changed annotations (strategic
//                    merge), retried with backoff on 5xx/timeouts -> the lease (no expiry)
//   renewLease()     no-op (no TTL in Kubernetes mode)
//   leases()         paged list (limit/continue) -> snapshot of the flannel peers + its
//                    resourceVersion as the revision
//   nextEvents(rv)   watch from the last resourceVersion (allowWatchBookmarks): node changes ->
//                    Added/Removed via PeerTracker; a cut or ended watch resumes from the last
//                    version seen; "410 Gone" (history compacted) -> relist and return the
//                    exact difference with resync = true
//   setNodeNetworkUnavailable()  the §4.6 condition patch
//
// Differences from Go flannel, each deliberate (SPEC.md §10): waits for a podCIDR instead of
// exiting; checks containment before publishing anything; a failed PATCH is retried; nodes
// without annotations are fine; an update reaches the backend whenever any relevant annotation
// or pod CIDR changed (not only when both families' sets changed); with IPv4 only, a node's
// extra IPv6 pod CIDR is ignored; the config is checked (see validateKubeNetworkConfig).
//
// Our own node is never reported as a peer (compared by node name). Revisions are the
// API's resourceVersions read as numbers (etcd revisions in every real API server).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/backoff.h"
#include "store/kube/annotations.h"
#include "store/kube/client_config.h"
#include "store/kube/kube_client.h"
#include "store/kube/peer_tracker.h"
#include "store/store.h"

namespace flannel::store::kube {

struct KubeStoreOptions {
  std::string node_name{};  // empty: from NODE_NAME, else the pod's spec.nodeName
  std::string annotation_prefix = std::string(kDefaultAnnotationPrefix);  // raw flag value
  std::string net_config_path = "/etc/kube-flannel/net-conf.json";
  // acquireLease(): how often to look at the node while it has no podCIDR, and how often to
  // say so in the log.
  std::chrono::milliseconds pod_cidr_poll{std::chrono::seconds(1)};
  std::chrono::milliseconds wait_log_every{std::chrono::seconds(30)};
  // Retries of the annotation / condition PATCH (and of reading our node) after 5xx, 429 or a
  // connection failure: backoff between attempts, for at most `patch_retry_for`.
  Backoff retry{.initial = std::chrono::milliseconds(500),
                .cap = std::chrono::milliseconds(10'000),
                .factor = 2.0,
                .jitter = 0.2};
  std::chrono::milliseconds patch_retry_for{std::chrono::minutes(2)};
  // Page size of node lists (limit/continue), as client-go's reflector uses.
  int64_t list_page_size = 500;
  // Watch: the server ends each watch after about this long (timeoutSeconds) and we reopen it
  // from the last resourceVersion; a watch silent for `watch_idle_timeout` is reopened too.
  std::chrono::seconds watch_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds watch_idle_timeout{std::chrono::minutes(6)};
  // Clock for the NetworkUnavailable timestamps (injectable for tests).
  std::function<SystemTime()> now{};
};

// The operator's per-node address overrides (newest flannel, SPEC.md §1.4 (b)).
struct NodePublicIps {
  std::optional<Ip4> ipv4{};  // <p>node-public-ip, when set
  std::optional<Ip6> ipv6{};  // <p>node-public-ipv6, when set
};

class KubeStore final : public SubnetStore {
 public:
  // Resolves the node name, reads and checks net-conf.json and the annotation prefix, and checks
  // EVENT_QUEUE_DEPTH (SPEC.md §4.1 order). Errors name the input; the daemon exits 1 on them.
  static async::Awaitable<Result<std::unique_ptr<KubeStore>>> create(
      std::unique_ptr<KubeClient> client, KubeStoreOptions options, EnvLookup env = {});

  async::Awaitable<Result<NetworkConfig>> networkConfig() override;
  async::Awaitable<Result<Lease>> acquireLease(NetworkConfig config,
                                               AcquireRequest request) override;
  async::Awaitable<Result<Lease>> renewLease(Lease lease) override;
  async::Awaitable<Result<LeaseSnapshot>> leases() override;
  async::Awaitable<Result<LeaseBatch>> nextEvents(Revision since) override;

  // PATCHes the NetworkUnavailable=False condition (SPEC.md §4.6), retried like the annotation
  // patch. The caller only logs a failure, as flannel does.
  async::Awaitable<Result<void>> setNodeNetworkUnavailable();

  // Reads our node's node-public-ip / node-public-ipv6 annotations, which replace --public-ip /
  // --public-ipv6 at start-up when set. A value that is not an address of the right family is
  // an error naming the annotation.
  async::Awaitable<Result<NodePublicIps>> nodePublicIps();

  const std::string& nodeName() const noexcept { return node_name_; }
  const std::string& annotationPrefix() const noexcept { return prefix_; }
  const AnnotationKeys& keys() const noexcept { return keys_; }
  KubeClient& client() noexcept { return *client_; }

 private:
  KubeStore(std::unique_ptr<KubeClient> client, KubeStoreOptions options, std::string node_name,
            std::string prefix, NetworkConfig config);
  async::Awaitable<Result<Node>> getOwnNode();
  Result<NodePublicIps> parseNodePublicIps(const Node& node) const;
  async::Awaitable<Result<std::string>> patchStatus(std::string body, std::string what);
  // Paged list of every node; restarts when a continue token expired (410).
  async::Awaitable<Result<NodeList>> listAllNodes();
  async::Awaitable<Result<LeaseBatch>> resync();
  async::Awaitable<Result<void>> sleepBackoff(unsigned attempt);
  void noteRevision(const std::string& rv);

  std::unique_ptr<KubeClient> client_;
  KubeStoreOptions options_;
  std::string node_name_;
  std::string prefix_;
  AnnotationKeys keys_;
  NetworkConfig config_;
  PeerTracker peers_;
  std::unique_ptr<KubeWatch> watch_;
  std::string rv_{};        // where the watch continues from
  Revision returned_ = -1;  // the revision last handed to the caller
};

// The API path of a node / a node's status / a pod.
std::string nodePath(std::string_view name);
std::string nodeStatusPath(std::string_view name);
std::string podPath(std::string_view ns, std::string_view name);
// Percent-encodes a query value (continue tokens, resourceVersions).
std::string queryEscape(std::string_view value);

}  // namespace flannel::store::kube
