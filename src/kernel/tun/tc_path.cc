#include "kernel/tun/tc_path.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "core/log.h"

// The compiled programs (bpf/udp_tc.bpf.c), embedded by the build (cmake/embed_file.cmake).
extern "C" const unsigned char flannel_udp_tc_object[];
extern "C" const size_t flannel_udp_tc_object_size;

namespace flannel::kernel {

namespace {

std::shared_ptr<spdlog::logger> log() {
  return logger("kernel.tc");
}

constexpr const char* kSoname = "libbpf.so.1";

// tcx attach points (linux/bpf.h of Linux 6.6; Debian 12's headers predate them).
constexpr int kTcxIngress = 46;
constexpr int kTcxEgress = 47;

// Same layout as struct flannel_udp_config in bpf/udp_tc.bpf.c.
struct BpfConfig {
  uint32_t local_ip;
  uint32_t own_net;
  uint32_t own_mask;
  uint32_t ext_ifindex;
  uint32_t tun_ifindex;
  uint16_t port;
  uint16_t enabled;
  uint32_t flags;
};
static_assert(sizeof(BpfConfig) == 28);
constexpr uint32_t kL4InUserSpace = 1;  // FLANNEL_UDP_L4_IN_USER_SPACE

// The config map's value: disabled (takes nothing) until our subnet is known.
BpfConfig bpfConfig(const UdpFastPathOptions& o, std::optional<std::pair<Ip4, uint8_t>> own) {
  BpfConfig cfg{};
  cfg.local_ip = htonl(o.local_ip.toU32());
  cfg.ext_ifindex = static_cast<uint32_t>(o.ext_ifindex);
  cfg.tun_ifindex = static_cast<uint32_t>(o.tun_ifindex);
  cfg.port = htons(o.port);
  cfg.flags = o.virtual_ext ? kL4InUserSpace : 0;
  if (own) {
    const uint8_t prefix = own->second;
    const uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
    cfg.own_net = htonl(own->first.toU32() & mask);
    cfg.own_mask = htonl(mask);
    cfg.enabled = 1;
  }
  return cfg;
}

struct BpfLpmKey {
  uint32_t prefixlen;
  uint32_t addr;
};

struct BpfStats {
  uint64_t tx_packets, tx_bytes, rx_packets, rx_bytes;
};

// Once the programs are attached, libbpf has done its part (ELF, BTF, relocations, loading,
// attaching) and is unloaded: with libelf and zlib it kept ~0.5 MB of an idle daemon resident.
// What remains are element reads and writes on the maps and test runs, which are single bpf(2)
// commands (man 2 bpf); these go to the kernel directly. Same convention as libbpf's wrappers:
// < 0 on failure, with errno set.
uint64_t bpfPtr(const void* p) {
  return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p));
}

int bpfCommand(int cmd, bpf_attr& attr) {
  return static_cast<int>(::syscall(__NR_bpf, cmd, &attr, sizeof attr));
}

// BPF_MAP_UPDATE_ELEM (flags 0: BPF_ANY), _DELETE_ELEM (value nullptr) or _LOOKUP_ELEM (value:
// the buffer to fill) on map `fd`.
int mapElem(int cmd, int fd, const void* key, const void* value) {
  bpf_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.map_fd = static_cast<uint32_t>(fd);
  attr.key = bpfPtr(key);
  attr.value = bpfPtr(value);
  return bpfCommand(cmd, attr);
}

struct Api {
  decltype(&::libbpf_set_print) set_print = nullptr;
  decltype(&::bpf_object__open_mem) open_mem = nullptr;
  decltype(&::bpf_object__load) load = nullptr;
  decltype(&::bpf_object__close) close = nullptr;
  decltype(&::bpf_object__find_program_by_name) find_program = nullptr;
  decltype(&::bpf_program__fd) program_fd = nullptr;
  decltype(&::bpf_object__find_map_fd_by_name) find_map_fd = nullptr;
  decltype(&::bpf_link_create) link_create = nullptr;
  decltype(&::libbpf_num_possible_cpus) possible_cpus = nullptr;
  decltype(&::bpf_tc_hook_create) tc_hook_create = nullptr;
  decltype(&::bpf_tc_attach) tc_attach = nullptr;
  decltype(&::bpf_tc_detach) tc_detach = nullptr;
};

// Our classic tc filters (legacy attach): fixed handle and priority, so that a restarted
// flanneld replaces what a killed one left.
constexpr uint32_t kTcHandle = 0xf1a2;
constexpr uint32_t kTcPriority = 1;

// libbpf's messages (verifier log included) go to our log: warnings at debug level, the rest at
// trace. The last warning is kept for the error returned by load() and attach().
thread_local std::string last_warning;

int printToLog(enum libbpf_print_level level, const char* format, va_list args) {
  char buf[1024];
  const int n = std::vsnprintf(buf, sizeof buf, format, args);
  if (n <= 0) {
    return 0;
  }
  std::string text(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
  while (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  if (level == LIBBPF_WARN) {
    last_warning = text;
    log()->debug("libbpf: {}", text);
  } else {
    log()->trace("libbpf: {}", text);
  }
  return 0;
}

Error unavailable(std::string what) {
  return makeError(Errc::Unavailable, "tc BPF fast path: " + std::move(what));
}

// A failed step, with errno's text and libbpf's last warning.
Error failedStep(std::string_view step, int err) {
  std::string why = std::strerror(err);
  if (!last_warning.empty()) {
    why += " (libbpf: " + last_warning + ")";
  }
  return unavailable(fmt::format("{}: {}", step, why));
}

}  // namespace

struct TcPath::Impl {
  void* handle = nullptr;
  Api api{};
  bpf_object* object = nullptr;
  int cfg_fd = -1;
  int routes_fd = -1;
  int peers_fd = -1;
  int stats_fd = -1;
  int encap_fd = -1;
  int decap_fd = -1;
  bool released = false;  // libbpf unloaded; the fds above are ours (dup()ed from the object's)
  int encap_link = -1;
  int decap_link = -1;
  int cpus = 1;
  int legacy_ext = 0;  // ifindex whose ingress has our classic tc filter

  ~Impl() {
    if (legacy_ext != 0) {
      // The TUN's filter goes with the TUN; the external interface's must be removed.
      bpf_tc_hook hook{};
      hook.sz = sizeof hook;
      hook.ifindex = legacy_ext;
      hook.attach_point = BPF_TC_INGRESS;
      bpf_tc_opts opts{};
      opts.sz = sizeof opts;
      opts.handle = kTcHandle;
      opts.priority = kTcPriority;
      api.tc_detach(&hook, &opts);
    }
    for (int fd : {encap_link, decap_link}) {
      if (fd >= 0) {
        ::close(fd);  // tcx: closing the link detaches the program
      }
    }
    if (released) {
      for (int fd : {cfg_fd, routes_fd, peers_fd, stats_fd, encap_fd, decap_fd}) {
        ::close(fd);
      }
    }
    if (object != nullptr) {
      api.close(object);
    }
    if (handle != nullptr) {
      ::dlclose(handle);
    }
  }

  // Keeps the maps and programs (own fds) and unloads libbpf with the object it parsed. Classic
  // tc filters keep libbpf: removing them at stop needs it. On failure nothing changes.
  void release() {
    if (released || handle == nullptr || legacy_ext != 0) {
      return;
    }
    int* fds[] = {&cfg_fd, &routes_fd, &peers_fd, &stats_fd, &encap_fd, &decap_fd};
    int copies[std::size(fds)];
    size_t n = 0;
    for (; n < std::size(fds); ++n) {
      copies[n] = ::fcntl(*fds[n], F_DUPFD_CLOEXEC, 0);
      if (copies[n] < 0) {
        break;
      }
    }
    if (n != std::size(fds)) {
      for (size_t i = 0; i < n; ++i) {
        ::close(copies[i]);
      }
      return;
    }
    for (size_t i = 0; i < n; ++i) {
      *fds[i] = copies[i];
    }
    released = true;
    api.close(object);
    object = nullptr;
    ::dlclose(handle);
    handle = nullptr;
    api = {};
    ::malloc_trim(0);  // what libbpf freed goes back to the system
  }
};

TcPath::TcPath(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TcPath::~TcPath() {
  if (announce_fd_ >= 0) {
    ::close(announce_fd_);
  }
}

Result<void> TcPath::announce(Ip4 peer, std::span<const std::byte> datagram) {
  auto fail = [](const char* step) {
    const int err = errno;
    return makeError(Errc::Kernel,
                     fmt::format("tc BPF fast path: announcing: {}: {}", step, std::strerror(err)),
                     err);
  };
  if (announce_fd_ < 0) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      return fail("socket");
    }
    const int one = 1;
    sockaddr_in self{};
    self.sin_family = AF_INET;
    self.sin_addr.s_addr = htonl(options_.local_ip.toU32());
    if (::setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &one, sizeof one) != 0 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&self), sizeof self) != 0) {
      auto e = fail("SO_NO_CHECK / bind");
      ::close(fd);
      return e;
    }
    announce_fd_ = fd;
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(options_.port);
  to.sin_addr.s_addr = htonl(peer.toU32());
  if (::sendto(announce_fd_, datagram.data(), datagram.size(), 0, reinterpret_cast<sockaddr*>(&to),
               sizeof to) < 0) {
    return fail("sendto");
  }
  return {};
}

Result<std::unique_ptr<TcPath>> TcPath::load(const UdpFastPathOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->handle = ::dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
  if (impl->handle == nullptr) {
    const char* why = ::dlerror();
    return unavailable(fmt::format("cannot load {} (Debian package libbpf1): {}", kSoname,
                                   why != nullptr ? why : "unknown error"));
  }
  Api& a = impl->api;
  std::string missing;
  auto bind = [&](const char* name, auto& slot) {
    slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(::dlsym(impl->handle, name));
    if (slot == nullptr && missing.empty()) {
      missing = name;
    }
  };
  bind("libbpf_set_print", a.set_print);
  bind("bpf_object__open_mem", a.open_mem);
  bind("bpf_object__load", a.load);
  bind("bpf_object__close", a.close);
  bind("bpf_object__find_program_by_name", a.find_program);
  bind("bpf_program__fd", a.program_fd);
  bind("bpf_object__find_map_fd_by_name", a.find_map_fd);
  bind("bpf_link_create", a.link_create);
  bind("libbpf_num_possible_cpus", a.possible_cpus);
  bind("bpf_tc_hook_create", a.tc_hook_create);
  bind("bpf_tc_attach", a.tc_attach);
  bind("bpf_tc_detach", a.tc_detach);
  if (!missing.empty()) {
    return unavailable(fmt::format("{} has no function {}", kSoname, missing));
  }
  a.set_print(printToLog);
  last_warning.clear();

  impl->object = a.open_mem(flannel_udp_tc_object, flannel_udp_tc_object_size, nullptr);
  if (impl->object == nullptr) {
    return failedStep("opening the BPF object", errno);
  }
  if (int r = a.load(impl->object); r < 0) {
    return failedStep("loading the programs (needs CAP_BPF and CAP_NET_ADMIN)", -r);
  }
  impl->cfg_fd = a.find_map_fd(impl->object, "flannel_udp_cfg");
  impl->routes_fd = a.find_map_fd(impl->object, "flannel_udp_routes");
  impl->peers_fd = a.find_map_fd(impl->object, "flannel_udp_peers");
  impl->stats_fd = a.find_map_fd(impl->object, "flannel_udp_stats");
  auto* encap = a.find_program(impl->object, "flannel_udp_encap");
  auto* decap = a.find_program(impl->object, "flannel_udp_decap");
  if (impl->cfg_fd < 0 || impl->routes_fd < 0 || impl->peers_fd < 0 || impl->stats_fd < 0 ||
      encap == nullptr || decap == nullptr) {
    return unavailable("the embedded BPF object lacks a map or program");
  }
  impl->cpus = std::max(1, a.possible_cpus());

  const BpfConfig cfg = bpfConfig(options, std::nullopt);
  const uint32_t zero = 0;
  if (mapElem(BPF_MAP_UPDATE_ELEM, impl->cfg_fd, &zero, &cfg) < 0) {
    return failedStep("writing the config map", errno);
  }
  impl->encap_fd = a.program_fd(encap);
  impl->decap_fd = a.program_fd(decap);
  std::unique_ptr<TcPath> path(new TcPath(std::move(impl)));
  path->options_ = options;
  return path;
}

Result<std::unique_ptr<TcPath>> TcPath::attach(const UdpFastPathOptions& options) {
  auto path = load(options);
  if (!path) {
    return path.error();
  }
  Impl& impl = *(*path)->impl_;
  last_warning.clear();
  if (!options.legacy_tc) {
    impl.encap_link = impl.api.link_create(impl.encap_fd, options.tun_ifindex,
                                           static_cast<bpf_attach_type>(kTcxEgress), nullptr);
  }
  if (options.legacy_tc || impl.encap_link == -EINVAL) {
    // No tcx before Linux 6.6 (EINVAL: unknown attach type): classic tc filters.
    auto filter = [&](int ifindex, bpf_tc_attach_point point, int prog_fd) -> Result<void> {
      bpf_tc_hook hook{};
      hook.sz = sizeof hook;
      hook.ifindex = ifindex;
      hook.attach_point = point;
      if (int r = impl.api.tc_hook_create(&hook); r < 0 && r != -EEXIST) {
        return failedStep(fmt::format("adding a clsact qdisc to ifindex {}", ifindex), -r);
      }
      bpf_tc_opts opts{};
      opts.sz = sizeof opts;
      opts.prog_fd = prog_fd;
      opts.flags = BPF_TC_F_REPLACE;
      opts.handle = kTcHandle;
      opts.priority = kTcPriority;
      if (int r = impl.api.tc_attach(&hook, &opts); r < 0) {
        return failedStep(fmt::format("adding a tc filter to ifindex {}", ifindex), -r);
      }
      return {};
    };
    if (auto r = filter(options.tun_ifindex, BPF_TC_EGRESS, impl.encap_fd); !r) {
      return r.error();
    }
    if (auto r = filter(options.ext_ifindex, BPF_TC_INGRESS, impl.decap_fd); !r) {
      return r.error();
    }
    impl.legacy_ext = options.ext_ifindex;
    log()->info("tc BPF fast path: attached as classic tc filters (handle {:#x}, priority {})",
                kTcHandle, kTcPriority);
    return path;
  }
  if (impl.encap_link < 0) {
    return failedStep(fmt::format("attaching to the egress of ifindex {}", options.tun_ifindex),
                      -impl.encap_link);
  }
  impl.decap_link = impl.api.link_create(impl.decap_fd, options.ext_ifindex,
                                         static_cast<bpf_attach_type>(kTcxIngress), nullptr);
  if (impl.decap_link < 0) {
    return failedStep(fmt::format("attaching to the ingress of ifindex {}", options.ext_ifindex),
                      -impl.decap_link);
  }
  impl.release();
  return path;
}

Result<TcPath::Verdict> TcPath::testDecap(std::span<const std::byte> frame, uint32_t repeat) const {
  std::vector<std::byte> out(frame.size() + 256);
  bpf_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.test.prog_fd = static_cast<uint32_t>(impl_->decap_fd);
  attr.test.data_in = bpfPtr(frame.data());
  attr.test.data_size_in = static_cast<uint32_t>(frame.size());
  attr.test.data_out = bpfPtr(out.data());
  attr.test.data_size_out = static_cast<uint32_t>(out.size());
  attr.test.repeat = std::max<uint32_t>(repeat, 1);
  if (bpfCommand(BPF_PROG_TEST_RUN, attr) < 0) {
    const int err = errno;
    return makeError(Errc::Kernel, fmt::format("BPF_PROG_TEST_RUN: {}", std::strerror(err)), err);
  }
  out.resize(std::min<size_t>(attr.test.data_size_out, out.size()));
  return Verdict{.action = static_cast<int>(attr.test.retval),
                 .frame = std::move(out),
                 .ns_per_run = attr.test.duration};
}

Result<void> TcPath::enable(Ip4 own_network, uint8_t own_prefix) {
  const BpfConfig cfg = bpfConfig(options_, std::pair{own_network, own_prefix});
  const uint32_t zero = 0;
  if (mapElem(BPF_MAP_UPDATE_ELEM, impl_->cfg_fd, &zero, &cfg) < 0) {
    const int err = errno;
    return makeError(Errc::Kernel,
                     fmt::format("tc BPF fast path: config map: {}", std::strerror(err)), err);
  }
  return {};
}

Result<void> TcPath::setPeers(const std::vector<UdpFastPathRoute>& entries) {
  std::map<std::pair<uint32_t, uint8_t>, uint32_t> routes;
  std::map<uint32_t, uint32_t> peers;
  for (const auto& e : entries) {
    routes[{e.network.toU32(), e.prefix_len}] = e.peer.toU32();
    ++peers[e.peer.toU32()];
  }
  // routes_ and peers_ follow what the kernel accepted, so a failed update is retried by the
  // next call. New and changed entries first, removed ones last: a subnet moving to another
  // host never goes without an entry.
  int err = 0;
  auto ok = [&](int r) {
    if (r < 0 && err == 0) {
      err = errno;
    }
    return r >= 0;
  };
  auto lpmKey = [](std::pair<uint32_t, uint8_t> k) {
    return BpfLpmKey{.prefixlen = k.second, .addr = htonl(k.first)};
  };
  for (const auto& [k, peer] : routes) {
    auto it = routes_.find(k);
    if (it == routes_.end() || it->second != peer) {
      const BpfLpmKey key = lpmKey(k);
      const uint32_t value = htonl(peer);
      if (ok(mapElem(BPF_MAP_UPDATE_ELEM, impl_->routes_fd, &key, &value))) {
        routes_[k] = peer;
      }
    }
  }
  for (const auto& [ip, n] : peers) {
    auto it = peers_.find(ip);
    if (it == peers_.end() || it->second != n) {
      const uint32_t key = htonl(ip);
      if (ok(mapElem(BPF_MAP_UPDATE_ELEM, impl_->peers_fd, &key, &n))) {
        peers_[ip] = n;
      }
    }
  }
  std::erase_if(routes_, [&](const auto& kv) {
    if (routes.contains(kv.first)) {
      return false;
    }
    const BpfLpmKey key = lpmKey(kv.first);
    return ok(mapElem(BPF_MAP_DELETE_ELEM, impl_->routes_fd, &key, nullptr));
  });
  std::erase_if(peers_, [&](const auto& kv) {
    if (peers.contains(kv.first)) {
      return false;
    }
    const uint32_t key = htonl(kv.first);
    return ok(mapElem(BPF_MAP_DELETE_ELEM, impl_->peers_fd, &key, nullptr));
  });
  if (err != 0) {
    return makeError(
        Errc::Kernel,
        fmt::format("tc BPF fast path: updating the lease maps: {}", std::strerror(err)), err);
  }
  return {};
}

UdpFastPathStats TcPath::stats() const {
  UdpFastPathStats out;
  std::vector<BpfStats> per_cpu(static_cast<size_t>(impl_->cpus));
  const uint32_t zero = 0;
  if (mapElem(BPF_MAP_LOOKUP_ELEM, impl_->stats_fd, &zero, per_cpu.data()) < 0) {
    return out;
  }
  for (const auto& s : per_cpu) {
    out.tx_packets += s.tx_packets;
    out.tx_bytes += s.tx_bytes;
    out.rx_packets += s.rx_packets;
    out.rx_bytes += s.rx_bytes;
  }
  return out;
}

}  // namespace flannel::kernel
