// Runs a coroutine to completion on a private io_context, for tests. Bounded: fails the test
// (returns nullopt) if the coroutine has not finished within `limit`.
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "async/asio.h"

namespace flannel::test {

template <class T>
std::optional<T> runSync(net::io_context& io, async::Awaitable<T> task,
                         std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  std::optional<T> out;
  std::exception_ptr failure;
  bool done = false;
  net::co_spawn(io, std::move(task), [&](std::exception_ptr e, T value) {
    failure = e;
    if (!e) {
      out.emplace(std::move(value));
    }
    done = true;
  });
  io.restart();
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(50));
    io.restart();
  }
  if (failure) {
    std::rethrow_exception(failure);
  }
  return out;
}

}  // namespace flannel::test

namespace flannel::test {

// Runs several coroutines concurrently on `io` (they interleave at each I/O) and returns their
// results in order; a slot is nullopt if that coroutine did not finish within `limit`.
template <class T>
std::vector<std::optional<T>> runAll(net::io_context& io, std::vector<async::Awaitable<T>> tasks,
                                     std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  std::vector<std::optional<T>> out(tasks.size());
  size_t done = 0;
  std::exception_ptr failure;
  for (size_t i = 0; i < tasks.size(); ++i) {
    net::co_spawn(io, std::move(tasks[i]), [&, i](std::exception_ptr e, T value) {
      if (e) {
        failure = e;
      } else {
        out[i].emplace(std::move(value));
      }
      ++done;
    });
  }
  io.restart();
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (done < out.size() && std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(50));
    io.restart();
  }
  if (failure) {
    std::rethrow_exception(failure);
  }
  return out;
}

}  // namespace flannel::test
