#include "traffic/nft/nft_session.h"

#include <fmt/format.h>

#include "core/strings.h"

namespace flannel::traffic::nft {

namespace {

// nft's error text: several lines (message, input excerpt, caret line); keep the message lines
// and drop the echo of our own (long) JSON input.
std::string errorText(const char* buffer) {
  std::string_view text = buffer == nullptr ? std::string_view() : std::string_view(buffer);
  std::string out;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    auto line = trimSpace(nl == std::string_view::npos ? text : text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty() || line.starts_with('{') || line.find_first_not_of("^~ ") == line.npos) {
      continue;
    }
    if (!out.empty()) {
      out += " / ";
    }
    out += line;
  }
  return out.empty() ? std::string("nft reported an error without a message") : out;
}

}  // namespace

Result<std::unique_ptr<NftSession>> NftSession::create() {
  auto api = NftLibrary::acquire();
  if (!api) {
    return api.error();
  }
  const NftApi& a = **api;
  nft_ctx* ctx = a.ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) {
    return makeError(Errc::Internal, "libnftables: nft_ctx_new failed");
  }
  // JSON output also makes libnftables read JSON input. Stateless: counters print as null, so a
  // listing does not change while packets flow.
  a.output_set_flags(ctx, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_STATELESS);
  if (a.buffer_output(ctx) != 0 || a.buffer_error(ctx) != 0) {
    a.ctx_free(ctx);
    return makeError(Errc::Internal, "libnftables: cannot buffer output");
  }
  return std::unique_ptr<NftSession>(new NftSession(std::move(*api), ctx));
}

NftSession::~NftSession() {
  api_->ctx_free(ctx_);
}

Result<nlohmann::json> NftSession::run(const Json& commands, bool dry_run) {
  const std::string input = commands.dump();
  // Reading a buffer also resets it: start both empty.
  const NftApi& a = *api_;
  (void)a.get_output_buffer(ctx_);
  (void)a.get_error_buffer(ctx_);
  a.set_dry_run(ctx_, dry_run);
  const int rc = a.run_cmd_from_buffer(ctx_, input.c_str());
  a.set_dry_run(ctx_, false);
  const char* out = a.get_output_buffer(ctx_);
  const char* err = a.get_error_buffer(ctx_);
  if (rc != 0) {
    return makeError(Errc::Kernel, fmt::format("libnftables: {}", errorText(err)));
  }
  const std::string_view text = out == nullptr ? std::string_view() : std::string_view(out);
  if (trimSpace(text).empty()) {
    return Result<nlohmann::json>(boost::system::in_place_value, nullptr);
  }
  auto parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return makeError(Errc::Internal, fmt::format("libnftables printed output that is not JSON: {}",
                                                 quoteForMessage(text)));
  }
  // nlohmann::json converts to anything, so name the alternative explicitly.
  return Result<nlohmann::json>(boost::system::in_place_value, std::move(parsed));
}

}  // namespace flannel::traffic::nft
