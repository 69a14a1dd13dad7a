#include "daemon/sd_notify.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/log.h"

namespace flannel::daemon {

namespace {

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
  // unset_environment = 0: NOTIFY_SOCKET stays set, as flannel leaves it (SPEC.md §1.7).
  const int rc = ::sd_notify(0, text.c_str());
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
