// DOC: helpers to read JSON the way Go's encoding/json does for flannel's structs (pure):
// object keys match case-insensitively, the last duplicate wins, unknown keys are ignored.
// Parsing never throws; errors name the document and the byte offset.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/result.h"

namespace flannel {

using Json = nlohmann::ordered_json;

// Parses `text` as one JSON value. `what` names the document in the error message.
Result<Json> parseJson(std::string_view text, std::string_view what) noexcept;

// parseJson() that also requires a JSON object: "<what>: expected a JSON object, got an array".
Result<Json> parseJsonObject(std::string_view text, std::string_view what) noexcept;

// Compact re-encoding of any JSON text (validates it); keeps object key order.
Result<std::string> compactJson(std::string_view text, std::string_view what) noexcept;

// The member of `obj` whose key equals `key` case-insensitively; with several, the last one in
// document order (Go's rule). nullptr when absent. Precondition: obj.is_object().
const Json* findMember(const Json& obj, std::string_view key) noexcept;

// Short human description of a JSON value's type, for errors: "a string", "a number", ...
std::string_view jsonTypeName(const Json& v) noexcept;

// Typed getters for optional members: absent or null -> nullopt; wrong type -> error naming
// the field (`field` is how the message names it, e.g. "Backend.VNI").
Result<std::optional<std::string>> getString(const Json& obj, std::string_view key,
                                             std::string_view field);
Result<std::optional<bool>> getBool(const Json& obj, std::string_view key, std::string_view field);
// Non-negative integer no larger than `max` (JSON floats such as 24.0 are rejected, as in Go).
Result<std::optional<uint64_t>> getUint(const Json& obj, std::string_view key,
                                        std::string_view field, uint64_t max);
// Signed integer in [min, max].
Result<std::optional<int64_t>> getInt(const Json& obj, std::string_view key, std::string_view field,
                                      int64_t min, int64_t max);

}  // namespace flannel
