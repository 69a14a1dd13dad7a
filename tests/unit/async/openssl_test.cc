#include "async/openssl.h"

#include <gtest/gtest.h>

#include <boost/asio/ssl/context.hpp>
#include <fstream>
#include <sstream>
#include <string>

namespace flannel::async {
namespace {

bool mapped(const std::string& library) {
  std::ifstream maps("/proc/self/maps");
  std::stringstream text;
  text << maps.rdbuf();
  return text.str().find(library) != std::string::npos;
}

// One test, so that nothing in this process has touched TLS before it looks.
TEST(LazyOpenSsl, MappedOnlyOnceTlsIsUsed) {
  EXPECT_FALSE(mapped("/libssl.so"));
  EXPECT_FALSE(mapped("/libcrypto.so"));
  EXPECT_FALSE(openSslLoaded());

  // The first OpenSSL call (through Asio) loads the library and works.
  boost::asio::ssl::context ctx(boost::asio::ssl::context::tls_client);
  ASSERT_NE(ctx.native_handle(), nullptr);
  EXPECT_TRUE(openSslLoaded());
  EXPECT_TRUE(mapped("/libssl.so"));
  EXPECT_TRUE(mapped("/libcrypto.so"));
  ASSERT_TRUE(loadOpenSsl());
  boost::system::error_code ec;
  ctx.set_default_verify_paths(ec);
  EXPECT_FALSE(ec) << ec.message();
}

}  // namespace
}  // namespace flannel::async
