// DOC: FakeRunner, the CommandRunner twin for unit tests: records every command it is asked to
// run and answers from a script, so tests assert the exact argv and stdin a component sends and
// drive its error paths without starting a process.
//
// Script: rules matched in the order they were added; a rule matches when the command's argv
// starts with the rule's argv prefix (an empty prefix matches everything). A rule answers
// `times` commands (kForever = unlimited) and is then used up, so "first X, then Y" is
// `once(prefix, X)` followed by `on(prefix, Y)`. An unscripted command gets an Errc::Internal
// error naming it, and is still recorded.
//
// Thread safety: run() and the accessors may be called from any thread (one mutex).
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "core/exec.h"

namespace flannel::test {

class FakeRunner final : public CommandRunner {
 public:
  static constexpr int kForever = -1;

  // A finished run: exit code and output.
  static CommandOutput exited(int code, std::string out = {}, std::string err = {});

  // Answers matching commands with `output` (`times` times, or forever).
  FakeRunner& on(std::vector<std::string> argv_prefix, CommandOutput output, int times = kForever);
  FakeRunner& once(std::vector<std::string> argv_prefix, CommandOutput output) {
    return on(std::move(argv_prefix), std::move(output), 1);
  }
  // Answers matching commands with an error, as the real runner does when it cannot run one.
  FakeRunner& fail(std::vector<std::string> argv_prefix, Error error, int times = kForever);
  // `program` is not installed: Errc::NotFound "running <program>: executable not found on PATH",
  // the real runner's words.
  FakeRunner& missing(std::string program);

  Result<CommandOutput> run(const Command& cmd) override;

  // Every command run so far, in order.
  std::vector<Command> calls() const;
  // Their argv only.
  std::vector<std::vector<std::string>> argvs() const;
  size_t callCount() const;
  void clearCalls();

 private:
  struct Rule {
    std::vector<std::string> prefix{};
    Result<CommandOutput> answer = CommandOutput{};
    int remaining = kForever;
  };

  mutable std::mutex mu_;
  std::vector<Rule> rules_;
  std::vector<Command> calls_;
};

}  // namespace flannel::test
