#include "core/regex.h"

#include <fmt/format.h>
#include <regex.h>

#include <cctype>

namespace flannel {

struct Regex::Compiled {
  regex_t re{};
  Compiled() = default;
  Compiled(const Compiled&) = delete;
  Compiled& operator=(const Compiled&) = delete;
  ~Compiled() { regfree(&re); }
};

namespace {

// The caller's context names the flag and the pattern.
Error invalid(std::string_view /*pattern*/, std::string_view what) {
  return makeError(Errc::InvalidInput, fmt::format("invalid regular expression: {}", what));
}

bool isPunct(char c) {
  return std::ispunct(static_cast<unsigned char>(c)) != 0;
}

// One bracket expression [...] starting at pattern[i] == '['. Appends its POSIX form to out
// and returns the index just past the closing ']'.
Result<size_t> bracket(std::string_view pattern, size_t i, std::string& out) {
  size_t j = i + 1;
  bool negated = false;
  if (j < pattern.size() && pattern[j] == '^') {
    negated = true;
    ++j;
  }
  // ']', '-' and '^' are special by position in POSIX brackets and have no escape there, so
  // they are collected and placed where they mean themselves: ']' first, '^' not first, '-' last.
  bool rbracket = false;
  bool dash = false;
  bool caret = false;
  std::string items;
  bool first = true;
  for (; j < pattern.size(); ++j) {
    char c = pattern[j];
    if (c == ']' && !first) {
      break;
    }
    first = false;
    if (c == '[' && j + 1 < pattern.size() && pattern[j + 1] == ':') {
      size_t end = pattern.find(":]", j + 2);
      if (end == std::string_view::npos) {
        return invalid(pattern, "unterminated [: in a character class");
      }
      items.append(pattern.substr(j, end + 2 - j));
      j = end + 1;
      continue;
    }
    if (c == '\\') {
      if (j + 1 >= pattern.size()) {
        return invalid(pattern, "trailing backslash");
      }
      char e = pattern[++j];
      switch (e) {
        case 'd':
          items += "0-9";
          break;
        case 's':
          items += "[:space:]";
          break;
        case 'w':
          items += "[:alnum:]_";
          break;
        case 'D':
        case 'S':
        case 'W':
          return invalid(pattern, fmt::format("\\{} inside [...] is not supported", e));
        case ']':
          rbracket = true;
          break;
        case '-':
          dash = true;
          break;
        case '^':
          caret = true;
          break;
        case '\\':
          items += '\\';
          break;
        default:
          if (!isPunct(e)) {
            return invalid(pattern, fmt::format("\\{} inside [...] is not supported", e));
          }
          items += e;
      }
      continue;
    }
    if (c == ']') {
      rbracket = true;
    } else if (c == '^') {
      caret = true;
    } else {
      items += c;
    }
  }
  if (j >= pattern.size()) {
    return invalid(pattern, "missing closing ]");
  }
  if (!items.empty() && items.back() == '-') {
    // A literal '-' written last stays last.
    items.pop_back();
    dash = true;
  }
  if (!items.empty() && items.front() == '-') {
    items.erase(0, 1);
    dash = true;
  }
  if (!rbracket && items.empty() && !dash && caret && !negated) {
    out += "\\^";
    return j + 1;
  }
  out += '[';
  if (negated) {
    out += '^';
  }
  if (rbracket) {
    out += ']';
  }
  out += items;
  if (caret) {
    out += '^';
  }
  if (dash) {
    out += '-';
  }
  out += ']';
  return j + 1;
}

}  // namespace

Result<std::string> re2ToPosix(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 8);
  for (size_t i = 0; i < pattern.size();) {
    char c = pattern[i];
    if (c == '[') {
      auto next = bracket(pattern, i, out);
      if (!next) {
        return next.error();
      }
      i = *next;
      continue;
    }
    if (c == '(' && i + 1 < pattern.size() && pattern[i + 1] == '?') {
      return invalid(pattern, "(? groups and flags are not supported");
    }
    if (c == '\\') {
      if (i + 1 >= pattern.size()) {
        return invalid(pattern, "trailing backslash");
      }
      char e = pattern[i + 1];
      i += 2;
      switch (e) {
        case 'd':
          out += "[0-9]";
          break;
        case 'D':
          out += "[^0-9]";
          break;
        // glibc knows \s \S \w \W \b \B outside brackets.
        case 's':
        case 'S':
        case 'w':
        case 'W':
        case 'b':
        case 'B':
          out += '\\';
          out += e;
          break;
        default:
          if (!isPunct(e)) {
            return invalid(pattern, fmt::format("\\{} is not supported", e));
          }
          out += '\\';
          out += e;
      }
      continue;
    }
    out += c;
    ++i;
  }
  return out;
}

Result<Regex> Regex::compile(std::string_view pattern) {
  auto posix = re2ToPosix(pattern);
  if (!posix) {
    return posix.error();
  }
  auto compiled = std::make_shared<Compiled>();
  int rc = regcomp(&compiled->re, posix->c_str(), REG_EXTENDED | REG_NOSUB);
  if (rc != 0) {
    char reason[256];
    regerror(rc, &compiled->re, reason, sizeof reason);
    // regcomp leaves nothing allocated on failure; Compiled's regfree must not run.
    compiled->re = regex_t{};
    return invalid(pattern, reason);
  }
  Regex r;
  r.pattern_ = std::string(pattern);
  r.posix_ = std::move(*posix);
  r.compiled_ = std::move(compiled);
  return r;
}

bool Regex::search(const std::string& text) const {
  return compiled_ && regexec(&compiled_->re, text.c_str(), 0, nullptr, 0) == 0;
}

}  // namespace flannel
