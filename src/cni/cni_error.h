// DOC: CNI errors: the well-known codes of the CNI specification plus the plugin's own (>= 100),
// CniError (code, msg, details) and CniResult<T>, and the error JSON printed on stdout.
//
// The flannel CNI plugin reports every failure as
//   {"cniVersion":"<config's version>","code":N,"msg":"<short>","details":"<long>"}
// on stdout with exit status 1 (CNI spec 1.0.0, "Error"). `details` is left out when empty.
// Parsers of the plugin return CniResult so the code travels with the message; code that talks to
// the OS returns flannel::Result and the plugin picks the CNI code where it calls it.
#pragma once

#include <string>
#include <string_view>

#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>

namespace flannel::cni {

// Codes 1-99 are the CNI specification's (1.0.0, "Well-known Error Codes"); 100 and above are
// this plugin's own, as the specification allows.
enum class CniCode : int {
  IncompatibleVersion = 1,  // the config's cniVersion is not one we support (or forbids CHECK)
  UnsupportedField = 2,     // a field we do not support
  UnknownContainer = 3,     // CHECK for a container we never added (no saved delegate config)
  InvalidEnvironment = 4,   // CNI_COMMAND, CNI_CONTAINERID, ... missing or malformed
  IoFailure = 5,            // reading or writing the scratch file, reading subnet.env
  DecodeFailure = 6,        // stdin (or a saved file, or subnet.env) cannot be decoded
  InvalidConfig = 7,        // well-formed JSON with a wrong value (delegate.name, ipam type, ...)
  TryAgainLater = 11,       // subnet.env missing: flanneld has not started on this node yet
  DelegateNotFound = 100,   // the delegate plugin (e.g. bridge) is not on CNI_PATH
  DelegateFailed = 101,     // the delegate failed without printing a CNI error (or timed out)
  SubnetChanged = 102,      // CHECK: the pod's subnet is no longer this node's flannel subnet
  Internal = 999,           // anything unexpected (same number as the Go CNI library's)
};

struct CniError {
  CniCode code = CniCode::Internal;
  std::string msg{};
  std::string details{};
};

template <class T>
using CniResult = boost::system::result<T, CniError>;

inline CniError cniError(CniCode code, std::string msg, std::string details = {}) {
  return CniError{.code = code, .msg = std::move(msg), .details = std::move(details)};
}

// The error JSON of the CNI spec on one line, ending in '\n'; `cni_version` is the version of the
// config being processed (the plugin's preferred version when it is not known).
std::string renderCniError(const CniError& error, std::string_view cni_version);

// ADL hook used by CniResult<T>::value(): throws std::runtime_error("<code>: <msg>").
[[noreturn]] void throw_exception_from_error(const CniError& e, const boost::source_location& loc);

}  // namespace flannel::cni
