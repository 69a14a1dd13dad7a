// DOC: endpoint URLs for the HTTP clients (etcd endpoints, Kubernetes API URL). Pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace flannel::store::http {

struct Url {
  bool tls = false;         // https
  std::string host{};       // without brackets for IPv6 literals
  std::string port{};       // always set (default 80 / 443)
  std::string base_path{};  // "" or "/prefix" without a trailing slash
  std::string text{};       // the URL as given, for messages

  // Value for the Host header: "host:port", IPv6 in brackets.
  std::string hostHeader() const;
};

// "http://127.0.0.1:2379", "https://[fd00::1]:2379", "https://etcd.example:2379/base".
// Errors name the URL and what is wrong (scheme, host, port).
Result<Url> parseUrl(std::string_view text) noexcept;

}  // namespace flannel::store::http
