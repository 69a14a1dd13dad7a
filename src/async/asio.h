// DOC: Asio vocabulary for Boost 1.81 (DESIGN.md "Coroutine and thread style").
//
// Debian's Boost 1.81 has no default completion token, so every coroutine call names one:
// `use_awaitable` (errors throw) or `use_nothrow` (errors come back as the first tuple element,
// the style for expected network errors). Code written for Boost >= 1.86 (token-less calls,
// cancel_after) does not compile here.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace flannel {

namespace net = boost::asio;

namespace async {

using Executor = net::any_io_executor;
template <class T = void>
using Awaitable = net::awaitable<T>;

inline constexpr auto use_awaitable = net::use_awaitable;
// `auto [ec, n] = co_await sock.async_read_some(buf, use_nothrow);`
inline constexpr auto use_nothrow = net::as_tuple(net::use_awaitable);

}  // namespace async
}  // namespace flannel
