// DOC: where the Kubernetes API is and how to authenticate to it (SPEC.md §4.1).
//
// Three sources, chosen as client-go's BuildConfigFromFlags(--kube-api-url, --kubeconfig-file)
// chooses them:
//   --kubeconfig-file given         the file's current-context (cluster server, CA, TLS
//                                    verification; user client certificate, token or
//                                    tokenFile); --kube-api-url, when also given, replaces the
//                                    server
//   only --kube-api-url             that URL, no credentials, system trust store for https
//   neither                         in-cluster: https://$KUBERNETES_SERVICE_HOST:_PORT, the
//                                    service-account token and CA under
//                                    /var/run/secrets/kubernetes.io/serviceaccount/
//
// A token given as a file (in-cluster, or `tokenFile` in a kubeconfig) is re-read by the
// client whenever the file changes: bound service-account tokens rotate.
//
// Loading reads the referenced files (CA, certificates, keys, token) so that a bad path or a
// bad file fails here, at start-up, with a message naming the file and the kubeconfig field.
// Nothing here throws.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"
#include "store/http/url.h"

namespace flannel::store::kube {

// Environment lookup, injectable for tests; nullopt = unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
// The process environment (getenv); an empty value counts as unset.
EnvLookup processEnvironment();

struct InClusterPaths {
  std::string token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::string ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  std::string namespace_file = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
};

struct KubeClientConfig {
  http::Url server{};
  // TLS (https servers only).
  std::string ca_pem{};  // trusted CA certificates (PEM); empty = the system trust store
  bool insecure_skip_tls_verify = false;
  std::string client_cert_pem{};  // client certificate chain (PEM); empty = none
  std::string client_key_pem{};
  // Bearer token: token_file (re-read when it changes) wins over token.
  std::string token{};
  std::string token_file{};
  std::string namespace_name{};  // in-cluster namespace or the context's namespace, if any
  // Where this came from, for messages: "in-cluster config", "kubeconfig /x (context c)", ...
  std::string source{};

  // "client certificate", "bearer token from file /x", "bearer token", "no credentials".
  std::string credentialsDescription() const;
};

struct ClientConfigInputs {
  std::string kube_api_url{};     // --kube-api-url
  std::string kubeconfig_file{};  // --kubeconfig-file
  InClusterPaths in_cluster{};
  EnvLookup env{};  // defaults to processEnvironment()
};

Result<KubeClientConfig> loadClientConfig(const ClientConfigInputs& inputs) noexcept;

// Parses kubeconfig text. `path` is used in messages and to resolve relative file names (as
// kubectl does, relative to the kubeconfig's directory).
Result<KubeClientConfig> parseKubeconfig(std::string_view yaml, const std::string& path) noexcept;

Result<KubeClientConfig> inClusterConfig(const InClusterPaths& paths,
                                         const EnvLookup& env) noexcept;

// Whole file; errors name `role` and the path ("reading service-account token /x: ...").
Result<std::string> readTextFile(const std::string& path, std::string_view role) noexcept;

}  // namespace flannel::store::kube
