#include "service/core/ids.hpp"

#include "service/core/crypto.hpp"

#include <algorithm>
#include <cstdint>

namespace paymux {
namespace {

constexpr char kBase62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

bool is_base62(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// 128 bits as a big number (most significant limb first), written in base 62 (22 digits hold 2^128).
std::string base62(std::uint32_t (&limbs)[4], std::size_t length) {
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

std::string random_base62(std::size_t length) {
  unsigned char bytes[16];
  crypto::random_bytes(bytes, sizeof bytes);
  std::uint32_t limbs[4];
  for (int i = 0; i < 4; ++i)
    limbs[i] = (std::uint32_t(bytes[4 * i]) << 24) | (std::uint32_t(bytes[4 * i + 1]) << 16) |
               (std::uint32_t(bytes[4 * i + 2]) << 8) | std::uint32_t(bytes[4 * i + 3]);
  return base62(limbs, length);
}

}  // namespace

std::string new_id(std::string_view prefix) {
  std::string id(prefix);
  id += random_base62(kIdBodyLength);
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
  id += base62(copy, kIdBodyLength);
  return id;
}

bool is_valid_id(std::string_view id, std::string_view prefix) {
  if (id.size() != prefix.size() + kIdBodyLength || id.substr(0, prefix.size()) != prefix) return false;
  auto body = id.substr(prefix.size());
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
