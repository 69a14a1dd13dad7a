#include "support/netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "core/log.h"
#include "support/test_run.h"

namespace flannel::test {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

Error sysError(std::string_view what, int err) {
  return makeError(Errc::Internal, fmt::format("{}: {}", what, std::strerror(err)), err);
}

uint16_t icmpChecksum(const uint8_t* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) {
    sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  }
  if (len % 2 == 1) {
    sum += static_cast<uint32_t>(data[len - 1] << 8);
  }
  while (sum >> 16) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<uint16_t>(~sum);
}

std::atomic<uint16_t> g_icmp_id{0};

}  // namespace

Netns::Netns(std::shared_ptr<CommandRunner> runner, std::string name, std::string role, int run_id,
             std::filesystem::path run_dir)
    : runner_(std::move(runner)),
      name_(std::move(name)),
      role_(std::move(role)),
      run_id_(run_id),
      run_dir_(std::move(run_dir)) {}

Result<std::unique_ptr<Netns>> Netns::create(TestRun& run, std::string_view role) {
  const std::string name = run.uniqueName(role);
  auto ip = toolPath("ip");
  if (!ip) {
    return ip.error().context("creating namespace " + name);
  }
  // Registered before it exists: a signal arriving during `ip netns add` still cleans it up.
  registry::addNamespace(run.id(), name);
  Command add;
  add.argv = {*ip, "netns", "add", name};
  add.timeout = 10s;
  if (auto added = runChecked(run.runner(), add); !added) {
    registry::removeNamespace(name);
    return added.error().context("creating namespace " + name);
  }
  std::unique_ptr<Netns> ns(
      new Netns(run.sharedRunner(), name, std::string(role), run.id(), run.dir()));
  if (auto lo = ns->ip({"link", "set", "lo", "up"}); !lo) {
    return lo.error().context("creating namespace " + name);  // ~Netns deletes it.
  }
  logger("test.netns")->debug("created {}", name);
  return ns;
}

Netns::~Netns() {
  if (auto done = destroy(); !done) {
    logger("test.netns")->warn("{}", done.error().message);
  }
}

Result<void> Netns::destroy() {
  if (destroyed_) {
    return ok();
  }
  auto killed = destroyNamespace(*runner_, name_);
  if (!killed) {
    return killed.error();
  }
  destroyed_ = true;
  registry::removeNamespace(name_);
  if (!killed->empty()) {
    logger("test.netns")->debug("{}: killed {} processes still inside", name_, killed->size());
  }
  return ok();
}

Result<CommandOutput> Netns::exec(std::vector<std::string> argv, std::chrono::milliseconds timeout,
                                  std::map<std::string, std::string> env_add) {
  if (argv.empty()) {
    return invalidInput("exec in " + name_ + ": empty argv");
  }
  auto ip = toolPath("ip");
  if (!ip) {
    return ip.error();
  }
  auto program = toolPath(argv.front());
  if (!program) {
    return program.error().context("running " + argv.front() + " in " + name_);
  }
  Command cmd;
  cmd.argv = {*ip, "netns", "exec", name_, *program};
  cmd.argv.insert(cmd.argv.end(), std::make_move_iterator(argv.begin() + 1),
                  std::make_move_iterator(argv.end()));
  cmd.env_add = std::move(env_add);
  cmd.timeout = timeout;
  return runner_->run(cmd);
}

Result<CommandOutput> Netns::execChecked(std::vector<std::string> argv,
                                         std::chrono::milliseconds timeout,
                                         std::map<std::string, std::string> env_add) {
  const std::string program = argv.empty() ? std::string() : argv.front();
  auto out = exec(std::move(argv), timeout, std::move(env_add));
  if (!out) {
    return out;
  }
  if (!out->success()) {
    std::string err = out->err;
    while (!err.empty() && err.back() == '\n') {
      err.pop_back();
    }
    return makeError(Errc::Internal,
                     fmt::format("running {} in {}: exit {} (signal {}): {}", program, name_,
                                 out->exit_code, out->term_signal, err));
  }
  return out;
}

Result<CommandOutput> Netns::ip(std::vector<std::string> args) {
  auto ip = toolPath("ip");
  if (!ip) {
    return ip.error();
  }
  Command cmd;
  cmd.argv = {*ip, "-n", name_};
  cmd.argv.insert(cmd.argv.end(), args.begin(), args.end());
  cmd.timeout = 10s;
  return runChecked(*runner_, cmd);
}

Result<void> Netns::ipBatch(std::string_view lines) {
  auto ip = toolPath("ip");
  if (!ip) {
    return ip.error();
  }
  Command cmd;
  cmd.argv = {*ip, "-n", name_, "-batch", "-"};
  cmd.stdin_data = std::string(lines);
  cmd.timeout = 20s;
  auto out = runChecked(*runner_, cmd);
  if (!out) {
    return out.error().context("ip batch in " + name_);
  }
  return ok();
}

Result<std::vector<pid_t>> Netns::pids() {
  auto ip = toolPath("ip");
  if (!ip) {
    return ip.error();
  }
  Command cmd;
  cmd.argv = {*ip, "netns", "pids", name_};
  cmd.timeout = 5s;
  auto out = runChecked(*runner_, cmd);
  if (!out) {
    return out.error();
  }
  std::vector<pid_t> pids;
  std::istringstream in(out->out);
  pid_t pid = 0;
  while (in >> pid) {
    pids.push_back(pid);
  }
  return pids;
}

Result<std::unique_ptr<ChildProcess>> Netns::spawn(ChildSpec spec) {
  spec.netns = name_;
  spec.run_id = run_id_;
  if (spec.log_path.empty() && !spec.argv.empty()) {
    const auto program = std::filesystem::path(spec.argv.front()).filename().string();
    spec.log_path = run_dir_ / fmt::format("{}-{}-{}.log", role_, program, ++spawned_);
  }
  return ChildProcess::start(std::move(spec));
}

Result<int> Netns::openSocket(int domain, int type, int protocol) {
  const std::string path = "/run/netns/" + name_;
  const int ns_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns_fd < 0) {
    return sysError("opening " + path, errno);
  }
  int sock = -1;
  int err = 0;
  // setns() switches only the calling thread; this thread exists just for that.
  std::thread([&] {
    if (::setns(ns_fd, CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    sock = ::socket(domain, type | SOCK_CLOEXEC, protocol);
    if (sock < 0) {
      err = errno;
    }
  }).join();
  ::close(ns_fd);
  if (sock < 0) {
    return sysError("opening a socket in " + name_, err);
  }
  return sock;
}

Result<void> Netns::ping(const std::string& ipv4, std::chrono::milliseconds timeout,
                         size_t data_bytes) {
  const auto ctx = fmt::format("ping {} from {}", ipv4, name_);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  if (::inet_pton(AF_INET, ipv4.c_str(), &dst.sin_addr) != 1) {
    return invalidInput(ctx + ": not an IPv4 address");
  }
  auto sock = openSocket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  if (!sock) {
    return sock.error().context(ctx);
  }
  const int fd = *sock;
  const uint16_t id = static_cast<uint16_t>((::getpid() & 0xff) << 8 | (++g_icmp_id & 0xff));
  const auto deadline = Clock::now() + timeout;
  uint16_t seq = 0;
  std::vector<uint8_t> buf(65536);
  Result<void> result =
      makeError(Errc::Timeout, fmt::format("{}: no reply within {} ms", ctx, timeout.count()));
  while (Clock::now() < deadline) {
    ++seq;
    std::vector<uint8_t> req(8 + std::clamp<size_t>(data_bytes, 8, 65000), 0);
    req[0] = ICMP_ECHO;
    req[4] = static_cast<uint8_t>(id >> 8);
    req[5] = static_cast<uint8_t>(id & 0xff);
    req[6] = static_cast<uint8_t>(seq >> 8);
    req[7] = static_cast<uint8_t>(seq & 0xff);
    std::memcpy(req.data() + 8, "flannel!", 8);
    const uint16_t sum = icmpChecksum(req.data(), req.size());
    req[2] = static_cast<uint8_t>(sum >> 8);
    req[3] = static_cast<uint8_t>(sum & 0xff);
    // sendto can fail while the neighbour is unresolved or the link is still coming up; retry.
    (void)::sendto(fd, req.data(), req.size(), 0, reinterpret_cast<const sockaddr*>(&dst),
                   sizeof dst);
    const auto round_end = std::min(deadline, Clock::now() + 200ms);
    bool replied = false;
    while (!replied && Clock::now() < round_end) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(round_end - Clock::now());
      pollfd pfd{.fd = fd, .events = POLLIN, .revents = 0};
      if (::poll(&pfd, 1, static_cast<int>(std::max<long long>(1, left.count()))) <= 0) {
        continue;
      }

      sockaddr_in from{};
      socklen_t from_len = sizeof from;
      const ssize_t n = ::recvfrom(fd, buf.data(), buf.size(), MSG_DONTWAIT,
                                   reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 20 || from.sin_addr.s_addr != dst.sin_addr.s_addr) {
        continue;
      }
      const size_t ihl = static_cast<size_t>(buf[0] & 0x0f) * 4;
      if (static_cast<size_t>(n) < ihl + 8) {
        continue;
      }
      const uint8_t* icmp = buf.data() + ihl;
      const uint16_t got_id = static_cast<uint16_t>(icmp[4] << 8 | icmp[5]);
      replied = icmp[0] == ICMP_ECHOREPLY && got_id == id;
    }
    if (replied) {
      result = ok();
      break;
    }
  }
  ::close(fd);
  return result;
}

}  // namespace flannel::test
