#include "core/error.h"

#include <utility>

namespace flannel {

std::string_view errcName(Errc code) noexcept {
  switch (code) {
    case Errc::InvalidInput:
      return "invalid input";
    case Errc::NotFound:
      return "not found";
    case Errc::Conflict:
      return "conflict";
    case Errc::Unavailable:
      return "unavailable";
    case Errc::Timeout:
      return "timeout";
    case Errc::Kernel:
      return "kernel";
    case Errc::Internal:
      return "internal";
  }
  return "unknown";
}

Error Error::context(std::string_view ctx) const {
  Error e = *this;
  std::string msg;
  msg.reserve(ctx.size() + 2 + message.size());
  msg.append(ctx);
  msg.append(": ");
  msg.append(message);
  e.message = std::move(msg);
  return e;
}

Failure::Failure(Error error) : std::runtime_error(error.message), error_(std::move(error)) {}

void throw_exception_from_error(const Error& e, const boost::source_location& /*loc*/) {
  throw Failure(e);
}

}  // namespace flannel
