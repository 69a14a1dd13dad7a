#include "store/http/client.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <filesystem>

#include "async/openssl.h"

namespace flannel::store::http {

namespace {

std::string sslErrorText(const boost::system::error_code& ec) {
  std::string text = ec.message();
  if (ec.category() == net::error::get_ssl_category()) {
    char buf[256];
    ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof buf);
    text = buf;
  }
  return text;
}

Result<void> loadFile(const std::string& path, std::string_view role,
                      const std::function<void(boost::system::error_code&)>& load) {
  std::error_code fec;
  if (!std::filesystem::exists(path, fec)) {
    return makeError(Errc::InvalidInput, fmt::format("{} {}: no such file", role, path));
  }
  boost::system::error_code ec;
  load(ec);
  if (ec) {
    return makeError(Errc::InvalidInput, fmt::format("{} {}: {}", role, path, sslErrorText(ec)),
                     ec.value());
  }
  return {};
}

}  // namespace

Result<std::shared_ptr<net::ssl::context>> makeTlsContext(const TlsFiles& files) noexcept {
  if (auto loaded = async::loadOpenSsl(); !loaded) {
    return loaded.error();
  }
  try {
    auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    ctx->set_verify_mode(net::ssl::verify_peer);
    if (files.ca_file.empty()) {
      boost::system::error_code ec;
      ctx->set_default_verify_paths(ec);
    } else if (auto r = loadFile(files.ca_file, "CA file",
                                 [&](auto& ec) { ctx->load_verify_file(files.ca_file, ec); });
               !r) {
      return r.error();
    }
    if (!files.cert_file.empty()) {
      if (auto r =
              loadFile(files.cert_file, "client certificate",
                       [&](auto& ec) { ctx->use_certificate_chain_file(files.cert_file, ec); });
          !r) {
        return r.error();
      }
    }
    if (!files.key_file.empty()) {
      if (auto r = loadFile(files.key_file, "client key",
                            [&](auto& ec) {
                              ctx->use_private_key_file(files.key_file, net::ssl::context::pem, ec);
                            });
          !r) {
        return r.error();
      }
    }
    if (!files.cert_file.empty() && !files.key_file.empty() &&
        SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
      return makeError(Errc::InvalidInput,
                       fmt::format("client key {} does not match client certificate {}",
                                   files.key_file, files.cert_file));
    }
    return ctx;
  } catch (const std::exception& e) {
    return makeError(Errc::Internal, fmt::format("creating TLS context: {}", e.what()));
  }
}

Connection::Connection(async::Executor executor, Url url, std::shared_ptr<net::ssl::context> tls)
    : executor_(std::move(executor)), url_(std::move(url)), tls_context_(std::move(tls)) {}

beast::tcp_stream& Connection::lowest() {
  return tls_ ? beast::get_lowest_layer(*tls_) : *tcp_;
}

void Connection::close() noexcept {
  body_.reset();
  stream_.reset();
  if (tls_) {
    boost::system::error_code ec;
    beast::get_lowest_layer(*tls_).socket().close(ec);
    tls_.reset();
  }
  if (tcp_) {
    boost::system::error_code ec;
    tcp_->socket().close(ec);
    tcp_.reset();
  }
  buffer_.clear();
  reused_ = false;
}

async::Awaitable<Result<void>> Connection::connect(std::chrono::milliseconds timeout) {
  close();
  if (url_.tls && !tls_context_) {
    co_return makeError(
        Errc::InvalidInput,
        fmt::format("{} is an https URL but no TLS settings were given", url_.text));
  }
  net::ip::tcp::resolver resolver(executor_);
  auto [rec, results] = co_await resolver.async_resolve(url_.host, url_.port, async::use_nothrow);
  if (rec) {
    co_return networkError(url_.text, "resolving", rec);
  }
  beast::tcp_stream stream(executor_);
  stream.expires_after(timeout);
  auto [cec, ep] = co_await stream.async_connect(results, async::use_nothrow);
  (void)ep;
  if (cec) {
    co_return networkError(url_.text, "connecting to", cec);
  }
  stream.socket().set_option(net::ip::tcp::no_delay(true));
  if (!url_.tls) {
    tcp_.emplace(std::move(stream));
    stream_ = std::make_unique<ByteStreamOver<beast::tcp_stream>>(*tcp_);
    co_return Result<void>{};
  }
  tls_.emplace(std::move(stream), *tls_context_);
  boost::system::error_code ip_ec;
  net::ip::make_address(url_.host, ip_ec);
  if (ip_ec) {  // a name, not an IP literal: send SNI
    SSL_set_tlsext_host_name(tls_->native_handle(), url_.host.c_str());
  }
  tls_->set_verify_callback(net::ssl::host_name_verification(url_.host));
  beast::get_lowest_layer(*tls_).expires_after(timeout);
  auto [hec] = co_await tls_->async_handshake(net::ssl::stream_base::client, async::use_nothrow);
  if (hec) {
    std::string why = sslErrorText(hec);
    close();
    co_return makeError(Errc::Unavailable, fmt::format("TLS handshake with {}: {}", url_.text, why),
                        hec.value());
  }
  stream_ = std::make_unique<ByteStreamOver<TlsStream>>(*tls_);
  co_return Result<void>{};
}

async::Awaitable<Result<Response>> Connection::request(Request r,
                                                       std::chrono::milliseconds timeout) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool was_reused = connected() && reused_;
    if (!connected()) {
      if (auto c = co_await connect(timeout); !c) {
        co_return c.error();
      }
    }
    lowest().expires_after(timeout);
    Result<Response> res = co_await exchange(*stream_, buffer_, r, url_.hostHeader(), url_.text);
    if (res) {
      reused_ = true;
      co_return res;
    }
    close();
    // A kept-alive connection may have been closed by the server while idle: retry once on a
    // fresh one. A timeout is not retried (the server may still be processing the request).
    if (!was_reused || res.error().code == Errc::Timeout) {
      co_return res;
    }
  }
  co_return makeError(Errc::Internal, "unreachable");
}

async::Awaitable<Result<Response>> Connection::openStream(Request r,
                                                          std::chrono::milliseconds timeout) {
  if (auto c = co_await connect(timeout); !c) {
    co_return c.error();
  }
  lowest().expires_after(timeout);
  body_.emplace(*stream_, buffer_, url_.text);
  Result<Response> res = co_await body_->start(r, url_.hostHeader());
  if (!res) {
    close();
  }
  co_return res;
}

async::Awaitable<Result<std::string>> Connection::readStream(std::chrono::milliseconds idle) {
  if (!body_) {
    co_return makeError(Errc::Internal, "readStream without openStream");
  }
  lowest().expires_after(idle);
  Result<std::string> res = co_await body_->readSome();
  if (!res) {
    close();
  }
  co_return res;
}

}  // namespace flannel::store::http
