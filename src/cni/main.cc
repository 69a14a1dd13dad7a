// flannel: the CNI plugin. A container runtime runs it with CNI_* variables and the network
// config on stdin; it turns /run/flannel/subnet.env into a bridge + host-local config and hands
// the work to that delegate (src/cni/plugin.h). docs/cni.md is the operator's page.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <string_view>

#include "cni/cni_config.h"
#include "cni/cni_env.h"
#include "cni/cni_error.h"
#include "cni/plugin.h"
#include "core/exec.h"

extern char** environ;

namespace {

using flannel::cni::CniCode;

constexpr size_t kMaxInput = 16u << 20;

void writeAll(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;  // nobody is listening; nothing better to do
    }
    text.remove_prefix(static_cast<size_t>(n));
  }
}

flannel::cni::EnvMap environment() {
  flannel::cni::EnvMap env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view item(*entry);
    const auto eq = item.find('=');
    if (eq != std::string_view::npos) {
      env.emplace(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
    }
  }
  return env;
}

// All of stdin, or false when it is larger than kMaxInput or unreadable.
bool readStdin(std::string& out) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno == EBADF;  // no stdin at all: same as empty
    }
    if (n == 0) {
      return true;
    }
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxInput) {
      return false;
    }
  }
}

}  // namespace

int main() {
  // A runtime that stops reading must not kill us halfway through a delegate call.
  ::signal(SIGPIPE, SIG_IGN);
  auto env = environment();
  if (env.find(flannel::cni::env_var::kCommand) == env.end() && ::isatty(STDIN_FILENO) == 1) {
    writeAll(STDERR_FILENO,
             "flannel: the flannel CNI plugin (flannel-cpp " FLANNEL_VERSION
             "); a container runtime runs it with CNI_COMMAND and the network config on stdin. "
             "See docs/cni.md.\n");
  }
  // Runtimes always pipe the config in; a terminal means a person ran us by hand, and waiting for
  // them to type JSON would only look like a hang.
  std::string input;
  if (::isatty(STDIN_FILENO) != 1 && !readStdin(input)) {
    writeAll(STDOUT_FILENO,
             flannel::cni::renderCniError(
                 flannel::cni::cniError(CniCode::DecodeFailure,
                                        "network config on stdin is unreadable or larger than "
                                        "16 MiB"),
                 flannel::cni::kPreferredVersion));
    return 1;
  }
  flannel::SpawnCommandRunner runner;
  flannel::cni::Plugin plugin(runner);
  const auto result = plugin.run(env, input);
  writeAll(STDERR_FILENO, result.err);
  writeAll(STDOUT_FILENO, result.out);
  return result.exit_code;
}
