#pragma once
// Glocash (GC gateway) - what to say: the signing formulas of appendix 1, the status map of
// appendix 4 and the risk decisions of appendix 5 (provider-docs/002, SIGNING.md).
#include "service/core/status.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace paymux::providers::glocash {

// REQ_SIGN = SHA256(KEY + REQ_TIMES + REQ_EMAIL + REQ_INVOICE + CUS_EMAIL + BIL_METHOD + BIL_PRICE + BIL_CURRENCY)
std::string payment_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                              std::string_view invoice, std::string_view cus_email, std::string_view method,
                              std::string_view price, std::string_view currency);
// REQ_SIGN = SHA256(KEY + REQ_TIMES + REQ_EMAIL + TNS_GCID)
std::string query_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                            std::string_view gcid);
// REQ_SIGN = SHA256(KEY + REQ_TIMES + REQ_EMAIL + TNS_GCID + PGW_PRICE)
std::string refund_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                             std::string_view gcid, std::string_view refund_price);
// PSN and browser result POST:
// REQ_SIGN = SHA256(KEY + REQ_TIMES + REQ_EMAIL + CUS_EMAIL + TNS_GCID + BIL_STATUS + BIL_METHOD + PGW_PRICE + PGW_CURRENCY)
std::string psn_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                          std::string_view cus_email, std::string_view gcid, std::string_view bil_status,
                          std::string_view method, std::string_view pgw_price, std::string_view pgw_currency);

// What a BIL_STATUS means for the payment. `status` nullopt: no change (still pending at the
// gateway, or a refund in progress). `known` false: a status the document does not list.
struct StatusMapping {
  std::optional<PaymentStatus> status;
  bool known = true;
};
StatusMapping map_status(std::string_view bil_status);

// FDL_DECISION: ACP, REV, REJ, BAN. Empty when the value is not one of them.
std::string_view risk_label(std::string_view decision);

}  // namespace paymux::providers::glocash
