#include "store/kube/yaml_doc.h"

#include <fmt/format.h>
#include <yaml.h>

#include <array>
#include <cstring>

namespace flannel::store::kube {

namespace {

std::string_view text(const yaml_node_t* n) {
  return {reinterpret_cast<const char*>(n->data.scalar.value), n->data.scalar.length};
}

bool tagged(const yaml_node_t* n, const char* tag) {
  return n->tag != nullptr && std::strcmp(reinterpret_cast<const char*>(n->tag), tag) == 0;
}

// Plain (unquoted) scalars without an explicit tag: libyaml gives them the default str tag.
bool plainUntagged(const yaml_node_t* n) {
  return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && tagged(n, YAML_STR_TAG);
}

}  // namespace

bool YamlDoc::Node::isNull() const {
  if (node_ == nullptr) {
    return true;
  }
  if (node_->type != YAML_SCALAR_NODE) {
    return false;
  }
  if (tagged(node_, YAML_NULL_TAG)) {
    return true;
  }
  auto v = text(node_);
  return plainUntagged(node_) &&
         (v.empty() || v == "~" || v == "null" || v == "Null" || v == "NULL");
}

bool YamlDoc::Node::isScalar() const {
  return node_ != nullptr && node_->type == YAML_SCALAR_NODE;
}
bool YamlDoc::Node::isMap() const {
  return node_ != nullptr && node_->type == YAML_MAPPING_NODE;
}
bool YamlDoc::Node::isSequence() const {
  return node_ != nullptr && node_->type == YAML_SEQUENCE_NODE;
}

std::string YamlDoc::Node::scalar() const {
  return isScalar() ? std::string(text(node_)) : std::string();
}

std::optional<bool> YamlDoc::Node::boolean() const {
  if (!isScalar()) {
    return std::nullopt;
  }
  struct Spelling {
    std::string_view lower;
    bool value;
  };
  static constexpr std::array<Spelling, 8> kSpellings{{{"true", true},
                                                       {"yes", true},
                                                       {"on", true},
                                                       {"y", true},
                                                       {"false", false},
                                                       {"no", false},
                                                       {"off", false},
                                                       {"n", false}}};
  auto v = text(node_);
  for (const Spelling& s : kSpellings) {
    if (v.size() != s.lower.size()) {
      continue;
    }
    std::string capital(s.lower);
    capital[0] = static_cast<char>(capital[0] - 'a' + 'A');
    std::string upper(s.lower);
    for (char& c : upper) {
      c = static_cast<char>(c - 'a' + 'A');
    }
    if (v == s.lower || v == capital || v == upper) {
      return s.value;
    }
  }
  return std::nullopt;
}

YamlDoc::Node YamlDoc::Node::operator[](std::string_view key) const {
  if (!isMap()) {
    return {};
  }
  for (yaml_node_pair_t* p = node_->data.mapping.pairs.start; p < node_->data.mapping.pairs.top;
       ++p) {
    yaml_node_t* k = yaml_document_get_node(doc_, p->key);
    if (k != nullptr && k->type == YAML_SCALAR_NODE && text(k) == key) {
      yaml_node_t* v = yaml_document_get_node(doc_, p->value);
      return v == nullptr ? Node() : Node(doc_, v);
    }
  }
  return {};
}

std::vector<YamlDoc::Node> YamlDoc::Node::items() const {
  std::vector<Node> out;
  if (!isSequence()) {
    return out;
  }
  for (yaml_node_item_t* i = node_->data.sequence.items.start; i < node_->data.sequence.items.top;
       ++i) {
    if (yaml_node_t* n = yaml_document_get_node(doc_, *i)) {
      out.push_back(Node(doc_, n));
    }
  }
  return out;
}

Result<YamlDoc> YamlDoc::parse(std::string_view input) {
  yaml_parser_t parser;
  if (yaml_parser_initialize(&parser) == 0) {
    return makeError(Errc::Internal, "YAML parser: out of memory");
  }
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(input.data()),
                               input.size());
  auto doc = std::shared_ptr<yaml_document_t>(new yaml_document_t{}, [](yaml_document_t* d) {
    yaml_document_delete(d);
    delete d;
  });
  if (yaml_parser_load(&parser, doc.get()) == 0) {
    // libyaml has already freed the partial document; an all-zero one is safe to delete again.
    *doc = yaml_document_t{};
    std::string reason = parser.problem != nullptr ? parser.problem : "parse error";
    if (parser.context != nullptr) {
      reason = fmt::format("{} {}", parser.context, reason);
    }
    Error e = makeError(Errc::InvalidInput,
                        fmt::format("line {}, column {}: {}", parser.problem_mark.line + 1,
                                    parser.problem_mark.column + 1, reason));
    yaml_parser_delete(&parser);
    return e;
  }
  yaml_parser_delete(&parser);
  YamlDoc out;
  out.doc_ = std::move(doc);
  return out;
}

YamlDoc::Node YamlDoc::root() const {
  yaml_node_t* n = yaml_document_get_root_node(doc_.get());
  return n == nullptr ? Node() : Node(doc_.get(), n);
}

}  // namespace flannel::store::kube
