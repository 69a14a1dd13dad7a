#include "store/allocator.h"

#include <fmt/format.h>
#include <algorithm>

namespace flannel::store {

namespace {

bool fits(const std::optional<IpNet>& net, bool enabled, const std::optional<IpNet>& network,
          uint8_t len, const IpAddr& min, const IpAddr& max) {
  if (!enabled) {
    return !net.has_value();
  }
  return net && network && net->prefix() == len && network->contains(*net) &&
         !(net->addr() < min) && !(max < net->addr());
}

}  // namespace

bool subnetFitsConfig(const SubnetKey& key, const NetworkConfig& c) {
  bool v4 = !c.enable_ipv4 || (c.subnet_min && c.subnet_max);
  bool v6 = !c.enable_ipv6 || (c.ipv6_subnet_min && c.ipv6_subnet_max);
  if (!v4 || !v6) {
    return false;  // not a validated config
  }
  if (c.enable_ipv4 &&
      !fits(key.ipv4, true, c.network, c.subnet_len, *c.subnet_min, *c.subnet_max)) {
    return false;
  }
  if (!c.enable_ipv4 && key.ipv4) {
    return false;
  }
  if (c.enable_ipv6 && !fits(key.ipv6, true, c.ipv6_network, c.ipv6_subnet_len, *c.ipv6_subnet_min,
                             *c.ipv6_subnet_max)) {
    return false;
  }
  if (!c.enable_ipv6 && key.ipv6) {
    return false;
  }
  return true;
}

std::vector<IpNet> freeCandidates(const IpAddr& min, const IpAddr& max, uint8_t len,
                                  const std::vector<IpNet>& taken, size_t limit) {
  const Family family = min.family();
  const uint8_t width = IpNet::maxPrefix(family);
  std::vector<IpNet> out;
  if (len > width || max.family() != family || max < min) {
    return out;
  }
  // Taken prefixes as merged, sorted [first, last] address intervals: the walk below is then
  // O(candidates + taken) instead of checking every candidate against every lease.
  std::vector<std::pair<Uint128, Uint128>> blocked;
  blocked.reserve(taken.size());
  for (const auto& t : taken) {
    if (t.family() != family) {
      continue;
    }
    Uint128 first = addrValue(t.addr());
    Uint128 span = t.hostBits() >= 128 ? ~Uint128{0} : ((Uint128{1} << t.hostBits()) - 1);
    blocked.emplace_back(first, first + span);
  }
  std::sort(blocked.begin(), blocked.end());
  std::vector<std::pair<Uint128, Uint128>> merged;
  for (const auto& b : blocked) {
    if (!merged.empty() && b.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, b.second);
    } else {
      merged.push_back(b);
    }
  }
  const uint8_t host_bits = static_cast<uint8_t>(width - len);
  const Uint128 size_minus_1 = host_bits >= 128 ? ~Uint128{0} : ((Uint128{1} << host_bits) - 1);
  const Uint128 last_start = addrValue(IpNet::masked(max, len).addr());
  Uint128 cur = addrValue(IpNet::masked(min, len).addr());
  size_t j = 0;
  for (;;) {
    if (cur > last_start || out.size() >= limit) {
      break;
    }
    Uint128 cur_end = cur + size_minus_1;
    while (j < merged.size() && merged[j].second < cur) {
      ++j;
    }
    if (j < merged.size() && merged[j].first <= cur_end) {
      // Blocked: continue at the first aligned subnet after the blocking interval.
      Uint128 after = merged[j].second;
      if (after >= last_start) {
        break;
      }
      cur = (after + 1 + size_minus_1) & ~size_minus_1;
      continue;
    }
    out.push_back(IpNet::masked(addrFromValue(family, cur), len));
    if (cur_end >= last_start || cur_end == ~Uint128{0}) {
      break;
    }
    cur = cur_end + 1;
  }
  return out;
}

Result<std::vector<SubnetKey>> candidateSubnets(const NetworkConfig& c,
                                                const std::vector<SubnetKey>& taken,
                                                const std::function<size_t(size_t)>& pick) {
  auto draw = [&](Family family, const std::optional<IpAddr>& min, const std::optional<IpAddr>& max,
                  uint8_t len) -> Result<std::vector<IpNet>> {
    if (!min || !max) {
      return makeError(Errc::Internal, "subnet allocation needs a validated config");
    }
    std::vector<IpNet> used;
    used.reserve(taken.size());
    for (const auto& k : taken) {
      const auto& n = family == Family::V4 ? k.ipv4 : k.ipv6;
      if (n) {
        used.push_back(*n);
      }
    }
    auto candidates = freeCandidates(*min, *max, len, used);
    if (candidates.empty()) {
      return makeError(
          Errc::Conflict,
          fmt::format("network is full: no free /{} {} subnet between {} and {} "
                      "({} subnets are leased or reserved)",
                      len, familyName(family), min->toString(), max->toString(), used.size()));
    }
    for (size_t i = candidates.size() - 1; i > 0; --i) {
      size_t j = pick(i + 1);
      std::swap(candidates[i], candidates[j < i + 1 ? j : i]);
    }
    return candidates;
  };
  std::vector<IpNet> v4;
  std::vector<IpNet> v6;
  if (c.enable_ipv4) {
    std::optional<IpAddr> min;
    std::optional<IpAddr> max;
    if (c.subnet_min && c.subnet_max) {
      min = *c.subnet_min;
      max = *c.subnet_max;
    }
    auto r = draw(Family::V4, min, max, c.subnet_len);
    if (!r) {
      return r.error();
    }
    v4 = std::move(*r);
  }
  if (c.enable_ipv6) {
    std::optional<IpAddr> min;
    std::optional<IpAddr> max;
    if (c.ipv6_subnet_min && c.ipv6_subnet_max) {
      min = *c.ipv6_subnet_min;
      max = *c.ipv6_subnet_max;
    }
    auto r = draw(Family::V6, min, max, c.ipv6_subnet_len);
    if (!r) {
      return r.error();
    }
    v6 = std::move(*r);
  }
  size_t n = c.enable_ipv4 && c.enable_ipv6 ? std::min(v4.size(), v6.size())
                                            : std::max(v4.size(), v6.size());
  std::vector<SubnetKey> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (c.enable_ipv4) {
      out[i].ipv4 = v4[i];
    }
    if (c.enable_ipv6) {
      out[i].ipv6 = v6[i];
    }
  }
  return out;
}

Result<SubnetKey> allocateSubnet(const NetworkConfig& c, const std::vector<SubnetKey>& taken,
                                 const std::function<size_t(size_t)>& pick) {
  auto all = candidateSubnets(c, taken, pick);
  if (!all) {
    return all.error();
  }
  return all->front();
}

}  // namespace flannel::store
