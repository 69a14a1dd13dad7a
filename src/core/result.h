// DOC: Result<T> = boost::system::result<T, flannel::Error> (Boost >= 1.81 has result<void, E>).
#pragma once

#include <string_view>
#include <utility>

#include <boost/system/result.hpp>

#include "core/error.h"

namespace flannel {

template <class T>
using Result = boost::system::result<T, Error>;

// Adds outer context to the error of `r`, if any: "<ctx>: <inner message>".
template <class T>
Result<T> withContext(Result<T> r, std::string_view ctx) {
  if (r) {
    return r;
  }
  return r.error().context(ctx);
}

inline Result<void> ok() {
  return {};
}

}  // namespace flannel
