// HealthServer: the pure routing table, then real HTTP/1.1 requests from a small Beast client
// to a server bound to 127.0.0.1 port 0 (the port is read back). Also sd_notify, against a
// unix datagram socket the test owns.
#include "daemon/health.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "async/task_group.h"
#include "daemon/metrics.h"
#include "daemon/sd_notify.h"

namespace flannel::daemon {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using namespace std::chrono_literals;

// --- the routing table (pure) ---------------------------------------------------------------

TEST(HealthReply, Routes) {
  Metrics metrics;
  metrics.gauge("flannel_leases", "Leases.").set(4);
  const std::string metrics_text =
      "# HELP flannel_leases Leases.\n# TYPE flannel_leases gauge\nflannel_leases 4\n";
  const std::string plain(kTextPlain);
  const std::string prom(Metrics::kContentType);
  struct Case {
    std::string target;
    bool ready = false;
    std::string detail{};
    bool with_metrics = true;
    HealthReply want{};
  };
  const Case cases[] = {
      {"/healthz", false, "", true, {200, plain, "flanneld is running"}},
      {"/healthz", true, "store unreachable", true, {200, plain, "flanneld is running"}},
      {"/healthz?verbose", false, "", true, {200, plain, "flanneld is running\nready: false\n"}},
      {"/healthz?a=1&verbose=1",
       true,
       "store: unreachable since 10:00\nreconcile: 2 failures",
       true,
       {200, plain,
        "flanneld is running\nready: true\nstore: unreachable since 10:00\nreconcile: 2 "
        "failures\n"}},
      {"/healthz?verbosely", false, "x", true, {200, plain, "flanneld is running"}},
      {"/readyz", false, "", true, {503, plain, "flanneld is not ready yet"}},
      {"/readyz", true, "", true, {200, plain, "flanneld is ready"}},
      {"/readyz?verbose", true, "", true, {200, plain, "flanneld is ready"}},
      {"/metrics", false, "", true, {200, prom, metrics_text}},
      {"/metrics", false, "", false, {404, plain, "404 page not found\n"}},
      {"/", false, "", true, {404, plain, "404 page not found\n"}},
      {"/healthz/", false, "", true, {404, plain, "404 page not found\n"}},
      {"/HEALTHZ", false, "", true, {404, plain, "404 page not found\n"}},
      {"/debug/pprof/", false, "", true, {404, plain, "404 page not found\n"}},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(healthReply(c.target, c.ready, c.detail, c.with_metrics ? &metrics : nullptr), c.want)
        << c.target;
  }
}

TEST(HealthServer, EndpointText) {
  EXPECT_EQ(endpointText({net::ip::make_address("127.0.0.1"), 8081}), "127.0.0.1:8081");
  EXPECT_EQ(endpointText({net::ip::make_address("::1"), 8081}), "[::1]:8081");
}

// --- a small Beast client ----------------------------------------------------------------------

struct Req {
  bhttp::verb method = bhttp::verb::get;
  std::string target{};
  bool keep_alive = true;
  size_t pad_bytes = 0;            // an X-Pad header this long (oversized requests)
  std::function<void()> before{};  // runs before the request is sent
};

struct Got {
  unsigned status = 0;
  std::string content_type{};
  std::string content_length{};
  std::string nosniff{};
  std::string body{};
  bool keep_alive = false;
};

struct Conversation {
  std::vector<Got> responses{};
  std::string error{};            // the first client-side failure, if any
  bool closed_by_server = false;  // a read after the last response saw EOF (or a reset)
};

net::ip::tcp::endpoint loopback(uint16_t port) {
  return {net::ip::make_address("127.0.0.1"), port};
}

// Reads until the server closes the connection (true) or 3 s pass (false).
async::Awaitable<bool> closedByPeer(beast::tcp_stream& stream) {
  stream.expires_after(3s);
  char byte = 0;
  auto [ec, n] = co_await stream.async_read_some(net::buffer(&byte, 1), async::use_nothrow);
  (void)n;
  co_return ec == net::error::eof || ec == net::error::connection_reset;
}

// One connection, the requests in order (keep-alive), then optionally a check that the server
// closed the connection.
async::Awaitable<Conversation> talk(uint16_t port, std::vector<Req> reqs, bool expect_close) {
  Conversation out;
  beast::tcp_stream stream(co_await net::this_coro::executor);
  stream.expires_after(5s);
  auto [cec] = co_await stream.async_connect(loopback(port), async::use_nothrow);
  if (cec) {
    out.error = "connect: " + cec.message();
    co_return out;
  }
  beast::flat_buffer buffer;
  for (const Req& r : reqs) {
    if (r.before) {
      r.before();
    }
    bhttp::request<bhttp::string_body> req{r.method, r.target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    if (r.pad_bytes > 0) {
      req.set("X-Pad", std::string(r.pad_bytes, 'a'));
    }
    req.keep_alive(r.keep_alive);
    req.prepare_payload();
    stream.expires_after(5s);
    auto [wec, wn] = co_await bhttp::async_write(stream, req, async::use_nothrow);
    (void)wn;
    if (wec) {
      out.error = "write: " + wec.message();
      co_return out;
    }
    bhttp::response_parser<bhttp::string_body> parser;
    if (r.method == bhttp::verb::head) {
      parser.skip(true);
    }
    auto [rec, rn] = co_await bhttp::async_read(stream, buffer, parser, async::use_nothrow);
    (void)rn;
    if (rec) {
      out.error = "read: " + rec.message();
      co_return out;
    }
    const auto& res = parser.get();
    out.responses.push_back(Got{.status = res.result_int(),
                                .content_type = std::string(res[bhttp::field::content_type]),
                                .content_length = std::string(res[bhttp::field::content_length]),
                                .nosniff = std::string(res["X-Content-Type-Options"]),
                                .body = res.body(),
                                .keep_alive = res.keep_alive()});
  }
  if (expect_close) {
    out.closed_by_server = co_await closedByPeer(stream);
  }
  co_return out;
}

class HealthServerTest : public ::testing::Test {
 protected:
  void SetUp() override { start(HealthOptions{.ip = "127.0.0.1", .port = 0}); }

  void start(HealthOptions options) {
    auto server = HealthServer::listen(ioc_.get_executor(), std::move(options), metrics_);
    ASSERT_TRUE(server) << server.error().message;
    server_ = std::move(*server);
    ASSERT_NE(server_->port(), 0);
    group_ = std::make_unique<async::TaskGroup>(ioc_.get_executor(), "test");
    group_->spawn("healthz", server_->run());
  }

  // Runs `client` to completion, then cancels the server the way the daemon does (a task
  // group emit) and runs the loop until everything has finished (bounded).
  template <class T>
  T run(async::Awaitable<T> client) {
    std::optional<T> result;
    net::co_spawn(ioc_, std::move(client), [&](std::exception_ptr e, T value) {
      if (e) {
        ADD_FAILURE() << "client coroutine threw";
      }
      result = std::move(value);
      group_->emit(net::cancellation_type::total);
    });
    ioc_.run_for(10s);
    EXPECT_TRUE(result.has_value()) << "client did not finish";
    EXPECT_EQ(group_->size(), 0u) << "server did not stop";
    return result ? std::move(*result) : T{};
  }

  net::io_context ioc_;
  Metrics metrics_;
  std::unique_ptr<HealthServer> server_;
  std::unique_ptr<async::TaskGroup> group_;
};

TEST_F(HealthServerTest, AnswersEveryRouteOnOneKeepAliveConnection) {
  metrics_.counter("flannel_test_total", "A test counter.", {{"kind", "a"}}).inc(7);
  HealthServer* server = server_.get();
  auto conv = run(talk(server_->port(),
                       {
                           {.target = "/healthz"},
                           {.method = bhttp::verb::post, .target = "/healthz"},
                           {.method = bhttp::verb::head, .target = "/healthz"},
                           {.target = "/readyz"},
                           {.target = "/readyz", .before = [server] { server->setReady(true); }},
                           {.target = "/metrics"},
                           {.target = "/nope"},
                       },
                       false));
  ASSERT_EQ(conv.error, "");
  ASSERT_EQ(conv.responses.size(), 7u);
  const std::string plain(kTextPlain);
  const auto& r = conv.responses;
  EXPECT_EQ(r[0].status, 200u);
  EXPECT_EQ(r[0].content_type, plain);
  EXPECT_EQ(r[0].body, "flanneld is running");
  EXPECT_EQ(r[0].content_length, "19");
  EXPECT_TRUE(r[0].keep_alive);
  EXPECT_EQ(r[1].status, 200u);
  EXPECT_EQ(r[1].body, "flanneld is running");
  EXPECT_EQ(r[2].status, 200u);  // HEAD: headers only, with the length of the body
  EXPECT_EQ(r[2].body, "");
  EXPECT_EQ(r[2].content_length, "19");
  EXPECT_EQ(r[3].status, 503u);
  EXPECT_EQ(r[3].body, "flanneld is not ready yet");
  EXPECT_EQ(r[4].status, 200u);
  EXPECT_EQ(r[4].body, "flanneld is ready");
  EXPECT_EQ(r[5].status, 200u);
  EXPECT_EQ(r[5].content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r[5].body,
            "# HELP flannel_test_total A test counter.\n"
            "# TYPE flannel_test_total counter\n"
            "flannel_test_total{kind=\"a\"} 7\n");
  EXPECT_EQ(r[6].status, 404u);
  EXPECT_EQ(r[6].content_type, plain);
  EXPECT_EQ(r[6].nosniff, "nosniff");
  EXPECT_EQ(r[6].body, "404 page not found\n");
}

TEST_F(HealthServerTest, VerboseHealthzShowsTheDetail) {
  server_->setReady(true);
  server_->setDetail("store: unreachable (3 attempts)");
  EXPECT_EQ(server_->detail(), "store: unreachable (3 attempts)");
  auto conv = run(talk(server_->port(), {{.target = "/healthz?verbose"}}, false));
  ASSERT_EQ(conv.error, "");
  ASSERT_EQ(conv.responses.size(), 1u);
  EXPECT_EQ(conv.responses[0].status, 200u);
  EXPECT_EQ(conv.responses[0].body,
            "flanneld is running\nready: true\nstore: unreachable (3 attempts)\n");
}

TEST_F(HealthServerTest, ConnectionCloseIsHonoured) {
  auto conv = run(talk(server_->port(), {{.target = "/healthz", .keep_alive = false}}, true));
  ASSERT_EQ(conv.error, "");
  ASSERT_EQ(conv.responses.size(), 1u);
  EXPECT_FALSE(conv.responses[0].keep_alive);
  EXPECT_TRUE(conv.closed_by_server);
}

TEST_F(HealthServerTest, OversizedRequestIsRefusedAndClosed) {
  auto conv = run(talk(server_->port(), {{.target = "/healthz", .pad_bytes = 20000}}, true));
  ASSERT_EQ(conv.error, "");
  ASSERT_EQ(conv.responses.size(), 1u);
  EXPECT_EQ(conv.responses[0].status, 431u);
  EXPECT_FALSE(conv.responses[0].keep_alive);
  EXPECT_TRUE(conv.closed_by_server);
}

TEST_F(HealthServerTest, RequestJustUnderTheLimitIsServed) {
  auto conv = run(talk(server_->port(), {{.target = "/healthz", .pad_bytes = 7000}}, false));
  ASSERT_EQ(conv.error, "");
  ASSERT_EQ(conv.responses.size(), 1u);
  EXPECT_EQ(conv.responses[0].status, 200u);
}

// Cancellation must also end connections that sit idle in a keep-alive read (the idle timeout
// is 30 s; the test is bounded well below that).
async::Awaitable<bool> cancelWhileIdle(uint16_t port, async::TaskGroup* group) {
  beast::tcp_stream stream(co_await net::this_coro::executor);
  stream.expires_after(5s);
  co_await stream.async_connect(loopback(port), async::use_awaitable);
  bhttp::request<bhttp::string_body> req{bhttp::verb::get, "/healthz", 11};
  req.set(bhttp::field::host, "127.0.0.1");
  co_await bhttp::async_write(stream, req, async::use_awaitable);
  beast::flat_buffer buffer;
  bhttp::response<bhttp::string_body> res;
  co_await bhttp::async_read(stream, buffer, res, async::use_awaitable);
  group->emit(net::cancellation_type::total);
  co_return co_await closedByPeer(stream);
}

TEST_F(HealthServerTest, CancellationStopsAcceptingAndClosesIdleConnections) {
  const auto started = std::chrono::steady_clock::now();
  const uint16_t port = server_->port();
  EXPECT_TRUE(run(cancelWhileIdle(port, group_.get())));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  // The listening socket is closed: a new connection is refused.
  net::ip::tcp::socket probe(ioc_);
  boost::system::error_code ec;
  probe.connect(loopback(port), ec);
  EXPECT_EQ(ec, net::error::connection_refused);
}

// With max_connections = 1, a second connection is closed at once while the first works on.
async::Awaitable<std::vector<bool>> twoConnections(uint16_t port) {
  std::vector<bool> out;
  auto ex = co_await net::this_coro::executor;
  beast::tcp_stream first(ex);
  first.expires_after(5s);
  co_await first.async_connect(loopback(port), async::use_awaitable);
  beast::flat_buffer buffer;
  bhttp::request<bhttp::string_body> req{bhttp::verb::get, "/healthz", 11};
  req.set(bhttp::field::host, "127.0.0.1");
  co_await bhttp::async_write(first, req, async::use_awaitable);
  bhttp::response<bhttp::string_body> res1;
  co_await bhttp::async_read(first, buffer, res1, async::use_awaitable);
  out.push_back(res1.result_int() == 200);

  beast::tcp_stream second(ex);
  second.expires_after(5s);
  co_await second.async_connect(loopback(port), async::use_awaitable);
  out.push_back(co_await closedByPeer(second));

  first.expires_after(5s);
  co_await bhttp::async_write(first, req, async::use_awaitable);
  bhttp::response<bhttp::string_body> res2;
  co_await bhttp::async_read(first, buffer, res2, async::use_awaitable);
  out.push_back(res2.result_int() == 200);
  co_return out;
}

TEST_F(HealthServerTest, ConnectionsBeyondTheLimitAreClosed) {
  // Replace the fixture's server with one that allows a single connection.
  group_->emit(net::cancellation_type::total);
  ioc_.run_for(2s);
  ASSERT_EQ(group_->size(), 0u);
  ioc_.restart();
  start(HealthOptions{.ip = "127.0.0.1", .port = 0, .max_connections = 1});
  EXPECT_EQ(run(twoConnections(server_->port())), (std::vector<bool>{true, true, true}));
}

TEST_F(HealthServerTest, BindFailureIsAResultNamingTheAddress) {
  const uint16_t port = server_->port();
  auto second = HealthServer::listen(ioc_.get_executor(),
                                     HealthOptions{.ip = "127.0.0.1", .port = port}, metrics_);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::Conflict);
  EXPECT_EQ(second.error().sys_errno, EADDRINUSE);
  EXPECT_EQ(second.error().message.find("health server on 127.0.0.1:" + std::to_string(port) +
                                        ": binding: "),
            0u)
      << second.error().message;
  run(talk(port, {}, false));
}

TEST(HealthServerListen, RejectsAnIpThatIsNotAnAddress) {
  net::io_context ioc;
  Metrics metrics;
  auto server = HealthServer::listen(ioc.get_executor(),
                                     HealthOptions{.ip = "localhost", .port = 0}, metrics);
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().code, Errc::InvalidInput);
  EXPECT_EQ(server.error().message,
            "health server: -healthz-ip \"localhost\" is not an IP address");
}

// --- sd_notify ----------------------------------------------------------------------------------

class SdNotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* old = std::getenv("NOTIFY_SOCKET")) {
      saved_ = old;
    }
    ::unsetenv("NOTIFY_SOCKET");
  }
  void TearDown() override {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
    if (saved_) {
      ::setenv("NOTIFY_SOCKET", saved_->c_str(), 1);
    } else {
      ::unsetenv("NOTIFY_SOCKET");
    }
  }

  // Binds a datagram socket at `path` (a leading '@' = abstract) and points NOTIFY_SOCKET at it.
  void listenAt(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd_, 0) << strerror(errno);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    ASSERT_LT(path.size(), sizeof sa.sun_path);
    path.copy(sa.sun_path, path.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    if (path[0] == '@') {
      sa.sun_path[0] = '\0';
    } else {
      len += 1;
    }
    ASSERT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), len), 0) << strerror(errno);
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  }

  std::string tempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fct-sdnotify-XXXXXX").string();
    const char* made = ::mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr) << strerror(errno);
    dir_ = tmpl;
    return tmpl;
  }

  // The next datagram, or "" after 2 s.
  std::string receive() {
    pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, 2000) != 1) {
      return "";
    }
    char buf[512];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

  int fd_ = -1;
  std::string dir_{};
  std::optional<std::string> saved_{};
};

TEST_F(SdNotifyTest, WithoutNotifySocketNothingIsSent) {
  auto sent = sdNotify("READY=1");
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_FALSE(*sent);
  notifyReady();  // a no-op, not an error
}

TEST_F(SdNotifyTest, SendsReadyStatusAndStopping) {
  const std::string path = tempDir() + "/notify.sock";
  listenAt(path);
  notifyReady();
  EXPECT_EQ(receive(), "READY=1");
  notifyStatus("waiting for\nthe store");
  EXPECT_EQ(receive(), "STATUS=waiting for the store");
  notifyStopping();
  EXPECT_EQ(receive(), "STOPPING=1");
  // The variable stays set (SPEC.md §1.7).
  ASSERT_NE(std::getenv("NOTIFY_SOCKET"), nullptr);
  EXPECT_EQ(std::string(std::getenv("NOTIFY_SOCKET")), path);
}

TEST_F(SdNotifyTest, AbstractSocket) {
  listenAt("@fct-sdnotify-" + std::to_string(::getpid()));
  auto sent = sdNotify("READY=1");
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_TRUE(*sent);
  EXPECT_EQ(receive(), "READY=1");
}

TEST_F(SdNotifyTest, UnreachableSocketIsAnErrorValue) {
  const std::string path = tempDir() + "/nobody-listens.sock";
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  auto sent = sdNotify("READY=1");
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, Errc::Unavailable);
  EXPECT_EQ(sent.error().sys_errno, ENOENT);
  EXPECT_NE(sent.error().message.find("notifying systemd (READY=1): "), std::string::npos)
      << sent.error().message;
  notifyReady();  // logged, never fatal
}

}  // namespace
}  // namespace flannel::daemon
