#include "core/json_util.h"

#include <fmt/format.h>

#include "core/strings.h"

namespace flannel {

Result<Json> parseJson(std::string_view text, std::string_view what) noexcept {
  try {
    // in_place_value: Json converts from almost anything, which makes the plain conversion
    // to result<Json, Error> ambiguous.
    return Result<Json>(boost::system::in_place_value, Json::parse(text.begin(), text.end()));
  } catch (const Json::parse_error& e) {
    return invalidInput(
        fmt::format("{} is not valid JSON (at byte {}): {}", what, e.byte, e.what()));
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("{} could not be parsed: {}", what, e.what()));
  }
}

Result<Json> parseJsonObject(std::string_view text, std::string_view what) noexcept {
  auto doc = parseJson(text, what);
  if (doc && !doc->is_object()) {
    return invalidInput(
        fmt::format("{}: expected a JSON object, got {}", what, jsonTypeName(*doc)));
  }
  return doc;
}

Result<std::string> compactJson(std::string_view text, std::string_view what) noexcept {
  auto j = parseJson(text, what);
  if (!j) {
    return j.error();
  }
  try {
    // Go's json.Compact keeps non-ASCII as is; so does dump() without ensure_ascii.
    return j->dump(-1, ' ', false, Json::error_handler_t::strict);
  } catch (const std::exception& e) {
    return invalidInput(fmt::format("{} could not be re-encoded: {}", what, e.what()));
  }
}

const Json* findMember(const Json& obj, std::string_view key) noexcept {
  const Json* found = nullptr;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (equalsIgnoreCase(it.key(), key)) {
      found = &it.value();
    }
  }
  return found;
}

std::string_view jsonTypeName(const Json& v) noexcept {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a fractional number";
    case Json::value_t::binary:
    case Json::value_t::discarded:
      break;
  }
  return "an unsupported value";
}

namespace {

Error typeError(std::string_view field, std::string_view expected, const Json& v) {
  std::string shown = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  return invalidInput(fmt::format("field {}: expected {}, got {} {}", field, expected,
                                  jsonTypeName(v), quoteForMessage(shown)));
}

}  // namespace

Result<std::optional<std::string>> getString(const Json& obj, std::string_view key,
                                             std::string_view field) {
  const Json* v = findMember(obj, key);
  if (v == nullptr || v->is_null()) {
    return std::optional<std::string>{};
  }
  if (!v->is_string()) {
    return typeError(field, "a string", *v);
  }
  return std::optional<std::string>{v->get<std::string>()};
}

Result<std::optional<bool>> getBool(const Json& obj, std::string_view key, std::string_view field) {
  const Json* v = findMember(obj, key);
  if (v == nullptr || v->is_null()) {
    return std::optional<bool>{};
  }
  if (!v->is_boolean()) {
    return typeError(field, "true or false", *v);
  }
  return std::optional<bool>{v->get<bool>()};
}

Result<std::optional<uint64_t>> getUint(const Json& obj, std::string_view key,
                                        std::string_view field, uint64_t max) {
  const Json* v = findMember(obj, key);
  if (v == nullptr || v->is_null()) {
    return std::optional<uint64_t>{};
  }
  if (v->is_number_unsigned() || (v->is_number_integer() && v->get<int64_t>() >= 0)) {
    auto n = v->get<uint64_t>();
    if (n > max) {
      return invalidInput(fmt::format("field {}: {} is larger than {}", field, n, max));
    }
    return std::optional<uint64_t>{n};
  }
  return typeError(field, fmt::format("an integer 0..{}", max), *v);
}

Result<std::optional<int64_t>> getInt(const Json& obj, std::string_view key, std::string_view field,
                                      int64_t min, int64_t max) {
  const Json* v = findMember(obj, key);
  if (v == nullptr || v->is_null()) {
    return std::optional<int64_t>{};
  }
  if (v->is_number_unsigned()) {
    auto n = v->get<uint64_t>();
    if (n > static_cast<uint64_t>(max)) {
      return invalidInput(fmt::format("field {}: {} is out of range {}..{}", field, n, min, max));
    }
    return std::optional<int64_t>{static_cast<int64_t>(n)};
  }
  if (v->is_number_integer()) {
    auto n = v->get<int64_t>();
    if (n < min || n > max) {
      return invalidInput(fmt::format("field {}: {} is out of range {}..{}", field, n, min, max));
    }
    return std::optional<int64_t>{n};
  }
  return typeError(field, fmt::format("an integer {}..{}", min, max), *v);
}

}  // namespace flannel
