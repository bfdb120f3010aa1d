#include "providers/cashypay/wire.hpp"

#include "service/core/crypto.hpp"

namespace paymux::providers::cashypay {

std::string sign(std::string_view body, std::string_view api_key) {
  std::string data(body);
  data.append(api_key);
  return crypto::md5_hex(data, /*upper=*/true);
}

StatusMapping map_status(std::string_view s) {
  if (s == "PAYING") return {std::nullopt};
  if (s == "SUCCESS") return {PaymentStatus::succeeded};
  if (s == "FAIL") return {PaymentStatus::failed};
  return {std::nullopt, false};
}

}  // namespace paymux::providers::cashypay
