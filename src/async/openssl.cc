#include "async/openssl.h"

#include <dlfcn.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#define FLANNEL_STR2(x) #x
#define FLANNEL_STR(x) FLANNEL_STR2(x)

namespace flannel::async {

namespace {

// The soname of the libssl these headers belong to, e.g. libssl.so.3.
constexpr const char* kLibSsl = "libssl.so." FLANNEL_STR(OPENSSL_VERSION_MAJOR);

struct Library {
  void* handle = nullptr;
  std::string error{};
};

const Library& library() {
  // RTLD_LOCAL: OpenSSL's symbols stay out of the global scope (ours would not be replaced
  // anyway: an executable's own definitions come first). Never unloaded.
  static const Library lib = [] {
    Library l;
    l.handle = ::dlopen(kLibSsl, RTLD_NOW | RTLD_LOCAL);
    if (l.handle == nullptr) {
      const char* why = ::dlerror();
      l.error = why != nullptr ? why : kLibSsl;
    }
    return l;
  }();
  return lib;
}

std::atomic<bool> loaded{false};

void* symbol(const char* name) noexcept {
  const Library& lib = library();
  void* fn = lib.handle != nullptr ? ::dlsym(lib.handle, name) : nullptr;
  if (fn == nullptr) {
    // Only reachable when TLS is used without loadOpenSsl() and the library is missing, or with
    // an OpenSSL that lacks a function our headers declare: nothing sensible to return.
    std::fprintf(stderr, "fatal: OpenSSL function %s unavailable: %s%s\n", name,
                 lib.handle == nullptr ? "" : "not found in ",
                 lib.handle == nullptr ? lib.error.c_str() : kLibSsl);
    std::abort();
  }
  loaded.store(true, std::memory_order_relaxed);
  return fn;
}

template <class Fn>
Fn resolve(std::atomic<Fn>& slot, const char* name) noexcept {
  Fn fn = slot.load(std::memory_order_acquire);
  if (fn == nullptr) {
    fn = reinterpret_cast<Fn>(symbol(name));
    slot.store(fn, std::memory_order_release);
  }
  return fn;
}

}  // namespace

Result<void> loadOpenSsl() {
  const Library& lib = library();
  if (lib.handle == nullptr) {
    return makeError(Errc::Unavailable, "TLS needs OpenSSL, which cannot be loaded: " + lib.error);
  }
  loaded.store(true, std::memory_order_relaxed);
  return {};
}

bool openSslLoaded() noexcept {
  return loaded.load(std::memory_order_relaxed);
}

}  // namespace flannel::async

// One forwarder per OpenSSL function called in our binaries, with the signature of the
// declaration in the OpenSSL headers (a mismatch does not compile). The slot is constant-
// initialised, so the first call needs no guard.
#define FLANNEL_OPENSSL_LAZY(ret, name, params, args)    \
  extern "C" ret name params {                           \
    static std::atomic<decltype(&::name)> slot{nullptr}; \
    return flannel::async::resolve(slot, #name) args;    \
  }

// clang-format off
FLANNEL_OPENSSL_LAZY(long, BIO_ctrl, (BIO* a0, int a1, long a2, void* a3), (a0, a1, a2, a3))
FLANNEL_OPENSSL_LAZY(size_t, BIO_ctrl_pending, (BIO* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, BIO_free, (BIO* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, BIO_new_bio_pair, (BIO** a0, size_t a1, BIO** a2, size_t a3), (a0, a1, a2, a3))
FLANNEL_OPENSSL_LAZY(BIO*, BIO_new_file, (const char* a0, const char* a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(BIO*, BIO_new_mem_buf, (const void* a0, int a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(int, BIO_read, (BIO* a0, void* a1, int a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(int, BIO_write, (BIO* a0, const void* a1, int a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(void, CRYPTO_free, (void* a0, const char* a1, int a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(void, ERR_clear_error, (), ())
FLANNEL_OPENSSL_LAZY(void, ERR_error_string_n, (unsigned long a0, char* a1, size_t a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(unsigned long, ERR_get_error, (), ())
FLANNEL_OPENSSL_LAZY(const char*, ERR_lib_error_string, (unsigned long a0), (a0))
FLANNEL_OPENSSL_LAZY(unsigned long, ERR_peek_error, (), ())
FLANNEL_OPENSSL_LAZY(unsigned long, ERR_peek_last_error, (), ())
FLANNEL_OPENSSL_LAZY(const char*, ERR_reason_error_string, (unsigned long a0), (a0))
FLANNEL_OPENSSL_LAZY(void, EVP_PKEY_free, (EVP_PKEY* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, EVP_PKEY_is_a, (const EVP_PKEY* a0, const char* a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(EVP_PKEY*, PEM_read_bio_Parameters, (BIO* a0, EVP_PKEY** a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(EVP_PKEY*, PEM_read_bio_PrivateKey, (BIO* a0, EVP_PKEY** a1, pem_password_cb* a2, void* a3), (a0, a1, a2, a3))
FLANNEL_OPENSSL_LAZY(X509*, PEM_read_bio_X509, (BIO* a0, X509** a1, pem_password_cb* a2, void* a3), (a0, a1, a2, a3))
FLANNEL_OPENSSL_LAZY(X509*, PEM_read_bio_X509_AUX, (BIO* a0, X509** a1, pem_password_cb* a2, void* a3), (a0, a1, a2, a3))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_check_private_key, (const SSL_CTX* a0), (a0))
FLANNEL_OPENSSL_LAZY(uint64_t, SSL_CTX_clear_options, (SSL_CTX* a0, uint64_t a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(long, SSL_CTX_ctrl, (SSL_CTX* a0, int a1, long a2, void* a3), (a0, a1, a2, a3))
FLANNEL_OPENSSL_LAZY(void, SSL_CTX_free, (SSL_CTX* a0), (a0))
FLANNEL_OPENSSL_LAZY(X509_STORE*, SSL_CTX_get_cert_store, (const SSL_CTX* a0), (a0))
FLANNEL_OPENSSL_LAZY(pem_password_cb*, SSL_CTX_get_default_passwd_cb, (SSL_CTX* a0), (a0))
FLANNEL_OPENSSL_LAZY(void*, SSL_CTX_get_default_passwd_cb_userdata, (SSL_CTX* a0), (a0))
FLANNEL_OPENSSL_LAZY(void*, SSL_CTX_get_ex_data, (const SSL_CTX* a0, int a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(SSL_verify_cb, SSL_CTX_get_verify_callback, (const SSL_CTX* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_get_verify_mode, (const SSL_CTX* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_load_verify_locations, (SSL_CTX* a0, const char* a1, const char* a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(SSL_CTX*, SSL_CTX_new, (const SSL_METHOD* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_set0_tmp_dh_pkey, (SSL_CTX* a0, EVP_PKEY* a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(void, SSL_CTX_set_default_passwd_cb, (SSL_CTX* a0, pem_password_cb* a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(void, SSL_CTX_set_default_passwd_cb_userdata, (SSL_CTX* a0, void* a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_set_default_verify_paths, (SSL_CTX* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_set_ex_data, (SSL_CTX* a0, int a1, void* a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(uint64_t, SSL_CTX_set_options, (SSL_CTX* a0, uint64_t a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(void, SSL_CTX_set_verify, (SSL_CTX* a0, int a1, SSL_verify_cb a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(void, SSL_CTX_set_verify_depth, (SSL_CTX* a0, int a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_use_PrivateKey, (SSL_CTX* a0, EVP_PKEY* a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_use_PrivateKey_file, (SSL_CTX* a0, const char* a1, int a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_use_certificate, (SSL_CTX* a0, X509* a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_use_certificate_ASN1, (SSL_CTX* a0, int a1, const unsigned char* a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_use_certificate_chain_file, (SSL_CTX* a0, const char* a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(int, SSL_CTX_use_certificate_file, (SSL_CTX* a0, const char* a1, int a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(int, SSL_accept, (SSL* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, SSL_connect, (SSL* a0), (a0))
FLANNEL_OPENSSL_LAZY(long, SSL_ctrl, (SSL* a0, int a1, long a2, void* a3), (a0, a1, a2, a3))
FLANNEL_OPENSSL_LAZY(void, SSL_free, (SSL* a0), (a0))
FLANNEL_OPENSSL_LAZY(X509*, SSL_get1_peer_certificate, (const SSL* a0), (a0))
FLANNEL_OPENSSL_LAZY(SSL_CTX*, SSL_get_SSL_CTX, (const SSL* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, SSL_get_error, (const SSL* a0, int a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(void*, SSL_get_ex_data, (const SSL* a0, int a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(int, SSL_get_ex_data_X509_STORE_CTX_idx, (), ())
FLANNEL_OPENSSL_LAZY(int, SSL_get_shutdown, (const SSL* a0), (a0))
FLANNEL_OPENSSL_LAZY(SSL_verify_cb, SSL_get_verify_callback, (const SSL* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, SSL_get_verify_mode, (const SSL* a0), (a0))
FLANNEL_OPENSSL_LAZY(long, SSL_get_verify_result, (const SSL* a0), (a0))
FLANNEL_OPENSSL_LAZY(SSL*, SSL_new, (SSL_CTX* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, SSL_read, (SSL* a0, void* a1, int a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(void, SSL_set_bio, (SSL* a0, BIO* a1, BIO* a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(int, SSL_set_ex_data, (SSL* a0, int a1, void* a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(void, SSL_set_verify, (SSL* a0, int a1, SSL_verify_cb a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(void, SSL_set_verify_depth, (SSL* a0, int a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(int, SSL_shutdown, (SSL* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, SSL_write, (SSL* a0, const void* a1, int a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(const SSL_METHOD*, TLS_client_method, (), ())
FLANNEL_OPENSSL_LAZY(const SSL_METHOD*, TLS_method, (), ())
FLANNEL_OPENSSL_LAZY(const SSL_METHOD*, TLS_server_method, (), ())
FLANNEL_OPENSSL_LAZY(int, X509_NAME_get_text_by_NID, (const X509_NAME* a0, int a1, char* a2, int a3), (a0, a1, a2, a3))
FLANNEL_OPENSSL_LAZY(X509*, X509_STORE_CTX_get_current_cert, (const X509_STORE_CTX* a0), (a0))
FLANNEL_OPENSSL_LAZY(int, X509_STORE_CTX_get_error_depth, (const X509_STORE_CTX* a0), (a0))
FLANNEL_OPENSSL_LAZY(void*, X509_STORE_CTX_get_ex_data, (const X509_STORE_CTX* a0, int a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(int, X509_STORE_add_cert, (X509_STORE* a0, X509* a1), (a0, a1))
FLANNEL_OPENSSL_LAZY(int, X509_check_host, (X509* a0, const char* a1, size_t a2, unsigned int a3, char** a4), (a0, a1, a2, a3, a4))
FLANNEL_OPENSSL_LAZY(int, X509_check_ip_asc, (X509* a0, const char* a1, unsigned int a2), (a0, a1, a2))
FLANNEL_OPENSSL_LAZY(void, X509_free, (X509* a0), (a0))
FLANNEL_OPENSSL_LAZY(X509_NAME*, X509_get_subject_name, (const X509* a0), (a0))
FLANNEL_OPENSSL_LAZY(EVP_PKEY*, d2i_PrivateKey_bio, (BIO* a0, EVP_PKEY** a1), (a0, a1))
// clang-format on
