// DOC: subnet choice (pure; SPEC.md §3.5, §3.6). Given the validated config, what is already
// taken and the random draw, decide which subnet(s) to request. No I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "core/lease.h"
#include "core/network_config.h"
#include "core/result.h"

namespace flannel::store {

// At most this many free candidates are collected before one is drawn (as flannel does).
inline constexpr size_t kMaxCandidates = 100;

// True when `key` fits the config: each enabled family present, inside SubnetMin..SubnetMax
// with the configured length; each disabled family absent.
bool subnetFitsConfig(const SubnetKey& key, const NetworkConfig& config);

// The first up-to-kMaxCandidates free subnets of one family between `min` and `max` (inclusive,
// stepping by `len`), skipping every subnet that overlaps one in `taken`.
std::vector<IpNet> freeCandidates(const IpAddr& min, const IpAddr& max, uint8_t len,
                                  const std::vector<IpNet>& taken, size_t limit = kMaxCandidates);

// Up to kMaxCandidates free subnet keys in a random order (`pick(n)` in [0, n) drives a
// Fisher-Yates shuffle), each with one subnet per enabled family. Trying them in this order
// after a lost creation race needs no re-listing: every attempt either wins or learns that one
// more subnet is taken. Errc::Conflict "network is full" (naming the family and range) when a
// family has no free subnet.
Result<std::vector<SubnetKey>> candidateSubnets(const NetworkConfig& config,
                                                const std::vector<SubnetKey>& taken,
                                                const std::function<size_t(size_t)>& pick);

// Draws a free subnet for each enabled family (the first of candidateSubnets). `pick(n)` returns an
// index in [0, n). Errc::Conflict "network is full" naming the family and range when a family has
// no free subnet.
Result<SubnetKey> allocateSubnet(const NetworkConfig& config, const std::vector<SubnetKey>& taken,
                                 const std::function<size_t(size_t)>& pick);

}  // namespace flannel::store
