// DOC: TaskGroup, a set of named, cancellable child coroutines (after the task_group of Beast's
// advanced server example).
//
// Every long-lived activity of the daemon (lease renewal, watch, reconcile, health server) runs
// as a child of a group. spawn() binds the child to a cancellation signal owned by the group and
// to a completion handler that logs an escaping exception with the task's name. emit() delivers
// a cancellation to every child; asyncWait() completes once all children have finished.
//
// Thread safety: a group belongs to the one control-plane thread (DESIGN.md: one io_context,
// one thread); spawn/emit/asyncWait must be called from that thread.
//
//     spawn ─▶ running ─┬─ returns ───────────────▶ finished (removed)
//                        ├─ throws  ──▶ logged ──▶ finished (removed)
//                        └─ emit(c) ──▶ cancelled at its next await ─▶ finished
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <string>

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>

#include "async/asio.h"

namespace flannel::async {

class TaskGroup {
 public:
  // Called when a child ends with an exception (after it was logged); lets the owner decide to
  // restart the task or stop the daemon. Not called for cancellation.
  using FailureHandler = std::function<void(const std::string& task, std::exception_ptr)>;

  TaskGroup(Executor executor, std::string name, FailureHandler on_failure = {});
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;
  ~TaskGroup();

  // Starts `task` as a child named `name`. The coroutine must be self-contained (parameters by
  // value, no references to the caller's stack).
  void spawn(std::string name, Awaitable<void> task);

  // Delivers `type` (terminal, partial or total) to every running child.
  void emit(net::cancellation_type type);

  // Completes when no child is running (immediately if none).
  Awaitable<void> asyncWait();

  size_t size() const noexcept { return children_.size(); }
  const std::string& name() const noexcept { return name_; }

 private:
  struct Child {
    std::string name;
    net::cancellation_signal signal;
  };
  void finished(std::list<Child>::iterator it, std::exception_ptr e);

  Executor executor_;
  std::string name_;
  FailureHandler on_failure_;
  std::list<Child> children_;
  net::steady_timer idle_;
};

}  // namespace flannel::async
