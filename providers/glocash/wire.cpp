#include "providers/glocash/wire.hpp"

#include "service/core/crypto.hpp"

namespace paymux::providers::glocash {
namespace {

template <class... Parts>
std::string sha256_concat(Parts... parts) {
  std::string data;
  data.reserve((std::string_view(parts).size() + ...));
  (data.append(parts), ...);
  return crypto::sha256_hex(data);  // Glocash signatures are lowercase hex
}

}  // namespace

std::string payment_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                              std::string_view invoice, std::string_view cus_email, std::string_view method,
                              std::string_view price, std::string_view currency) {
  return sha256_concat(key, req_times, req_email, invoice, cus_email, method, price, currency);
}

std::string query_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                            std::string_view gcid) {
  return sha256_concat(key, req_times, req_email, gcid);
}

std::string refund_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                             std::string_view gcid, std::string_view refund_price) {
  return sha256_concat(key, req_times, req_email, gcid, refund_price);
}

std::string psn_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                          std::string_view cus_email, std::string_view gcid, std::string_view bil_status,
                          std::string_view method, std::string_view pgw_price, std::string_view pgw_currency) {
  return sha256_concat(key, req_times, req_email, cus_email, gcid, bil_status, method, pgw_price, pgw_currency);
}

StatusMapping map_status(std::string_view s) {
  // Appendix 4, every value named.
  if (s == "unpaid") return {std::nullopt};                        // not paid yet: still pending
  if (s == "pending") return {PaymentStatus::processing};          // paid, settling (not real-time)
  if (s == "paid") return {PaymentStatus::succeeded};
  if (s == "cancelled") return {PaymentStatus::canceled};          // by the payer
  if (s == "failed") return {PaymentStatus::failed};
  if (s == "refunding") return {std::nullopt};                     // a refund in progress: no change yet
  if (s == "refunded") return {PaymentStatus::refunded};           // fully refunded
  if (s == "complaint") return {PaymentStatus::disputed};          // the payer opened a dispute
  if (s == "chargeback") return {PaymentStatus::refunded};         // charged back: the money went back
  return {std::nullopt, false};
}

std::string_view risk_label(std::string_view d) {
  if (d == "ACP") return "accepted";
  if (d == "REV") return "review";
  if (d == "REJ") return "rejected";
  if (d == "BAN") return "banned";
  return {};
}

}  // namespace paymux::providers::glocash
