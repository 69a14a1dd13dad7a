// DOC: systemd readiness notification (SPEC.md §1.7), over libsystemd's sd_notify().
// libsystemd.so.0 is loaded (dlopen) on the first call made with NOTIFY_SOCKET set, not linked.
//
// flannel sends READY=1 once, after the subnet file is written and the backend loop started.
// A datagram goes to $NOTIFY_SOCKET (a path, or an abstract socket when it starts with '@');
// the variable is left set; without it every call is a no-op. flannel sends nothing else; the
// STATUS= and STOPPING=1 messages are our additions (harmless: systemd shows the status line in
// `systemctl status` and logs the stop as intended).
//
// Failures are logged (logger "daemon") and never fatal: a supervisor that cannot be told is no
// reason to stop the data plane.
//
// Thread safety: any thread (each call is one sendmsg()).
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"

namespace flannel::daemon {

// Sends `state` (newline-separated VAR=value assignments) to $NOTIFY_SOCKET. true when sent,
// false when NOTIFY_SOCKET is unset; Errc::Unavailable (with the errno) when sending failed.
Result<bool> sdNotify(std::string_view state);

// READY=1.
void notifyReady();
// STATUS=<text> (one line: newlines become spaces).
void notifyStatus(std::string text);
// STOPPING=1.
void notifyStopping();

}  // namespace flannel::daemon
