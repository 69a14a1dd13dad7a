// DOC: small helpers shared by the flanneld e2e tests of tests/e2e/more.cmake (masquerade, CNI
// with the daemon, extension backend, start-up adoption). Plain library code over Netns and
// Topology; no GoogleTest in here.
//
//   addUnderlayNode   one more node on the underlay switch (an "outside" machine that is not a
//                     flannel host), e.g. 192.168.91.200/24, plugged into br0 of `sw`
//   UdpListener       a UDP socket bound inside a namespace that reports each datagram's source
//   sendUdp           one datagram from inside a namespace
//   iptablesRules     our lines of `iptables-save` in a namespace (chains, jumps, rules)
//   nftRules          our rules of `nft -j list ruleset` in a namespace, per table/chain
//   writeExecutable   a script file, mode 0755
//   readTextFile      a whole file, "" when absent
//
// Every helper acts only inside the namespace it is given; nothing touches the root namespace.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/json_util.h"
#include "core/result.h"
#include "support/netns.h"
#include "support/test_run.h"
#include "support/topology.h"

namespace flannel::test {

// A node of the underlay that runs no flanneld: namespace `<run>-<role>` with eth0 =
// `address`/24 (a veth whose peer p-<role> sits in the switch namespace, enslaved to br0, up) and
// a default route via the router. `role` must be at most 13 characters (device p-<role>).
Result<std::unique_ptr<Netns>> addUnderlayNode(TestRun& run, Topology& topo, std::string_view role,
                                               std::string_view address);

struct Datagram {
  std::string source{};  // dotted IPv4 source address as received
  uint16_t source_port = 0;
  std::string payload{};
};

// A UDP/IPv4 socket bound to 0.0.0.0:<ephemeral port> inside a namespace. Move-only; closes the
// socket when destroyed.
class UdpListener {
 public:
  static Result<UdpListener> open(Netns& ns);
  UdpListener(UdpListener&& other) noexcept;
  UdpListener& operator=(UdpListener&& other) noexcept;
  UdpListener(const UdpListener&) = delete;
  UdpListener& operator=(const UdpListener&) = delete;
  ~UdpListener();

  uint16_t port() const { return port_; }
  // The next datagram, or Errc::Timeout when none arrives within `timeout`.
  Result<Datagram> receive(std::chrono::milliseconds timeout);

 private:
  UdpListener(int fd, uint16_t port) : fd_(fd), port_(port) {}
  int fd_ = -1;
  uint16_t port_ = 0;
};

// Sends one datagram from inside `from` to ipv4:port (from an ephemeral port).
Result<void> sendUdp(Netns& from, const std::string& ipv4, uint16_t port, std::string_view payload);

// Sends `payload` from `from` every 200 ms until `listener` receives a datagram with exactly that
// payload (others are skipped), or `timeout` passes (Errc::Timeout). Returns what arrived.
Result<Datagram> sendUntilReceived(Netns& from, UdpListener& listener, const std::string& ipv4,
                                   std::string_view payload, std::chrono::milliseconds timeout);

// flanneld's objects in `iptables-save` output of one namespace (SPEC.md §6.1-6.3).
struct IptablesRules {
  std::vector<std::string> masq_jumps{};   // -A POSTROUTING ... -j FLANNEL-POSTRTG
  std::vector<std::string> masq_rules{};   // -A FLANNEL-POSTRTG ...
  std::vector<std::string> fwd_jumps{};    // -A FORWARD ... -j FLANNEL-FWD
  std::vector<std::string> fwd_rules{};    // -A FLANNEL-FWD ...
  std::vector<std::string> chain_decls{};  // :FLANNEL-POSTRTG / :FLANNEL-FWD lines
  std::string raw{};                       // the whole output, for messages

  // Every line above, in output order per group: for before/after comparisons.
  std::vector<std::string> all() const;
};
Result<IptablesRules> iptablesRules(Netns& ns);

struct NftRule {
  std::string family{};  // "ip" / "ip6"
  std::string table{};   // "flannel-ipv4" / "flannel-ipv6"
  std::string chain{};   // "postrtg" / "forward"
  uint64_t handle = 0;
  std::string expr{};  // the rule's "expr" array, compact JSON (handles left out)
};

// Rules of the tables whose name starts with "flannel-", in listing order, plus the chains
// found there ("<table>/<chain>").
struct NftRules {
  std::vector<NftRule> rules{};
  std::vector<std::string> chains{};
  std::string raw{};

  // Rules of one chain of one table.
  std::vector<NftRule> of(std::string_view table, std::string_view chain) const;
  // "<table>/<chain>: <expr>" for each rule: for before/after comparisons (handles excluded).
  std::vector<std::string> describe() const;
};
Result<NftRules> nftRules(Netns& ns);

// Writes `text` to `path` (replacing it) and makes it executable (0755).
Result<void> writeExecutable(const std::filesystem::path& path, std::string_view text);

// The whole file, or "" when it does not exist or cannot be read.
std::string readTextFile(const std::filesystem::path& path);

}  // namespace flannel::test
