#include "cni/flannel_env.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "core/file.h"
#include "core/strings.h"
#include "core/subnet_env.h"

namespace flannel::cni {

namespace {

namespace key = subnet_env_key;

CniError decodeError(std::string_view path, size_t line_no, std::string msg) {
  return cniError(CniCode::DecodeFailure,
                  fmt::format("{} line {}: {}", path.empty() ? "subnet.env" : path, line_no, msg));
}

CniResult<IpNet> parseOne(std::string_view name, std::string_view text, Family family) {
  auto net = IpNet::parseMasked(trimSpace(text));
  if (!net) {
    return cniError(CniCode::DecodeFailure, fmt::format("{}: {}", name, net.error().message));
  }
  if (net->family() != family) {
    return cniError(CniCode::DecodeFailure, fmt::format("{}={}: not an {} prefix", name,
                                                        quoteForMessage(text), familyName(family)));
  }
  return *net;
}

// Comma-separated list, duplicates dropped (first occurrence kept), at least one entry.
CniResult<std::vector<IpNet>> parseList(std::string_view name, std::string_view value,
                                        Family family) {
  std::vector<IpNet> out;
  size_t start = 0;
  while (start <= value.size()) {
    auto comma = value.find(',', start);
    auto item = value.substr(start, comma == std::string_view::npos ? value.npos : comma - start);
    start = comma == std::string_view::npos ? value.size() + 1 : comma + 1;
    if (trimSpace(item).empty()) {
      continue;
    }
    auto net = parseOne(name, item, family);
    if (!net) {
      return net.error();
    }
    if (std::find(out.begin(), out.end(), *net) == out.end()) {
      out.push_back(*net);
    }
  }
  if (out.empty()) {
    return cniError(CniCode::DecodeFailure, fmt::format("{} is empty", name));
  }
  return out;
}

}  // namespace

CniResult<FlannelEnv> parseFlannelEnv(std::string_view text, std::string_view path) noexcept {
  try {
    FlannelEnv env;
    bool have_mtu = false;
    bool have_ipmasq = false;
    size_t line_no = 0;
    while (!text.empty()) {
      ++line_no;
      const auto nl = text.find('\n');
      std::string_view line = trimSpace(text.substr(0, nl));
      text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
      if (line.empty() || line.front() == '#') {
        continue;
      }
      const auto eq = line.find('=');
      if (eq == std::string_view::npos) {
        continue;  // flannel's plugin ignores such lines too
      }
      const std::string_view name = trimSpace(line.substr(0, eq));
      const std::string_view value = trimSpace(line.substr(eq + 1));
      if (name == key::kNetwork || name == key::kIPv6Network) {
        const bool v4 = name == key::kNetwork;
        auto nets = parseList(name, value, v4 ? Family::V4 : Family::V6);
        if (!nets) {
          return decodeError(path, line_no, nets.error().msg);
        }
        (v4 ? env.networks : env.ipv6_networks) = std::move(*nets);
      } else if (name == key::kSubnet || name == key::kIPv6Subnet) {
        const bool v4 = name == key::kSubnet;
        auto net = parseOne(name, value, v4 ? Family::V4 : Family::V6);
        if (!net) {
          return decodeError(path, line_no, net.error().msg);
        }
        (v4 ? env.subnet : env.ipv6_subnet) = *net;
      } else if (name == key::kMtu) {
        uint32_t mtu = 0;
        auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), mtu);
        if (value.empty() || ec != std::errc() || ptr != value.data() + value.size() || mtu == 0) {
          return decodeError(path, line_no,
                             fmt::format("{}={} is not a positive integer below 2^32", name,
                                         quoteForMessage(value)));
        }
        env.mtu = mtu;
        have_mtu = true;
      } else if (name == key::kIpMasq) {
        env.ipmasq = value == "true";
        have_ipmasq = true;
      }
    }
    std::vector<std::string_view> missing;
    if (env.networks.empty() && env.ipv6_networks.empty()) {
      missing.push_back("FLANNEL_NETWORK or FLANNEL_IPV6_NETWORK");
    }
    if (!env.subnet && !env.ipv6_subnet) {
      missing.push_back("FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET");
    }
    if (!have_mtu) {
      missing.push_back(key::kMtu);
    }
    if (!have_ipmasq) {
      missing.push_back(key::kIpMasq);
    }
    if (!missing.empty()) {
      return cniError(CniCode::DecodeFailure,
                      fmt::format("{} is incomplete: missing {}",
                                  path.empty() ? "subnet.env" : path, fmt::join(missing, ", ")),
                      "flanneld writes this file; is another program writing it?");
    }
    return env;
  } catch (const std::exception& e) {
    return cniError(CniCode::Internal, fmt::format("parsing {}: {}", path, e.what()));
  }
}

CniResult<FlannelEnv> loadFlannelEnv(const std::string& path) noexcept {
  try {
    constexpr size_t kMaxSize = 1 << 20;
    auto text = readSmallFile(path, kMaxSize);
    if (!text) {
      const Error& e = text.error();
      if (e.code == Errc::NotFound) {
        return cniError(CniCode::TryAgainLater,
                        fmt::format("subnet.env missing: flanneld is not running yet on this node "
                                    "(expected {})",
                                    path),
                        "flanneld writes this file once it holds a subnet lease; retry after it "
                        "has started");
      }
      if (e.code == Errc::InvalidInput) {
        return cniError(CniCode::DecodeFailure, e.message + "; not a subnet.env");
      }
      return cniError(CniCode::IoFailure, e.message);
    }
    return parseFlannelEnv(*text, path);
  } catch (const std::exception& e) {
    return cniError(CniCode::Internal, fmt::format("reading {}: {}", path, e.what()));
  }
}

}  // namespace flannel::cni
