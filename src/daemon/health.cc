#include "daemon/health.h"

#include <utility>

#include <fmt/format.h>
#include <boost/asio/socket_base.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "core/log.h"

namespace flannel::daemon {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

constexpr std::chrono::seconds kWriteTimeout{10};
// After an accept error other than cancellation (EMFILE, ENOBUFS...), pause before the next
// accept instead of spinning.
constexpr std::chrono::milliseconds kAcceptBackoff{100};

// True when `query` ("a&verbose=1") has the key `key`.
bool hasQueryKey(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    item = item.substr(0, item.find('='));
    if (item == key) {
      return true;
    }
    if (amp == std::string_view::npos) {
      break;
    }
    query.remove_prefix(amp + 1);
  }
  return false;
}

HealthReply text(unsigned status, std::string body) {
  return HealthReply{
      .status = status, .content_type = std::string(kTextPlain), .body = std::move(body)};
}

bhttp::response<bhttp::string_body> errorResponse(bhttp::status status, unsigned version) {
  bhttp::response<bhttp::string_body> res{status, version};
  res.set(bhttp::field::content_type, kTextPlain);
  res.set(bhttp::field::connection, "close");
  res.body() = fmt::format("{} {}", static_cast<unsigned>(status), bhttp::obsolete_reason(status));
  res.prepare_payload();
  res.keep_alive(false);
  return res;
}

// Removes a stream from the server's list when its session ends, however it ends.
struct StreamRegistration {
  std::list<beast::tcp_stream*>& list;
  std::list<beast::tcp_stream*>::iterator it;
  ~StreamRegistration() { list.erase(it); }
};

Error listenError(const net::ip::tcp::endpoint& ep, std::string_view step,
                  const boost::system::error_code& ec) {
  const Errc code = ec == net::error::address_in_use ? Errc::Conflict : Errc::Unavailable;
  return makeError(code,
                   fmt::format("health server on {}: {}: {}", endpointText(ep), step, ec.message()),
                   ec.value());
}

}  // namespace

std::string endpointText(const net::ip::tcp::endpoint& endpoint) {
  if (endpoint.address().is_v6()) {
    return fmt::format("[{}]:{}", endpoint.address().to_string(), endpoint.port());
  }
  return fmt::format("{}:{}", endpoint.address().to_string(), endpoint.port());
}

HealthReply healthReply(std::string_view target, bool ready, std::string_view detail,
                        const Metrics* metrics) {
  const size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query =
      q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  if (path == "/healthz") {
    if (!hasQueryKey(query, "verbose")) {
      return text(200, std::string(kHealthzBody));
    }
    std::string body = fmt::format("{}\nready: {}\n", kHealthzBody, ready);
    if (!detail.empty()) {
      body += detail;
      if (body.back() != '\n') {
        body += '\n';
      }
    }
    return text(200, std::move(body));
  }
  if (path == "/readyz") {
    return ready ? text(200, std::string(kReadyBody)) : text(503, std::string(kNotReadyBody));
  }
  if (path == "/metrics" && metrics != nullptr) {
    return HealthReply{.status = 200,
                       .content_type = std::string(Metrics::kContentType),
                       .body = metrics->render()};
  }
  return text(404, std::string(kNotFoundBody));
}

Result<std::unique_ptr<HealthServer>> HealthServer::listen(async::Executor executor,
                                                           HealthOptions options,
                                                           const Metrics& metrics) {
  boost::system::error_code ec;
  const auto address = net::ip::make_address(options.ip, ec);
  if (ec) {
    return invalidInput(
        fmt::format("health server: -healthz-ip \"{}\" is not an IP address", options.ip));
  }
  const net::ip::tcp::endpoint wanted(address, options.port);
  net::ip::tcp::acceptor acceptor(executor);
  if (acceptor.open(wanted.protocol(), ec); ec) {
    return listenError(wanted, "opening a socket", ec);
  }
  // Like Go's listener: a restart must not fail on connections in TIME_WAIT.
  if (acceptor.set_option(net::socket_base::reuse_address(true), ec); ec) {
    return listenError(wanted, "setting SO_REUSEADDR", ec);
  }
  if (acceptor.bind(wanted, ec); ec) {
    return listenError(wanted, "binding", ec);
  }
  if (acceptor.listen(net::socket_base::max_listen_connections, ec); ec) {
    return listenError(wanted, "listening", ec);
  }
  return std::unique_ptr<HealthServer>(
      new HealthServer(std::move(executor), std::move(acceptor), std::move(options), metrics));
}

HealthServer::HealthServer(async::Executor executor, net::ip::tcp::acceptor acceptor,
                           HealthOptions options, const Metrics& metrics)
    : executor_(executor),
      acceptor_(std::move(acceptor)),
      options_(std::move(options)),
      metrics_(metrics),
      sessions_(executor, "healthz") {
  boost::system::error_code ec;
  endpoint_ = acceptor_.local_endpoint(ec);
}

HealthServer::~HealthServer() = default;

void HealthServer::setDetail(std::string detail) {
  std::lock_guard lock(detail_mutex_);
  detail_ = std::move(detail);
}

std::string HealthServer::detail() const {
  std::lock_guard lock(detail_mutex_);
  return detail_;
}

async::Awaitable<void> HealthServer::run() {
  // Any cancellation type stops the server, and cleanup below must still be able to await.
  co_await net::this_coro::reset_cancellation_state(net::enable_total_cancellation());
  co_await net::this_coro::throw_if_cancelled(false);
  auto log = logger("daemon.health");
  log->info("serving /healthz, /readyz and /metrics on {}", endpointText(endpoint_));
  net::steady_timer pause(executor_);
  for (;;) {
    if ((co_await net::this_coro::cancellation_state).cancelled() != net::cancellation_type::none) {
      break;
    }
    auto [ec, socket] = co_await acceptor_.async_accept(async::use_nothrow);
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) {
      break;
    }
    if (ec) {
      log->warn("health server on {}: accepting a connection: {}", endpointText(endpoint_),
                ec.message());
      pause.expires_after(kAcceptBackoff);
      co_await pause.async_wait(async::use_nothrow);
      continue;
    }
    if (sessions_.size() >= options_.max_connections) {
      log->debug("health server: {} connections open, refusing one more", sessions_.size());
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    sessions_.spawn("healthz connection", session(std::move(socket)));
  }
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  for (beast::tcp_stream* stream : streams_) {
    stream->cancel();
  }
  sessions_.emit(net::cancellation_type::terminal);
  co_await sessions_.asyncWait();
  log->info("health server on {} stopped", endpointText(endpoint_));
}

async::Awaitable<void> HealthServer::session(net::ip::tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  StreamRegistration registration{streams_, streams_.insert(streams_.end(), &stream)};
  // Room for one maximal request plus the start of a pipelined next one.
  beast::flat_buffer buffer(2 * (kMaxHeaderBytes + kMaxBodyBytes));
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(kMaxHeaderBytes));
    parser.body_limit(kMaxBodyBytes);
    stream.expires_after(options_.idle_timeout);
    auto [rec, rn] = co_await bhttp::async_read(stream, buffer, parser, async::use_nothrow);
    (void)rn;
    if (rec) {
      // A request we refuse to parse still gets an answer; a network error or a peer that
      // went away does not.
      std::optional<bhttp::status> refusal;
      if (rec == bhttp::error::header_limit || rec == bhttp::error::buffer_overflow) {
        refusal = bhttp::status::request_header_fields_too_large;
      } else if (rec == bhttp::error::body_limit) {
        refusal = bhttp::status::payload_too_large;
      } else if (rec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
                 rec != bhttp::error::end_of_stream && rec != bhttp::error::partial_message) {
        refusal = bhttp::status::bad_request;
      }
      if (refusal) {
        auto res = errorResponse(*refusal, 11);
        stream.expires_after(kWriteTimeout);
        co_await bhttp::async_write(stream, res, async::use_nothrow);
      }
      break;
    }
    const auto& req = parser.get();
    const HealthReply reply = healthReply(req.target(), ready(), detail(), &metrics_);
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(reply.status),
                                            req.version()};
    res.set(bhttp::field::content_type, reply.content_type);
    if (reply.status == 404) {
      res.set("X-Content-Type-Options", "nosniff");
    }
    res.keep_alive(req.keep_alive());
    if (req.method() == bhttp::verb::head) {
      res.content_length(reply.body.size());
    } else {
      res.body() = reply.body;
      res.prepare_payload();
    }
    stream.expires_after(kWriteTimeout);
    auto [wec, wn] = co_await bhttp::async_write(stream, res, async::use_nothrow);
    (void)wn;
    if (wec || !res.keep_alive()) {
      break;
    }
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  stream.socket().close(ignored);
}

}  // namespace flannel::daemon
