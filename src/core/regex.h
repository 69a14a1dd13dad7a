// DOC: Regular expressions as flannel's flags take them (Go's RE2 syntax, e.g. --iface-regex),
// matched by the C library's POSIX extended regular expressions (regcomp/regexec). The common
// subset is the same; the Perl classes RE2 has and POSIX lacks (\d \D, and \s \S \w \W inside
// [...]) and backslash escapes inside [...] are rewritten to POSIX form first. RE2 features with
// no POSIX counterpart (flags like (?i), non-capturing groups (?:...)) are an error naming them.
// Repetitions are checked as Go checks them (counts up to 1000, no repetition of a repetition;
// a non-greedy '?' is dropped, it changes no match; x+ of an x that can match "" becomes the
// equivalent x*, which glibc compiles cheaply) and the expansion they cause is bounded,
// (to 1,000 elements), because glibc's regcomp() copies a repeated expression per count and
// grows worse than quadratically with nested repetitions: (a{32767}){32767} would exhaust memory.
// Using libc's engine keeps std::regex, and with it all of libstdc++'s locale machinery, out
// of flanneld (BENCHMARKS.md, idle RSS).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"

namespace flannel {

class Regex {
 public:
  // Errc::InvalidInput with the C library's reason (or the unsupported construct) when the
  // pattern does not compile.
  static Result<Regex> compile(std::string_view pattern);

  // True when the expression matches anywhere in text (Go's MatchString: unanchored).
  bool search(const std::string& text) const;

  const std::string& pattern() const { return pattern_; }
  // The POSIX expression the pattern was rewritten to (for tests and messages).
  const std::string& posix() const { return posix_; }

 private:
  struct Compiled;
  std::string pattern_;
  std::string posix_;
  std::shared_ptr<const Compiled> compiled_;
};

// The rewrite compile() does, exposed for tests: RE2 syntax to POSIX ERE.
Result<std::string> re2ToPosix(std::string_view pattern);

}  // namespace flannel
