// ByteStream (store/http/byte_stream.h): the type-erased stream the HTTP code runs over. Over a
// real loopback TCP connection: long buffer sequences arrive whole and in order, an HTTP
// exchange works through it, and tcp_stream's deadline still ends a stalled exchange.
#include "store/http/byte_stream.h"

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <string>
#include <vector>

#include "contract/store/run_sync.h"
#include "store/http/exchange.h"

namespace flannel::store::http {
namespace {

using tcp = net::ip::tcp;

// A connected pair on 127.0.0.1: `client` is a beast::tcp_stream, `server` a plain socket.
struct Pair {
  net::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)};
  beast::tcp_stream client{io};
  tcp::socket server{io};

  Pair() {
    client.socket().connect(acceptor.local_endpoint());
    acceptor.accept(server);
  }
};

TEST(ByteStream, LongBufferSequencesArriveWholeAndInOrder) {
  Pair p;
  ByteStreamOver<beast::tcp_stream> over(p.client);
  ByteStream& stream = over;  // the HTTP code sees only the base
  // More buffers than one write_some passes on (kMaxBuffers), some of them empty.
  std::vector<std::string> parts;
  std::string expected;
  for (int i = 0; i < 3 * static_cast<int>(ByteStream::kMaxBuffers) + 5; ++i) {
    parts.push_back(i % 7 == 3 ? std::string() : "part" + std::to_string(i) + ";");
    expected += parts.back();
  }
  std::vector<net::const_buffer> seq;
  for (const auto& s : parts) {
    seq.push_back(net::buffer(s));
  }
  auto wrote = test::runSync(p.io, [&]() -> async::Awaitable<size_t> {
    auto [ec, n] = co_await net::async_write(stream, seq, async::use_nothrow);
    EXPECT_FALSE(ec) << ec.message();
    co_return n;
  }());
  ASSERT_TRUE(wrote);
  EXPECT_EQ(*wrote, expected.size());
  std::string got(expected.size(), '\0');
  net::read(p.server, net::buffer(got));
  EXPECT_EQ(got, expected);

  // And back: reading into several buffers through the ByteStream.
  net::write(p.server, net::buffer(expected));
  std::vector<std::string> into(ByteStream::kMaxBuffers + 4, std::string(9, '\0'));
  std::vector<net::mutable_buffer> rseq;
  for (auto& s : into) {
    rseq.push_back(net::buffer(s));
  }
  std::string back(expected.size(), '\0');
  auto read = test::runSync(p.io, [&]() -> async::Awaitable<size_t> {
    auto [ec, n] = co_await net::async_read(stream, net::buffer(back), async::use_nothrow);
    EXPECT_FALSE(ec) << ec.message();
    co_return n;
  }());
  ASSERT_TRUE(read);
  EXPECT_EQ(back, expected);
}

TEST(ByteStream, HttpExchangeRunsOverIt) {
  Pair p;
  ByteStreamOver<beast::tcp_stream> over(p.client);
  ByteStream& stream = over;  // the HTTP code sees only the base
  const std::string reply =
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
      "{\"ok\":true}";
  net::write(p.server, net::buffer(reply));
  beast::flat_buffer buffer;
  Request r;
  r.target = "/v3/kv/range";
  r.body = "{\"key\":\"a2V5\"}";
  auto res = test::runSync(p.io, exchange(stream, buffer, r, "127.0.0.1", "test endpoint"));
  ASSERT_TRUE(res);
  ASSERT_TRUE(*res) << res->error().message;
  EXPECT_EQ((*res)->status, 201u);
  EXPECT_EQ((*res)->content_type, "application/json");
  EXPECT_EQ((*res)->body, "{\"ok\":true}");
  // The request went out whole.
  std::string sent(512, '\0');
  size_t n = p.server.read_some(net::buffer(sent));
  sent.resize(n);
  EXPECT_NE(sent.find("POST /v3/kv/range HTTP/1.1\r\n"), std::string::npos) << sent;
  EXPECT_NE(sent.find("\r\n\r\n{\"key\":\"a2V5\"}"), std::string::npos) << sent;
}

TEST(ByteStream, TheUnderlyingDeadlineStillEndsAStalledExchange) {
  Pair p;
  ByteStreamOver<beast::tcp_stream> over(p.client);
  ByteStream& stream = over;  // the HTTP code sees only the base
  beast::flat_buffer buffer;
  Request r;
  r.target = "/health";
  p.client.expires_after(std::chrono::milliseconds(200));
  auto start = std::chrono::steady_clock::now();
  // The server reads nothing and answers nothing.
  auto res = test::runSync(p.io, exchange(stream, buffer, r, "127.0.0.1", "stalled endpoint"),
                           std::chrono::seconds(10));
  ASSERT_TRUE(res) << "the exchange did not end within 10 s";
  ASSERT_FALSE(*res);
  EXPECT_EQ(res->error().code, Errc::Timeout) << res->error().message;
  EXPECT_NE(res->error().message.find("stalled endpoint"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace flannel::store::http
