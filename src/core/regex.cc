#include "core/regex.h"

#include <fmt/format.h>
#include <regex.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <vector>

namespace flannel {

struct Regex::Compiled {
  regex_t re{};
  bool ok = false;  // regcomp() succeeded: there is something to regfree()
  Compiled() = default;
  Compiled(const Compiled&) = delete;
  Compiled& operator=(const Compiled&) = delete;
  ~Compiled() {
    if (ok) {
      regfree(&re);
    }
  }
};

namespace {

// The caller's context names the flag and the pattern.
Error invalid(std::string_view what) {
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
        return invalid("unterminated [: in a character class");
      }
      items.append(pattern.substr(j, end + 2 - j));
      j = end + 1;
      continue;
    }
    if (c == '\\') {
      if (j + 1 >= pattern.size()) {
        return invalid("trailing backslash");
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
          return invalid(fmt::format("\\{} inside [...] is not supported", e));
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
            return invalid(fmt::format("\\{} inside [...] is not supported", e));
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
    return invalid("missing closing ]");
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

namespace {

// How far repetitions expand a pattern, estimated as glibc's regcomp() builds it: one element
// per atom, a group as big as its contents, x{n,m} as max(n, m) copies of x (x{n,} as n + 1),
// x+ as two (x x*). What can match the empty string is far worse for glibc (its epsilon
// closures): ((a?)*){250} 0.08 s, {450} 0.44 s, {1000} 4.5 s; nested ()+ doubles the time per
// level (11 levels: 6 s); ((((){10}){10}){10}){10} takes 1.5 GB and one more level overflows
// its stack. So it tracks which parts can match "": x+ of such an x is written as x*, which
// matches the same strings, and x{n,m} of such an x counts max(n, m)^2 copies. 1,000 elements
// keep regcomp() well under a second and leave room for any interface pattern.
class Expansion {
 public:
  static constexpr uint64_t kMax = 1000;
  // A character or class (`empty` false), or a zero-width assertion: ^ $ \b \B.
  void atom(bool empty = false) { add(1, empty); }
  void open() { frames_.push_back({}); }
  void close() {
    if (frames_.size() < 2) {
      atom();  // an unmatched ')': regcomp() reports it
      return;
    }
    Frame group = frames_.back();
    frames_.pop_back();
    add(group.total + 1, group.branch_empty || group.sequenceEmpty());
  }
  void alternative() {
    Frame& f = frames_.back();
    f.branch_empty = f.branch_empty || f.sequenceEmpty();
    f.before_last_empty = true;
    f.last_empty = true;
    f.last = 0;
  }
  // Whether what a repetition here would apply to can match the empty string.
  bool lastCanBeEmpty() const { return frames_.back().last_empty; }
  // The last item repeated: `copies` elements for each of it; `zero` when it may occur 0 times.
  void repeat(uint64_t copies, bool zero) {
    Frame& f = frames_.back();
    uint64_t extra = copies == 0 ? 0 : f.last * (copies - 1);
    f.total = std::min(kMax + 1, f.total + extra);
    f.last = std::min(kMax + 1, f.last * std::max<uint64_t>(copies, 1));
    f.last_empty = f.last_empty || zero;
  }
  bool tooLarge() const {
    for (const Frame& f : frames_) {
      if (f.total > kMax) {
        return true;
      }
    }
    return false;
  }

 private:
  struct Frame {
    uint64_t total = 0;
    uint64_t last = 0;              // size of the last atom or group, what a repetition applies to
    bool before_last_empty = true;  // the branch before its last item can match ""
    bool last_empty = true;         // the last item can match "" (true: there is none)
    bool branch_empty = false;      // an earlier alternative can match ""
    bool sequenceEmpty() const { return before_last_empty && last_empty; }
  };
  void add(uint64_t n, bool empty) {
    Frame& f = frames_.back();
    f.before_last_empty = f.sequenceEmpty();
    f.last_empty = empty;
    f.total = std::min(kMax + 1, f.total + n);
    f.last = n;
  }
  std::vector<Frame> frames_{Frame{}};
};

Error tooLarge() {
  return invalid(fmt::format("expression too large (repetitions expand it past {} elements)",
                             Expansion::kMax));
}

// "{n}", "{n,}" or "{n,m}" at pattern[i] == '{' (interval()): its length and the copies it
// makes; length 0 when it is not a repetition (then '{' is an ordinary character, as in Go).
struct Interval {
  size_t length = 0;  // of the text "{...}"
  uint64_t min = 0;
  uint64_t max = 0;  // == min + 1 when open
  bool open = false;
};
Interval interval(std::string_view p, size_t i) {
  size_t j = i + 1;
  auto number = [&](uint64_t& out) {
    size_t from = j;
    out = 0;
    while (j < p.size() && p[j] >= '0' && p[j] <= '9' && j - from < 9) {
      out = out * 10 + static_cast<uint64_t>(p[j] - '0');
      ++j;
    }
    return j > from;
  };
  uint64_t lo = 0;
  if (!number(lo)) {
    return {};
  }
  Interval out{.min = lo, .max = lo};
  if (j < p.size() && p[j] == ',') {
    ++j;
    if (!number(out.max)) {
      out.open = true;  // {n,}: unbounded; glibc builds n + 1 copies
      out.max = lo + 1;
    }
  }
  if (j >= p.size() || p[j] != '}') {
    return {};
  }
  out.length = j + 1 - i;
  return out;
}

}  // namespace

Result<std::string> re2ToPosix(std::string_view pattern) {
  if (pattern.find('\0') != std::string_view::npos) {
    return invalid("contains a NUL byte");
  }
  std::string out;
  out.reserve(pattern.size() + 8);
  Expansion size;
  // What the previous token was: Go rejects a repetition of a repetition ("a**", "a+{2}"),
  // except one '?' that makes it non-greedy ("a*?"), which changes no match and is dropped here
  // (glibc would copy the repeated expression for each stacked operator: exponential).
  enum class Prev { Other, Repeat, Lazy } prev = Prev::Other;
  for (size_t i = 0; i < pattern.size();) {
    if (size.tooLarge()) {
      return tooLarge();
    }
    char c = pattern[i];
    Interval rep = c == '{' ? interval(pattern, i) : Interval{};
    bool repetition = c == '*' || c == '+' || c == '?' || rep.length > 0;
    if (c == '?' && prev == Prev::Repeat) {
      prev = Prev::Lazy;
      ++i;
      continue;
    }
    if (repetition && prev != Prev::Other) {
      return invalid(fmt::format("invalid nested repetition operator at offset {}", i));
    }
    prev = repetition ? Prev::Repeat : Prev::Other;
    if (c == '[') {
      auto next = bracket(pattern, i, out);
      if (!next) {
        return next.error();
      }
      i = *next;
      size.atom();
      continue;
    }
    if (c == '(' && i + 1 < pattern.size() && pattern[i + 1] == '?') {
      return invalid("(? groups and flags are not supported");
    }
    if (c == '{') {
      if (rep.length > 0) {
        // Go's limits (regexp/syntax: "invalid repeat count").
        if (rep.min > 1000 || (!rep.open && (rep.max > 1000 || rep.max < rep.min))) {
          return invalid(fmt::format("invalid repeat count {}: counts go up to 1000",
                                     pattern.substr(i, rep.length)));
        }
        size.repeat(size.lastCanBeEmpty() ? rep.max * rep.max : rep.max, rep.min == 0);
        out.append(pattern.substr(i, rep.length));
        i += rep.length;
        continue;
      }
      // Not a repetition: Go reads '{' as itself; POSIX needs it escaped.
      out += "\\{";
      size.atom();
      ++i;
      continue;
    }
    if (c == '\\') {
      if (i + 1 >= pattern.size()) {
        return invalid("trailing backslash");
      }
      char e = pattern[i + 1];
      i += 2;
      size.atom(e == 'b' || e == 'B');
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
            return invalid(fmt::format("\\{} is not supported", e));
          }
          out += '\\';
          out += e;
      }
      continue;
    }
    switch (c) {
      case '(':
        size.open();
        break;
      case ')':
        size.close();
        break;
      case '|':
        size.alternative();
        break;
      case '+':
        if (size.lastCanBeEmpty()) {
          // x+ of an x that can match "" matches what x* does, and glibc builds it far cheaper.
          size.repeat(1, true);
          out += '*';
          ++i;
          continue;
        }
        size.repeat(2, false);  // glibc builds x+ as x x*
        break;
      case '*':
      case '?':
        size.repeat(1, true);
        break;
      case '^':
      case '$':
        size.atom(true);
        break;
      default:
        size.atom();
    }
    out += c;
    ++i;
  }
  if (size.tooLarge()) {
    return tooLarge();
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
    return invalid(reason);
  }
  compiled->ok = true;
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
