// DOC: KubeApiServer, a small Kubernetes API server for tests: the wire behaviour flannel relies
// on, and nothing else. Every behaviour listed here is pinned by
// tests/contract/kube/api_server_contract_test.cc, written from the API reference.
//
// Transport: HTTP/1.1 over TCP or TLS (a server certificate; optionally client certificates
// verified against a CA, the user being the certificate's CN), keep-alive, on 127.0.0.1 and a
// port the kernel picks. The server runs on its own thread with its own io_context; every
// public method may be called from any other thread (it runs on the server thread and waits).
//
// Authentication and authorisation:
//   - "Authorization: Bearer <t>": t must be a known token (setToken) or the answer is 401 with
//     a Status {"reason":"Unauthorized","code":401}; a verified client certificate also
//     authenticates; with require_auth, a request with neither is 401, otherwise it is
//     "system:anonymous".
//   - forbid(verb, resource) makes that permission fail with 403 and the API's message, e.g.
//     nodes "n1" is forbidden: User "u" cannot patch resource "nodes/status" in API group ""
//     at the cluster scope
//
// Resources (all JSON; errors are metav1.Status objects with kind "Status"):
//   GET   /api/v1/nodes                        list (kind NodeList). limit/continue paging over a
//                                              snapshot taken at the first page; continue tokens
//                                              of compacted snapshots -> 410 Expired. limit is
//                                              ignored with resourceVersion=0 (served "from the
//                                              cache", as older API servers do).
//   GET   /api/v1/nodes?watch=true             chunked stream of {"type":..,"object":..} lines.
//                                              resourceVersion unset/"0": synthetic ADDED for
//                                              every node, then changes; N: every change after N,
//                                              or, when N is older than the compacted history,
//                                              one ERROR event with a 410 Expired Status ("too
//                                              old resource version") and the end of the stream.
//                                              allowWatchBookmarks=true: BOOKMARK events
//                                              {"kind":"Node","apiVersion":"v1","metadata":
//                                              {"resourceVersion":"N"}} every bookmark_interval
//                                              and on sendBookmarks(). timeoutSeconds ends the
//                                              stream cleanly.
//   GET   /api/v1/nodes/<name>                 the node, or 404 NotFound
//   PATCH /api/v1/nodes/<name>/status          application/strategic-merge-patch+json or
//   PATCH /api/v1/nodes/<name>                 application/merge-patch+json (others: 415).
//                                              Maps merge, null deletes, lists are replaced
//                                              except lists of objects with a "type" key
//                                              (status.conditions, status.addresses), merged by
//                                              type under strategic merge. The status
//                                              subresource keeps spec; the main resource keeps
//                                              status. metadata.resourceVersion in the patch is
//                                              a precondition (409 Conflict). A patch that
//                                              changes nothing does not bump the version.
//   GET   /api/v1/namespaces/<ns>/pods/<name>  the pod (metadata + spec.nodeName), or 404
//
// Versions: one counter for the whole store, starting at 1000; every change of a node bumps it
// and is kept in a history that compact() (or history_limit) drops.
//
// Not implemented (never used by flannel): other resources, label/field selectors, JSON patch,
// server-side apply, resourceVersionMatch, remainingItemCount-based continuation after 410.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

namespace flannel::test {

struct KubeNodeSpec {
  std::string name{};
  std::map<std::string, std::string> annotations{};  // none: the key is omitted, as the API does
  std::vector<std::string> pod_cidrs{};              // spec.podCIDR = first; spec.podCIDRs = all
  std::map<std::string, std::string> labels{};
  std::string internal_ip{};  // status.addresses InternalIP, if given
};

struct KubeApiServerOptions {
  // Address to listen on. A test that wants hosts in other network namespaces to reach the
  // server calls start() from a thread that setns()-ed into one of its own namespaces and binds
  // that namespace's address: the listening socket stays in that namespace.
  std::string bind_address = "127.0.0.1";
  bool tls = false;
  std::string cert_file{};       // server certificate chain (PEM), for tls
  std::string key_file{};        // server key (PEM)
  std::string client_ca_file{};  // verify client certificates with this CA (tls); "" = none
  std::map<std::string, std::string> tokens{};  // bearer token -> user name
  bool require_auth = false;
  std::chrono::milliseconds bookmark_interval{0};  // 0: bookmarks only on sendBookmarks()
  size_t history_limit = 500'000;  // changes kept for watches before an automatic compaction
  size_t max_snapshots = 32;       // paged-list snapshots kept for continue tokens
};

struct RecordedRequest {
  std::string method{};
  std::string target{};  // path and query as sent
  std::string path{};
  std::string content_type{};
  std::string body{};
  std::string authorization{};
  std::string user{};   // who the server took the caller for ("" when rejected)
  unsigned status = 0;  // the answer (200 for a watch that started)
};

class KubeApiServer {
 public:
  static Result<std::unique_ptr<KubeApiServer>> start(KubeApiServerOptions options = {});
  ~KubeApiServer();
  KubeApiServer(const KubeApiServer&) = delete;
  KubeApiServer& operator=(const KubeApiServer&) = delete;

  std::string url() const;  // "http://127.0.0.1:<port>" or "https://..."
  uint16_t port() const;

  // --- nodes (each call is one change: one new resourceVersion, one watch event per node)
  void putNode(KubeNodeSpec spec);                 // ADDED, or MODIFIED (replaces) if it exists
  void putNodes(std::vector<KubeNodeSpec> specs);  // bulk (5,000 nodes in well under a second)
  void setAnnotations(const std::string& node, std::map<std::string, std::string> set);
  void removeAnnotation(const std::string& node, const std::string& key);
  void setPodCidrs(const std::string& node, std::vector<std::string> cidrs);
  void touchNodeStatus(const std::string& node);  // a kubelet heartbeat: status only
  void deleteNode(const std::string& node);
  // Current state (nullopt when absent).
  std::optional<std::string> nodeJson(const std::string& node);
  std::optional<std::map<std::string, std::string>> annotations(const std::string& node);
  // The node's status.conditions as JSON text ("[]" when none; nullopt when no node).
  std::optional<std::string> conditionsJson(const std::string& node);
  size_t nodeCount();

  void putPod(const std::string& ns, const std::string& name, const std::string& node_name);

  int64_t resourceVersion();
  // Drops the change history up to now: watches and continue tokens from older versions get
  // 410 Gone.
  void compact();

  // --- access control
  void setToken(const std::string& token, const std::string& user);
  void removeToken(const std::string& token);
  void forbid(const std::string& verb,
              const std::string& resource);  // e.g. "patch", "nodes/status"
  void allow(const std::string& verb, const std::string& resource);

  // --- faults
  // The next `count` requests with this method whose path starts with `path_prefix` get
  // `status` with a Status body (e.g. 500 InternalError, 429, 409).
  void failNext(const std::string& method, const std::string& path_prefix, unsigned status,
                int count = 1);
  // Aborts every open watch connection (no terminating chunk). mid_event: first sends half of
  // an event line, as a connection cut in the middle of a chunk would.
  void cutWatches(bool mid_event = false);
  // Ends every open watch cleanly (as timeoutSeconds does).
  void endWatches();
  void sendBookmarks();
  size_t openWatchCount();

  // --- what clients sent
  std::vector<RecordedRequest> requests();
  std::vector<RecordedRequest> patches();  // PATCH requests only
  void clearRequests();

  struct Impl;

 private:
  explicit KubeApiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Certificates made with the openssl command line for TLS tests: a CA, a server certificate
// for 127.0.0.1/localhost, a client certificate (CN flannel-client) and an unrelated CA.
struct TestPki {
  std::string ca_pem{}, ca_key{};
  std::string server_cert{}, server_key{};
  std::string client_cert{}, client_key{};
  std::string other_ca_pem{};
};
Result<TestPki> makeTestPki(const std::string& dir);

}  // namespace flannel::test
