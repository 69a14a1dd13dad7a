#include "daemon/sd_notify.h"

#include <dlfcn.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "core/log.h"

namespace flannel::daemon {

namespace {

// libsystemd is loaded on the first notification with NOTIFY_SOCKET set, not linked: a flanneld
// that no supervisor listens to never maps it (with its compression and crypto dependencies,
// ~1 MB of resident memory). Loaded once and never unloaded.
struct LibSystemd {
  decltype(&::sd_notify) notify = nullptr;
  std::string error{};
};

const LibSystemd& libSystemd() {
  static const LibSystemd lib = [] {
    LibSystemd l;
    void* handle = ::dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      l.error = ::dlerror();
      return l;
    }
    l.notify = reinterpret_cast<decltype(&::sd_notify)>(::dlsym(handle, "sd_notify"));
    if (l.notify == nullptr) {
      l.error = "libsystemd.so.0 has no sd_notify";
    }
    return l;
  }();
  return lib;
}

void send(std::string_view state) {
  auto sent = sdNotify(state);
  if (!sent) {
    logger("daemon")->warn("{}", sent.error().message);
  } else if (*sent) {
    logger("daemon")->debug("told systemd {}", state);
  }
}

}  // namespace

Result<bool> sdNotify(std::string_view state) {
  const std::string text(state);
  if (std::getenv("NOTIFY_SOCKET") == nullptr) {
    return false;  // what sd_notify() returns then; no need to load libsystemd
  }
  const auto& lib = libSystemd();
  if (lib.notify == nullptr) {
    return makeError(
        Errc::Unavailable,
        fmt::format("notifying systemd ({}): cannot load libsystemd: {}", text, lib.error));
  }
  // unset_environment = 0: NOTIFY_SOCKET stays set, as flannel leaves it (SPEC.md §1.7).
  const int rc = lib.notify(0, text.c_str());
  if (rc < 0) {
    return makeError(
        Errc::Unavailable,
        fmt::format("notifying systemd ({}): {} (errno {})", text, std::strerror(-rc), -rc), -rc);
  }
  return rc > 0;
}

void notifyReady() {
  send("READY=1");
}

void notifyStatus(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  send("STATUS=" + text);
}

void notifyStopping() {
  send("STOPPING=1");
}

}  // namespace flannel::daemon
