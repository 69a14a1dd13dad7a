// Fuzz target: -iface-regex patterns (core/regex.h). The first line is the pattern, the other
// lines are matched against it. Compiling and matching must be total (an error with a message,
// never a crash, bounded memory), and a pattern with nothing to rewrite (no '\', '[', '{' or
// "(?") must reach the C library unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/regex.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  size_t nl = text.find('\n');
  std::string_view pattern = text.substr(0, nl);
  auto posix = flannel::re2ToPosix(pattern);
  // Nothing to rewrite: no escape, bracket, interval, '+' (x+ of an x that can match "" is
  // written x*), (? or non-greedy marker. Such a pattern is either refused (nested repetition,
  // too large) or passed on unchanged.
  bool plain = pattern.find_first_of("\\[{+") == std::string_view::npos &&
               pattern.find("(?") == std::string_view::npos &&
               pattern.find("*?") == std::string_view::npos &&
               pattern.find("+?") == std::string_view::npos &&
               pattern.find("??") == std::string_view::npos;
  if (plain && posix && *posix != pattern) {
    std::abort();
  }
  if (!posix && posix.error().message.empty()) {
    std::abort();
  }
  auto re = flannel::Regex::compile(pattern);
  if (!re) {
    if (re.error().message.empty()) {
      std::abort();
    }
    return 0;
  }
  if (!posix || re->posix() != *posix || re->pattern() != pattern) {
    std::abort();
  }
  while (nl != std::string_view::npos) {
    size_t next = text.find('\n', nl + 1);
    std::string line(text.substr(nl + 1, next == std::string_view::npos ? next : next - nl - 1));
    // What flanneld matches: interface names and addresses, short.
    if (line.size() <= 64) {
      (void)re->search(line);
    }
    nl = next;
  }
  return 0;
}
