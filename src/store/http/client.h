// DOC: HTTP(S) connections for the etcd and Kubernetes clients (Beast over Asio, one thread).
//
// A Connection talks to one URL over one keep-alive TCP or TLS connection, connecting on first
// use and reconnecting after an error. request() bounds the whole exchange (connect, TLS
// handshake, write, read) by a deadline; the streaming calls bound each read by an idle timeout.
// All failures are values: Errc::Unavailable (refused, reset, TLS failure, ...) or Errc::Timeout,
// with a message that names the URL and the step that failed.
//
// Thread safety: one Connection is used by one coroutine at a time, on the control thread.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "async/asio.h"
#include "core/result.h"
#include "store/http/byte_stream.h"
#include "store/http/exchange.h"
#include "store/http/url.h"

namespace flannel::store::http {

struct TlsFiles {
  std::string ca_file{};    // PEM bundle; empty = the system's default trust store
  std::string cert_file{};  // client certificate (PEM); empty = none
  std::string key_file{};   // client key (PEM); empty = none
};

// Builds a TLS 1.2+ client context. Errors name the flag-facing role and the file, e.g.
// "loading client certificate /etc/etcd/client.pem: no such file".
Result<std::shared_ptr<net::ssl::context>> makeTlsContext(const TlsFiles& files) noexcept;

class Connection {
 public:
  Connection(async::Executor executor, Url url, std::shared_ptr<net::ssl::context> tls);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const Url& url() const noexcept { return url_; }

  // One request/response. If a kept-alive connection turns out to be closed by the peer before
  // any response byte, reconnects and sends once more (safe: nothing was processed).
  async::Awaitable<Result<Response>> request(Request r, std::chrono::milliseconds timeout);

  // Streaming response (watch): sends `r` on a fresh connection and returns the status line and
  // headers; then readStream() yields body bytes. The connection is not reused afterwards.
  async::Awaitable<Result<Response>> openStream(Request r, std::chrono::milliseconds timeout);
  // Next body bytes; "" at the end of the body. Errc::Timeout after `idle` without a byte.
  async::Awaitable<Result<std::string>> readStream(std::chrono::milliseconds idle);

  // Closes the socket; the next request reconnects.
  void close() noexcept;
  bool connected() const noexcept { return tcp_.has_value() || tls_.has_value(); }

 private:
  using TlsStream = beast::ssl_stream<beast::tcp_stream>;
  async::Awaitable<Result<void>> connect(std::chrono::milliseconds timeout);
  beast::tcp_stream& lowest();

  async::Executor executor_;
  Url url_;
  std::shared_ptr<net::ssl::context> tls_context_;
  std::optional<beast::tcp_stream> tcp_;
  std::optional<TlsStream> tls_;
  // tcp_ or tls_ as one type, so the HTTP code is compiled once (byte_stream.h).
  std::unique_ptr<ByteStream> stream_;
  beast::flat_buffer buffer_;
  std::optional<BodyStream<ByteStream>> body_;
  bool reused_ = false;  // the current connection already carried a request
};

}  // namespace flannel::store::http
