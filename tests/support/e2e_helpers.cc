#include "support/e2e_helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "support/poll.h"

namespace flannel::test {

namespace {

Error errnoError(const std::string& what, int err) {
  return makeError(Errc::Internal, fmt::format("{}: {}", what, std::strerror(err)), err);
}

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

Result<std::unique_ptr<Netns>> addUnderlayNode(TestRun& run, Topology& topo, std::string_view role,
                                               std::string_view address) {
  if (role.size() > 13) {
    return invalidInput(fmt::format("underlay node role {} is longer than 13 characters", role));
  }
  auto ns = Netns::create(run, role);
  if (!ns) {
    return ns.error();
  }
  const std::string port = fmt::format("p-{}", role);
  auto node_side = (*ns)->ipBatch(fmt::format(
      "link add {dev} mtu {mtu} type veth peer name {port} mtu {mtu} netns {sw}\n"
      "addr add {addr}/{len} dev {dev}\n"
      "link set {dev} up\n"
      "route add default via {router} dev {dev}\n",
      fmt::arg("dev", Topology::kNodeDevice), fmt::arg("mtu", topo.spec().mtu),
      fmt::arg("port", port), fmt::arg("sw", topo.switchNs().name()), fmt::arg("addr", address),
      fmt::arg("len", Topology::kPrefixLen), fmt::arg("router", Topology::kRouterAddress)));
  if (!node_side) {
    return node_side.error().context(fmt::format("creating underlay node {}", role));
  }
  auto switch_side = topo.switchNs().ipBatch(
      fmt::format("link set {port} master {br}\nlink set {port} up\n", fmt::arg("port", port),
                  fmt::arg("br", Topology::kBridgeDevice)));
  if (!switch_side) {
    return switch_side.error().context(fmt::format("plugging {} into the switch", role));
  }
  return ns;
}

Result<UdpListener> UdpListener::open(Netns& ns) {
  auto sock = ns.openSocket(AF_INET, SOCK_DGRAM, 0);
  if (!sock) {
    return sock.error();
  }
  const int fd = *sock;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    return errnoError("binding a UDP socket in " + ns.name(), err);
  }
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    return errnoError("getsockname", err);
  }
  return UdpListener(fd, ntohs(addr.sin_port));
}

UdpListener::UdpListener(UdpListener&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), port_(other.port_) {}

UdpListener& UdpListener::operator=(UdpListener&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = std::exchange(other.fd_, -1);
    port_ = other.port_;
  }
  return *this;
}

UdpListener::~UdpListener() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Result<Datagram> UdpListener::receive(std::chrono::milliseconds timeout) {
  pollfd pfd{.fd = fd_, .events = POLLIN, .revents = 0};
  const int ready = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
  if (ready < 0) {
    return errnoError("poll on a UDP socket", errno);
  }
  if (ready == 0) {
    return makeError(Errc::Timeout,
                     fmt::format("no datagram on port {} within {} ms", port_, timeout.count()));
  }
  char buf[2048];
  sockaddr_in from{};
  socklen_t from_len = sizeof from;
  const ssize_t n =
      ::recvfrom(fd_, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
  if (n < 0) {
    return errnoError("recvfrom", errno);
  }
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &from.sin_addr, text, sizeof text);
  return Datagram{.source = text,
                  .source_port = ntohs(from.sin_port),
                  .payload = std::string(buf, static_cast<size_t>(n))};
}

Result<void> sendUdp(Netns& from, const std::string& ipv4, uint16_t port,
                     std::string_view payload) {
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(port);
  if (::inet_pton(AF_INET, ipv4.c_str(), &dst.sin_addr) != 1) {
    return invalidInput(fmt::format("{} is not an IPv4 address", ipv4));
  }
  auto sock = from.openSocket(AF_INET, SOCK_DGRAM, 0);
  if (!sock) {
    return sock.error();
  }
  const ssize_t n = ::sendto(*sock, payload.data(), payload.size(), 0,
                             reinterpret_cast<const sockaddr*>(&dst), sizeof dst);
  const int err = errno;
  ::close(*sock);
  if (n < 0) {
    return errnoError(fmt::format("sending UDP to {}:{} from {}", ipv4, port, from.name()), err);
  }
  return {};
}

Result<Datagram> sendUntilReceived(Netns& from, UdpListener& listener, const std::string& ipv4,
                                   std::string_view payload, std::chrono::milliseconds timeout) {
  std::optional<Datagram> got;
  std::string last_send_error;
  const bool ok = pollUntil(
      [&] {
        if (auto sent = sendUdp(from, ipv4, listener.port(), payload); !sent) {
          // The route or neighbour may not be there yet; try again next round.
          last_send_error = sent.error().message;
        }
        const auto round_end = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
        while (std::chrono::steady_clock::now() < round_end) {
          auto d = listener.receive(std::chrono::milliseconds(50));
          if (d && d->payload == payload) {
            got = *d;
            return true;
          }
        }
        return false;
      },
      timeout, std::chrono::milliseconds(1));
  if (!ok) {
    return makeError(
        Errc::Timeout,
        fmt::format("{} -> {}:{}: datagram \"{}\" never arrived within {} ms{}", from.name(), ipv4,
                    listener.port(), std::string(payload), timeout.count(),
                    last_send_error.empty() ? "" : " (last: " + last_send_error + ")"));
  }
  return *got;
}

std::vector<std::string> IptablesRules::all() const {
  std::vector<std::string> out;
  for (const auto* group : {&chain_decls, &masq_jumps, &masq_rules, &fwd_jumps, &fwd_rules}) {
    out.insert(out.end(), group->begin(), group->end());
  }
  return out;
}

Result<IptablesRules> iptablesRules(Netns& ns) {
  auto out = ns.execChecked({"iptables-save"});
  if (!out) {
    return out.error();
  }
  IptablesRules r;
  r.raw = out->out;
  std::istringstream in(out->out);
  for (std::string line; std::getline(in, line);) {
    if (startsWith(line, ":FLANNEL-POSTRTG ") || startsWith(line, ":FLANNEL-FWD ")) {
      // ":CHAIN - [packets:bytes]": the counters change with traffic; keep the name only.
      r.chain_decls.push_back(line.substr(0, line.find(' ')));
    } else if (startsWith(line, "-A POSTROUTING ") && endsWith(line, "-j FLANNEL-POSTRTG")) {
      r.masq_jumps.push_back(line);
    } else if (startsWith(line, "-A FLANNEL-POSTRTG ")) {
      r.masq_rules.push_back(line);
    } else if (startsWith(line, "-A FORWARD ") && endsWith(line, "-j FLANNEL-FWD")) {
      r.fwd_jumps.push_back(line);
    } else if (startsWith(line, "-A FLANNEL-FWD ")) {
      r.fwd_rules.push_back(line);
    }
  }
  return r;
}

std::vector<NftRule> NftRules::of(std::string_view table, std::string_view chain) const {
  std::vector<NftRule> out;
  for (const auto& rule : rules) {
    if (rule.table == table && rule.chain == chain) {
      out.push_back(rule);
    }
  }
  return out;
}

std::vector<std::string> NftRules::describe() const {
  std::vector<std::string> out;
  for (const auto& rule : rules) {
    out.push_back(fmt::format("{} {}/{}: {}", rule.family, rule.table, rule.chain, rule.expr));
  }
  return out;
}

Result<NftRules> nftRules(Netns& ns) {
  auto out = ns.execChecked({"nft", "-j", "list", "ruleset"});
  if (!out) {
    return out.error();
  }
  NftRules r;
  r.raw = out->out;
  auto doc = parseJson(out->out, "nft -j list ruleset");
  if (!doc) {
    return doc.error();
  }
  if (!doc->is_object() || !doc->contains("nftables") || !(*doc)["nftables"].is_array()) {
    return invalidInput("nft -j list ruleset: no \"nftables\" array");
  }
  for (const auto& item : (*doc)["nftables"]) {
    if (item.contains("chain")) {
      const auto& c = item["chain"];
      const auto table = c.value("table", "");
      if (startsWith(table, "flannel-")) {
        r.chains.push_back(fmt::format("{}/{}", table, c.value("name", "")));
      }
    } else if (item.contains("rule")) {
      const auto& rule = item["rule"];
      const auto table = rule.value("table", "");
      if (!startsWith(table, "flannel-")) {
        continue;
      }
      r.rules.push_back(NftRule{.family = rule.value("family", ""),
                                .table = table,
                                .chain = rule.value("chain", ""),
                                .handle = rule.value("handle", uint64_t{0}),
                                .expr = rule.contains("expr") ? rule["expr"].dump() : ""});
    }
  }
  return r;
}

Result<void> writeExecutable(const std::filesystem::path& path, std::string_view text) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) {
      return makeError(Errc::Internal, fmt::format("writing {}", path.string()));
    }
  }
  std::error_code ec;
  std::filesystem::permissions(path, std::filesystem::perms(0755),
                               std::filesystem::perm_options::replace, ec);
  if (ec) {
    return makeError(Errc::Internal, fmt::format("chmod 0755 {}: {}", path.string(), ec.message()));
  }
  return {};
}

std::string readTextFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return {};
  }
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace flannel::test
