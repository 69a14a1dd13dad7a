#include "store/http/url.h"

#include <fmt/format.h>
#include <charconv>

#include "core/strings.h"

namespace flannel::store::http {

std::string Url::hostHeader() const {
  bool v6 = host.find(':') != std::string::npos;
  return v6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

Result<Url> parseUrl(std::string_view text) noexcept {
  try {
    auto bad = [&](std::string_view why) {
      return invalidInput(fmt::format("URL {}: {}", quoteForMessage(text), why));
    };
    Url u;
    u.text = std::string(text);
    std::string_view rest = text;
    auto scheme_end = rest.find("://");
    if (scheme_end == std::string_view::npos) {
      return bad("missing scheme (expected http:// or https://)");
    }
    auto scheme = asciiLower(rest.substr(0, scheme_end));
    if (scheme == "https") {
      u.tls = true;
    } else if (scheme != "http") {
      return bad(
          fmt::format("unsupported scheme {} (expected http or https)", quoteForMessage(scheme)));
    }
    rest.remove_prefix(scheme_end + 3);
    auto path_start = rest.find('/');
    std::string_view authority = rest.substr(0, path_start);
    if (path_start != std::string_view::npos) {
      std::string_view path = rest.substr(path_start);
      while (!path.empty() && path.back() == '/') {
        path.remove_suffix(1);
      }
      u.base_path = std::string(path);
    }
    if (authority.find('@') != std::string_view::npos) {
      return bad("user information in the URL is not supported");
    }
    std::string_view port;
    if (!authority.empty() && authority.front() == '[') {
      auto close = authority.find(']');
      if (close == std::string_view::npos) {
        return bad("unterminated [IPv6] host");
      }
      u.host = std::string(authority.substr(1, close - 1));
      auto after = authority.substr(close + 1);
      if (!after.empty()) {
        if (after.front() != ':') {
          return bad("unexpected text after [IPv6] host");
        }
        port = after.substr(1);
      }
    } else {
      auto colon = authority.rfind(':');
      if (colon != std::string_view::npos) {
        if (authority.find(':') != colon) {
          return bad("IPv6 hosts must be written in brackets, e.g. https://[fd00::1]:2379");
        }
        port = authority.substr(colon + 1);
        authority = authority.substr(0, colon);
      }
      u.host = std::string(authority);
    }
    if (u.host.empty()) {
      return bad("missing host");
    }
    if (port.empty()) {
      u.port = u.tls ? "443" : "80";
    } else {
      unsigned n = 0;
      auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
      if (ec != std::errc() || ptr != port.data() + port.size() || n == 0 || n > 65535) {
        return bad(fmt::format("port {} is not a number 1..65535", quoteForMessage(port)));
      }
      u.port = std::to_string(n);
    }
    return u;
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("URL {}: {}", quoteForMessage(text), e.what()));
  }
}

}  // namespace flannel::store::http
