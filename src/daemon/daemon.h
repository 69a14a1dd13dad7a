// DOC: the composition root: the only place that picks implementations (DESIGN.md rule 3).
//
// runDaemon() follows SPEC.md §1.4: store → health → network config (retry every second) →
// external interface → backend → lease → configure → subnet.env → traffic rules → watch and
// reconcile, renew the lease → READY=1 (subnet.env comes before the rules, unlike flannel, so
// that pods can be wired sooner; readiness waits for the rules). Exit status: 0 after
// SIGINT/SIGTERM (the data plane is left in place so pods keep talking across a restart); 1 for bad
// start-up input (interface, backend, rules) and when our lease is lost (revoked, expired or taken
// over), so that a supervisor restarts flanneld and it re-acquires (see README "Differences from
// flannel").
#pragma once

#include "daemon/options.h"

namespace flannel::daemon {

int runDaemon(const Options& options);

}  // namespace flannel::daemon
