#pragma once
// Object ids: a prefix ("pay_", "re_", "evt_") and 29 base62 characters: the creation time in
// milliseconds, then 128 random bits (ids are in creation order; see new_id). Ids made before that
// are 22 characters of 128 random bits, and stay valid.
// The order number a gateway receives is the payment id without its prefix: letters and digits
// only, 29 characters (22 for an older payment), which fits every gateway's rules (DHpay:
// alphanumeric, at most 30; CashyPay: at most 32; Glocash and Shouqianba: at most 64; a refund's
// number, "R" and its id's 29, fits Shouqianba's 32) and never carries the merchant's own reference.
#include <optional>
#include <string>
#include <string_view>

namespace paymux {

inline constexpr std::string_view kPaymentPrefix = "pay_";
inline constexpr std::string_view kRefundPrefix = "re_";
inline constexpr std::string_view kEventPrefix = "evt_";
inline constexpr std::size_t kIdBodyLength = 29;
inline constexpr std::size_t kRandomIdBodyLength = 22;   // ids made before they carried their time
inline constexpr std::size_t kRequestIdBodyLength = 22;  // X-Request-Id: a counter from a random start

std::string new_id(std::string_view prefix);
std::string new_request_id();

// True when id is prefix + 29 (or, made before, 22) base62 characters.
bool is_valid_id(std::string_view id, std::string_view prefix);

// The gateway order number for a payment ("pay_X" -> "X"), and back.
std::string order_no_for(std::string_view payment_id);
std::optional<std::string> payment_id_from_order_no(std::string_view order_no);

// The gateway's refund request number for a refund ("re_X" -> "RX"): stable across retries.
std::string refund_no_for(std::string_view refund_id);

}  // namespace paymux
