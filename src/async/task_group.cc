#include "async/task_group.h"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/system/system_error.hpp>

#include "core/log.h"

namespace flannel::async {

TaskGroup::TaskGroup(Executor executor, std::string name, FailureHandler on_failure)
    : executor_(std::move(executor)),
      name_(std::move(name)),
      on_failure_(std::move(on_failure)),
      idle_(executor_, net::steady_timer::time_point::max()) {}

TaskGroup::~TaskGroup() {
  // Children still running hold iterators into children_; cancel them so they end promptly.
  // Their completion handlers run later on the executor and must not touch this group, so the
  // owner is expected to asyncWait() before destroying a group with running children.
  for (auto& child : children_) {
    child.signal.emit(net::cancellation_type::terminal);
  }
}

void TaskGroup::spawn(std::string name, Awaitable<void> task) {
  auto it = children_.emplace(children_.end());
  it->name = std::move(name);
  net::co_spawn(executor_, std::move(task),
                net::bind_cancellation_slot(it->signal.slot(),
                                            [this, it](std::exception_ptr e) { finished(it, e); }));
}

void TaskGroup::finished(std::list<Child>::iterator it, std::exception_ptr e) {
  std::string task = std::move(it->name);
  children_.erase(it);
  if (e) {
    bool cancelled = false;
    try {
      std::rethrow_exception(e);
    } catch (const boost::system::system_error& se) {
      cancelled = se.code() == net::error::operation_aborted;
      if (!cancelled) {
        logger("async")->error("{}: task {} failed: {}", name_, task, se.what());
      }
    } catch (const std::exception& ex) {
      logger("async")->error("{}: task {} failed: {}", name_, task, ex.what());
    } catch (...) {
      logger("async")->error("{}: task {} failed with a non-standard exception", name_, task);
    }
    if (!cancelled && on_failure_) {
      on_failure_(task, e);
    }
  }
  if (children_.empty()) {
    idle_.cancel();
  }
}

void TaskGroup::emit(net::cancellation_type type) {
  for (auto& child : children_) {
    child.signal.emit(type);
  }
}

Awaitable<void> TaskGroup::asyncWait() {
  while (!children_.empty()) {
    idle_.expires_at(net::steady_timer::time_point::max());
    co_await idle_.async_wait(use_nothrow);
  }
}

}  // namespace flannel::async
