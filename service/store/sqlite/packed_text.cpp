#include "service/store/sqlite/packed_text.hpp"

#include <zstd.h>

#include <climits>
#include <cstdint>
#include <memory>
#include <stdexcept>

namespace paymux::store::sqlite {
namespace {

// Format 1: a zstd frame (with a checksum) made with kDictionary1 as raw content. Frozen: values
// packed with it are on disk.
constexpr unsigned char kFormat1 = 1;
constexpr std::size_t kHeader = 5;  // the format byte, then the text's length
constexpr std::size_t kMinPackedText = 64;
// A negative level: the fast end, about 2 us for a 1 KB text, for about 10 % more bytes than level 1.
constexpr int kLevel = -1;

// What payment, refund and event objects repeat: their keys in the order the API writes them, and
// common values (no host names: those are each deployment's and each gateway's). zstd finds matches in it as if it preceded each text; nearer the end is cheaper, so
// the most frequent strings come last.
constexpr std::string_view kDictionary1 =
    R"("payment.partially_refunded","payment.refunded","payment.disputed","payment.review",)"
    R"("payment.expired","payment.canceled","payment.failed","refund.failed","refund.succeeded",)"
    R"("payment.processing","payment.succeeded","status":"succeeded","status":"processing",)"
    R"("status":"failed","status":"canceled","outcome":"unknown","error":"timed out",)"
    R"({"code":"declined","message":"","description":"","reason":"","provider_refund_id":"",)"
    R"({"id":"re_","object":"refund","payment_id":"pay_","merchant":"","status":"pending","amount":,)"
    R"("payment_method":{"type":"card"},"payment_method":{"type":"hosted"},"next_action":null,)"
    R"("checkout_url":null,"return_url":"https://","metadata":{"order_id":"},)"
    R"({"id":"evt_","object":"event","type":"payment.requires_action","created_at":"2026-01-01T00:00:00Z",)"
    R"("data":{"object":)"
    R"({"id":"pay_","object":"payment","merchant":"","status":"requires_action","amount":,)"
    R"("currency":"USD","amount_refunded":0,"reference":"","connector":"","provider":"glocash",)"
    R"("provider_payment_id":"","payment_method":{"type":"hosted"},)"
    R"("next_action":{"type":"redirect","url":"https:///gateway/payment/index/token/"},)"
    R"("checkout_url":"https:///checkout/pay_","failure":null,"risk":null,)"
    R"("attempts":[{"connector":"","outcome":"definite","error":null,"latency_ms":,"at":"2026-01-01T00:00:00Z"}],)"
    R"("return_url":null,"metadata":{},"provider_data":{},"created_at":"2026-01-01T00:00:00Z",)"
    R"("updated_at":"2026-01-01T00:00:00Z","expires_at":null})";

// The dictionary, digested once for each direction; both are read-only, shared by all threads.
const ZSTD_CDict* compression_dictionary() {
  static const std::unique_ptr<ZSTD_CDict, decltype(&ZSTD_freeCDict)> d(
      ZSTD_createCDict(kDictionary1.data(), kDictionary1.size(), kLevel), &ZSTD_freeCDict);
  return d.get();
}

const ZSTD_DDict* decompression_dictionary() {
  static const std::unique_ptr<ZSTD_DDict, decltype(&ZSTD_freeDDict)> d(
      ZSTD_createDDict(kDictionary1.data(), kDictionary1.size()), &ZSTD_freeDDict);
  return d.get();
}

// One compression and one decompression context per thread, kept: making one allocates far more
// than packing a 1 KB text takes.
struct Compressor {
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx{ZSTD_createCCtx(), &ZSTD_freeCCtx};
  bool ok = false;
  Compressor() {
    // A checksum of the text in each frame: damage is reported, not unpacked into another text.
    ok = cctx && compression_dictionary() &&
         !ZSTD_isError(ZSTD_CCtx_refCDict(cctx.get(), compression_dictionary())) &&
         !ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1));
  }
};

StoredText as_text(std::string_view text) { return {std::string(text), false}; }

}  // namespace

StoredText pack_text(std::string_view text) {
  if (text.size() < kMinPackedText || text.size() > UINT32_MAX / 2) return as_text(text);
  thread_local Compressor c;
  if (!c.ok) return as_text(text);
  // Worth storing only when smaller than the text: give zstd no more room than that.
  StoredText out;
  out.bytes.resize(text.size());
  const auto n = static_cast<std::uint32_t>(text.size());
  out.bytes[0] = static_cast<char>(kFormat1);
  for (int i = 0; i < 4; ++i) out.bytes[1 + i] = static_cast<char>((n >> (8 * i)) & 0xff);
  const auto size = ZSTD_compress2(c.cctx.get(), out.bytes.data() + kHeader, out.bytes.size() - kHeader,
                                   text.data(), text.size());
  if (ZSTD_isError(size)) return as_text(text);  // no room left: not smaller
  out.bytes.resize(kHeader + size);
  out.packed = true;
  return out;
}

std::string unpack_text(std::string_view packed) {
  if (packed.size() < kHeader || static_cast<unsigned char>(packed[0]) != kFormat1)
    throw std::runtime_error("stored value: not a packed text (unknown format)");
  std::uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= std::uint32_t(static_cast<unsigned char>(packed[1 + i])) << (8 * i);
  // A text is never packed into more than its own length: a larger claim is damage, not a text.
  if (n > UINT32_MAX / 2 || n < packed.size()) throw std::runtime_error("stored value: packed length does not match");
  thread_local std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!dctx || !decompression_dictionary()) throw std::runtime_error("stored value: cannot set up decompression");
  std::string out(n, '\0');
  const auto size = ZSTD_decompress_usingDDict(dctx.get(), out.data(), out.size(), packed.data() + kHeader,
                                               packed.size() - kHeader, decompression_dictionary());
  if (ZSTD_isError(size) || size != n) throw std::runtime_error("stored value: packed data is damaged");
  return out;
}

}  // namespace paymux::store::sqlite
