#include "service/core/ids.hpp"

#include "service/core/clock.hpp"
#include "service/core/crypto.hpp"

#include <algorithm>
#include <cstdint>

namespace paymux {
namespace {

constexpr char kBase62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

bool is_base62(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// A big number (32-bit limbs, most significant first; consumed) written in base 62, `length` digits.
// The digits' ASCII order is their value's, so fixed-width numbers sort as their text.
template <std::size_t N>
std::string base62(std::uint32_t (&limbs)[N], std::size_t length) {
  std::string out(length, '0');
  for (std::size_t pos = length; pos-- > 0;) {
    std::uint64_t rem = 0;
    for (auto& limb : limbs) {
      std::uint64_t cur = (rem << 32) | limb;
      limb = static_cast<std::uint32_t>(cur / 62);
      rem = cur % 62;
    }
    out[pos] = kBase62[rem];
  }
  return out;
}

}  // namespace

// The creation time in milliseconds, then 128 random bits: 29 base62 digits hold them until about
// the year 2850. Ids made one after another sort one after another, so each new row of an
// index on ids lands at its end, on a page the last commits wrote already, instead of a random page
// of the whole index that must be read and written again.
std::string new_id(std::string_view prefix) {
  unsigned char bytes[16];
  crypto::random_bytes(bytes, sizeof bytes);
  const auto ms = static_cast<std::uint64_t>(std::max<std::int64_t>(now_ms(), 0));
  std::uint32_t limbs[6] = {static_cast<std::uint32_t>(ms >> 32), static_cast<std::uint32_t>(ms)};
  for (int i = 0; i < 4; ++i)
    limbs[2 + i] = (std::uint32_t(bytes[4 * i]) << 24) | (std::uint32_t(bytes[4 * i + 1]) << 16) |
                   (std::uint32_t(bytes[4 * i + 2]) << 8) | std::uint32_t(bytes[4 * i + 3]);
  std::string id(prefix);
  id += base62(limbs, kIdBodyLength);
  return id;
}

// Request ids only need to be unique, not unguessable: a per-thread counter from a random start
// (one RAND_bytes call per thread instead of one per request).
std::string new_request_id() {
  thread_local std::uint32_t limbs[4] = {0, 0, 0, 0};
  thread_local bool seeded = false;
  if (!seeded) {
    crypto::random_bytes(limbs, sizeof limbs);
    seeded = true;
  }
  for (int i = 3; i >= 0 && ++limbs[i] == 0; --i) {
  }
  std::uint32_t copy[4] = {limbs[0], limbs[1], limbs[2], limbs[3]};
  std::string id("req_");
  id += base62(copy, kRequestIdBodyLength);
  return id;
}

bool is_valid_id(std::string_view id, std::string_view prefix) {
  if (id.substr(0, prefix.size()) != prefix) return false;
  auto body = id.substr(prefix.size());
  if (body.size() != kIdBodyLength && body.size() != kRandomIdBodyLength) return false;
  return std::all_of(body.begin(), body.end(), is_base62);
}

std::string order_no_for(std::string_view payment_id) {
  return std::string(payment_id.substr(std::min(payment_id.size(), kPaymentPrefix.size())));
}

std::optional<std::string> payment_id_from_order_no(std::string_view order_no) {
  std::string id(kPaymentPrefix);
  id += order_no;
  if (!is_valid_id(id, kPaymentPrefix)) return std::nullopt;
  return id;
}

std::string refund_no_for(std::string_view refund_id) {
  return "R" + std::string(refund_id.substr(std::min(refund_id.size(), kRefundPrefix.size())));
}

}  // namespace paymux
