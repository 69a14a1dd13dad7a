// flanneld: flags -> compose -> run (DESIGN.md "The flow").
//
// Exit status: 0 for --help and --version; 1 for any bad input (message on stderr as
// "flanneld: <message>" plus a hint); otherwise what runDaemon() returns (daemon.h).
#include <cstdio>
#include <string>
#include <vector>

#include "core/log.h"
#include "daemon/daemon.h"
#include "daemon/logging.h"
#include "daemon/options.h"

#ifndef FLANNEL_VERSION
#error "FLANNEL_VERSION must be defined by the build"
#endif

namespace {

int usageError(const flannel::Error& error) {
  std::fprintf(stderr, "flanneld: %s\nRun 'flanneld --help' for usage.\n", error.message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  namespace daemon = flannel::daemon;

  auto parsed = daemon::parseCommandLine(std::vector<std::string>(argv + 1, argv + argc),
                                         daemon::processEnvironment());
  if (!parsed) {
    return usageError(parsed.error());
  }
  const daemon::Options& options = parsed->options;
  if (options.help) {
    std::fputs(daemon::helpText().c_str(), stdout);
    return 0;
  }
  if (options.version) {
    std::puts(FLANNEL_VERSION);
    return 0;
  }

  auto log_settings = daemon::logSettingsFrom(options);
  if (!log_settings) {
    return usageError(log_settings.error());
  }
  daemon::setupLogging(*log_settings);
  flannel::logger("daemon")->info("CLI flags config: {}", daemon::describeOptions(options));

  return daemon::runDaemon(options);
}
