#include "store/kube/annotations.h"

#include <fmt/format.h>
#include <algorithm>
#include <ctime>

#include "core/ip.h"
#include "core/strings.h"

namespace flannel::store::kube {

namespace {

bool isNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// ^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+$ : at least two non-empty labels of [a-z0-9_-], dot-separated.
bool isDomain(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  size_t labels = 0;
  size_t start = 0;
  for (;;) {
    size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty() || !std::all_of(label.begin(), label.end(), isNameChar)) {
      return false;
    }
    ++labels;
    if (dot == std::string_view::npos) {
      break;
    }
    start = dot + 1;
  }
  return labels >= 2;
}

// ^(?:[a-z0-9_-]+-)?$ : empty, or one or more name characters ending in '-'.
bool isNamePart(std::string_view s) {
  if (s.empty()) {
    return true;
  }
  return s.size() >= 2 && s.back() == '-' && std::all_of(s.begin(), s.end(), isNameChar);
}

std::string valueOrNull(const std::string& raw_json) {
  return raw_json.empty() ? std::string("null") : raw_json;
}

bool isNullData(const std::string& raw_json) {
  return raw_json.empty() || raw_json == "null";
}

}  // namespace

Result<std::string> normaliseAnnotationPrefix(std::string_view prefix) noexcept {
  try {
    auto bad = [&](std::string_view why) {
      return invalidInput(
          fmt::format("--kube-annotation-prefix {}: {}", quoteForMessage(prefix), why));
    };
    size_t slashes = static_cast<size_t>(std::count(prefix.begin(), prefix.end(), '/'));
    if (slashes > 1) {
      return bad("more than one '/' (expected a domain, optionally followed by /name)");
    }
    std::string p(prefix);
    if (slashes == 0) {
      p += '/';
    }
    if (p.back() != '/' && p.back() != '-') {
      p += '-';
    }
    auto slash = p.find('/');
    if (!isDomain(std::string_view(p).substr(0, slash)) ||
        !isNamePart(std::string_view(p).substr(slash + 1))) {
      return bad(fmt::format(
          "normalised prefix {} does not match ^(?:[a-z0-9_-]+\\.)+[a-z0-9_-]+/(?:[a-z0-9_-]+-)?$ "
          "(a lower-case domain name such as flannel.alpha.coreos.com, optionally /name)",
          quoteForMessage(p)));
    }
    return p;
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, e.what());
  }
}

AnnotationKeys AnnotationKeys::forPrefix(std::string_view normalised) {
  std::string p(normalised);
  return AnnotationKeys{.kube_subnet_manager = p + "kube-subnet-manager",
                        .backend_type = p + "backend-type",
                        .backend_data = p + "backend-data",
                        .public_ip = p + "public-ip",
                        .backend_v6_data = p + "backend-v6-data",
                        .public_ipv6 = p + "public-ipv6",
                        .public_ip_overwrite = p + "public-ip-overwrite",
                        .public_ipv6_overwrite = p + "public-ipv6-overwrite",
                        .node_public_ip = p + "node-public-ip",
                        .node_public_ipv6 = p + "node-public-ipv6"};
}

Annotations desiredAnnotations(const AnnotationKeys& keys, const LeaseAttrs& attrs,
                               const Annotations& current, std::string* warning) {
  auto overwrite = [&](const std::string& key, Family family) -> std::optional<std::string> {
    auto it = current.find(key);
    if (it == current.end() || it->second.empty()) {
      return std::nullopt;
    }
    auto ip = IpAddr::parse(it->second);
    if (!ip || ip->family() != family) {
      if (warning != nullptr) {
        *warning += fmt::format("{}annotation {} = {} is not an {} address; ignoring it",
                                warning->empty() ? "" : "; ", key, quoteForMessage(it->second),
                                familyName(family));
      }
      return std::nullopt;
    }
    return ip->toString();
  };

  Annotations out;
  out[keys.kube_subnet_manager] = "true";
  out[keys.backend_type] = attrs.backend_type;
  // SPEC.md §4.3 "Which keys are written".
  bool v4 = !(attrs.backend_type == "vxlan" && isNullData(attrs.backend_data));
  if (v4) {
    out[keys.backend_data] = valueOrNull(attrs.backend_data);
    out[keys.public_ip] =
        overwrite(keys.public_ip_overwrite, Family::V4).value_or(attrs.public_ip.toString());
  }
  const bool has_v6_ip = attrs.public_ipv6.has_value();
  const bool v6_data = !isNullData(attrs.backend_v6_data);
  const auto& type = attrs.backend_type;
  bool v6 = (type == "vxlan" && v6_data) || (type == "wireguard" && v6_data && has_v6_ip) ||
            (type == "host-gw" && has_v6_ip) || (type == "extension" && has_v6_ip);
  if (v6) {
    out[keys.backend_v6_data] = valueOrNull(attrs.backend_v6_data);
    auto detected = has_v6_ip ? attrs.public_ipv6->toString() : std::string();
    out[keys.public_ipv6] = overwrite(keys.public_ipv6_overwrite, Family::V6).value_or(detected);
  }
  return out;
}

Annotations changedAnnotations(const Annotations& current, const Annotations& desired) {
  Annotations out;
  for (const auto& [key, value] : desired) {
    auto it = current.find(key);
    if (it == current.end() || it->second != value) {
      out[key] = value;
    }
  }
  return out;
}

LeaseAttrs publishedAttrs(const AnnotationKeys& keys, const LeaseAttrs& attrs,
                          const Annotations& published) {
  LeaseAttrs out = attrs;
  if (auto it = published.find(keys.public_ip); it != published.end()) {
    if (auto ip = Ip4::parse(it->second)) {
      out.public_ip = *ip;
    }
  }
  if (auto it = published.find(keys.public_ipv6); it != published.end()) {
    if (auto ip = Ip6::parse(it->second)) {
      out.public_ipv6 = *ip;
    }
  }
  return out;
}

std::string goJsonString(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      default:
        break;
    }
    if (c < 0x20 || c == '<' || c == '>' || c == '&') {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
      continue;
    }
    // U+2028 and U+2029 (E2 80 A8 / E2 80 A9) are escaped by Go for JavaScript safety.
    if (c == 0xe2 && i + 2 < text.size() && static_cast<unsigned char>(text[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(text[i + 2]) == 0xa8 ||
         static_cast<unsigned char>(text[i + 2]) == 0xa9)) {
      out += static_cast<unsigned char>(text[i + 2]) == 0xa8 ? "\\u2028" : "\\u2029";
      i += 2;
      continue;
    }
    out += static_cast<char>(c);
  }
  out += '"';
  return out;
}

std::string annotationPatchBody(const Annotations& changed) {
  std::string body = R"({"metadata":{"annotations":{)";
  bool first = true;
  for (const auto& [key, value] : changed) {  // std::map: sorted by bytes, as Go sorts map keys
    if (!first) {
      body += ',';
    }
    first = false;
    body += goJsonString(key);
    body += ':';
    body += goJsonString(value);
  }
  body += "}}}";
  return body;
}

std::string networkUnavailablePatchBody(SystemTime now) {
  auto ts = rfc3339Utc(now);
  return fmt::format(R"({{"status":{{"conditions":[{{"type":"NetworkUnavailable","status":"False",)"
                     R"("lastHeartbeatTime":"{}","lastTransitionTime":"{}","reason":"FlannelIsUp",)"
                     R"("message":"Flannel is running on this node"}}]}}}})",
                     ts, ts);
}

}  // namespace flannel::store::kube
