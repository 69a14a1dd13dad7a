// DOC: A YAML document read with libyaml's loader (yaml_parser_load), for kubeconfig files:
// maps, sequences and scalars, aliases resolved, read-only. Only the first document of a stream
// is read (as kubectl does). Scalars are strings; null and boolean follow YAML 1.1 as client-go's
// kubeconfig loader reads them.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

struct yaml_document_s;
struct yaml_node_s;

namespace flannel::store::kube {

class YamlDoc {
 public:
  // A node of the document, or an absent one (a missing key, an item of something that is not
  // a sequence). Valid while the YamlDoc it came from lives.
  class Node {
   public:
    Node() = default;
    // Present in the document (a YAML null is present; see isNull()).
    explicit operator bool() const { return node_ != nullptr; }
    // Absent, or a null: an untagged plain scalar "", "~", "null", "Null", "NULL", or !!null.
    bool isNull() const;
    bool isScalar() const;
    bool isMap() const;
    bool isSequence() const;
    // The scalar's text ("" for anything but a scalar).
    std::string scalar() const;
    // YAML 1.1 booleans as client-go reads them: true/false, yes/no, on/off, y/n, each in lower
    // case, Capitalised or UPPER case. nullopt for any other scalar or a non-scalar.
    std::optional<bool> boolean() const;
    // The value under `key` in a map (the first one, if a key repeats); absent otherwise.
    Node operator[](std::string_view key) const;
    // The items of a sequence; empty for anything else.
    std::vector<Node> items() const;

   private:
    friend class YamlDoc;
    Node(yaml_document_s* doc, yaml_node_s* node) : doc_(doc), node_(node) {}
    yaml_document_s* doc_ = nullptr;
    yaml_node_s* node_ = nullptr;
  };

  // Errc::InvalidInput "line L, column C: <libyaml's reason>" when the text is not YAML.
  static Result<YamlDoc> parse(std::string_view text);

  // The root node; absent for an empty document.
  Node root() const;

 private:
  std::shared_ptr<yaml_document_s> doc_;
};

}  // namespace flannel::store::kube
