// DOC: one HTTP/1.1 request/response exchange over any Beast stream (TCP, TLS, or
// beast::test::stream in unit tests), as coroutines. No connection management here: see
// client.h. Network errors come back as values (Errc::Unavailable / Errc::Timeout), never as
// exceptions; the message names the endpoint.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "async/asio.h"
#include "core/result.h"

namespace flannel::store::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

struct Request {
  bhttp::verb method = bhttp::verb::post;
  std::string target{};  // path and query, e.g. "/v3/kv/range"
  std::string body{};
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

struct Response {
  unsigned status = 0;
  std::string body{};
  std::string content_type{};
};

// Largest response body accepted (a list of 5,000 leases is about 2 MB).
inline constexpr std::uint64_t kMaxBodyBytes = 256ull << 20;

inline bhttp::request<bhttp::string_body> makeRequest(const Request& r, const std::string& host) {
  bhttp::request<bhttp::string_body> req{r.method, r.target, 11};
  req.set(bhttp::field::host, host);
  req.set(bhttp::field::user_agent, "flannel-cpp");
  if (!r.body.empty() || r.method == bhttp::verb::post || r.method == bhttp::verb::put ||
      r.method == bhttp::verb::patch) {
    req.set(bhttp::field::content_type, r.content_type);
  }
  for (const auto& [name, value] : r.headers) {
    req.set(name, value);
  }
  req.body() = r.body;
  req.prepare_payload();
  req.keep_alive(true);
  return req;
}

inline Error networkError(const std::string& endpoint, std::string_view step,
                          const boost::system::error_code& ec) {
  bool timeout = ec == beast::error::timeout;
  return makeError(
      timeout ? Errc::Timeout : Errc::Unavailable,
      fmt::format("{} {}: {}", step, endpoint, timeout ? std::string("timed out") : ec.message()),
      ec.value());
}

// Writes `r` and reads the whole response. `stream` and `buffer` must outlive the call (the
// caller awaits it immediately). Timeouts are the caller's business (tcp_stream::expires_after).
template <class Stream>
async::Awaitable<Result<Response>> exchange(Stream& stream, beast::flat_buffer& buffer,
                                            const Request& r, std::string host,
                                            std::string endpoint) {
  auto req = makeRequest(r, host);
  auto [wec, wn] = co_await bhttp::async_write(stream, req, async::use_nothrow);
  (void)wn;
  if (wec) {
    co_return networkError(endpoint, "sending request to", wec);
  }
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(kMaxBodyBytes);
  auto [rec, rn] = co_await bhttp::async_read(stream, buffer, parser, async::use_nothrow);
  (void)rn;
  if (rec) {
    co_return networkError(endpoint, "reading response from", rec);
  }
  auto& res = parser.get();
  Response out;
  out.status = res.result_int();
  out.content_type = std::string(res[bhttp::field::content_type]);
  out.body = std::move(res.body());
  co_return out;
}

// Incremental reader of one response body (a watch stream): readHeader() once, then
// readSome() until it returns an empty string (end of body).
template <class Stream>
class BodyStream {
 public:
  BodyStream(Stream& stream, beast::flat_buffer& buffer, std::string endpoint)
      : stream_(stream), buffer_(buffer), endpoint_(std::move(endpoint)) {
    parser_.body_limit(boost::none);
  }

  async::Awaitable<Result<Response>> start(const Request& r, std::string host) {
    auto req = makeRequest(r, host);
    auto [wec, wn] = co_await bhttp::async_write(stream_, req, async::use_nothrow);
    (void)wn;
    if (wec) {
      co_return networkError(endpoint_, "sending request to", wec);
    }
    auto [rec, rn] =
        co_await bhttp::async_read_header(stream_, buffer_, parser_, async::use_nothrow);
    (void)rn;
    if (rec) {
      co_return networkError(endpoint_, "reading response header from", rec);
    }
    Response out;
    out.status = parser_.get().result_int();
    out.content_type = std::string(parser_.get()[bhttp::field::content_type]);
    co_return out;
  }

  // The next bytes of the body as they arrive (at least one byte); "" at the end of the body.
  async::Awaitable<Result<std::string>> readSome() {
    while (!parser_.is_done()) {
      parser_.get().body().data = chunk_;
      parser_.get().body().size = sizeof chunk_;
      auto [ec, n] = co_await bhttp::async_read_some(stream_, buffer_, parser_, async::use_nothrow);
      (void)n;
      if (ec && ec != bhttp::error::need_buffer) {
        co_return networkError(endpoint_, "reading stream from", ec);
      }
      size_t got = sizeof chunk_ - parser_.get().body().size;
      if (got > 0) {
        co_return std::string(chunk_, got);
      }
      // Only framing (a chunk header) was consumed; read on.
    }
    co_return std::string();
  }

  bool done() const { return parser_.is_done(); }

 private:
  Stream& stream_;
  beast::flat_buffer& buffer_;
  std::string endpoint_{};
  bhttp::response_parser<bhttp::buffer_body> parser_;
  char chunk_[16384];
};

}  // namespace flannel::store::http
