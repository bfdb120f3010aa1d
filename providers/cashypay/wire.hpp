#pragma once
// CashyPay pay desk - what to say (provider-docs/004, SIGNING.md): the MD5 body signature, the
// order status map, amounts as exact decimals.
#include "service/core/status.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace paymux::providers::cashypay {

// Sign = MD5(raw JSON body bytes + api key), sent upper-case; verified case-insensitively.
std::string sign(std::string_view body, std::string_view api_key);

// orderStatus: PAYING (pending), SUCCESS, FAIL; any other value is pending and logged (known=false).
struct StatusMapping {
  std::optional<PaymentStatus> status;
  bool known = true;
};
StatusMapping map_status(std::string_view order_status);

}  // namespace paymux::providers::cashypay
