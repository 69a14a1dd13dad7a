#include "core/subnet_env.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

#include "core/file.h"
#include "core/strings.h"

namespace flannel {

namespace {

namespace key = subnet_env_key;

std::string hostCidr(const IpNet& n) {
  // FLANNEL_SUBNET carries the first host address (network + 1) with the subnet's length.
  auto host = n.host(1);
  return fmt::format("{}/{}", host ? host->toString() : n.addr().toString(), n.prefix());
}

Error sysError(std::string_view what, const std::string& path, int err) {
  return makeError(Errc::Unavailable, fmt::format("{} {}: {}", what, path, std::strerror(err)),
                   err);
}

// Strips a dotenv value: surrounding quotes, or an inline " #comment" after an unquoted value.
std::string_view unquote(std::string_view v) {
  v = trimSpace(v);
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
    return v.substr(1, v.size() - 2);
  }
  if (auto hash = v.find(" #"); hash != std::string_view::npos) {
    v = trimSpace(v.substr(0, hash));
  }
  return v;
}

Result<IpNet> parseNetValue(std::string_view name, std::string_view value, Family family) {
  if (value.find(',') != std::string_view::npos) {
    return invalidInput(fmt::format("{}={}: holds several values; exactly one is supported", name,
                                    quoteForMessage(value)));
  }
  auto net = IpNet::parseMasked(value);
  if (!net) {
    return invalidInput(fmt::format("{}: {}", name, net.error().message));
  }
  if (net->family() != family) {
    return invalidInput(
        fmt::format("{}={}: not an {} prefix", name, quoteForMessage(value), familyName(family)));
  }
  return *net;
}

}  // namespace

std::string renderSubnetEnv(const SubnetEnv& env) {
  std::string out;
  auto line = [&](std::string_view k, const std::string& v) {
    out += k;
    out += '=';
    out += v;
    out += '\n';
  };
  if (env.network) {
    line(key::kNetwork, env.network->toString());
  }
  if (env.subnet) {
    line(key::kSubnet, hostCidr(*env.subnet));
  }
  if (env.ipv6_network) {
    line(key::kIPv6Network, env.ipv6_network->toString());
  }
  if (env.ipv6_subnet) {
    line(key::kIPv6Subnet, hostCidr(*env.ipv6_subnet));
  }
  if (env.mtu) {
    line(key::kMtu, std::to_string(*env.mtu));
  }
  if (env.ipmasq) {
    line(key::kIpMasq, *env.ipmasq ? "true" : "false");
  }
  return out;
}

Result<SubnetEnv> parseSubnetEnv(std::string_view text) noexcept {
  try {
    SubnetEnv env;
    size_t line_no = 0;
    while (!text.empty()) {
      ++line_no;
      auto nl = text.find('\n');
      std::string_view line = trimSpace(text.substr(0, nl));
      text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
      if (line.empty() || line.front() == '#') {
        continue;
      }
      if (line.starts_with("export ")) {
        line = trimSpace(line.substr(7));
      }
      auto eq = line.find('=');
      if (eq == std::string_view::npos) {
        return invalidInput(
            fmt::format("subnet.env line {}: {} is not KEY=VALUE", line_no, quoteForMessage(line)));
      }
      std::string_view name = trimSpace(line.substr(0, eq));
      std::string_view value = unquote(line.substr(eq + 1));
      auto ctx = fmt::format("subnet.env line {}", line_no);
      if (name == key::kNetwork || name == key::kSubnet) {
        auto net = parseNetValue(name, value, Family::V4);
        if (!net) {
          return net.error().context(ctx);
        }
        (name == key::kNetwork ? env.network : env.subnet) = *net;
      } else if (name == key::kIPv6Network || name == key::kIPv6Subnet) {
        auto net = parseNetValue(name, value, Family::V6);
        if (!net) {
          return net.error().context(ctx);
        }
        (name == key::kIPv6Network ? env.ipv6_network : env.ipv6_subnet) = *net;
      } else if (name == key::kMtu) {
        uint32_t mtu = 0;
        auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), mtu);
        if (value.empty() || ec != std::errc() || ptr != value.data() + value.size() || mtu == 0) {
          return invalidInput(fmt::format("{}: {}={} is not a positive integer", ctx, name,
                                          quoteForMessage(value)));
        }
        env.mtu = mtu;
      } else if (name == key::kIpMasq) {
        if (value != "true" && value != "false") {
          return invalidInput(fmt::format("{}: {}={} is neither true nor false", ctx, name,
                                          quoteForMessage(value)));
        }
        env.ipmasq = value == "true";
      }
    }
    return env;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("subnet.env: {}", e.what()));
  }
}

Result<void> writeSubnetEnv(const std::string& path, const SubnetEnv& env) noexcept {
  try {
    std::filesystem::path target(path);
    std::filesystem::path dir = target.parent_path();
    if (dir.empty()) {
      dir = ".";
    }
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return makeError(Errc::Unavailable,
                       fmt::format("creating directory {}: {}", dir.string(), ec.message()),
                       ec.value());
    }
    std::string tmp =
        (dir / fmt::format(".{}.tmp-{}", target.filename().string(), ::getpid())).string();
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      return sysError("creating", tmp, errno);
    }
    auto fail = [&](std::string_view what, int err) {
      ::close(fd);
      ::unlink(tmp.c_str());
      return sysError(what, tmp, err);
    };
    if (::fchmod(fd, 0644) != 0) {  // 0644 whatever the umask (SPEC.md §7.2)
      return fail("setting mode of", errno);
    }
    std::string body = renderSubnetEnv(env);
    size_t written = 0;
    while (written < body.size()) {
      ssize_t n = ::write(fd, body.data() + written, body.size() - written);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return fail("writing", errno);
      }
      written += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0) {
      return fail("syncing", errno);
    }
    if (::close(fd) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return sysError("closing", tmp, err);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return sysError(fmt::format("renaming {} to", tmp), path, err);
    }
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);  // make the rename durable; best effort
      ::close(dfd);
    }
    return {};
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, fmt::format("writing {}: {}", path, e.what()));
  }
}

Result<SubnetEnv> readSubnetEnv(const std::string& path) noexcept {
  constexpr size_t kMaxSize = 1 << 20;  // a subnet.env is a few hundred bytes
  auto text = readSmallFile(path, kMaxSize);
  if (!text) {
    if (text.error().code == Errc::NotFound) {
      return SubnetEnv{};
    }
    if (text.error().code == Errc::InvalidInput) {
      return invalidInput(text.error().message + "; not a subnet.env");
    }
    return text.error();
  }
  auto env = parseSubnetEnv(*text);
  if (!env) {
    return env.error().context(path);
  }
  return env;
}

}  // namespace flannel
