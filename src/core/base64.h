// DOC: base64 (RFC 4648 standard alphabet, with padding), as etcd's JSON gateway writes bytes
// fields (Go's base64.StdEncoding). Pure; in core so that plain-HTTP etcd needs no OpenSSL.
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"

namespace flannel {

std::string base64Encode(std::string_view bytes);

// Errc::InvalidInput when the length is not a multiple of 4, a character is outside the
// alphabet, or '=' appears anywhere but in the last two places. "" decodes to "".
Result<std::string> base64Decode(std::string_view text);

}  // namespace flannel
