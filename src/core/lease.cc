#include "core/lease.h"

#include <fmt/format.h>
#include <charconv>
#include <ctime>

#include "core/json_util.h"
#include "core/strings.h"

namespace flannel {

namespace {

std::string jsonString(std::string_view s) {
  return Json(std::string(s)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// "<addr>-<len>" with a canonical prefix of the given family.
Result<IpNet> parseKeyPart(std::string_view part, Family family, std::string_view key) {
  auto dash = part.rfind('-');
  if (dash == std::string_view::npos) {
    return invalidInput(fmt::format("subnet key {}: {} lacks \"-<prefix length>\"",
                                    quoteForMessage(key, 512), quoteForMessage(part)));
  }
  auto addr = IpAddr::parse(part.substr(0, dash));
  if (!addr) {
    return invalidInput(fmt::format("subnet key {}: {} is not <address>-<prefix length>: {}",
                                    quoteForMessage(key, 512), quoteForMessage(part),
                                    addr.error().message));
  }
  std::string cidr(part);
  cidr[dash] = '/';
  auto net = IpNet::parse(cidr);
  if (!net) {
    return invalidInput(
        fmt::format("subnet key {}: {}", quoteForMessage(key, 512), net.error().message));
  }
  if (net->family() != family) {
    return invalidInput(fmt::format("subnet key {}: {} is not an {} prefix",
                                    quoteForMessage(key, 512), quoteForMessage(part),
                                    familyName(family)));
  }
  return *net;
}

}  // namespace

std::string subnetKeyName(const SubnetKey& key) {
  auto part = [](const IpNet& n) { return fmt::format("{}-{}", n.addr().toString(), n.prefix()); };
  std::string out = key.ipv4 ? part(*key.ipv4) : std::string("0.0.0.0-0");
  if (key.ipv6) {
    out += '&';
    out += part(*key.ipv6);
  }
  return out;
}

Result<SubnetKey> parseSubnetKeyName(std::string_view key) noexcept {
  try {
    std::string_view name = key;
    if (auto slash = name.rfind('/'); slash != std::string_view::npos) {
      name = name.substr(slash + 1);
    }
    if (name.empty()) {
      return invalidInput(fmt::format("subnet key {}: empty name", quoteForMessage(key, 512)));
    }
    std::string_view v4_part = name;
    std::string_view v6_part;
    if (auto amp = name.find('&'); amp != std::string_view::npos) {
      v4_part = name.substr(0, amp);
      v6_part = name.substr(amp + 1);
      if (v6_part.empty()) {
        return invalidInput(
            fmt::format("subnet key {}: empty IPv6 part after '&'", quoteForMessage(key, 512)));
      }
    }
    auto v4 = parseKeyPart(v4_part, Family::V4, key);
    if (!v4) {
      return v4.error();
    }
    SubnetKey out;
    if (v4->prefix() != 0) {
      out.ipv4 = *v4;
    } else if (!v4->addr().v4().isUnspecified() || v6_part.empty()) {
      return invalidInput(fmt::format(
          "subnet key {}: a /0 IPv4 part is only valid as \"0.0.0.0-0\" with an IPv6 part",
          quoteForMessage(key, 512)));
    }
    if (!v6_part.empty()) {
      auto v6 = parseKeyPart(v6_part, Family::V6, key);
      if (!v6) {
        return v6.error();
      }
      if (v6->prefix() == 0) {
        return invalidInput(
            fmt::format("subnet key {}: the IPv6 prefix length is 0", quoteForMessage(key, 512)));
      }
      out.ipv6 = *v6;
    }
    return out;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("subnet key {}: {}", quoteForMessage(key, 512), e.what()));
  }
}

std::string encodeLeaseAttrs(const LeaseAttrs& a) {
  std::string out;
  out.reserve(128 + a.backend_data.size() + a.backend_v6_data.size());
  out += "{\"PublicIP\":";
  out += jsonString(a.public_ip.toString());
  out += ",\"PublicIPv6\":";
  out += a.public_ipv6 ? jsonString(a.public_ipv6->toString()) : std::string("null");
  if (!a.backend_type.empty()) {
    out += ",\"BackendType\":";
    out += jsonString(a.backend_type);
  }
  if (!a.backend_data.empty()) {
    out += ",\"BackendData\":";
    out += a.backend_data;
  }
  if (!a.backend_v6_data.empty()) {
    out += ",\"BackendV6Data\":";
    out += a.backend_v6_data;
  }
  out += '}';
  return out;
}

Result<LeaseAttrs> decodeLeaseAttrs(std::string_view json) noexcept {
  try {
    auto doc = parseJsonObject(json, "lease value");
    if (!doc) {
      return doc.error();
    }
    LeaseAttrs a;
    auto fail = [](const Error& e) { return e.context("lease value"); };

    auto public_ip = getString(*doc, lease_key::kPublicIP, lease_key::kPublicIP);
    if (!public_ip) {
      return fail(public_ip.error());
    }
    if (const Json* raw = findMember(*doc, lease_key::kPublicIP); raw && raw->is_null()) {
      // A Go reader rejects such a lease (SPEC.md §3.3), so we do too.
      return fail(invalidInput("field PublicIP: is null (must be an IPv4 address string)"));
    }
    if (*public_ip) {
      auto ip = Ip4::parse(**public_ip);
      if (!ip) {
        return fail(ip.error().context("field PublicIP"));
      }
      a.public_ip = *ip;
    }
    auto public_ipv6 = getString(*doc, lease_key::kPublicIPv6, lease_key::kPublicIPv6);
    if (!public_ipv6) {
      return fail(public_ipv6.error());
    }
    if (*public_ipv6) {
      auto ip = Ip6::parse(**public_ipv6);
      if (!ip) {
        return fail(ip.error().context("field PublicIPv6"));
      }
      a.public_ipv6 = *ip;
    }
    auto type = getString(*doc, lease_key::kBackendType, lease_key::kBackendType);
    if (!type) {
      return fail(type.error());
    }
    a.backend_type = type->value_or("");
    for (auto [name, dest] : {std::pair{lease_key::kBackendData, &a.backend_data},
                              std::pair{lease_key::kBackendV6Data, &a.backend_v6_data}}) {
      const Json* v = findMember(*doc, name);
      if (v != nullptr && !v->is_null()) {
        *dest = v->dump(-1, ' ', false, Json::error_handler_t::strict);
      }
    }
    return a;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("lease value: {}", e.what()));
  }
}

std::string rfc3339Utc(SystemTime t) {
  std::time_t secs =
      std::chrono::system_clock::to_time_t(std::chrono::time_point_cast<std::chrono::seconds>(t));
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

}  // namespace flannel
