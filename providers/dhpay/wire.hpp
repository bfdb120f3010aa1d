#pragma once
// DHpay - what to say, shared by the web cashier (provider-docs/001) and the Cashier nonce API
// (provider-docs/000): the request and callback hashes (SIGNING.md), the status codes 00/01/02 and
// the callback fields. Nothing here is written twice for the two connectors.
#include "service/core/status.hpp"
#include "service/http/types.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace paymux::providers::dhpay {

// hash = UPPER(SHA256(secret + amount + currency + invoice_id + merchant_id)), empty values skipped.
// The nonce API's `hash` is not publicly documented: it uses this same formula (SIGNING.md), kept in
// this one function so that it can be corrected in one place.
std::string request_hash(std::string_view secret, std::string_view amount, std::string_view currency,
                         std::string_view invoice_id, std::string_view merchant_id);

// The fields a callback/notify hash covers, in ascending key order (every field but hash and
// description); empty values are skipped.
inline constexpr std::string_view kCallbackSignedFields[] = {"amount",   "currency", "failure_reason", "invoice_id",
                                                             "merchant_id", "order_no", "ref_no",        "status",
                                                             "trans_date", "trans_time"};
std::string callback_hash(std::string_view secret, const http::FormFields& fields);

// 00 processing, 01 succeeded, 02 failed; anything else: no change (pending), known=false.
struct StatusMapping {
  std::optional<PaymentStatus> status;
  bool known = true;
};
StatusMapping map_status(std::string_view code);

}  // namespace paymux::providers::dhpay
