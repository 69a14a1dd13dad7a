// EtcdSuite: a GoogleTest base for suites that need one real etcd on loopback (started once per
// suite, torn down after it) and a way to run store coroutines synchronously.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contract/store/run_sync.h"
#include "support/etcd_cluster.h"
#include "support/test_run.h"

namespace flannel::test {

class EtcdSuite : public ::testing::Test {
 protected:
  // Call from SetUpTestSuite(); `extra_args` go to etcd (e.g. "--auth-token-ttl=2").
  static void startEtcd(std::vector<std::string> extra_args = {}) {
    auto run = TestRun::create();
    ASSERT_TRUE(run) << run.error().message;
    run_ = std::move(*run);
    auto cluster = EtcdCluster::startOnLoopback(*run_, 1, std::move(extra_args));
    ASSERT_TRUE(cluster) << cluster.error().message;
    cluster_ = std::move(*cluster);
  }
  static void TearDownTestSuite() {
    cluster_.reset();
    run_.reset();
  }
  void SetUp() override { ASSERT_TRUE(cluster_) << "etcd did not start"; }

  static std::string endpoint() { return cluster_->clientEndpoints(); }
  // The current test's name, for per-test key prefixes.
  static std::string testName() {
    return ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  // Runs `a` on io_ (bounded by runSync's deadline); a timeout becomes an Errc::Timeout result.
  template <class T>
  T sync(async::Awaitable<T> a) {
    auto r = runSync(io_, std::move(a));
    EXPECT_TRUE(r.has_value()) << "coroutine did not finish in time";
    return r ? std::move(*r) : T(makeError(Errc::Timeout, "test deadline"));
  }

  net::io_context io_;
  static inline std::unique_ptr<TestRun> run_;
  static inline std::unique_ptr<EtcdCluster> cluster_;
};

}  // namespace flannel::test
