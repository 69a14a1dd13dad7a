// Regex: RE2-syntax patterns (as Go flannel's --iface-regex takes them) matched by libc's POSIX
// engine. The rewrite of what POSIX lacks, unanchored search, and errors.
#include "core/regex.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flannel {
namespace {

using ::testing::HasSubstr;

TEST(Regex, RewritesPerlClassesAndBracketEscapes) {
  struct Case {
    const char* re2;
    const char* posix;
  };
  for (const Case& c :
       {Case{"^eth\\d+$", "^eth[0-9]+$"}, Case{"\\D", "[^0-9]"},
        Case{"\\s\\w\\b\\.", "\\s\\w\\b\\."}, Case{"[\\d.]", "[0-9.]"},
        Case{"[\\w-]", "[[:alnum:]_-]"}, Case{"[a\\-z]", "[az-]"}, Case{"[^\\]x]", "[^]x]"},
        Case{"[\\^a]", "[a^]"}, Case{"[\\^]", "\\^"}, Case{"[]a]", "[]a]"}, Case{"[-a]", "[a-]"},
        Case{"[[:digit:]x]", "[[:digit:]x]"}, Case{"[\\\\]", "[\\]"}, Case{"a|b(c)", "a|b(c)"}}) {
    auto p = re2ToPosix(c.re2);
    ASSERT_TRUE(p) << c.re2 << ": " << p.error().message;
    EXPECT_EQ(*p, c.posix) << c.re2;
  }
}

TEST(Regex, SearchesUnanchoredLikeGoMatchString) {
  auto re = Regex::compile("^en");
  ASSERT_TRUE(re);
  EXPECT_TRUE(re->search("ens3"));
  EXPECT_FALSE(re->search("xen0"));
  auto dot6 = Regex::compile("\\.6$");
  ASSERT_TRUE(dot6);
  EXPECT_TRUE(dot6->search("10.0.0.6"));
  EXPECT_FALSE(dot6->search("10.0.0.16x"));
  EXPECT_FALSE(dot6->search("10.0.0x6"));
  auto alt = Regex::compile("eth1|^10\\.0\\.0\\.5$");
  ASSERT_TRUE(alt);
  EXPECT_TRUE(alt->search("veth1a"));
  EXPECT_TRUE(alt->search("10.0.0.5"));
  EXPECT_FALSE(alt->search("10.0.0.50"));
  auto digits = Regex::compile("^eth\\d$");
  ASSERT_TRUE(digits);
  EXPECT_TRUE(digits->search("eth7"));
  EXPECT_FALSE(digits->search("ethd"));
  EXPECT_FALSE(digits->search("eth10"));
  auto word = Regex::compile("^\\w+:\\s*\\S$");
  ASSERT_TRUE(word);
  EXPECT_TRUE(word->search("fd00_1: x"));
  EXPECT_FALSE(word->search("fd00-1: x"));
  auto cls = Regex::compile("^[\\d.]+$");
  ASSERT_TRUE(cls);
  EXPECT_TRUE(cls->search("192.168.1.1"));
  EXPECT_FALSE(cls->search("fd00::1"));
  EXPECT_EQ(cls->pattern(), "^[\\d.]+$");
  EXPECT_EQ(cls->posix(), "^[0-9.]+$");
}

TEST(Regex, RepetitionsUpToGosLimitsCompile) {
  for (const char* ok :
       {"a{1000}", "a{2,1000}", "a{999,}", "(a{10}){50}", "(ab{10}c){50}", "x{3}y{99}z{100}",
        "(((((((()+)+)+)+)+)+)+)+", "{", "a{", "a{,3}", "a{x}"}) {
    auto re = Regex::compile(ok);
    EXPECT_TRUE(re) << ok << ": " << re.error().message;
  }
  auto re = Regex::compile("^eth[0-9]{1,3}$");
  ASSERT_TRUE(re);
  EXPECT_TRUE(re->search("eth123"));
  EXPECT_FALSE(re->search("eth1234"));
  // (a|)+ is compiled as (a|)*: the same strings match.
  auto empty_plus = Regex::compile("^(a|)+$");
  ASSERT_TRUE(empty_plus);
  EXPECT_TRUE(empty_plus->search(""));
  EXPECT_TRUE(empty_plus->search("aaa"));
  EXPECT_FALSE(empty_plus->search("ab"));
  // A '{' that starts no repetition is itself, as in Go.
  auto brace = Regex::compile("^a{x}$");
  ASSERT_TRUE(brace);
  EXPECT_TRUE(brace->search("a{x}"));
  EXPECT_FALSE(brace->search("ax"));
}

TEST(Regex, BadPatternsSayWhatIsWrong) {
  struct Case {
    const char* pattern;
    const char* reason;
  };
  for (const Case& c :
       {Case{"(", "invalid regular expression: "}, Case{"(eth", "invalid regular expression: "},
        Case{"[", "missing closing ]"}, Case{"[a\\", "trailing backslash"},
        Case{"eth\\", "trailing backslash"},
        Case{"(?i)eth", "(? groups and flags are not supported"},
        Case{"(?:a|b)", "(? groups and flags are not supported"},
        Case{"\\q", "\\q is not supported"}, Case{"[\\D]", "\\D inside [...] is not supported"},
        Case{"[[:digit:", "unterminated [:"}}) {
    auto re = Regex::compile(c.pattern);
    ASSERT_FALSE(re) << c.pattern;
    EXPECT_EQ(re.error().code, Errc::InvalidInput);
    EXPECT_THAT(re.error().message, HasSubstr("invalid regular expression: ")) << c.pattern;
    EXPECT_THAT(re.error().message, HasSubstr(c.reason)) << c.pattern;
  }
  // Not cut short at a NUL byte (the C library would see only "eth").
  auto nul = Regex::compile(std::string_view("eth\0x", 5));
  ASSERT_FALSE(nul);
  EXPECT_THAT(nul.error().message, HasSubstr("contains a NUL byte"));
}

TEST(Regex, RewritesBracesAndNonGreedyOperators) {
  struct Case {
    const char* re2;
    const char* posix;
  };
  const Case cases[] = {
      {"a{2,3}b{4}c{5,}", "a{2,3}b{4}c{5,}"},
      {"{x}a{", "\\{x}a\\{"},
      {"a{,3}", "a\\{,3}"},
      {"a*?b+?c??d{2}?", "a*b+c?d{2}"},
      // x+ of an x that can match "" is x* (glibc builds nested ones exponentially).
      {"((((((((()+)+)+)+)+)+)+)+)+", "((((((((()*)*)*)*)*)*)*)*)*"},
      {"(a|)+", "(a|)*"},
      {"(a*b*)+", "(a*b*)*"},
      {"(\\b)+(^)+", "(\\b)*(^)*"},
      {"(a|b)+c", "(a|b)+c"},
      {"((a+)+)+", "((a+)+)+"},
  };
  for (const Case& c : cases) {
    auto p = re2ToPosix(c.re2);
    ASSERT_TRUE(p) << c.re2 << ": " << p.error().message;
    EXPECT_EQ(*p, c.posix) << c.re2;
  }
}

TEST(Regex, RepetitionLimitsAndNestingAreErrors) {
  struct Case {
    const char* pattern;
    const char* reason;
  };
  const Case cases[] = {
      {"a{1001}", "invalid repeat count {1001}: counts go up to 1000"},
      {"a{2,1001}", "invalid repeat count {2,1001}"},
      {"a{5,2}", "invalid repeat count {5,2}"},
      {"(a{32767}){32767}", "invalid repeat count {32767}"},
      {"(a{1000}){1000}", "expression too large"},
      {"a{1000}b", "expression too large"},
      {"((a?)*){1000}", "expression too large"},
      {"((((){10}){10}){10}){10}", "expression too large"},
      {"((a?)*){30}", "expression too large"},
      {"(a?){32}", "expression too large"},
      {"((a{100}){100}){100}", "expression too large"},
      {"(([0-9]{50}|x){50}){50}", "expression too large"},
      {"a++", "invalid nested repetition operator at offset 2"},
      {"a**", "invalid nested repetition operator"},
      {"a{2}*", "invalid nested repetition operator"},
      {"a*??", "invalid nested repetition operator"},
      {"a+{3}", "invalid nested repetition operator"},
  };
  for (const Case& c : cases) {
    auto re = Regex::compile(c.pattern);
    ASSERT_FALSE(re) << c.pattern;
    EXPECT_EQ(re.error().code, Errc::InvalidInput);
    EXPECT_THAT(re.error().message, HasSubstr(c.reason)) << c.pattern;
  }
}

}  // namespace
}  // namespace flannel
