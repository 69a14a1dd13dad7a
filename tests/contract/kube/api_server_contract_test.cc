// Pins the wire behaviour of the test API server (tests/support/kube) that the Kubernetes store
// relies on, as the Kubernetes API reference describes it (API concepts: resource versions,
// list chunking with limit/continue, watch with resourceVersion and bookmarks, 410 Gone for
// compacted history; metav1.Status errors; PATCH content types; the status subresource). The
// store's tests trust the server only as far as these cases go.
//
// The client here is deliberately raw (synchronous Beast on a socket) so that this file does
// not depend on the client code under test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "async/asio.h"
#include "support/kube/kube_api_server.h"
#include "support/poll.h"

namespace flannel::test {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

struct RawResponse {
  unsigned status = 0;
  std::string body{};
  std::string content_type{};
  bool chunked = false;
  Json json() const { return Json::parse(body, nullptr, false); }
};

// One synchronous HTTP/1.1 connection (TCP or TLS) with a receive timeout.
template <class Stream>
class Raw {
 public:
  template <class... Args>
  explicit Raw(uint16_t port, Args&&... args) : stream_(io_, std::forward<Args>(args)...) {
    beast::get_lowest_layer(stream_).connect(
        tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  }
  Stream& stream() { return stream_; }

  RawResponse request(bhttp::verb method, const std::string& target, const std::string& body = "",
                      const std::string& content_type = "", const std::string& token = "") {
    send(method, target, body, content_type, token);
    bhttp::response<bhttp::string_body> res;
    boost::system::error_code ec;
    bhttp::read(stream_, buffer_, res, ec);
    EXPECT_FALSE(ec) << ec.message();
    return RawResponse{.status = res.result_int(),
                       .body = res.body(),
                       .content_type = std::string(res[bhttp::field::content_type]),
                       .chunked = res.chunked()};
  }

  // Starts a streaming GET; returns the status line and headers.
  RawResponse openStream(const std::string& target, const std::string& token = "") {
    send(bhttp::verb::get, target, "", "", token);
    parser_.body_limit(boost::none);
    boost::system::error_code ec;
    bhttp::read_header(stream_, buffer_, parser_, ec);
    EXPECT_FALSE(ec) << ec.message();
    return RawResponse{.status = parser_.get().result_int(),
                       .body = "",
                       .content_type = std::string(parser_.get()[bhttp::field::content_type]),
                       .chunked = parser_.get().chunked()};
  }

  // The next line of the stream; nullopt at the end of the body (or on error/timeout, with
  // `*error` set).
  std::optional<std::string> nextLine(std::string* error = nullptr) {
    for (;;) {
      if (auto nl = pending_.find('\n'); nl != std::string::npos) {
        auto line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        return line;
      }
      if (parser_.is_done()) {
        return std::nullopt;
      }
      // A bounded wait (plain TCP streams only): a test must not hang on a missing event.
      if (buffer_.size() == 0) {
        pollfd pfd{
            .fd = beast::get_lowest_layer(stream_).native_handle(), .events = POLLIN, .revents = 0};
        if (::poll(&pfd, 1, 5000) != 1) {
          if (error != nullptr) {
            *error = "timed out waiting for the stream";
          }
          return std::nullopt;
        }
      }
      char chunk[4096];
      parser_.get().body().data = chunk;
      parser_.get().body().size = sizeof chunk;
      boost::system::error_code ec;
      bhttp::read_some(stream_, buffer_, parser_, ec);
      if (ec && ec != bhttp::error::need_buffer) {
        if (error != nullptr) {
          *error = ec.message();
        }
        return std::nullopt;
      }
      pending_.append(chunk, sizeof chunk - parser_.get().body().size);
    }
  }
  bool ended() const { return parser_.is_done(); }

 private:
  void send(bhttp::verb method, const std::string& target, const std::string& body,
            const std::string& content_type, const std::string& token) {
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    if (!content_type.empty()) {
      req.set(bhttp::field::content_type, content_type);
    }
    if (!token.empty()) {
      req.set(bhttp::field::authorization, "Bearer " + token);
    }
    req.body() = body;
    req.prepare_payload();
    bhttp::write(stream_, req);
  }

  net::io_context io_;
  Stream stream_;
  beast::flat_buffer buffer_;
  bhttp::response_parser<bhttp::buffer_body> parser_;
  std::string pending_;
};

using RawTcp = Raw<tcp::socket>;

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    out +=
        std::isalnum(static_cast<unsigned char>(c)) ? std::string(1, c) : fmt::format("%{:02X}", c);
  }
  return out;
}

KubeNodeSpec spec(const std::string& name, std::vector<std::string> cidrs = {},
                  std::map<std::string, std::string> annotations = {}) {
  return KubeNodeSpec{.name = name,
                      .annotations = std::move(annotations),
                      .pod_cidrs = std::move(cidrs),
                      .labels = {},
                      .internal_ip = ""};
}

class KubeApiServerContract : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = KubeApiServer::start();
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::move(*s);
  }
  RawResponse get(const std::string& target) {
    return RawTcp(server_->port()).request(bhttp::verb::get, target);
  }
  RawResponse patch(const std::string& target, const std::string& body,
                    const std::string& ct = "application/strategic-merge-patch+json") {
    return RawTcp(server_->port()).request(bhttp::verb::patch, target, body, ct);
  }
  bool pollUntilWatches(size_t n) {
    return pollUntil([&] { return server_->openWatchCount() >= n; }, std::chrono::seconds(5));
  }
  static void expectStatus(const RawResponse& r, unsigned code, const std::string& reason) {
    EXPECT_EQ(r.status, code);
    EXPECT_EQ(r.content_type, "application/json");
    auto j = r.json();
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_EQ(j["kind"], "Status");
    EXPECT_EQ(j["apiVersion"], "v1");
    EXPECT_EQ(j["status"], "Failure");
    EXPECT_EQ(j["reason"], reason);
    EXPECT_EQ(j["code"], code);
    EXPECT_TRUE(j["message"].is_string());
  }
  std::unique_ptr<KubeApiServer> server_;
};

TEST_F(KubeApiServerContract, ListIsANodeListAtTheCurrentResourceVersion) {
  server_->putNode(spec("b", {"10.5.2.0/24"}, {{"k", "v"}}));
  server_->putNode(spec("a"));
  auto r = get("/api/v1/nodes");
  ASSERT_EQ(r.status, 200u);
  auto j = r.json();
  EXPECT_EQ(j["kind"], "NodeList");
  EXPECT_EQ(j["apiVersion"], "v1");
  EXPECT_EQ(j["metadata"]["resourceVersion"], std::to_string(server_->resourceVersion()));
  EXPECT_FALSE(j["metadata"].contains("continue"));
  ASSERT_EQ(j["items"].size(), 2u);
  // Items in name order (etcd key order); an empty annotation map is omitted, as the API does.
  EXPECT_EQ(j["items"][0]["metadata"]["name"], "a");
  EXPECT_FALSE(j["items"][0]["metadata"].contains("annotations"));
  EXPECT_EQ(j["items"][1]["metadata"]["annotations"]["k"], "v");
  EXPECT_EQ(j["items"][1]["spec"]["podCIDR"], "10.5.2.0/24");
  EXPECT_EQ(j["items"][1]["spec"]["podCIDRs"], Json::array({"10.5.2.0/24"}));
  // Every object's resourceVersion is the version of its last change.
  EXPECT_EQ(j["items"][0]["metadata"]["resourceVersion"],
            std::to_string(server_->resourceVersion()));
}

TEST_F(KubeApiServerContract, LimitAndContinuePageOverOneConsistentSnapshot) {
  for (auto n : {"n1", "n2", "n3", "n4", "n5"}) {
    server_->putNode(spec(n));
  }
  auto first = get("/api/v1/nodes?limit=2").json();
  ASSERT_EQ(first["items"].size(), 2u);
  auto rv = first["metadata"]["resourceVersion"];
  ASSERT_TRUE(first["metadata"]["continue"].is_string());
  EXPECT_EQ(first["metadata"]["remainingItemCount"], 3);
  // A change between pages is not in the later pages: they come from the first page's snapshot.
  server_->deleteNode("n4");
  server_->putNode(spec("n6"));
  std::vector<std::string> names;
  for (const auto& i : first["items"]) {
    names.push_back(i["metadata"]["name"]);
  }
  std::string cont = first["metadata"]["continue"];
  while (!cont.empty()) {
    std::string escaped = escape(cont);
    auto page = get("/api/v1/nodes?limit=2&continue=" + escaped).json();
    EXPECT_EQ(page["metadata"]["resourceVersion"], rv);
    for (const auto& i : page["items"]) {
      names.push_back(i["metadata"]["name"]);
    }
    cont = page["metadata"].value("continue", "");
  }
  EXPECT_EQ(names, (std::vector<std::string>{"n1", "n2", "n3", "n4", "n5"}));
}

TEST_F(KubeApiServerContract, AContinueTokenFromBeforeCompactionIsGone) {
  for (auto n : {"n1", "n2", "n3"}) {
    server_->putNode(spec(n));
  }
  std::string cont = get("/api/v1/nodes?limit=1").json()["metadata"]["continue"];
  server_->compact();
  std::string escaped = escape(cont);
  auto r = get("/api/v1/nodes?limit=1&continue=" + escaped);
  expectStatus(r, 410, "Expired");
  EXPECT_THAT(r.json()["message"].get<std::string>(), HasSubstr("continue parameter is too old"));
  expectStatus(get("/api/v1/nodes?limit=1&continue=garbage"), 400, "BadRequest");
}

TEST_F(KubeApiServerContract, ResourceVersionZeroIsServedWholeIgnoringLimit) {
  for (auto n : {"n1", "n2", "n3"}) {
    server_->putNode(spec(n));
  }
  auto j = get("/api/v1/nodes?limit=1&resourceVersion=0").json();
  EXPECT_EQ(j["items"].size(), 3u);
  EXPECT_FALSE(j["metadata"].contains("continue"));
}

TEST_F(KubeApiServerContract, GetNodeAndPodOr404Status) {
  server_->putNode(spec("n1", {"10.5.1.0/24"}));
  server_->putPod("kube-flannel", "flannel-abc", "n1");
  auto node = get("/api/v1/nodes/n1");
  ASSERT_EQ(node.status, 200u);
  EXPECT_EQ(node.json()["kind"], "Node");
  EXPECT_EQ(node.json()["apiVersion"], "v1");
  EXPECT_EQ(node.json()["metadata"]["name"], "n1");
  auto pod = get("/api/v1/namespaces/kube-flannel/pods/flannel-abc");
  ASSERT_EQ(pod.status, 200u);
  EXPECT_EQ(pod.json()["spec"]["nodeName"], "n1");
  auto missing = get("/api/v1/nodes/nope");
  expectStatus(missing, 404, "NotFound");
  EXPECT_EQ(missing.json()["message"], "nodes \"nope\" not found");
  EXPECT_EQ(missing.json()["details"]["name"], "nope");
  EXPECT_EQ(missing.json()["details"]["kind"], "nodes");
  expectStatus(get("/api/v1/namespaces/x/pods/none"), 404, "NotFound");
  expectStatus(get("/api/v1/services"), 404, "NotFound");
}

TEST_F(KubeApiServerContract, WatchFromAVersionStreamsLaterChangesAsChunkedJsonLines) {
  server_->putNode(spec("n1"));
  auto from = server_->resourceVersion();
  server_->putNode(spec("n2"));
  RawTcp w(server_->port());
  auto head = w.openStream(fmt::format("/api/v1/nodes?watch=true&resourceVersion={}", from));
  EXPECT_EQ(head.status, 200u);
  EXPECT_TRUE(head.chunked);
  EXPECT_EQ(head.content_type, "application/json");
  auto first = Json::parse(w.nextLine().value());
  EXPECT_EQ(first["type"], "ADDED");
  EXPECT_EQ(first["object"]["kind"], "Node");
  EXPECT_EQ(first["object"]["metadata"]["name"], "n2");
  server_->setAnnotations("n2", {{"a", "b"}});
  server_->deleteNode("n1");
  auto modified = Json::parse(w.nextLine().value());
  EXPECT_EQ(modified["type"], "MODIFIED");
  EXPECT_EQ(modified["object"]["metadata"]["annotations"]["a"], "b");
  auto deleted = Json::parse(w.nextLine().value());
  EXPECT_EQ(deleted["type"], "DELETED");
  EXPECT_EQ(deleted["object"]["metadata"]["name"], "n1");
  // Versions increase and the last one is the store's.
  auto v1 = std::stoll(first["object"]["metadata"]["resourceVersion"].get<std::string>());
  auto v2 = std::stoll(modified["object"]["metadata"]["resourceVersion"].get<std::string>());
  auto v3 = std::stoll(deleted["object"]["metadata"]["resourceVersion"].get<std::string>());
  EXPECT_LT(v1, v2);
  EXPECT_LT(v2, v3);
  EXPECT_EQ(v3, server_->resourceVersion());
}

TEST_F(KubeApiServerContract, WatchWithoutAVersionStartsWithSyntheticAdded) {
  server_->putNode(spec("n1"));
  server_->putNode(spec("n2"));
  RawTcp w(server_->port());
  w.openStream("/api/v1/nodes?watch=true");
  EXPECT_EQ(Json::parse(w.nextLine().value())["type"], "ADDED");
  EXPECT_EQ(Json::parse(w.nextLine().value())["object"]["metadata"]["name"], "n2");
}

TEST_F(KubeApiServerContract, WatchFromACompactedVersionIsAnErrorEvent410) {
  server_->putNode(spec("n1"));
  auto old = server_->resourceVersion() - 1;
  server_->putNode(spec("n2"));
  server_->compact();
  RawTcp w(server_->port());
  auto head = w.openStream(fmt::format("/api/v1/nodes?watch=true&resourceVersion={}", old));
  EXPECT_EQ(head.status, 200u);  // the API reports it inside the stream
  auto ev = Json::parse(w.nextLine().value());
  EXPECT_EQ(ev["type"], "ERROR");
  EXPECT_EQ(ev["object"]["kind"], "Status");
  EXPECT_EQ(ev["object"]["code"], 410);
  EXPECT_EQ(ev["object"]["reason"], "Expired");
  EXPECT_THAT(ev["object"]["message"].get<std::string>(), HasSubstr("too old resource version"));
  EXPECT_FALSE(w.nextLine());
  EXPECT_TRUE(w.ended());
  // From the current version it is fine.
  RawTcp ok(server_->port());
  ok.openStream(
      fmt::format("/api/v1/nodes?watch=true&resourceVersion={}", server_->resourceVersion()));
  server_->putNode(spec("n3"));
  EXPECT_EQ(Json::parse(ok.nextLine().value())["type"], "ADDED");
}

TEST_F(KubeApiServerContract, BookmarksOnlyWhenAllowed) {
  server_->putNode(spec("n1"));
  auto rv = server_->resourceVersion();
  RawTcp with(server_->port());
  with.openStream(
      fmt::format("/api/v1/nodes?watch=true&allowWatchBookmarks=true&resourceVersion={}", rv));
  RawTcp without(server_->port());
  without.openStream(fmt::format("/api/v1/nodes?watch=true&resourceVersion={}", rv));
  ASSERT_TRUE(pollUntilWatches(2));
  server_->sendBookmarks();
  auto b = Json::parse(with.nextLine().value());
  EXPECT_EQ(b["type"], "BOOKMARK");
  EXPECT_EQ(b["object"]["kind"], "Node");
  EXPECT_EQ(b["object"]["metadata"]["resourceVersion"], std::to_string(rv));
  server_->putNode(spec("n2"));
  EXPECT_EQ(Json::parse(without.nextLine().value())["type"], "ADDED");  // no bookmark first
}

TEST_F(KubeApiServerContract, PeriodicBookmarks) {
  server_.reset();
  auto s = KubeApiServer::start(
      KubeApiServerOptions{.bookmark_interval = std::chrono::milliseconds(100)});
  ASSERT_TRUE(s);
  server_ = std::move(*s);
  RawTcp w(server_->port());
  w.openStream("/api/v1/nodes?watch=true&allowWatchBookmarks=true&resourceVersion=1000");
  EXPECT_EQ(Json::parse(w.nextLine().value())["type"], "BOOKMARK");
}

TEST_F(KubeApiServerContract, TimeoutSecondsEndsTheStreamCleanly) {
  RawTcp w(server_->port());
  w.openStream("/api/v1/nodes?watch=true&resourceVersion=1000&timeoutSeconds=1");
  std::string error;
  EXPECT_FALSE(w.nextLine(&error));
  EXPECT_EQ(error, "");
  EXPECT_TRUE(w.ended());
}

TEST_F(KubeApiServerContract, CutWatchesEndWithoutTheTerminatingChunk) {
  RawTcp w(server_->port());
  w.openStream("/api/v1/nodes?watch=true&resourceVersion=1000");
  ASSERT_TRUE(pollUntilWatches(1));
  server_->cutWatches(true);
  std::string error;
  EXPECT_FALSE(w.nextLine(&error));
  EXPECT_NE(error, "");  // not a clean end
  EXPECT_FALSE(w.ended());
  EXPECT_EQ(server_->openWatchCount(), 0u);
}

TEST_F(KubeApiServerContract, BearerTokensAre401WhenUnknown) {
  server_.reset();
  auto s = KubeApiServer::start(
      KubeApiServerOptions{.tokens = {{"good", "alice"}}, .require_auth = true});
  ASSERT_TRUE(s);
  server_ = std::move(*s);
  auto none = RawTcp(server_->port()).request(bhttp::verb::get, "/api/v1/nodes");
  expectStatus(none, 401, "Unauthorized");
  EXPECT_EQ(none.json()["message"], "Unauthorized");
  expectStatus(RawTcp(server_->port()).request(bhttp::verb::get, "/api/v1/nodes", "", "", "bad"),
               401, "Unauthorized");
  EXPECT_EQ(
      RawTcp(server_->port()).request(bhttp::verb::get, "/api/v1/nodes", "", "", "good").status,
      200u);
  EXPECT_EQ(server_->requests().back().user, "alice");
}

TEST_F(KubeApiServerContract, ForbiddenCarriesTheRbacMessage) {
  server_->putNode(spec("n1"));
  server_->forbid("patch", "nodes/status");
  server_->forbid("list", "nodes");
  server_->forbid("get", "pods");
  auto p = patch("/api/v1/nodes/n1/status", "{}");
  expectStatus(p, 403, "Forbidden");
  EXPECT_EQ(p.json()["message"],
            "nodes \"n1\" is forbidden: User \"system:anonymous\" cannot patch resource "
            "\"nodes/status\" in API group \"\" at the cluster scope");
  EXPECT_EQ(p.json()["details"]["name"], "n1");
  EXPECT_EQ(get("/api/v1/nodes").json()["message"],
            "nodes is forbidden: User \"system:anonymous\" cannot list resource \"nodes\" in API "
            "group \"\" at the cluster scope");
  EXPECT_EQ(get("/api/v1/namespaces/ns/pods/p").json()["message"],
            "pods \"p\" is forbidden: User \"system:anonymous\" cannot get resource \"pods\" in "
            "API group \"\" in the namespace \"ns\"");
  // The main resource is a different permission.
  EXPECT_EQ(patch("/api/v1/nodes/n1", "{}").status, 200u);
  server_->allow("patch", "nodes/status");
  EXPECT_EQ(patch("/api/v1/nodes/n1/status", "{}").status, 200u);
}

TEST_F(KubeApiServerContract, StrategicMergeOfAnnotationsAndConditionsThroughStatus) {
  server_->putNode(spec("n1", {"10.5.1.0/24"}, {{"keep", "1"}, {"drop", "2"}}));
  auto before = server_->resourceVersion();
  RawTcp w(server_->port());
  w.openStream(fmt::format("/api/v1/nodes?watch=true&resourceVersion={}", before));
  auto r = patch("/api/v1/nodes/n1/status",
                 R"({"metadata":{"annotations":{"new":"3","drop":null}},)"
                 R"("spec":{"podCIDR":"10.9.9.0/24"},)"
                 R"("status":{"conditions":[{"type":"NetworkUnavailable","status":"False"}]}})");
  ASSERT_EQ(r.status, 200u);
  auto node = r.json();
  EXPECT_EQ(node["metadata"]["annotations"], (Json{{"keep", "1"}, {"new", "3"}}));
  EXPECT_EQ(node["spec"]["podCIDR"], "10.5.1.0/24");  // status subresource: spec unchanged
  auto conditions = node["status"]["conditions"];
  ASSERT_EQ(conditions.size(), 2u);  // merged by type: Ready stays
  EXPECT_EQ(conditions[0]["type"], "Ready");
  EXPECT_EQ(conditions[1]["type"], "NetworkUnavailable");
  EXPECT_EQ(node["metadata"]["resourceVersion"], std::to_string(before + 1));
  auto ev = Json::parse(w.nextLine().value());
  EXPECT_EQ(ev["type"], "MODIFIED");
  EXPECT_EQ(ev["object"]["metadata"]["annotations"]["new"], "3");
  // The same condition again updates it in place.
  patch(
      "/api/v1/nodes/n1/status",
      R"({"status":{"conditions":[{"type":"NetworkUnavailable","status":"False","reason":"X"}]}})");
  auto again = Json::parse(server_->conditionsJson("n1").value());
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[1]["reason"], "X");
  // Recorded for assertions, byte for byte.
  auto patches = server_->patches();
  ASSERT_EQ(patches.size(), 2u);
  EXPECT_EQ(patches[0].path, "/api/v1/nodes/n1/status");
  EXPECT_EQ(patches[0].content_type, "application/strategic-merge-patch+json");
  EXPECT_THAT(patches[0].body, HasSubstr(R"("drop":null)"));
}

TEST_F(KubeApiServerContract, DeletingTheLastAnnotationOmitsTheMap) {
  server_->putNode(spec("n1", {}, {{"only", "1"}}));
  auto r = patch("/api/v1/nodes/n1/status", R"({"metadata":{"annotations":{"only":null}}})");
  EXPECT_FALSE(r.json()["metadata"].contains("annotations"));
}

TEST_F(KubeApiServerContract, ANoOpPatchKeepsTheVersion) {
  server_->putNode(spec("n1", {}, {{"a", "1"}}));
  auto rv = server_->resourceVersion();
  EXPECT_EQ(patch("/api/v1/nodes/n1/status", R"({"metadata":{"annotations":{"a":"1"}}})").status,
            200u);
  EXPECT_EQ(server_->resourceVersion(), rv);
}

TEST_F(KubeApiServerContract, MergePatchReplacesListsAndMainResourceKeepsStatus) {
  server_->putNode(spec("n1", {"10.5.1.0/24"}));
  auto r = patch("/api/v1/nodes/n1/status",
                 R"({"status":{"conditions":[{"type":"NetworkUnavailable","status":"False"}]}})",
                 "application/merge-patch+json");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.json()["status"]["conditions"].size(), 1u);
  auto main =
      patch("/api/v1/nodes/n1", R"({"spec":{"podCIDR":"10.5.7.0/24"},"status":{"conditions":[]}})",
            "application/merge-patch+json");
  EXPECT_EQ(main.json()["spec"]["podCIDR"], "10.5.7.0/24");
  EXPECT_EQ(main.json()["status"]["conditions"].size(), 1u);
}

TEST_F(KubeApiServerContract, PatchErrors) {
  server_->putNode(spec("n1"));
  auto json_patch = patch("/api/v1/nodes/n1/status", "[]", "application/json-patch+json");
  expectStatus(json_patch, 415, "UnsupportedMediaType");
  expectStatus(patch("/api/v1/nodes/n1/status", "{}", "application/json"), 415,
               "UnsupportedMediaType");
  expectStatus(patch("/api/v1/nodes/none/status", "{}"), 404, "NotFound");
  expectStatus(patch("/api/v1/nodes/n1/status", "not json"), 400, "BadRequest");
  auto conflict = patch("/api/v1/nodes/n1/status",
                        R"({"metadata":{"resourceVersion":"1","annotations":{"a":"b"}}})");
  expectStatus(conflict, 409, "Conflict");
  EXPECT_THAT(conflict.json()["message"].get<std::string>(),
              HasSubstr("the object has been modified"));
  auto rv = std::to_string(server_->resourceVersion());
  EXPECT_EQ(patch("/api/v1/nodes/n1/status",
                  R"({"metadata":{"resourceVersion":")" + rv + R"(","annotations":{"a":"b"}}})")
                .status,
            200u);
  expectStatus(RawTcp(server_->port()).request(bhttp::verb::delete_, "/api/v1/nodes/n1"), 405,
               "MethodNotAllowed");
}

TEST_F(KubeApiServerContract, InjectedFailuresAreStatusObjects) {
  server_->putNode(spec("n1"));
  server_->failNext("PATCH", "/api/v1/nodes/", 500, 2);
  expectStatus(patch("/api/v1/nodes/n1/status", "{}"), 500, "InternalError");
  EXPECT_EQ(get("/api/v1/nodes/n1").status, 200u);  // other methods are unaffected
  expectStatus(patch("/api/v1/nodes/n1/status", "{}"), 500, "InternalError");
  EXPECT_EQ(patch("/api/v1/nodes/n1/status", "{}").status, 200u);
}

TEST_F(KubeApiServerContract, ServesFiveThousandNodesQuickly) {
  std::vector<KubeNodeSpec> specs;
  for (int i = 0; i < 5000; ++i) {
    specs.push_back(spec(
        fmt::format("node-{:05}", i), {fmt::format("10.{}.{}.0/24", 100 + i / 256, i % 256)},
        {{"flannel.alpha.coreos.com/kube-subnet-manager", "true"},
         {"flannel.alpha.coreos.com/backend-type", "vxlan"},
         {"flannel.alpha.coreos.com/backend-data", R"({"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"})"},
         {"flannel.alpha.coreos.com/public-ip", "192.168.1.1"}}));
  }
  auto start = std::chrono::steady_clock::now();
  server_->putNodes(std::move(specs));
  auto full = get("/api/v1/nodes");
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(full.status, 200u);
  EXPECT_EQ(full.json()["items"].size(), 5000u);
  EXPECT_LT(elapsed, std::chrono::seconds(5));
  size_t total = 0;
  std::string cont;
  RawTcp conn(server_->port());  // keep-alive across pages
  do {
    std::string escaped = escape(cont);
    auto page = conn.request(bhttp::verb::get, "/api/v1/nodes?limit=500" +
                                                   (cont.empty() ? "" : "&continue=" + escaped))
                    .json();
    total += page["items"].size();
    cont = page["metadata"].value("continue", "");
  } while (!cont.empty());
  EXPECT_EQ(total, 5000u);
}

TEST_F(KubeApiServerContract, TlsWithClientCertificates) {
  auto dir =
      std::filesystem::temp_directory_path() / fmt::format("kube-api-contract-{}", ::getpid());
  std::filesystem::create_directories(dir);
  auto pki = makeTestPki(dir.string());
  ASSERT_TRUE(pki) << pki.error().message;
  server_.reset();
  auto s = KubeApiServer::start(KubeApiServerOptions{.tls = true,
                                                     .cert_file = pki->server_cert,
                                                     .key_file = pki->server_key,
                                                     .client_ca_file = pki->ca_pem,
                                                     .require_auth = true});
  ASSERT_TRUE(s) << s.error().message;
  server_ = std::move(*s);
  EXPECT_EQ(server_->url(), fmt::format("https://127.0.0.1:{}", server_->port()));
  auto make_ctx = [&](bool with_cert) {
    net::ssl::context ctx(net::ssl::context::tls_client);
    ctx.load_verify_file(pki->ca_pem);
    ctx.set_verify_mode(net::ssl::verify_peer);
    if (with_cert) {
      ctx.use_certificate_chain_file(pki->client_cert);
      ctx.use_private_key_file(pki->client_key, net::ssl::context::pem);
    }
    return ctx;
  };
  {
    auto ctx = make_ctx(true);
    Raw<net::ssl::stream<tcp::socket>> tls(server_->port(), ctx);
    tls.stream().handshake(net::ssl::stream_base::client);
    EXPECT_EQ(tls.request(bhttp::verb::get, "/api/v1/nodes").status, 200u);
    EXPECT_EQ(server_->requests().back().user, "flannel-client");
  }
  {
    auto ctx = make_ctx(false);
    Raw<net::ssl::stream<tcp::socket>> anon(server_->port(), ctx);
    anon.stream().handshake(net::ssl::stream_base::client);
    EXPECT_EQ(anon.request(bhttp::verb::get, "/api/v1/nodes").status, 401u);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace flannel::test
