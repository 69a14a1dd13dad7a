// etcd TLS (client certificates) and username/password authentication against real etcd
// processes started by the test; certificates are made with openssl at test time.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "contract/store/etcd_suite.h"
#include "store/etcd/etcd_kv.h"
#include "support/child_process.h"
#include "support/etcd_cluster.h"
#include "support/free_port.h"
#include "support/poll.h"
#include "support/test_run.h"

namespace flannel::store::etcd {
namespace {

using flannel::test::runSync;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// openssl through the CommandRunner (argv only).
Result<void> openssl(CommandRunner& runner, std::vector<std::string> args) {
  Command cmd;
  cmd.argv = {"openssl"};
  cmd.argv.insert(cmd.argv.end(), args.begin(), args.end());
  cmd.timeout = 30s;
  auto r = runChecked(runner, cmd);
  if (!r) {
    return r.error();
  }
  return {};
}

struct Pki {
  std::string ca, server_cert, server_key, client_cert, client_key, other_ca;
};

Result<Pki> makePki(CommandRunner& runner, const std::filesystem::path& dir) {
  auto p = [&](const char* name) { return (dir / name).string(); };
  auto ext = [&](const char* name, const char* text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                       "-nodes"};
  auto cat = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  for (const char* ca : {"ca", "other-ca"}) {
    auto r = openssl(runner, cat(cat({"req", "-x509"}, ec),
                                 {"-keyout", p(fmt::format("{}.key", ca).c_str()), "-out",
                                  p(fmt::format("{}.pem", ca).c_str()), "-days", "1", "-subj",
                                  fmt::format("/CN=flannel-test-{}", ca)}));
    if (!r) {
      return r.error();
    }
  }
  std::string server_ext =
      ext("server.ext", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
  std::string client_ext = ext("client.ext", "extendedKeyUsage=clientAuth\n");
  for (auto [who, extfile] : {std::pair{"server", server_ext}, std::pair{"client", client_ext}}) {
    std::string key = p(fmt::format("{}.key", who).c_str());
    std::string csr = p(fmt::format("{}.csr", who).c_str());
    std::string pem = p(fmt::format("{}.pem", who).c_str());
    if (auto r = openssl(runner, cat(cat({"req"}, ec), {"-keyout", key, "-out", csr, "-subj",
                                                        fmt::format("/CN=flannel-test-{}", who)}));
        !r) {
      return r.error();
    }
    if (auto r =
            openssl(runner, {"x509", "-req", "-in", csr, "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
                             "-CAcreateserial", "-out", pem, "-days", "1", "-extfile", extfile});
        !r) {
      return r.error();
    }
  }
  return Pki{p("ca.pem"),     p("server.pem"), p("server.key"),
             p("client.pem"), p("client.key"), p("other-ca.pem")};
}

class EtcdTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto run = flannel::test::TestRun::create();
    ASSERT_TRUE(run) << run.error().message;
    run_ = std::move(*run);
    auto pki = makePki(run_->runner(), run_->dir());
    ASSERT_TRUE(pki) << pki.error().message;
    pki_ = *pki;
    auto ports = flannel::test::pickFreeLoopbackPorts(2);
    ASSERT_TRUE(ports);
    url_ = fmt::format("https://127.0.0.1:{}", (*ports)[0]);
    std::string peer = fmt::format("http://127.0.0.1:{}", (*ports)[1]);
    flannel::test::ChildSpec spec;
    spec.argv = {"etcd",
                 "--name=tls",
                 "--data-dir=" + (run_->dir() / "tls.data").string(),
                 "--listen-client-urls=" + url_,
                 "--advertise-client-urls=" + url_,
                 "--listen-peer-urls=" + peer,
                 "--initial-advertise-peer-urls=" + peer,
                 "--initial-cluster=tls=" + peer,
                 "--cert-file=" + pki_.server_cert,
                 "--key-file=" + pki_.server_key,
                 "--trusted-ca-file=" + pki_.ca,
                 "--client-cert-auth"};
    spec.log_path = run_->dir() / "tls-etcd.log";
    spec.run_id = run_->id();
    auto child = flannel::test::ChildProcess::start(spec);
    ASSERT_TRUE(child) << child.error().message;
    etcd_ = std::move(*child);
    // Ready when a correctly configured client can read.
    net::io_context io;
    bool up = flannel::test::pollUntil(
        [&] {
          auto kv = EtcdKv::create(io.get_executor(), goodOptions());
          auto r = kv ? runSync(io, (*kv)->get("/ping"), 3s) : std::nullopt;
          return r && *r;
        },
        20s, 200ms);
    ASSERT_TRUE(up) << "TLS etcd did not come up";
  }
  static void TearDownTestSuite() {
    etcd_.reset();
    run_.reset();
  }
  static EtcdOptions goodOptions() {
    return EtcdOptions{
        .endpoints = {url_},
        .tls = {.ca_file = pki_.ca, .cert_file = pki_.client_cert, .key_file = pki_.client_key},
        .username = "",
        .password = "",
        .request_timeout = 3000ms};
  }
  template <class T>
  T sync(async::Awaitable<T> a) {
    auto r = runSync(io_, std::move(a));
    EXPECT_TRUE(r.has_value()) << "coroutine did not finish in time";
    return r ? std::move(*r) : T(makeError(Errc::Timeout, "test deadline"));
  }
  net::io_context io_;
  static inline std::unique_ptr<flannel::test::TestRun> run_;
  static inline std::unique_ptr<flannel::test::ChildProcess> etcd_;
  static inline Pki pki_;
  static inline std::string url_;
};

TEST_F(EtcdTls, ClientCertificateSignedByTheTrustedCaWorks) {
  ASSERT_TRUE(etcd_) << "etcd did not start";
  auto kv = EtcdKv::create(io_.get_executor(), goodOptions()).value();
  ASSERT_TRUE(sync(kv->put("/tls/k", "v")));
  EXPECT_EQ(sync(kv->get("/tls/k"))->kvs.at(0).value, "v");
}

TEST_F(EtcdTls, WrongCaIsAClearHandshakeError) {
  ASSERT_TRUE(etcd_) << "etcd did not start";
  auto options = goodOptions();
  options.tls.ca_file = pki_.other_ca;
  auto kv = EtcdKv::create(io_.get_executor(), options).value();
  auto r = sync(kv->get("/tls/k"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::Unavailable);
  EXPECT_THAT(r.error().message, HasSubstr("TLS handshake with " + url_));
  EXPECT_THAT(r.error().message, HasSubstr("certificate verify failed"));
}

TEST_F(EtcdTls, MissingClientCertificateIsRefused) {
  ASSERT_TRUE(etcd_) << "etcd did not start";
  auto options = goodOptions();
  options.tls.cert_file.clear();
  options.tls.key_file.clear();
  auto kv = EtcdKv::create(io_.get_executor(), options).value();
  auto r = sync(kv->get("/tls/k"));
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr(url_));
}

TEST_F(EtcdTls, UnreadableOrMismatchedFilesAreNamed) {
  auto options = goodOptions();
  options.tls.cert_file = "/nonexistent/client.pem";
  auto missing = EtcdKv::create(io_.get_executor(), options);
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr("client certificate /nonexistent/client.pem"));
  options = goodOptions();
  options.tls.key_file = pki_.server_key;  // a key that does not match the client certificate
  auto mismatch = EtcdKv::create(io_.get_executor(), options);
  ASSERT_FALSE(mismatch);
  EXPECT_THAT(mismatch.error().message, HasSubstr("client key " + pki_.server_key));
  EXPECT_THAT(mismatch.error().message, HasSubstr("mismatch"));
}

class EtcdAuth : public flannel::test::EtcdSuite {
 protected:
  static void SetUpTestSuite() {
    // Tokens live 2 s, so the refresh path is exercised without a long wait.
    startEtcd({"--auth-token-ttl=2"});
    ASSERT_TRUE(cluster_);
    for (std::vector<std::string> args :
         {std::vector<std::string>{"user", "add", "root", "--new-user-password=rootpw"},
          {"user", "grant-role", "root", "root"},
          {"user", "add", "flannel", "--new-user-password=flannelpw"},
          {"role", "add", "flannel"},
          {"role", "grant-permission", "flannel", "--prefix=true", "readwrite", "/auth/"},
          {"user", "grant-role", "flannel", "flannel"},
          {"auth", "enable"}}) {
      auto r = cluster_->etcdctl(args);
      ASSERT_TRUE(r) << r.error().message;
    }
  }
  EtcdOptions options(std::string user, std::string password) {
    return EtcdOptions{.endpoints = {cluster_->clientEndpoints()},
                       .tls = {},
                       .username = std::move(user),
                       .password = std::move(password),
                       .request_timeout = 3000ms};
  }
};

TEST_F(EtcdAuth, RightPasswordReadsAndWritesAndAnExpiredTokenIsRenewed) {
  ASSERT_TRUE(cluster_);
  auto kv = EtcdKv::create(io_.get_executor(), options("flannel", "flannelpw")).value();
  ASSERT_TRUE(sync(kv->put("/auth/k", "v")));
  // Let the 2 s token expire: the waiting is what is under test, so a plain sleep is right.
  std::this_thread::sleep_for(3s);
  auto r = sync(kv->get("/auth/k"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kvs.at(0).value, "v");
}

TEST_F(EtcdAuth, WrongPasswordIsAClearError) {
  ASSERT_TRUE(cluster_);
  auto kv = EtcdKv::create(io_.get_executor(), options("flannel", "wrong")).value();
  auto r = sync(kv->get("/auth/k"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::InvalidInput);
  EXPECT_THAT(r.error().message, HasSubstr("refused authentication for user \"flannel\""));
  EXPECT_THAT(r.error().message, HasSubstr(cluster_->clientEndpoints()));
}

TEST_F(EtcdAuth, NoPermissionOutsideTheGrantedPrefixIsAClearError) {
  ASSERT_TRUE(cluster_);
  auto kv = EtcdKv::create(io_.get_executor(), options("flannel", "flannelpw")).value();
  auto r = sync(kv->put("/elsewhere/k", "v"));
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("permission denied"));
}

}  // namespace
}  // namespace flannel::store::etcd
