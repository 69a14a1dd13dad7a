// DOC: one named spdlog logger per module ("store.etcd", "kernel", "backend.vxlan", ...).
// All loggers share the default logger's sinks; the daemon sets levels (-v, -vmodule).
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace flannel {

// Returns the logger registered under `name`, creating it (with the default logger's sinks and
// level) on first use. Thread-safe (spdlog's registry is).
inline std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  if (auto existing = spdlog::get(name)) {
    return existing;
  }
  auto base = spdlog::default_logger();
  auto created = std::make_shared<spdlog::logger>(name, base->sinks().begin(), base->sinks().end());
  created->set_level(base->level());
  try {
    spdlog::register_logger(created);
  } catch (const spdlog::spdlog_ex&) {
    // Another thread registered it first.
    if (auto existing = spdlog::get(name)) {
      return existing;
    }
  }
  return created;
}

}  // namespace flannel
