#include "cni/cni_error.h"

#include <fmt/format.h>

#include <stdexcept>

#include "core/json_util.h"

namespace flannel::cni {

std::string renderCniError(const CniError& error, std::string_view cni_version) {
  Json out = Json::object();
  out["cniVersion"] = std::string(cni_version);
  out["code"] = static_cast<int>(error.code);
  out["msg"] = error.msg;
  if (!error.details.empty()) {
    out["details"] = error.details;
  }
  // `replace`: a message quoting hostile bytes must still print as valid JSON.
  return out.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

void throw_exception_from_error(const CniError& e, const boost::source_location& /*loc*/) {
  throw std::runtime_error(fmt::format("CNI error {}: {}", static_cast<int>(e.code), e.msg));
}

}  // namespace flannel::cni
