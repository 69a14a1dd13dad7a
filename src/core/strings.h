// DOC: small text helpers shared by parsers (pure).
#pragma once

#include <string>
#include <string_view>

namespace flannel {

// `text` in double quotes for an error message: control and non-ASCII bytes escaped as \xNN,
// cut after `max` characters with "...", so hostile input cannot garble a log line.
std::string quoteForMessage(std::string_view text, size_t max = 64);

// ASCII lower-case copy.
std::string asciiLower(std::string_view text);

// Case-insensitive ASCII equality.
bool equalsIgnoreCase(std::string_view a, std::string_view b) noexcept;

// Leading/trailing spaces, tabs, CR and LF removed.
std::string_view trimSpace(std::string_view text) noexcept;

}  // namespace flannel
