#include "support/fake_runner.h"

#include <algorithm>

#include <fmt/format.h>

namespace flannel::test {

CommandOutput FakeRunner::exited(int code, std::string out, std::string err) {
  return CommandOutput{
      .exit_code = code, .term_signal = 0, .out = std::move(out), .err = std::move(err)};
}

FakeRunner& FakeRunner::on(std::vector<std::string> argv_prefix, CommandOutput output, int times) {
  std::lock_guard lock(mu_);
  rules_.push_back(Rule{.prefix = std::move(argv_prefix), .answer = output, .remaining = times});
  return *this;
}

FakeRunner& FakeRunner::fail(std::vector<std::string> argv_prefix, Error error, int times) {
  std::lock_guard lock(mu_);
  rules_.push_back(
      Rule{.prefix = std::move(argv_prefix), .answer = std::move(error), .remaining = times});
  return *this;
}

FakeRunner& FakeRunner::missing(std::string program) {
  Error e =
      makeError(Errc::NotFound, fmt::format("running {}: executable not found on PATH", program));
  return fail({std::move(program)}, std::move(e));
}

Result<CommandOutput> FakeRunner::run(const Command& cmd) {
  std::lock_guard lock(mu_);
  calls_.push_back(cmd);
  for (auto& rule : rules_) {
    if (rule.remaining == 0 || rule.prefix.size() > cmd.argv.size() ||
        !std::equal(rule.prefix.begin(), rule.prefix.end(), cmd.argv.begin())) {
      continue;
    }
    if (rule.remaining > 0) {
      --rule.remaining;
    }
    return rule.answer;
  }
  return makeError(Errc::Internal,
                   fmt::format("FakeRunner: no script for {}", describeCommand(cmd.argv)));
}

std::vector<Command> FakeRunner::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

std::vector<std::vector<std::string>> FakeRunner::argvs() const {
  std::lock_guard lock(mu_);
  std::vector<std::vector<std::string>> out;
  out.reserve(calls_.size());
  for (const auto& c : calls_) {
    out.push_back(c.argv);
  }
  return out;
}

size_t FakeRunner::callCount() const {
  std::lock_guard lock(mu_);
  return calls_.size();
}

void FakeRunner::clearCalls() {
  std::lock_guard lock(mu_);
  calls_.clear();
}

}  // namespace flannel::test
