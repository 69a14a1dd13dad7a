#include "support/link_counters.h"

#include <nlohmann/json.hpp>

#include <chrono>

namespace flannel::test {

Result<std::map<std::string, LinkCounters>> linkCounters(Netns& ns) {
  auto out = ns.exec({"ip", "-j", "-s", "link", "show"}, std::chrono::seconds(5));
  if (!out) {
    return out.error();
  }
  if (!out->success()) {
    return makeError(Errc::Internal, "ip -j -s link show in " + ns.name() + ": " + out->err);
  }
  const auto j = nlohmann::json::parse(out->out, nullptr, false);
  if (!j.is_array()) {
    return makeError(Errc::Internal, "ip -j -s link show in " + ns.name() +
                                         ": not a JSON array: " + out->out.substr(0, 200));
  }
  std::map<std::string, LinkCounters> m;
  for (const auto& l : j) {
    if (!l.contains("ifname") || !l.contains("stats64")) {
      continue;
    }
    const auto& s = l["stats64"];
    m[l["ifname"].get<std::string>()] = {
        s["tx"]["packets"].get<double>(), s["tx"]["bytes"].get<double>(),
        s["rx"]["packets"].get<double>(), s["rx"]["bytes"].get<double>()};
  }
  return m;
}

}  // namespace flannel::test
