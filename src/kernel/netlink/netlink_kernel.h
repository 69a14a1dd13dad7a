// DOC: NetlinkKernel, the Kernel seam over rtnetlink (libnl-3 + libnl-route-3).
//
// The only libnl user in the project (DESIGN.md dependency rules): this header only
// forward-declares libnl's socket type, so nothing above it sees libnl headers.
//
// How it talks to the kernel: one NETLINK_ROUTE socket owned by the object. Every call is one
// request and its complete answer (the ACK, or the whole dump), waited for synchronously with a
// bounded receive timeout. libnl builds and parses the messages (rtnl_link_vxlan_*,
// rtnl_addr_*, rtnl_route_*, rtnl_neigh_* with AF_BRIDGE for the FDB); the exchange itself is
// ours, because libnl's own helpers fold errnos into its NLE_* codes and would lose the errno
// the Result must carry (DESIGN.md "Error handling convention"). The socket asks for extended
// ACKs (NETLINK_EXT_ACK), so the kernel's reason ("Nexthop device is not up") ends the message.
//
// Dumps: a dump that the kernel marks NLM_F_DUMP_INTR (the table changed while it was being
// dumped, so the answer may be inconsistent) is thrown away and repeated after a short pause
// (0.5 ms doubling to 8 ms), up to kDumpAttempts times; after that the call fails with EINTR
// (Errc::Kernel) rather than returning a possibly torn view to the reconciler, which retries
// later.
//
// Namespaces: the socket belongs to the network namespace of the thread that called open(),
// for its whole life. setSysctl()/sysctl() go through /proc/sys, which follows the namespace of
// the calling thread at call time; call them from a thread in the same namespace.
//
// Thread safety: none; one thread uses the object (the control-plane thread).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "kernel/kernel.h"

struct nl_sock;
struct nl_msg;
struct nl_object;

namespace flannel::kernel {

class NetlinkKernel final : public Kernel {
 public:
  static constexpr int kDumpAttempts = 8;

  // Opens and connects the NETLINK_ROUTE socket in the calling thread's network namespace.
  static Result<std::unique_ptr<NetlinkKernel>> open();

  NetlinkKernel(const NetlinkKernel&) = delete;
  NetlinkKernel& operator=(const NetlinkKernel&) = delete;
  ~NetlinkKernel() override;

  Result<std::vector<Link>> links() override;
  Result<Link> linkByName(const std::string& name) override;
  Result<Link> linkByIndex(int ifindex) override;
  Result<Link> ensureVxlan(const VxlanSpec& spec) override;
  Result<void> setLinkUp(int ifindex) override;
  Result<void> setMtu(int ifindex, uint32_t mtu) override;
  Result<void> deleteLink(int ifindex) override;

  Result<std::vector<Addr>> addresses(int ifindex) override;
  Result<std::vector<Addr>> allAddresses() override;
  Result<void> replaceAddress(const Addr& a) override;
  Result<void> deleteAddress(const Addr& a) override;

  Result<std::vector<Route>> routes(const RouteFilter& filter) override;
  Result<void> replaceRoute(const Route& r) override;
  Result<void> deleteRoute(const Route& r) override;
  Result<Route> routeGet(const IpAddr& dst) override;

  Result<std::vector<Neigh>> neighbours(int ifindex) override;
  Result<void> replaceNeighbour(const Neigh& n) override;
  Result<void> deleteNeighbour(const Neigh& n) override;

  Result<std::vector<Fdb>> fdbEntries(int ifindex) override;
  Result<void> replaceFdb(const Fdb& f) override;
  Result<void> deleteFdb(const Fdb& f) override;

  Result<void> setSysctl(const std::string& path, const std::string& value) override;
  Result<std::string> sysctl(const std::string& path) override;

  // Dumps thrown away because the kernel flagged them NLM_F_DUMP_INTR, since open() (for
  // metrics: a steadily rising count means heavy churn while we list).
  uint64_t interruptedDumps() const { return interrupted_dumps_; }

 private:
  explicit NetlinkKernel(nl_sock* sock);

  // The outcome of one request: errno 0 on success, else the kernel's (or the socket's)
  // errno and the extended-ack text if any.
  struct Outcome {
    int err = 0;
    std::string extack;
    bool interrupted = false;  // a dump message carried NLM_F_DUMP_INTR
  };
  using ObjectFn = std::function<void(nl_object*)>;

  // Sends `msg` (consumed) and receives the complete answer, handing every object libnl parses
  // from it to `on_object` (may be empty).
  Outcome exchange(nl_msg* msg, const ObjectFn& on_object);
  // A dump of message `type` for `family`, repeated while interrupted (see the DOC above);
  // `reset` runs before each repetition so the caller can drop what it collected.
  Outcome dump(int type, int family, const ObjectFn& on_object, const std::function<void()>& reset);
  // A mutation (msg consumed, may be null after a build failure with `build_err`): success, or
  // kernelError(what(), errno). With `absent_ok`, "already absent" errnos are success (delete);
  // otherwise EEXIST is (replace).
  Result<void> mutate(nl_msg* msg, int build_err, const std::function<std::string()>& what,
                      bool absent_ok);
  // "dev <name>" material for messages: the device name, or "" if it cannot be found.
  std::string devName(int ifindex);
  Result<Link> getLink(int ifindex, const std::string& name);
  Result<void> createVxlan(const VxlanSpec& spec);

  nl_sock* sock_;
  uint64_t interrupted_dumps_ = 0;
};

}  // namespace flannel::kernel
