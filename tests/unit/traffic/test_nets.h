// Shared fixtures for the traffic unit tests.
#pragma once

#include <string_view>

#include <gtest/gtest.h>

#include "core/ip_net.h"
#include "core/lease.h"
#include "core/network_config.h"

namespace flannel::traffic::testing {

inline IpNet net(std::string_view text) {
  auto n = IpNet::parse(text);
  EXPECT_TRUE(n) << text;
  return n ? *n : IpNet();
}

inline NetworkConfig v4Config() {
  NetworkConfig c;
  c.enable_ipv4 = true;
  c.enable_ipv6 = false;
  c.network = net("10.5.0.0/16");
  return c;
}

inline NetworkConfig v6Config() {
  NetworkConfig c;
  c.enable_ipv4 = false;
  c.enable_ipv6 = true;
  c.ipv6_network = net("fd00:10::/48");
  return c;
}

inline NetworkConfig dualConfig() {
  NetworkConfig c = v4Config();
  c.enable_ipv6 = true;
  c.ipv6_network = net("fd00:10::/48");
  return c;
}

inline SubnetKey ownSubnets() {
  return SubnetKey{.ipv4 = net("10.5.1.0/24"), .ipv6 = net("fd00:10:0:1::/64")};
}

}  // namespace flannel::traffic::testing
