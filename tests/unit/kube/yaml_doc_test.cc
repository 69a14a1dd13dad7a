// YamlDoc: the libyaml-based reader kubeconfig files go through. Types, nulls, booleans,
// aliases, repeated keys, first document only, and errors that say where.
#include "store/kube/yaml_doc.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flannel::store::kube {
namespace {

using ::testing::HasSubstr;

YamlDoc parsed(std::string_view text) {
  auto d = YamlDoc::parse(text);
  EXPECT_TRUE(d) << text;
  return d ? std::move(*d) : YamlDoc();
}

TEST(YamlDoc, MapsSequencesAndScalars) {
  auto d = parsed("a: x\nb:\n  - 1\n  - two\n  - {c: d}\nq: 'quoted: yes'\n");
  auto root = d.root();
  ASSERT_TRUE(root.isMap());
  EXPECT_EQ(root["a"].scalar(), "x");
  EXPECT_TRUE(root["b"].isSequence());
  auto items = root["b"].items();
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].scalar(), "1");
  EXPECT_EQ(items[1].scalar(), "two");
  EXPECT_TRUE(items[2].isMap());
  EXPECT_EQ(items[2]["c"].scalar(), "d");
  EXPECT_EQ(root["q"].scalar(), "quoted: yes");
  // Absent keys, lookups in non-maps and items of non-sequences are absent / empty.
  EXPECT_FALSE(root["missing"]);
  EXPECT_TRUE(root["missing"].isNull());
  EXPECT_FALSE(root["a"]["x"]);
  EXPECT_TRUE(root["a"].items().empty());
  EXPECT_EQ(root["b"].scalar(), "");
}

TEST(YamlDoc, NullsAreThePlainSpellingsOnly) {
  auto d = parsed("a:\nb: ~\nc: null\nd: NULL\ne: ''\nf: 'null'\ng: !!null x\nh: nil\n");
  auto root = d.root();
  for (const char* k : {"a", "b", "c", "d", "g"}) {
    EXPECT_TRUE(root[k]) << k;
    EXPECT_TRUE(root[k].isNull()) << k;
  }
  for (const char* k : {"e", "f", "h"}) {
    EXPECT_FALSE(root[k].isNull()) << k;
  }
  EXPECT_EQ(root["f"].scalar(), "null");
}

TEST(YamlDoc, BooleansAsClientGoReadsThem) {
  auto d = parsed(
      "t1: true\nt2: True\nt3: TRUE\nt4: yes\nt5: On\nt6: Y\nt7: 'true'\n"
      "f1: false\nf2: No\nf3: OFF\nf4: n\n"
      "x1: maybe\nx2: tRUE\nx3: 1\nx4: [true]\n");
  auto root = d.root();
  for (const char* k : {"t1", "t2", "t3", "t4", "t5", "t6", "t7"}) {
    EXPECT_EQ(root[k].boolean(), std::optional<bool>(true)) << k;
  }
  for (const char* k : {"f1", "f2", "f3", "f4"}) {
    EXPECT_EQ(root[k].boolean(), std::optional<bool>(false)) << k;
  }
  for (const char* k : {"x1", "x2", "x3", "x4", "missing"}) {
    EXPECT_EQ(root[k].boolean(), std::nullopt) << k;
  }
}

TEST(YamlDoc, AliasesRepeatedKeysAndDocuments) {
  auto d = parsed("base: &b {server: s}\nuse: *b\nk: first\nk: second\n---\nother: doc\n");
  auto root = d.root();
  EXPECT_EQ(root["use"]["server"].scalar(), "s");
  EXPECT_EQ(root["k"].scalar(), "first");
  EXPECT_FALSE(root["other"]);
  auto empty = parsed("");
  EXPECT_FALSE(empty.root());
  EXPECT_FALSE(empty.root().isMap());
}

TEST(YamlDoc, ErrorsSayWhere) {
  struct Case {
    const char* text;
    const char* where;
  };
  for (const Case& c :
       {Case{"clusters: [", "line 2, column 1"}, Case{"a: b\n  c: d\n", "line 2, column 4"},
        Case{"a: *nope\n", "line 1, column 4"}, Case{"\t- x\n", "line 1, column 1"}}) {
    auto d = YamlDoc::parse(c.text);
    ASSERT_FALSE(d) << c.text;
    EXPECT_EQ(d.error().code, Errc::InvalidInput);
    EXPECT_THAT(d.error().message, HasSubstr(c.where)) << c.text;
  }
}

}  // namespace
}  // namespace flannel::store::kube
