// DOC: flannel::Error and flannel::Result, the one error convention of the project
// (DESIGN.md "Error handling convention").
//
// Parsers, validators and seams return Result<T>; they never throw. An Error carries a coarse
// code for the caller to branch on, a message for a person (naming the input and what is wrong,
// outermost context first) and, for system calls, the errno.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/assert/source_location.hpp>

namespace flannel {

enum class Errc { InvalidInput, NotFound, Conflict, Unavailable, Timeout, Kernel, Internal };

std::string_view errcName(Errc code) noexcept;

struct Error {
  Errc code = Errc::Internal;
  std::string message;
  int sys_errno = 0;

  // Returns a copy whose message is "<ctx>: <message>" (outermost context first).
  [[nodiscard]] Error context(std::string_view ctx) const;
};

// What Result<T>::value() throws when it holds an Error (used only at task boundaries).
class Failure : public std::runtime_error {
 public:
  explicit Failure(Error error);
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

// ADL hook used by boost::system::result<T, Error>::value().
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

inline Error makeError(Errc code, std::string message, int sys_errno = 0) {
  return Error{.code = code, .message = std::move(message), .sys_errno = sys_errno};
}
inline Error invalidInput(std::string message) {
  return makeError(Errc::InvalidInput, std::move(message));
}

}  // namespace flannel
