// The udp backend end to end: real flanneld processes in host namespaces, real etcd, TUN
// devices and UDP sockets; pods reach each other; a hand-made "Go flannel node" in the switch
// namespace exchanges packets in flannel's wire format (the bare IPv4 packet as UDP payload).
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <thread>
#include <tuple>

#include "core/lease.h"
#include "core/subnet_env.h"
#include "support/cluster_fixture.h"
#include "support/flannel_cluster.h"
#include "support/link_counters.h"
#include "support/packet_builder.h"
#include "support/poll.h"

namespace flannel::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr const char* kUdpConfig = R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp"}})";

class UdpE2e : public ClusterFixture {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root: creates network namespaces, TUN devices and routes";
    }
    if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "this kernel has no /dev/net/tun (the udp backend needs the tun module)";
    }
  }
  // The fixture's start, plus SPEC §5.3's subnet.env MTU (ext - 28) on every host.
  void startUdp(int hosts, std::string config, std::vector<std::string> args = {}) {
    start(hosts, std::move(config), std::move(args));
    if (HasFatalFailure()) {
      return;
    }
    for (int i = 1; i <= hosts; ++i) {
      auto env = readSubnetEnv(cluster_->subnetFile(i).string());
      ASSERT_TRUE(env);
      EXPECT_EQ(env->mtu.value_or(0), 1500u - 28u) << "udp: subnet.env MTU is ext - 28";
    }
  }
  // iperf3 TCP for 1 s from pod `from` to pod `to`; returns the receiver's bits per second (0
  // when it failed, which is a test failure).
  double expectTcp(int from, int to) {
    ChildSpec iperf;
    iperf.argv = {"iperf3", "-s", "-1"};
    auto server = cluster_->pod(to).spawn(iperf);
    EXPECT_TRUE(server) << server.error().message;
    if (!server) {
      return 0;
    }
    std::string last;
    bool ran = pollUntil(
        [&] {
          auto c =
              cluster_->pod(from).exec({"iperf3", "-c", cluster_->podIp(to), "-t", "1", "-J"}, 15s);
          last = c ? c->out + c->err : c.error().message;
          // With -J, iperf3 exits 0 even when it could not connect (the server not up yet).
          return c && c->success() && last.find("\"error\"") == std::string::npos;
        },
        15s, 300ms);
    EXPECT_TRUE(ran) << "iperf3 TCP pod" << from << " -> pod" << to << " failed: " << last
                     << "\nlog:\n"
                     << cluster_->flanneldLog(from);
    // "sum_received": {... "bits_per_second": N ...}
    const auto sum = last.find("\"sum_received\"");
    const auto bps = last.find("\"bits_per_second\":", sum);
    if (!ran || sum == std::string::npos || bps == std::string::npos) {
      ADD_FAILURE() << "no throughput in iperf3's report: " << last;
      return 0;
    }
    return std::stod(last.substr(bps + 18));
  }
  std::string show(int host, std::vector<std::string> args) {
    auto r = cluster_->host(host).ip(std::move(args));
    return r ? r->out : std::string();
  }
  // Sends one UDP datagram from `pod` to `dst`:9 and returns the ICMP error it gets back within
  // a second as "type T code C from A", or "" when none came.
  static std::string icmpErrorFor(Netns& pod, const std::string& dst) {
    auto s = pod.openSocket(AF_INET, SOCK_DGRAM, 0);
    if (!s) {
      return "socket: " + s.error().message;
    }
    const int fd = *s;
    const int one = 1;
    ::setsockopt(fd, SOL_IP, IP_RECVERR, &one, sizeof one);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(9);
    ::inet_pton(AF_INET, dst.c_str(), &to.sin_addr);
    std::string result;
    if (::sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) == 1) {
      pollfd pfd{fd, 0, 0};
      if (::poll(&pfd, 1, 1000) > 0 && (pfd.revents & POLLERR) != 0) {
        char data[64];
        char control[256];
        iovec iov{data, sizeof data};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        if (::recvmsg(fd, &msg, MSG_ERRQUEUE) >= 0) {
          for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) {
              auto* ee = reinterpret_cast<sock_extended_err*>(CMSG_DATA(c));
              if (ee->ee_origin == SO_EE_ORIGIN_ICMP) {
                auto* off = reinterpret_cast<sockaddr_in*>(SO_EE_OFFENDER(ee));
                char text[INET_ADDRSTRLEN] = {};
                ::inet_ntop(AF_INET, &off->sin_addr, text, sizeof text);
                result = fmt::format("type {} code {} from {}", ee->ee_type, ee->ee_code, text);
              }
            }
          }
        }
      }
    }
    ::close(fd);
    return result;
  }
  // GET http://127.0.0.1:<port><path> inside `ns`; the whole response, "" on failure.
  static std::string httpGet(Netns& ns, uint16_t port, const std::string& path) {
    auto s = ns.openSocket(AF_INET, SOCK_STREAM, 0);
    if (!s) {
      return "";
    }
    const int fd = *s;
    timeval tv{.tv_sec = 3, .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string out;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
      const std::string req =
          "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
      if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
        char buf[4096];
        for (int i = 0; i < 1000; ++i) {  // bounded; the server closes after the reply
          const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
          if (n <= 0) {
            break;
          }
          out.append(buf, static_cast<size_t>(n));
        }
      }
    }
    ::close(fd);
    return out;
  }
  // One host (h1, /metrics on 9099) and a hand-made "Go flannel node" in the switch namespace:
  // the lease 10.5.200.0/24 at 192.168.91.1.
  void startWithGoPeer(const std::string& config) {
    startUdp(1, config, {"-healthz-port=9099"});
    if (HasFatalFailure()) {
      return;
    }
    ASSERT_TRUE(cluster_->etcd().etcdctl({"put", "/coreos.com/network/subnets/10.5.200.0-24",
                                          R"({"PublicIP":"192.168.91.1","PublicIPv6":null})"}));
  }
  // A UDP socket in the switch namespace bound to `addr`:8285 (owned by the caller).
  int goPeerSocket(const char* addr) {
    auto s = cluster_->topology().switchNs().openSocket(AF_INET, SOCK_DGRAM, 0);
    EXPECT_TRUE(s) << s.error().message;
    if (!s) {
      return -1;
    }
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(8285);
    ::inet_pton(AF_INET, addr, &sa.sin_addr);
    EXPECT_EQ(::bind(*s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << std::strerror(errno);
    return *s;
  }
  // The fast path's announcement (backend/udp/dataplane/packet.h buildAnnouncement()): an ICMP
  // echo reply with id 0x666c.
  static bool isAnnouncement(std::span<const std::byte> p) {
    return p.size() >= 28 && std::to_integer<int>(p[9]) == IPPROTO_ICMP &&
           std::to_integer<int>(p[20]) == 0 && std::to_integer<int>(p[24]) == 0x66 &&
           std::to_integer<int>(p[25]) == 0x6c;
  }
  // h1's udp endpoint, 192.168.91.11:8285.
  static sockaddr_in h1Endpoint() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(8285);
    ::inet_pton(AF_INET, "192.168.91.11", &a.sin_addr);
    return a;
  }
  // The next datagram on `fd` within `wait` (per datagram), skipping the fast path's
  // announcements (h1 sends one every second to each peer); at most 20 are read.
  static bool nextDatagram(int fd, std::chrono::milliseconds wait, std::vector<std::byte>& out,
                           sockaddr_in* from = nullptr) {
    for (int i = 0; i < 20; ++i) {
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(wait.count())) <= 0) {
        return false;
      }
      out.resize(2048);
      sockaddr_in sender{};
      socklen_t len = sizeof sender;
      const ssize_t n =
          ::recvfrom(fd, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&sender), &len);
      out.resize(n > 0 ? static_cast<size_t>(n) : 0);
      if (n > 0 && !isAnnouncement(out)) {
        if (from != nullptr) {
          *from = sender;
        }
        return true;
      }
    }
    return false;
  }
  void wireFormatAndDrops(const std::string& config, bool kernel_path);
  void smallerPathMtu(const std::string& config);

  // Runs a command in a namespace, failing the test if it does not succeed.
  static void mustRun(Netns& ns, const std::vector<std::string>& argv) {
    auto r = ns.exec(argv);
    ASSERT_TRUE(r && r->success()) << argv[0] << ": " << (r ? r->err : r.error().message);
  }

  // h1 reaches h2 through the switch namespace as a router (forwarding on, no ICMP redirects
  // that would send h1 straight to h2): a /32 route on h1 via 192.168.91.1.
  void routeH1ToH2ThroughTheRouter() {
    mustRun(cluster_->topology().switchNs(),
            {"sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
             "net.ipv4.conf.br0.send_redirects=0"});
    mustRun(cluster_->host(1), {"ip", "route", "add", Topology::hostAddress(2) + "/32", "via",
                                Topology::kRouterAddress});
  }
  void checksumsToAUserSpacePeer(const std::string& config, bool kernel_path);

  static constexpr uint32_t kTcxIngress = 46;  // BPF_TCX_INGRESS (linux/bpf.h of Linux 6.6)
  // How many BPF programs are attached at tcx `attach_type` of `ifname` in `ns`
  // (BPF_PROG_QUERY, from a thread that setns()es into the namespace).
  static Result<uint32_t> tcxPrograms(Netns& ns, const std::string& ifname, uint32_t attach_type) {
    const std::string path = "/run/netns/" + ns.name();
    const int ns_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0) {
      return makeError(Errc::Unavailable, "opening " + path + ": " + std::strerror(errno));
    }
    int err = 0;
    uint32_t count = 0;
    std::thread([&] {
      if (::setns(ns_fd, CLONE_NEWNET) != 0) {
        err = errno;
        return;
      }
      const unsigned ifindex = ::if_nametoindex(ifname.c_str());
      if (ifindex == 0) {
        err = errno;
        return;
      }
      // union bpf_attr's query member: target_ifindex, attach_type, query_flags, attach_flags,
      // prog_ids, prog_cnt (the rest zero).
      struct {
        uint32_t target_ifindex, attach_type, query_flags, attach_flags;
        uint64_t prog_ids;
        uint32_t prog_cnt, pad;
        uint64_t rest[4];
      } attr{};
      attr.target_ifindex = ifindex;
      attr.attach_type = attach_type;
      if (::syscall(SYS_bpf, 16 /* BPF_PROG_QUERY */, &attr, sizeof attr) != 0) {
        err = errno;
        return;
      }
      count = attr.prog_cnt;
    }).join();
    ::close(ns_fd);
    if (err != 0) {
      return makeError(Errc::Unavailable,
                       fmt::format("BPF_PROG_QUERY on {}: {}", ifname, std::strerror(err)));
    }
    return count;
  }

  // The value of one metric line `name` (with labels, exactly as rendered), or -1.
  static double metric(const std::string& page, const std::string& name) {
    const auto at = page.find("\n" + name + " ");
    if (at == std::string::npos) {
      return -1;
    }
    return std::stod(page.substr(at + name.size() + 2));
  }
};

// Whether host h's flanneld has libbpf mapped.
bool mapsLibbpf(FlannelCluster& c, int h) {
  std::ifstream maps("/proc/" + std::to_string(c.flanneld(h)->pid()) + "/maps");
  std::string text((std::istreambuf_iterator<char>(maps)), std::istreambuf_iterator<char>());
  EXPECT_FALSE(text.empty()) << "cannot read flanneld's /proc/<pid>/maps";
  return text.find("libbpf.so") != std::string::npos;
}

TEST_F(UdpE2e, ThreeHostsPodsPingAndTalkTcpOverTheUdpBackend) {
  startUdp(3, kUdpConfig, {"-healthz-port=9099"});
  expectFullMesh();
  expectTcp(1, 3);
  expectTcp(2, 1);
  // By default the in-kernel fast path (tc BPF) carries the bulk of the traffic: the data of
  // h1 -> h3 and h2 -> h1 (TCP super packets; on this virtual underlay TCP goes through the
  // kernel once the peer has announced its kernel decap, see CompleteChecksums* below).
  for (auto [h, sends, receives] :
       {std::tuple{1, true, true}, std::tuple{2, true, false}, std::tuple{3, false, true}}) {
    const std::string page = httpGet(cluster_->host(h), 9099, "/metrics");
    EXPECT_EQ(metric(page, "flannel_udp_tc_bpf_active"), 1) << page << cluster_->flanneldLog(h);
    if (sends) {
      EXPECT_GT(metric(page, "flannel_udp_tc_tx_packets_total"), 1000) << "h" << h << page;
    }
    if (receives) {
      EXPECT_GT(metric(page, "flannel_udp_tc_rx_packets_total"), 1000) << "h" << h << page;
    }
    EXPECT_GE(metric(page, "flannel_udp_tx_packets_total"),
              metric(page, "flannel_udp_tc_tx_packets_total"))
        << "the totals include the kernel's share\n"
        << page;
  }
  EXPECT_THAT(cluster_->flanneldLog(1), HasSubstr("in-kernel fast path attached"));
  // Attached with tcx links, libbpf (+ libelf, zlib: ~0.5 MB resident) is unloaded again; the
  // lease maps kept following (h3's counters above need h1's and h2's routes in them).
  EXPECT_FALSE(mapsLibbpf(*cluster_, 1)) << "libbpf still mapped after the tcx attach";
  // One queue per CPU: with more than one, a peer's datagrams are spread by inner flow.
  if (std::thread::hardware_concurrency() > 1) {
    EXPECT_THAT(cluster_->flanneldLog(1), HasSubstr("steered by inner flow"));
  }
  // SPEC §5.3: flannel0, address = own subnet's network address /32, MTU ext - 28, route
  // <Network> dev flannel0.
  const std::string link = show(1, {"-d", "link", "show", "flannel0"});
  EXPECT_THAT(link, HasSubstr("mtu 1472"));
  EXPECT_THAT(link, HasSubstr("tun"));
  EXPECT_THAT(show(1, {"-4", "addr", "show", "dev", "flannel0"}),
              HasSubstr("inet " + subnets_.at(1).addr().toString() + "/32"));
  EXPECT_THAT(show(1, {"route", "show", "10.5.0.0/16"}), HasSubstr("dev flannel0"));
  // The lease: PublicIP only, no BackendType/BackendData.
  auto lease = cluster_->etcd().etcdctl(
      {"get", "--print-value-only",
       "/coreos.com/network/subnets/" +
           subnetKeyName(SubnetKey{.ipv4 = subnets_.at(2), .ipv6 = std::nullopt})});
  ASSERT_TRUE(lease) << lease.error().message;
  EXPECT_THAT(lease->out, HasSubstr(R"("PublicIP":"192.168.91.12")"));
  EXPECT_THAT(lease->out, Not(HasSubstr("BackendType")));
  EXPECT_THAT(lease->out, Not(HasSubstr("BackendData")));
}

// TcBpf false: the user-space workers carry everything (TSO/GRO offloads on), nothing is
// attached, and the kernel path's counters stay at 0.
TEST_F(UdpE2e, WithTcBpfOffTheUserSpacePathCarriesEverything) {
  startUdp(2, R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "TcBpf": false}})",
           {"-healthz-port=9099"});
  expectFullMesh();
  expectTcp(1, 2);
  expectTcp(2, 1);
  for (int h : {1, 2}) {
    const std::string page = httpGet(cluster_->host(h), 9099, "/metrics");
    EXPECT_EQ(metric(page, "flannel_udp_tc_bpf_active"), 0) << page;
    EXPECT_EQ(metric(page, "flannel_udp_tc_tx_packets_total"), 0) << page;
    EXPECT_EQ(metric(page, "flannel_udp_tc_rx_packets_total"), 0) << page;
    EXPECT_GT(metric(page, "flannel_udp_tun_rx_super_packets_total"), 0) << page;
    EXPECT_GT(metric(page, "flannel_udp_tx_packets_total"), 1000) << page;
    EXPECT_GT(metric(page, "flannel_udp_rx_packets_total"), 1000) << page;
    EXPECT_THAT(cluster_->flanneldLog(h), Not(HasSubstr("fast path attached")));
  }
}

TEST_F(UdpE2e, AHostThatLeavesIsRemovedAndItsSubnetBecomesUnreachable) {
  startUdp(3, kUdpConfig);
  expectFullMesh();
  const auto gone = subnets_.at(3);
  ASSERT_TRUE(cluster_->stopFlanneld(3));
  ASSERT_TRUE(cluster_->etcd().etcdctl(
      {"del", "/coreos.com/network/subnets/" +
                  subnetKeyName(SubnetKey{.ipv4 = gone, .ipv6 = std::nullopt})}));
  // Without an entry for h3's subnet, h1's data path answers with ICMP net unreachable from its
  // TUN address (SPEC §5.3): a UDP socket in the pod with IP_RECVERR reads it off its error
  // queue (type 3, code 0, offender = the host's flannel0 address).
  for (int h : {1, 2}) {
    std::string seen;
    bool unreachable = pollUntil(
        [&] {
          auto icmp = icmpErrorFor(cluster_->pod(h), cluster_->podIp(3));
          seen = icmp;
          return icmp == "type 3 code 0 from " + subnets_.at(h).addr().toString();
        },
        10s, 200ms);
    EXPECT_TRUE(unreachable) << "h" << h << " still forwards to " << gone.toString()
                             << "; last ICMP error seen: " << seen;
  }
  EXPECT_TRUE(cluster_->pod(1).ping(cluster_->podIp(2), 5s)) << "the others keep talking";
  EXPECT_TRUE(cluster_->pod(2).ping(cluster_->podIp(1), 5s));
}

TEST_F(UdpE2e, RestartKeepsTheSubnetWithoutOffloadsOneQueueTwoThreads) {
  // Offload off + one queue, no tc BPF: the plain read/sendmmsg/recvmmsg path, as on old
  // kernels; and a thread per direction. (The default, tc BPF, restarts in the next test.)
  startUdp(2, R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "Offload": false,
               "Queues": 1, "ThreadPerDirection": true, "TcBpf": false}})");
  expectFullMesh();
  expectTcp(1, 2);
  EXPECT_THAT(cluster_->flanneldLog(1), HasSubstr("TUN TSO off"));
  EXPECT_THAT(cluster_->flanneldLog(1), HasSubstr("1 queue(s), 2 thread(s) each"));
  auto status = cluster_->stopFlanneld(2);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->exit_code, 0);
  EXPECT_THAT(show(2, {"link", "show"}), Not(HasSubstr("flannel0")))
      << "the TUN device is not persistent";
  ASSERT_TRUE(cluster_->startFlanneld(2));
  ASSERT_TRUE(cluster_->waitRunningAgain(2, 20s)) << cluster_->flanneldLog(2);
  auto env = readSubnetEnv(cluster_->subnetFile(2).string());
  ASSERT_TRUE(env && env->subnet);
  EXPECT_EQ(*env->subnet, subnets_.at(2));
  expectFullMesh();
}

// The control plane goes away, the data plane stays: with etcd stopped, pods keep talking over
// the udp data path (its table is the last one published), and flanneld keeps running and
// retrying; when etcd is back, it carries on.
TEST_F(UdpE2e, PodsKeepTalkingWhileEtcdIsDown) {
  startUdp(2, kUdpConfig);
  expectFullMesh();
  ASSERT_TRUE(cluster_->etcd().stopMember(0));
  for (int round = 0; round < 3; ++round) {
    EXPECT_TRUE(cluster_->pod(1).ping(cluster_->podIp(2), 3s)) << "round " << round;
    EXPECT_TRUE(cluster_->pod(2).ping(cluster_->podIp(1), 3s)) << "round " << round;
    std::this_thread::sleep_for(1s);
  }
  EXPECT_TRUE(cluster_->flanneld(1)->running()) << cluster_->flanneldLog(1);
  EXPECT_TRUE(cluster_->flanneld(2)->running()) << cluster_->flanneldLog(2);
  ASSERT_TRUE(cluster_->etcd().restartMember(0));
  EXPECT_TRUE(cluster_->pod(1).ping(cluster_->podIp(2), 5s));
}

// A peer speaking flannel's udp wire format, made by hand: an echo request from a pod of a
// "Go flannel node" (lease 10.5.200.0/24 at 192.168.91.1, the switch namespace) to pod 1
// arrives as the bare IPv4 packet in a UDP datagram to h1:8285; the echo reply comes back the
// same way, TTL decremented by h1's kernel and its data path.
void UdpE2e::wireFormatAndDrops(const std::string& config, bool kernel_path) {
  startWithGoPeer(config);
  if (HasFatalFailure()) {
    return;
  }
  ASSERT_TRUE(
      cluster_->topology().switchNs().ip({"addr", "add", "192.168.91.99/24", "dev", "br0"}));
  const int peer = goPeerSocket("192.168.91.1");
  const int rogue = goPeerSocket("192.168.91.99");
  ASSERT_TRUE(peer >= 0 && rogue >= 0);

  // An echo request from a pod of the Go node (10.5.200.5) to pod 1; `seq` goes in the IP id.
  auto echoRequest = [&](uint16_t seq) {
    const std::string_view data = "flannel!";
    return PacketBuilder::icmp()
        .src("10.5.200.5")
        .dst(cluster_->podIp(1))
        .ttl(64)
        .id(seq)
        .payload(std::as_bytes(std::span(data.data(), data.size())))
        .build();
  };
  const sockaddr_in h1 = h1Endpoint();
  auto sendFrom = [&](int fd, uint16_t seq) {
    auto p = echoRequest(seq);
    return ::sendto(fd, p.data(), p.size(), 0, reinterpret_cast<const sockaddr*>(&h1), sizeof h1) ==
           static_cast<ssize_t>(p.size());
  };
  auto receive = [&](int fd, std::chrono::milliseconds wait, std::vector<uint8_t>& out,
                     sockaddr_in& from) {
    std::vector<std::byte> d;
    const bool got = nextDatagram(fd, wait, d, &from);
    out.assign(reinterpret_cast<const uint8_t*>(d.data()),
               reinterpret_cast<const uint8_t*>(d.data()) + d.size());
    return got;
  };

  // The lease must reach h1 first: retry the request until a reply comes (bounded).
  std::vector<uint8_t> reply;
  sockaddr_in from{};
  bool answered = false;
  for (uint16_t seq = 1; seq <= 40 && !answered; ++seq) {
    ASSERT_TRUE(sendFrom(peer, seq));
    answered = receive(peer, 250ms, reply, from);
  }
  ASSERT_TRUE(answered) << "no reply through h1's udp data path\n" << cluster_->flanneldLog(1);
  EXPECT_EQ(ntohs(from.sin_port), 8285);
  char from_text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &from.sin_addr, from_text, sizeof from_text);
  EXPECT_STREQ(from_text, "192.168.91.11");
  // The payload is the bare IPv4 packet: echo reply, pod 1 -> 10.5.200.5, our id and data.
  ASSERT_EQ(reply.size(), 36u);
  EXPECT_EQ(reply[0], 0x45);
  EXPECT_EQ(reply[9], 1);
  EXPECT_EQ(reply[20], 0) << "ICMP echo reply";
  EXPECT_EQ(reply[24], 0x42);  // PacketBuilder's echo id
  EXPECT_EQ(reply[25], 0x42);
  EXPECT_EQ(std::memcmp(&reply[28], "flannel!", 8), 0);
  EXPECT_EQ(reply[16], 10);
  EXPECT_EQ(reply[17], 5);
  EXPECT_EQ(reply[18], 200);
  EXPECT_EQ(reply[19], 5);
  // The pod answers with TTL 64; h1's kernel forwards it (63) and the data path decrements (62).
  EXPECT_EQ(reply[8], 62);

  // The same packet from an address that holds no lease is dropped: no reply to it, while the
  // leased peer still gets its answers (the path works, the drop is the source check).
  // Requests the peer sent before h1 had its lease were dropped as unknown_source too: count
  // from here.
  const std::string before = httpGet(cluster_->host(1), 9099, "/metrics");
  ASSERT_THAT(before, HasSubstr("200 OK"));
  const auto unknown_before =
      metric(before, R"(flannel_udp_dropped_packets_total{reason="unknown_source"})");
  const auto malformed_before =
      metric(before, R"(flannel_udp_dropped_packets_total{reason="malformed"})");
  for (uint16_t seq = 100; seq < 105; ++seq) {
    ASSERT_TRUE(sendFrom(rogue, seq));
  }
  std::vector<uint8_t> none;
  EXPECT_FALSE(receive(rogue, 1000ms, none, from)) << "a reply went to an unleased sender";
  EXPECT_FALSE(receive(peer, 200ms, none, from)) << "replies to the rogue's requests leaked";
  ASSERT_TRUE(sendFrom(peer, 200));
  EXPECT_TRUE(receive(peer, 2000ms, reply, from)) << "the leased peer lost its path";

  // Malformed datagrams (short, not IPv4, lying lengths) from the leased peer crash nothing.
  const std::vector<std::vector<uint8_t>> junk = {
      {0x45},
      std::vector<uint8_t>(19, 0x45),
      std::vector<uint8_t>(40, 0x60),
      [] {
        std::vector<uint8_t> v(30, 0);
        v[0] = 0x4f;  // IHL 60 bytes in a 30-byte datagram
        v[3] = 30;
        return v;
      }(),
      [] {
        std::vector<uint8_t> v(20, 0);
        v[0] = 0x45;
        v[2] = 0xff;  // total length 65 280 in a 20-byte datagram
        return v;
      }(),
      [&] {
        // A well-formed request with a wrong header checksum: lengths, addresses and TTL
        // would all pass, so the kernel path must look at the checksum to leave it alone.
        auto p = echoRequest(400);
        std::vector<uint8_t> v(reinterpret_cast<const uint8_t*>(p.data()),
                               reinterpret_cast<const uint8_t*>(p.data()) + p.size());
        v[10] ^= 0x5a;
        return v;
      }()};
  for (const auto& j : junk) {
    ASSERT_EQ(
        ::sendto(peer, j.data(), j.size(), 0, reinterpret_cast<const sockaddr*>(&h1), sizeof h1),
        static_cast<ssize_t>(j.size()));
  }
  ASSERT_TRUE(sendFrom(peer, 300));
  EXPECT_TRUE(receive(peer, 2000ms, reply, from)) << "the data path stopped after junk";
  EXPECT_TRUE(cluster_->flanneld(1)->running()) << cluster_->flanneldLog(1);

  // /metrics counted all of it: the 5 rogue requests by reason; of the 6 junk datagrams the
  // IPv6 one as not_ipv4 and the other 5 as malformed (the kernel's own IPv6 packets into
  // flannel0 may add to not_ipv4); the answered requests both ways. With the kernel path, the
  // drops are still user space's (the programs leave such datagrams to it) and the answered
  // requests and their replies went through the kernel.
  // The reply to request 300 shows that the worker it went to is done; the junk may have gone
  // to another queue's worker (the steering program cannot read a flow from it), so the counts
  // are awaited, bounded (seen once in CI: 2 of the 6 counted when the page was read at once).
  std::string page;
  pollUntil(
      [&] {
        page = httpGet(cluster_->host(1), 9099, "/metrics");
        return metric(page, R"(flannel_udp_dropped_packets_total{reason="malformed"})") >=
                   malformed_before + 5 &&
               metric(page, R"(flannel_udp_dropped_packets_total{reason="unknown_source"})") >=
                   unknown_before + 5;
      },
      3s, 100ms);
  ASSERT_THAT(page, HasSubstr("200 OK"));
  EXPECT_EQ(metric(page, R"(flannel_udp_dropped_packets_total{reason="unknown_source"})"),
            unknown_before + 5)
      << page;
  EXPECT_EQ(metric(page, R"(flannel_udp_dropped_packets_total{reason="malformed"})"),
            malformed_before + 5)
      << page;
  EXPECT_GE(metric(page, R"(flannel_udp_dropped_packets_total{reason="not_ipv4"})"), 1) << page;
  EXPECT_GE(metric(page, "flannel_udp_tx_packets_total"), 3) << page;
  EXPECT_GE(metric(page, "flannel_udp_rx_packets_total"), 14) << page;
  EXPECT_EQ(metric(page, "flannel_udp_tc_bpf_active"), kernel_path ? 1 : 0) << page;
  if (kernel_path) {
    EXPECT_GE(metric(page, "flannel_udp_tc_rx_packets_total"), 3) << page;
    EXPECT_GE(metric(page, "flannel_udp_tc_tx_packets_total"), 3) << page;
  } else {
    EXPECT_EQ(metric(page, "flannel_udp_tc_rx_packets_total"), 0) << page;
    EXPECT_EQ(metric(page, "flannel_udp_tc_tx_packets_total"), 0) << page;
  }
  ::close(peer);
  ::close(rogue);
}

TEST_F(UdpE2e, WireFormatMatchesFlannelAndUnknownSendersAreDropped) {
  wireFormatAndDrops(kUdpConfig, true);
}

TEST_F(UdpE2e, WireFormatAndDropsOnTheUserSpacePath) {
  wireFormatAndDrops(R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "TcBpf": false}})",
                     false);
}

// A host on the user-space path (FLANNEL_UDP_TC_BPF=0 on that node, as where the fast path
// cannot be attached) and a host on the kernel path carry each other's traffic at full speed,
// both ways. (Over veth, TCP segments from the kernel path would reach the user-space host's
// socket with unfinished checksums: that is why the kernel path sends TCP/UDP only to peers
// that announced a kernel decap.)
TEST_F(UdpE2e, KernelPathAndUserSpaceHostsCarryEachOthersTraffic) {
  startUdp(2, kUdpConfig, {"-healthz-port=9099"});
  ASSERT_TRUE(cluster_->stopFlanneld(2));
  ASSERT_TRUE(cluster_->startFlanneld(2, {}, {{"FLANNEL_UDP_TC_BPF", "0"}}));
  ASSERT_TRUE(cluster_->waitRunningAgain(2, 20s)) << cluster_->flanneldLog(2);
  EXPECT_THAT(cluster_->flanneldLog(2),
              HasSubstr("in-kernel fast path off on this node (FLANNEL_UDP_TC_BPF=0)"));
  expectFullMesh();
  // Real throughput both ways (a path that loses super packets still lets iperf3 finish).
  EXPECT_GT(expectTcp(1, 2), 500e6);
  EXPECT_GT(expectTcp(2, 1), 500e6);
  const std::string h1 = httpGet(cluster_->host(1), 9099, "/metrics");
  const std::string h2 = httpGet(cluster_->host(2), 9099, "/metrics");
  EXPECT_EQ(metric(h1, "flannel_udp_tc_bpf_active"), 1) << h1;
  EXPECT_EQ(metric(h2, "flannel_udp_tc_bpf_active"), 0) << h2;
  // On this virtual link h1 keeps TCP to h2 out of its kernel path (h2 never announced a
  // kernel decap): h2's user space received it all.
  EXPECT_LT(metric(h1, "flannel_udp_tc_tx_packets_total"), 1000) << h1;
  EXPECT_GT(metric(h2, "flannel_udp_rx_packets_total"), 10000) << h2;
}

// Pods hand their TCP and UDP packets over with the L4 checksum left to the device
// (CHECKSUM_PARTIAL); over veth nobody ever fills it in, and a peer that reads the datagram in
// user space (Go flannel, or our user-space path) writes the inner packet into its TUN, where the
// kernel checks that checksum. So what leaves a host must carry complete checksums on every
// path: a pod's TCP SYN and UDP datagram to a Go-format peer's pod arrive with valid L4
// checksums.
void UdpE2e::checksumsToAUserSpacePeer(const std::string& config, bool kernel_path) {
  startWithGoPeer(config);
  if (HasFatalFailure()) {
    return;
  }
  const int peer = goPeerSocket("192.168.91.1");
  ASSERT_GE(peer, 0);
  ASSERT_TRUE(pollUntil(
      [&] {
        return cluster_->flanneldLog(1).find("peer 10.5.200.0-24 (192.168.91.1) joined") !=
               std::string::npos;
      },
      10s, 100ms));
  std::this_thread::sleep_for(300ms);  // the fast path attaches after the first peers
  // From pod 1: a UDP datagram and a TCP SYN (non-blocking connect) to 10.5.200.5.
  auto udp = cluster_->pod(1).openSocket(AF_INET, SOCK_DGRAM, 0);
  auto tcp = cluster_->pod(1).openSocket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_TRUE(udp && tcp);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  ::inet_pton(AF_INET, "10.5.200.5", &dst.sin_addr);
  dst.sin_port = htons(9);
  const std::string data(300, 'u');
  ASSERT_EQ(
      ::sendto(*udp, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst),
      static_cast<ssize_t>(data.size()));
  dst.sin_port = htons(80);
  (void)::connect(*tcp, reinterpret_cast<sockaddr*>(&dst), sizeof dst);
  bool udp_seen = false;
  bool tcp_seen = false;
  std::vector<std::byte> buf;
  for (int i = 0; i < 20 && !(udp_seen && tcp_seen) && nextDatagram(peer, 2000ms, buf);
       ++i) {  // bounded: 20 datagrams or 2 s each
    ASSERT_GT(buf.size(), 20u);
    const auto proto = std::to_integer<int>(buf[9]);
    if (proto == IPPROTO_UDP || proto == IPPROTO_TCP) {
      EXPECT_TRUE(test::l4ChecksumValid(buf))
          << (proto == IPPROTO_TCP ? "TCP" : "UDP") << " checksum of the inner packet is not "
          << "complete (" << buf.size() << " bytes)";
      (proto == IPPROTO_TCP ? tcp_seen : udp_seen) = true;
    }
  }
  EXPECT_TRUE(udp_seen && tcp_seen) << cluster_->flanneldLog(1);
  if (kernel_path) {
    // Once the peer shows that it runs the fast path (a datagram with UDP checksum 0, which
    // only the programs send), small packets to it stay in the kernel: its decap program keeps
    // the checksum state. The peer here sends an echo request that way...
    const int one = 1;
    ASSERT_EQ(::setsockopt(peer, SOL_SOCKET, SO_NO_CHECK, &one, sizeof one), 0);
    const std::string_view ping = "fastpath";
    auto request = PacketBuilder::icmp()
                       .src("10.5.200.5")
                       .dst(cluster_->podIp(1))
                       .payload(std::as_bytes(std::span(ping.data(), ping.size())))
                       .build();
    const sockaddr_in h1 = h1Endpoint();
    ASSERT_EQ(::sendto(peer, request.data(), request.size(), 0,
                       reinterpret_cast<const sockaddr*>(&h1), sizeof h1),
              static_cast<ssize_t>(request.size()));
    auto drain = [&](uint8_t want_proto) {  // the next datagram carrying `want_proto`
      std::vector<std::byte> d;
      for (int i = 0; i < 20 && nextDatagram(peer, 2000ms, d); ++i) {
        if (d.size() > 20 && std::to_integer<uint8_t>(d[9]) == want_proto) {
          return true;
        }
      }
      return false;
    };
    ASSERT_TRUE(drain(IPPROTO_ICMP)) << "no echo reply";
    // ... and the next datagram from the pod is encapsulated by the kernel.
    const auto before =
        metric(httpGet(cluster_->host(1), 9099, "/metrics"), "flannel_udp_tc_tx_packets_total");
    dst.sin_port = htons(9);
    ASSERT_EQ(
        ::sendto(*udp, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst),
        static_cast<ssize_t>(data.size()));
    ASSERT_TRUE(drain(IPPROTO_UDP));
    const auto after =
        metric(httpGet(cluster_->host(1), 9099, "/metrics"), "flannel_udp_tc_tx_packets_total");
    EXPECT_EQ(after - before, 1) << "a small packet to a fast-path peer left the kernel path";
  }
  ::close(*udp);
  ::close(*tcp);
  ::close(peer);
}

TEST_F(UdpE2e, CompleteChecksumsToAUserSpacePeerOnTheKernelPath) {
  checksumsToAUserSpacePeer(kUdpConfig, true);
  const std::string page = httpGet(cluster_->host(1), 9099, "/metrics");
  EXPECT_EQ(metric(page, "flannel_udp_tc_bpf_active"), 1) << page;
}

TEST_F(UdpE2e, CompleteChecksumsToAUserSpacePeerOnTheUserSpacePath) {
  checksumsToAUserSpacePeer(
      R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "TcBpf": false}})", false);
}

// Counter `name` of table `table` ("Ip", "Tcp", ...) in a namespace's /proc/net/snmp, or -1.
long snmpCounter(Netns& ns, const std::string& table, const std::string& name) {
  auto r = ns.exec({"cat", "/proc/net/snmp"});
  if (!r || !r->success()) {
    return -1;
  }
  std::istringstream in(r->out);
  std::string header;
  std::string values;
  while (std::getline(in, header) && std::getline(in, values)) {
    if (!header.starts_with(table + ":")) {
      continue;
    }
    std::istringstream hs(header);
    std::istringstream vs(values);
    std::string h;
    std::string v;
    while (hs >> h && vs >> v) {
      if (h == name) {
        return std::stol(v);
      }
    }
  }
  return -1;
}

// Packets and bytes `dir` ("tx" or "rx") of device `dev` in a namespace.
std::pair<double, double> linkCount(Netns& ns, const std::string& dev, const std::string& dir) {
  auto all = linkCounters(ns);
  if (!all || !all->contains(dev)) {
    ADD_FAILURE() << "no counters for " << dev << ": "
                  << (all ? "no such link" : all.error().message);
    return {0, 0};
  }
  const LinkCounters& c = all->at(dev);
  return dir == "tx" ? std::pair{c.tx_packets, c.tx_bytes} : std::pair{c.rx_packets, c.rx_bytes};
}

// The decap program hands the stack TCP super packets that still carry the sender's UDP tunnel
// GSO type (bpf_skb_adjust_room clears it only with the BPF_F_ADJ_ROOM_DECAP_L4_UDP flag, newer
// than this 6.18 kernel). Where a device on the way cannot take them whole, the kernel cuts them in
// software: here the host side of pod 2's link with segmentation and then checksum offload switched
// off. Every segment must reach pod 2 intact (no TCP checksum errors) at full speed.
TEST_F(UdpE2e, DecapsulatedSuperPacketsAreCutCorrectlyWhereTheNextLinkCannotSegment) {
  startUdp(2, kUdpConfig, {"-healthz-port=9099"});
  expectFullMesh();
  for (const std::vector<std::string>& off : {std::vector<std::string>{"tso", "off", "gso", "off"},
                                              std::vector<std::string>{"tx", "off"}}) {
    std::vector<std::string> argv = {"ethtool", "-K", "vpod"};
    argv.insert(argv.end(), off.begin(), off.end());
    auto r = cluster_->host(2).exec(argv);
    ASSERT_TRUE(r) << r.error().message;
    if (!r->success()) {
      GTEST_SKIP() << "this kernel's veth cannot switch " << off[0] << " off: " << r->err;
    }
    const long errors_before = snmpCounter(cluster_->pod(2), "Tcp", "InCsumErrors");
    const std::string before = httpGet(cluster_->host(2), 9099, "/metrics");
    const auto in0 = linkCount(cluster_->host(2), "eth0", "rx");
    const auto out0 = linkCount(cluster_->host(2), "vpod", "tx");
    EXPECT_GT(expectTcp(1, 2), 500e6) << off[0];
    const auto in1 = linkCount(cluster_->host(2), "eth0", "rx");
    const auto out1 = linkCount(cluster_->host(2), "vpod", "tx");
    const std::string after = httpGet(cluster_->host(2), 9099, "/metrics");
    // Super packets came in whole (the veth underlay carries them) and left cut.
    EXPECT_GT((in1.second - in0.second) / std::max(1.0, in1.first - in0.first), 8000) << off[0];
    EXPECT_LT((out1.second - out0.second) / std::max(1.0, out1.first - out0.first), 1600) << off[0];
    EXPECT_GT(metric(after, "flannel_udp_tc_rx_packets_total") -
                  metric(before, "flannel_udp_tc_rx_packets_total"),
              1000)
        << "the kernel path carried the test\n"
        << after;
    ASSERT_GE(errors_before, 0);
    EXPECT_EQ(snmpCounter(cluster_->pod(2), "Tcp", "InCsumErrors"), errors_before) << off[0];
  }
}

// The other end: an external interface that cannot segment UDP tunnel packets (most NICs
// without tunnel offloads) makes the kernel cut the encap program's super packets in software.
// Every datagram must still be a well-formed flannel datagram that the peer's decap takes.
TEST_F(UdpE2e, EncapsulatedSuperPacketsCutInSoftwareAreWellFormedDatagrams) {
  startUdp(2, kUdpConfig, {"-healthz-port=9099"});
  expectFullMesh();
  auto r = cluster_->host(1).exec({"ethtool", "-K", "eth0", "tx-udp_tnl-segmentation", "off"});
  ASSERT_TRUE(r) << r.error().message;
  if (!r->success()) {
    GTEST_SKIP() << "this kernel's veth cannot switch UDP tunnel segmentation off: " << r->err;
  }
  const long errors_before = snmpCounter(cluster_->pod(2), "Tcp", "InCsumErrors");
  const std::string before = httpGet(cluster_->host(2), 9099, "/metrics");
  const auto in0 = linkCount(cluster_->host(2), "eth0", "rx");
  EXPECT_GT(expectTcp(1, 2), 500e6);
  const auto in1 = linkCount(cluster_->host(2), "eth0", "rx");
  const std::string after = httpGet(cluster_->host(2), 9099, "/metrics");
  // Cut on the way out (one datagram per segment arrives) and all taken by the kernel path.
  const double datagrams = in1.first - in0.first;
  EXPECT_LT((in1.second - in0.second) / std::max(1.0, datagrams), 1600);
  const double taken = metric(after, "flannel_udp_tc_rx_packets_total") -
                       metric(before, "flannel_udp_tc_rx_packets_total");
  EXPECT_GT(taken, 0.95 * datagrams) << after;
  auto drops = [](const std::string& page) {  // all reasons
    double sum = 0;
    std::istringstream lines(page);
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with("flannel_udp_dropped_packets_total{")) {
        sum += std::stod(line.substr(line.rfind(' ') + 1));
      }
    }
    return sum;
  };
  EXPECT_EQ(drops(after), drops(before)) << after;
  ASSERT_GE(errors_before, 0);
  EXPECT_EQ(snmpCounter(cluster_->pod(2), "Tcp", "InCsumErrors"), errors_before);
}

// On a routed underlay the next hop is a router, not the peer: the encap program must send the
// datagrams to the next hop of the routing table. Here h1 reaches h2 through the switch
// namespace's router (a /32 route via 192.168.91.1), and h1's neighbour entry for h2 itself
// names a MAC address nobody has, so datagrams sent to h2 "directly" are lost.
TEST_F(UdpE2e, KernelPathSendsToTheRoutingTablesNextHop) {
  startUdp(2, kUdpConfig, {"-healthz-port=9099"});
  expectFullMesh();
  Netns& router = cluster_->topology().switchNs();
  const std::string h2 = Topology::hostAddress(2);
  routeH1ToH2ThroughTheRouter();
  mustRun(cluster_->host(1), {"ip", "neigh", "replace", h2, "lladdr", "02:00:5e:00:53:99", "dev",
                              "eth0", "nud", "permanent"});
  if (HasFatalFailure()) {
    return;
  }
  const long forwarded_before = snmpCounter(router, "Ip", "ForwDatagrams");
  const std::string before = httpGet(cluster_->host(1), 9099, "/metrics");
  EXPECT_GT(expectTcp(1, 2), 500e6);
  const std::string after = httpGet(cluster_->host(1), 9099, "/metrics");
  EXPECT_GT(metric(after, "flannel_udp_tc_tx_packets_total") -
                metric(before, "flannel_udp_tc_tx_packets_total"),
            1000)
      << "the kernel path carried the test\n"
      << after;
  ASSERT_GE(forwarded_before, 0);
  // The router counts a super packet once (tens of kB each): 100 is far below what 1 s of TCP at
  // 500 Mbit/s makes, and far above the few packets that reach it otherwise.
  EXPECT_GT(snmpCounter(router, "Ip", "ForwDatagrams") - forwarded_before, 100)
      << "the datagrams went through the router";
}

// An underlay path with a smaller MTU than the external interface (a tunnel or WAN link between
// two sites): h1 reaches h2 through the switch namespace's router, whose route to h2 has MTU
// 1400, so full-size datagrams (1500 bytes, DF) get ICMP "fragmentation needed" back. As with Go
// flannel's socket, h1 must then fragment later datagrams (h2 reassembles them) instead of
// losing them: TCP between the pods keeps flowing and a ping of 1400 bytes gets through.
void UdpE2e::smallerPathMtu(const std::string& config) {
  startUdp(2, config, {"-healthz-port=9099"});
  expectFullMesh();
  const std::string h2 = Topology::hostAddress(2);
  routeH1ToH2ThroughTheRouter();
  mustRun(cluster_->topology().switchNs(),
          {"ip", "route", "add", h2 + "/32", "dev", "br0", "mtu", "lock", "1400"});
  if (HasFatalFailure()) {
    return;
  }
  // The first full-size datagrams are lost and bring the ICMP error; then it must work.
  const bool pinged = cluster_->pod(1).ping(cluster_->podIp(2), 10s, 1400).has_value();
  EXPECT_TRUE(pinged) << "no 1400-byte ping through the 1400-MTU path\n"
                      << cluster_->flanneldLog(1);
  EXPECT_GT(expectTcp(1, 2), 200e6);  // 1.2-1.4 Gbit/s here, fragments and all
  auto cache = cluster_->host(1).exec({"ip", "route", "get", h2});
  ASSERT_TRUE(cache && cache->success());
  EXPECT_THAT(cache->out, HasSubstr("mtu 1400")) << "h1 learned the path MTU";
}

TEST_F(UdpE2e, ASmallerPathMtuIsHonouredOnTheKernelPath) {
  smallerPathMtu(kUdpConfig);
}

TEST_F(UdpE2e, ASmallerPathMtuIsHonouredOnTheUserSpacePath) {
  smallerPathMtu(R"({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "TcBpf": false}})");
}

// On real NICs datagrams arrive one by one, and a NIC with GRO merges those from one sender for
// a socket that asked for UDP_GRO into one bundle, which the decap program cannot take apart
// (it would leave all of them to user space). A Go-format peer in the switch namespace sends
// checksummed datagrams in bursts (UDP GSO, cut in software at the switch's port, whose TSO is
// off so that veth hands them to GRO), and h1's interface merges (veth GRO): the fast path must
// still take nearly all of them, which it can because flanneld turns UDP_GRO off on its sockets
// once the programs are attached. (Our own fast path sends UDP checksum 0, which GRO does not
// merge; Go flannel and our user-space path send checksums.)
TEST_F(UdpE2e, KernelPathTakesDatagramsThatAMergingNicReceives) {
  startWithGoPeer(kUdpConfig);
  if (HasFatalFailure()) {
    return;
  }
  auto r = cluster_->topology().switchNs().exec(
      {"ethtool", "-K", "p-h1", "tso", "off", "tx-udp-segmentation", "off"});
  ASSERT_TRUE(r) << r.error().message;
  if (!r->success()) {
    GTEST_SKIP() << "this kernel's veth cannot switch TSO or UDP segmentation: " << r->err;
  }
  auto gro = cluster_->host(1).exec({"ethtool", "-K", "eth0", "gro", "on"});
  ASSERT_TRUE(gro) << gro.error().message;
  if (!gro->success()) {
    GTEST_SKIP() << "this kernel's veth has no GRO: " << gro->err;
  }
  const int fd = goPeerSocket("192.168.91.1");
  ASSERT_GE(fd, 0);
  // 40 inner UDP packets of 1,400 bytes each (10.5.200.5 -> pod 1, port 9) per send.
  const auto inner = PacketBuilder::udp()
                         .src("10.5.200.5")
                         .dst(cluster_->podIp(1))
                         .dport(9)
                         .payload(1400 - 28)
                         .build();
  ASSERT_EQ(inner.size(), 1400u);
  std::vector<std::byte> burst;
  for (int i = 0; i < 40; ++i) {
    burst.insert(burst.end(), inner.begin(), inner.end());
  }
  const int seg = 1400;
  ASSERT_EQ(::setsockopt(fd, SOL_UDP, 103 /* UDP_SEGMENT */, &seg, sizeof seg), 0)
      << std::strerror(errno);
  const sockaddr_in h1 = h1Endpoint();
  auto send = [&](int bursts) {
    for (int i = 0; i < bursts; ++i) {
      ASSERT_EQ(::sendto(fd, burst.data(), burst.size(), 0, reinterpret_cast<const sockaddr*>(&h1),
                         sizeof h1),
                static_cast<ssize_t>(burst.size()))
          << std::strerror(errno);
      std::this_thread::sleep_for(2ms);
    }
  };
  // The lease and the fast path must be in place at h1 first (bounded wait).
  ASSERT_TRUE(pollUntil(
      [&] {
        const std::string log = cluster_->flanneldLog(1);
        return log.find("peer 10.5.200.0-24 (192.168.91.1) joined") != std::string::npos &&
               log.find("fast path attached") != std::string::npos;
      },
      10s, 100ms))
      << cluster_->flanneldLog(1);
  EXPECT_THAT(cluster_->flanneldLog(1), HasSubstr("UDP GRO off on"));
  const std::string before = httpGet(cluster_->host(1), 9099, "/metrics");
  send(25);  // 1,000 datagrams
  std::this_thread::sleep_for(300ms);
  const std::string after = httpGet(cluster_->host(1), 9099, "/metrics");
  ::close(fd);
  const double kernel = metric(after, "flannel_udp_tc_rx_packets_total") -
                        metric(before, "flannel_udp_tc_rx_packets_total");
  const double all = metric(after, "flannel_udp_rx_packets_total") -
                     metric(before, "flannel_udp_rx_packets_total");
  EXPECT_GE(all, 900) << "datagrams lost on the way\n" << after;
  EXPECT_GE(kernel, 0.95 * all) << "user space received " << all - kernel << " of " << all
                                << " datagrams\n"
                                << after;
}

// Kernels before 6.6 have no tcx: the programs are then classic tc filters on clsact qdiscs
// (forced here with FLANNEL_UDP_TC_ATTACH=legacy). They carry the traffic the same way; a
// restarted flanneld replaces its filter rather than adding one; a clean stop removes it; a
// killed flanneld leaves it behind (documented), which the next start replaces.
TEST_F(UdpE2e, LegacyTcFiltersCarryTheTrafficAndAreReplacedAndRemoved) {
  startUdp(2, kUdpConfig, {"-healthz-port=9099"});
  const std::map<std::string, std::string> legacy = {{"FLANNEL_UDP_TC_ATTACH", "legacy"}};
  for (int h : {1, 2}) {
    ASSERT_TRUE(cluster_->stopFlanneld(h));
    ASSERT_TRUE(cluster_->startFlanneld(h, {}, legacy));
    ASSERT_TRUE(cluster_->waitRunningAgain(h, 20s)) << cluster_->flanneldLog(h);
  }
  auto ingressFilters = [&](int h) {
    auto r = cluster_->host(h).exec({"tc", "filter", "show", "dev", "eth0", "ingress"});
    EXPECT_TRUE(r) << r.error().message;
    std::string out = r ? r->out : "";
    size_t n = 0;
    for (size_t at = out.find("handle 0xf1a2 flannel_udp_dec"); at != std::string::npos;
         at = out.find("handle 0xf1a2 flannel_udp_dec", at + 1)) {
      ++n;
    }
    return n;
  };
  ASSERT_TRUE(pollUntil([&] { return ingressFilters(2) == 1; }, 5s, 100ms))
      << cluster_->flanneldLog(2);
  EXPECT_THAT(cluster_->flanneldLog(2), HasSubstr("attached as classic tc filters"));
  EXPECT_TRUE(mapsLibbpf(*cluster_, 2)) << "classic filters keep libbpf to remove them at stop";
  expectFullMesh();
  EXPECT_GT(expectTcp(1, 2), 500e6);
  const std::string page = httpGet(cluster_->host(2), 9099, "/metrics");
  EXPECT_GT(metric(page, "flannel_udp_tc_rx_packets_total"), 1000) << page;
  // Killed: the filter stays; the next flanneld replaces it (still one) and carries on.
  ASSERT_TRUE(cluster_->flanneld(2)->kill());
  EXPECT_EQ(ingressFilters(2), 1u);
  ASSERT_TRUE(cluster_->startFlanneld(2, {}, legacy));
  ASSERT_TRUE(cluster_->waitRunningAgain(2, 20s)) << cluster_->flanneldLog(2);
  ASSERT_TRUE(pollUntil(
      [&] {
        return cluster_->flanneldLog(2).find("attached as classic tc filters") !=
               cluster_->flanneldLog(2).rfind("attached as classic tc filters");
      },
      5s, 100ms));
  EXPECT_EQ(ingressFilters(2), 1u);
  EXPECT_GT(expectTcp(1, 2), 500e6);
  // A clean stop removes it.
  ASSERT_TRUE(cluster_->stopFlanneld(2));
  EXPECT_EQ(ingressFilters(2), 0u);
}

// The tc BPF programs are attached with links that belong to flanneld: when it is killed they
// are gone from the external interface (nothing stale is left to swallow datagrams), and a new
// flanneld attaches its own and carries the traffic again.
TEST_F(UdpE2e, KernelPathGoesAwayWithAKilledDaemonAndComesBackOnRestart) {
  startUdp(2, kUdpConfig, {"-healthz-port=9099"});
  expectFullMesh();
  auto count = tcxPrograms(cluster_->host(2), "eth0", kTcxIngress);
  ASSERT_TRUE(count) << count.error().message;
  EXPECT_EQ(*count, 1u);
  ASSERT_TRUE(cluster_->flanneld(2)->kill());
  count = tcxPrograms(cluster_->host(2), "eth0", kTcxIngress);
  ASSERT_TRUE(count) << count.error().message;
  EXPECT_EQ(*count, 0u) << "a program outlived the flanneld that attached it";
  ASSERT_TRUE(cluster_->startFlanneld(2));
  ASSERT_TRUE(cluster_->waitRunningAgain(2, 20s)) << cluster_->flanneldLog(2);
  auto env = readSubnetEnv(cluster_->subnetFile(2).string());
  ASSERT_TRUE(env && env->subnet);
  EXPECT_EQ(*env->subnet, subnets_.at(2));
  count = tcxPrograms(cluster_->host(2), "eth0", kTcxIngress);
  ASSERT_TRUE(count) << count.error().message;
  EXPECT_EQ(*count, 1u);
  expectFullMesh();
  expectTcp(1, 2);
  const std::string page = httpGet(cluster_->host(2), 9099, "/metrics");
  EXPECT_GT(metric(page, "flannel_udp_tc_rx_packets_total"), 100) << page;
}

}  // namespace
}  // namespace flannel::test
