// DOC: ChainReader, an in-process view of the chains iptables-nft keeps in nftables.
//
// Why it exists: the resync loop checks our iptables rules every --iptables-resync seconds (5 s
// by default). Asking iptables-save (or `iptables -C` per rule, as Go flannel does) forks a
// process every time. On Debian 12, `iptables` is iptables-nft: its rules live in the nftables
// tables `ip nat` / `ip filter` (`ip6 ...` for ip6tables), which libnftables can list from inside
// our process over netlink. The listing does not show everything iptables-save shows (comments
// and MASQUERADE options sit in opaque xt blobs), so IptablesRuleTable does not interpret it: it
// records a snapshot right after it verified or applied the chain, and later compares snapshots.
// Equal snapshots mean nothing changed, with no process forked; a different snapshot triggers the
// exact iptables-save check.
//
// The real implementation is nft::NftChainReader (libnftables); unit tests use a fake.
#pragma once

#include <string>
#include <string_view>

#include "core/ip.h"
#include "core/result.h"

namespace flannel::traffic {

class ChainReader {
 public:
  virtual ~ChainReader() = default;

  // A canonical text describing chain `chain` of the iptables-nft table `table` ("nat",
  // "filter") of `family` (whether it exists, its rules in order) and the rules of `hook_chain`
  // that jump to it. Volatile details (rule handles, counters) are left out, so two snapshots are
  // equal exactly when the rules are. A missing table or chain is a valid state, not an error.
  // Errors: Errc::Kernel when listing fails.
  virtual Result<std::string> snapshot(Family family, std::string_view table,
                                       std::string_view chain, std::string_view hook_chain) = 0;
};

}  // namespace flannel::traffic
