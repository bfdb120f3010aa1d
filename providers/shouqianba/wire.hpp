#pragma once
// Shouqianba upay v2 - what to say (provider-docs/003, SIGNING.md): the MD5 transport signature,
// amounts in fen, the answer envelope, and the maps of appendix 2 (business result codes) and
// appendix 3 (order statuses).
#include "service/core/status.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace paymux::providers::shouqianba {

// sign = MD5(body bytes + key), lower-case hex (section 2.2 of the document; SIGNING.md).
std::string sign(std::string_view body, std::string_view key);
// The Authorization header value: "<sn> <sign>".
std::string authorization(std::string_view sn, std::string_view body, std::string_view key);

// Amounts are integers of fen as strings, at most 10 digits; nullopt when the amount does not fit.
std::optional<std::string> fen(std::int64_t minor_units);

// The common answer (section 3.1): the communication level (result_code 200/400/500 with
// error_code) and the business level (biz_response.result_code, error_code, data).
struct Answer {
  enum class Level { ok, client_error, server_error, malformed };
  Level level = Level::malformed;
  std::string result_code;  // the communication result_code as sent
  std::string error_code;   // communication error (400/500)
  std::string error_message;
  std::string biz_result_code;
  std::string biz_error_code;
  std::string biz_error_message;
  boost::json::object data;  // biz_response.data, or the biz_response members themselves
  std::string data_field(std::string_view key) const;
};
Answer read_answer(std::string_view body);

// Appendix 3: what an order_status says about the payment. nullopt status: not final (pending).
// review: the gateway cannot tell the payer's side (PAY_ERROR, CANCEL_ERROR): a person must look.
// Orders that were paid and then (partly) refunded are paid as far as the payment is concerned:
// paymux keeps the refunds as its own refund objects.
struct OrderMapping {
  std::optional<PaymentStatus> status;
  bool review = false;
  bool known = true;
};
OrderMapping map_order_status(std::string_view order_status);

// Appendix 2, the answer of /upay/v2/pay (section 2.4): PAY_SUCCESS paid; PAY_FAIL failed and the
// money returned; FAIL failed without any money moving; PAY_FAIL_ERROR failed with the payer's side
// uncertain (review); anything else is in progress (poll).
enum class PayOutcome { succeeded, failed, review, in_progress };
PayOutcome map_pay_result(std::string_view biz_result_code);

// Appendix 2 for /upay/v2/cancel (section 2.4, poll): CANCEL_SUCCESS and CANCEL_ABORT_SUCCESS
// canceled; FAIL with UPAY_ORDER_NOT_EXISTS: there was no order, so the payment failed; CANCEL_ERROR
// and CANCEL_ABORT_ERROR: uncertain (review); FAIL with any other code: the gateway refused.
enum class CancelOutcome { canceled, no_order, review, refused };
CancelOutcome map_cancel_result(std::string_view biz_result_code, std::string_view biz_error_code);

// Appendix 2 for /upay/v2/refund: REFUND_SUCCESS done; REFUND_ERROR unknown; FAIL refused.
enum class RefundOutcome { succeeded, unknown, failed };
RefundOutcome map_refund_result(std::string_view biz_result_code);

// Appendix 5 spells the code UPAY_ORDER_NOT_EXIST; section 2.4 UPAY_ORDER_NOT_EXISTS: both mean it.
bool is_order_not_exists(std::string_view error_code);

// The async notification (SIGNING.md): SHA256withRSA (PKCS#1 v1.5) over the raw body, base64, in
// `Authorization: <terminal_sn> <signature>` or the signature alone. public_key_pem: Shouqianba's
// RSA public key (PEM "BEGIN PUBLIC KEY", or the bare base64 of it).
enum class NotifyCheck { valid, bad_signature, bad_key };
NotifyCheck verify_notification(std::string_view body, std::string_view authorization, std::string_view public_key_pem);
// True when the PEM text holds an RSA public key that verify_notification can use.
bool is_usable_public_key(std::string_view public_key_pem);

}  // namespace paymux::providers::shouqianba
