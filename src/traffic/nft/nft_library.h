// DOC: NftLibrary, libnftables loaded with dlopen() for as long as a session uses it.
//
// libnftables and what it pulls in (libnftnl, libmnl, libgmp, libjansson, libxtables) map about
// 1.3 MB into a process. flanneld needs them only to write rules and, in iptables mode, to list
// chains after the ruleset changed (nft_namespace.h asks the kernel's ruleset generation first,
// without libnftables). So the library is not linked: acquire() loads it, and it is unloaded
// when the last NftApi reference is released; an idle daemon has none of it mapped.
//
// Thread safety: acquire() may be called from any thread.
#pragma once

#include <nftables/libnftables.h>

#include <cstdint>
#include <memory>

#include "core/result.h"

namespace flannel::traffic::nft {

// The libnftables functions NftSession calls (same signatures as <nftables/libnftables.h>).
struct NftApi {
  decltype(&::nft_ctx_new) ctx_new = nullptr;
  decltype(&::nft_ctx_free) ctx_free = nullptr;
  decltype(&::nft_ctx_output_set_flags) output_set_flags = nullptr;
  decltype(&::nft_ctx_buffer_output) buffer_output = nullptr;
  decltype(&::nft_ctx_buffer_error) buffer_error = nullptr;
  decltype(&::nft_ctx_get_output_buffer) get_output_buffer = nullptr;
  decltype(&::nft_ctx_get_error_buffer) get_error_buffer = nullptr;
  decltype(&::nft_ctx_set_dry_run) set_dry_run = nullptr;
  decltype(&::nft_run_cmd_from_buffer) run_cmd_from_buffer = nullptr;
};

class NftLibrary {
 public:
  // The loaded library (loading it if no reference is alive). Errors: Errc::Unavailable when
  // libnftables.so.1 cannot be loaded or lacks a function, with dlerror()'s text.
  static Result<std::shared_ptr<const NftApi>> acquire();

  // Whether a reference is alive (the library is mapped), and how many times it was loaded by
  // this process (for tests and the benchmark).
  static bool loaded();
  static uint64_t loads();
};

}  // namespace flannel::traffic::nft
