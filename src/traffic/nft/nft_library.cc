#include "traffic/nft/nft_library.h"

#include <dlfcn.h>
#include <malloc.h>

#include <fmt/format.h>

#include <mutex>

namespace flannel::traffic::nft {

namespace {

constexpr const char* kSoname = "libnftables.so.1";

std::mutex mutex;
std::weak_ptr<const NftApi> current;
uint64_t load_count = 0;

struct Loaded {
  NftApi api{};
  void* handle = nullptr;
};

template <class Fn>
bool bind(void* handle, const char* name, Fn& slot, std::string& missing) {
  slot = reinterpret_cast<Fn>(::dlsym(handle, name));
  if (slot == nullptr && missing.empty()) {
    missing = name;
  }
  return slot != nullptr;
}

}  // namespace

Result<std::shared_ptr<const NftApi>> NftLibrary::acquire() {
  std::lock_guard lock(mutex);
  if (auto api = current.lock()) {
    return api;
  }
  // RTLD_LOCAL: nothing of libnftables or its dependencies enters the global symbol scope, so
  // dlclose() can unload all of them.
  void* handle = ::dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return makeError(Errc::Unavailable,
                     fmt::format("cannot load {} (Debian package libnftables1): {}", kSoname,
                                 why != nullptr ? why : "unknown error"));
  }
  auto loaded = std::make_unique<Loaded>();
  loaded->handle = handle;
  NftApi& a = loaded->api;
  std::string missing;
  bind(handle, "nft_ctx_new", a.ctx_new, missing);
  bind(handle, "nft_ctx_free", a.ctx_free, missing);
  bind(handle, "nft_ctx_output_set_flags", a.output_set_flags, missing);
  bind(handle, "nft_ctx_buffer_output", a.buffer_output, missing);
  bind(handle, "nft_ctx_buffer_error", a.buffer_error, missing);
  bind(handle, "nft_ctx_get_output_buffer", a.get_output_buffer, missing);
  bind(handle, "nft_ctx_get_error_buffer", a.get_error_buffer, missing);
  bind(handle, "nft_ctx_set_dry_run", a.set_dry_run, missing);
  bind(handle, "nft_run_cmd_from_buffer", a.run_cmd_from_buffer, missing);
  if (!missing.empty()) {
    ::dlclose(handle);
    return makeError(Errc::Unavailable, fmt::format("{} has no function {}", kSoname, missing));
  }
  ++load_count;
  // The aliasing constructor hands out the NftApi; the deleter of the owning Loaded unloads.
  std::shared_ptr<Loaded> owner(loaded.release(), [](Loaded* l) {
    ::dlclose(l->handle);
    delete l;
    // What the loader and the library allocated is free now, scattered over the heap: give
    // the whole free pages back rather than keep them resident until the next load.
    ::malloc_trim(0);
  });
  std::shared_ptr<const NftApi> api(owner, &owner->api);
  current = api;
  return api;
}

bool NftLibrary::loaded() {
  std::lock_guard lock(mutex);
  return !current.expired();
}

uint64_t NftLibrary::loads() {
  std::lock_guard lock(mutex);
  return load_count;
}

}  // namespace flannel::traffic::nft
