#include "providers/dhpay/wire.hpp"

#include "service/core/crypto.hpp"

namespace paymux::providers::dhpay {

std::string request_hash(std::string_view secret, std::string_view amount, std::string_view currency,
                         std::string_view invoice_id, std::string_view merchant_id) {
  std::string data(secret);
  for (auto v : {amount, currency, invoice_id, merchant_id}) data.append(v);  // empty adds nothing
  return crypto::sha256_hex(data, /*upper=*/true);
}

std::string callback_hash(std::string_view secret, const http::FormFields& fields) {
  std::string data(secret);
  for (auto key : kCallbackSignedFields) data.append(http::form_get(fields, key));
  return crypto::sha256_hex(data, /*upper=*/true);
}

StatusMapping map_status(std::string_view code) {
  if (code == "00") return {PaymentStatus::processing};
  if (code == "01") return {PaymentStatus::succeeded};
  if (code == "02") return {PaymentStatus::failed};
  return {std::nullopt, false};
}

}  // namespace paymux::providers::dhpay
