// DOC: OpenSSL, loaded on first use instead of at start-up.
//
// flanneld needs TLS only for https etcd endpoints and the Kubernetes API. Linked normally,
// libssl and libcrypto are mapped, relocated and initialised in every process (~1.8 MB of
// resident memory in an idle flanneld that talks plain HTTP). So flannel_async does not link
// them: openssl.cc defines each OpenSSL function that Asio's SSL support, Beast and our code
// call as a forwarder that loads libssl.so.<major> (which brings libcrypto) with dlopen() on
// the first call and then calls the real function. A plain-HTTP process never maps OpenSSL.
//
// Call loadOpenSsl() where TLS starts being set up (the TLS context factories do) so that a
// missing library is an error value with a message; a forwarder that cannot load the library
// (a caller that skipped loadOpenSsl()) prints the reason and aborts.
//
// A new OpenSSL function used anywhere shows up as an undefined reference when linking:
// add a FLANNEL_OPENSSL_LAZY line for it in openssl.cc.
//
// Thread safety: any thread; loading happens once.
#pragma once

#include "core/result.h"

namespace flannel::async {

// Loads libssl (and libcrypto) unless already loaded. Errc::Unavailable with the loader's
// message when the library cannot be loaded.
Result<void> loadOpenSsl();

// Whether this process has loaded OpenSSL (for tests and diagnostics).
bool openSslLoaded() noexcept;

}  // namespace flannel::async
