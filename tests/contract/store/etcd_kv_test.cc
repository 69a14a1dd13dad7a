// EtcdKv against a real etcd (Debian's etcd-server) started by the test on loopback.
#include "store/etcd/etcd_kv.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include "contract/store/etcd_suite.h"
#include "support/etcd_cluster.h"
#include "support/test_run.h"

namespace flannel::store::etcd {
namespace {

using flannel::test::runSync;
using namespace std::chrono_literals;

class EtcdKvTest : public flannel::test::EtcdSuite {
 protected:
  static void SetUpTestSuite() { startEtcd(); }
  void SetUp() override {
    EtcdSuite::SetUp();
    auto kv = EtcdKv::create(io_.get_executor(), EtcdOptions{.endpoints = {endpoint()}});
    ASSERT_TRUE(kv) << kv.error().message;
    kv_ = std::move(*kv);
    prefix_ = "/kvtest/" + testName() + "/";
  }

  std::unique_ptr<EtcdKv> kv_;
  std::string prefix_;
};

TEST_F(EtcdKvTest, PutGetRangeDeleteWithBinarySafeKeys) {
  std::string k1 = prefix_ + "a";
  std::string k2 = prefix_ + "b\xff\x01";
  ASSERT_TRUE(sync(kv_->put(k1, "one")));
  ASSERT_TRUE(sync(kv_->put(k2, std::string("two\0bytes", 9))));
  auto one = sync(kv_->get(k1));
  ASSERT_TRUE(one) << one.error().message;
  ASSERT_EQ(one->kvs.size(), 1u);
  EXPECT_EQ(one->kvs[0].value, "one");
  EXPECT_EQ(one->kvs[0].version, 1);
  EXPECT_GT(one->revision, 0);
  auto all = sync(kv_->range(prefix_, prefixRangeEnd(prefix_)));
  ASSERT_TRUE(all);
  ASSERT_EQ(all->kvs.size(), 2u);
  EXPECT_EQ(all->kvs[1].key, k2);
  EXPECT_EQ(all->kvs[1].value, std::string("two\0bytes", 9));
  EXPECT_EQ(sync(kv_->deleteKey(k1)).value(), 1);
  EXPECT_EQ(sync(kv_->deleteKey(k1)).value(), 0);
  EXPECT_TRUE(sync(kv_->get(k1))->kvs.empty());
}

TEST_F(EtcdKvTest, CreateIfAbsentIsCreateOnly) {
  std::string k = prefix_ + "subnet";
  auto first = sync(kv_->createIfAbsent(k, "mine", 0));
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(*first);
  KeyValue existing;
  auto second = sync(kv_->createIfAbsent(k, "theirs", 0, &existing));
  ASSERT_TRUE(second);
  EXPECT_FALSE(*second);
  EXPECT_EQ(existing.value, "mine");
  EXPECT_EQ(sync(kv_->get(k))->kvs.at(0).value, "mine");
}

TEST_F(EtcdKvTest, LeasesGrantKeepAliveRevoke) {
  auto grant = sync(kv_->grantLease(std::chrono::seconds(600)));
  ASSERT_TRUE(grant) << grant.error().message;
  EXPECT_EQ(grant->ttl, 600);
  std::string k = prefix_ + "leased";
  ASSERT_TRUE(sync(kv_->put(k, "v", grant->id)));
  EXPECT_EQ(sync(kv_->get(k))->kvs.at(0).lease, grant->id);
  auto ttl = sync(kv_->leaseTimeToLive(grant->id));
  ASSERT_TRUE(ttl) << ttl.error().message;
  EXPECT_GT(*ttl, 590);
  auto kept = sync(kv_->keepAliveOnce(grant->id));
  ASSERT_TRUE(kept) << kept.error().message;
  EXPECT_EQ(*kept, 600);
  ASSERT_TRUE(sync(kv_->revokeLease(grant->id)));
  EXPECT_TRUE(sync(kv_->get(k))->kvs.empty()) << "revoking the lease deletes its keys";
  EXPECT_EQ(sync(kv_->leaseTimeToLive(grant->id)).value(), -1);
  EXPECT_TRUE(sync(kv_->revokeLease(grant->id))) << "revoking twice is fine";
  auto gone = sync(kv_->keepAliveOnce(grant->id));
  EXPECT_TRUE(!gone || *gone == 0);
}

TEST_F(EtcdKvTest, WatchDeliversPutsAndDeletesFromARevision) {
  std::string k = prefix_ + "w";
  auto rev = sync(kv_->put(k, "before"));
  ASSERT_TRUE(rev);
  auto w = sync(kv_->watch(prefix_, prefixRangeEnd(prefix_), *rev + 1));
  ASSERT_TRUE(w) << w.error().message;
  ASSERT_TRUE(sync(kv_->put(k, "after")));
  ASSERT_TRUE(sync(kv_->deleteKey(k)));
  std::vector<WatchEvent> seen;
  for (int i = 0; i < 10 && seen.size() < 2; ++i) {
    auto b = sync((*w)->next(5s));
    ASSERT_TRUE(b) << b.error().message;
    seen.insert(seen.end(), b->events.begin(), b->events.end());
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].type, EventType::Put);
  EXPECT_EQ(seen[0].kv.value, "after");
  EXPECT_EQ(seen[1].type, EventType::Delete);
  EXPECT_EQ(seen[1].kv.key, k);
}

TEST_F(EtcdKvTest, WatchFromACompactedRevisionReportsCompaction) {
  std::string k = prefix_ + "c";
  auto r1 = sync(kv_->put(k, "1"));
  auto r2 = sync(kv_->put(k, "2"));
  ASSERT_TRUE(r1 && r2);
  ASSERT_TRUE(sync(kv_->compact(*r2)));
  auto w = sync(kv_->watch(prefix_, prefixRangeEnd(prefix_), *r1));
  ASSERT_TRUE(w) << w.error().message;
  bool compacted = false;
  for (int i = 0; i < 5 && !compacted; ++i) {
    auto b = sync((*w)->next(5s));
    ASSERT_TRUE(b) << b.error().message;
    compacted = b->compact_revision > 0;
  }
  EXPECT_TRUE(compacted);
}

TEST_F(EtcdKvTest, UnreachableEndpointErrorNamesIt) {
  auto kv = EtcdKv::create(io_.get_executor(), EtcdOptions{.endpoints = {"http://127.0.0.1:1"},
                                                           .request_timeout = 2000ms});
  ASSERT_TRUE(kv);
  auto r = sync((*kv)->get("/x"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::Unavailable);
  EXPECT_NE(r.error().message.find("http://127.0.0.1:1"), std::string::npos) << r.error().message;
}

TEST_F(EtcdKvTest, FailsOverToTheNextEndpoint) {
  auto kv = EtcdKv::create(
      io_.get_executor(),
      EtcdOptions{.endpoints = {"http://127.0.0.1:1", endpoint()}, .request_timeout = 2000ms});
  ASSERT_TRUE(kv);
  auto r = sync((*kv)->put(prefix_ + "f", "v"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*kv)->currentEndpoint(), endpoint());
}

TEST(EtcdKvOptions, BadEndpointsAreRejectedUpFront) {
  net::io_context io;
  auto none = EtcdKv::create(io.get_executor(), EtcdOptions{});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("-etcd-endpoints"), std::string::npos);
  auto bad = EtcdKv::create(io.get_executor(), EtcdOptions{.endpoints = {"127.0.0.1:2379"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("missing scheme"), std::string::npos) << bad.error().message;
  auto tls =
      EtcdKv::create(io.get_executor(), EtcdOptions{.endpoints = {"https://127.0.0.1:2379"},
                                                    .tls = {.ca_file = "/nonexistent/ca.pem"}});
  ASSERT_FALSE(tls);
  EXPECT_NE(tls.error().message.find("/nonexistent/ca.pem"), std::string::npos);
}

}  // namespace
}  // namespace flannel::store::etcd
