// Fuzz target: kubeconfig text through YamlDoc (store/kube/yaml_doc.h, libyaml's loader). Parsing
// must be total (a document or an error naming line and column), and every node of a document
// must be readable; aliases may form cycles ("&a [*a]") and make a small document a huge tree
// ("&b {name: *b, user: *b, ...}": every level multiplies the paths), so the walk is bounded in
// depth and in the number of nodes it visits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "store/kube/yaml_doc.h"

namespace {

using flannel::store::kube::YamlDoc;

void walk(const YamlDoc::Node& n, int depth, int& budget) {
  if (depth > 32 || !n || --budget < 0) {
    return;
  }
  (void)n.isNull();
  (void)n.boolean();
  if (n.isScalar()) {
    if (!n.items().empty() || n["x"]) {
      std::abort();  // a scalar has no items and no keys
    }
    (void)n.scalar();
    return;
  }
  if (!n.scalar().empty()) {
    std::abort();  // only scalars have text
  }
  for (const auto& item : n.items()) {
    walk(item, depth + 1, budget);
  }
  for (const char* key : {"name", "cluster", "user", "server", ""}) {
    walk(n[key], depth + 1, budget);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto doc = YamlDoc::parse(text);
  if (!doc) {
    if (doc.error().message.find("line ") != 0) {
      std::abort();
    }
    return 0;
  }
  int budget = 20000;
  walk(doc->root(), 0, budget);
  return 0;
}
