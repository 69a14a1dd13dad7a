// DOC: packet and byte counters of a namespace's interfaces (`ip -j -s link`), for tests and
// benchmarks that check where packets went and how big they were (average bytes per packet
// shows whether super packets crossed a link whole or cut into segments).
#pragma once

#include <map>
#include <string>

#include "core/result.h"
#include "support/netns.h"

namespace flannel::test {

struct LinkCounters {
  double tx_packets = 0;
  double tx_bytes = 0;
  double rx_packets = 0;
  double rx_bytes = 0;
};

// Every interface of `ns` by name. Errors name the command or the output that failed.
Result<std::map<std::string, LinkCounters>> linkCounters(Netns& ns);

}  // namespace flannel::test
