// DOC: NftSession, one libnftables context: JSON in, JSON out, in-process (no `nft` process).
//
// A session holds libnftables loaded (nft_library.h): the library is unloaded when the last
// session ends, so owners keep sessions only while they use them (NftNamespace::openSession).
// The context opens its netlink socket when it is created, so a session acts in the network
// namespace of the thread that created it, whichever thread later uses it. One call of run() is
// one nft_run_cmd_from_buffer(): libnftables turns a whole input into one netlink batch, so the
// commands of one call (adds, flushes, deletes) are committed atomically or not at all.
//
// Thread safety: none (a libnftables context is not thread-safe). One owner thread.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/json_util.h"
#include "core/result.h"
#include "traffic/nft/nft_library.h"

struct nft_ctx;

namespace flannel::traffic::nft {

class NftSession {
 public:
  // A context in the calling thread's network namespace. Errc::Unavailable if libnftables
  // cannot be loaded, Errc::Internal if it cannot create a context.
  static Result<std::unique_ptr<NftSession>> create();

  NftSession(const NftSession&) = delete;
  NftSession& operator=(const NftSession&) = delete;
  ~NftSession();

  // Runs `commands` ({"nftables": [...]}) and returns what nft printed, parsed (the listing for
  // "list" commands; null when nothing was printed). With `dry_run`, nothing is committed (what
  // `nft --check` does). Errors: Errc::Kernel with nft's own message (parse, evaluation or
  // netlink errors such as "Operation not permitted"); Errc::Internal if the output is not JSON.
  Result<nlohmann::json> run(const Json& commands, bool dry_run = false);

 private:
  NftSession(std::shared_ptr<const NftApi> api, nft_ctx* ctx) : api_(std::move(api)), ctx_(ctx) {}
  std::shared_ptr<const NftApi> api_;
  nft_ctx* ctx_;
};

}  // namespace flannel::traffic::nft
