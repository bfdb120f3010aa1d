#pragma once
// The Glocash simulator (document 002, 经典模式 "classic mode"), written from the document, not from
// paymux's client. Mounted under /glocash:
//   POST /glocash/gateway/payment/index        payment request (section 4, appendix 2)
//   GET  /glocash/gateway/payment/index/token/T the payment page (section 5); POST: pay or cancel
//   POST /glocash/gateway/transaction/index    status query (section 8)
//   POST /glocash/gateway/transaction/refund   refund, partial allowed (section 10)
// and sends PSNs (section 7, appendix 3) to URL_NOTIFY until answered with HTTP 200, on
// psn_retry_seconds / time_factor, at most max_psn_attempts sends.
//
// Payment page outcomes (POST the page with card_number, card_expiry, card_cvv, card_holder,
// action=pay|cancel; add auto=1 for a JSON answer {"status","gcid","return_url","return_fields"}
// instead of the auto-submitting HTML form): 4000000000000002 paid, 5200000000000023 failed,
// 5200000000000106 pending, any other Luhn-valid 13-19 digit number paid; action=cancel cancelled.
//
// Control API (JSON) for tests:
//   GET  /_sandbox/glocash/transactions/{gcid}         state, refunds, psn {notifications, attempts,
//                                                      deliveries, manual_sends, log[]}
//   GET  /_sandbox/glocash/transactions?invoice=X      {"transactions":[...]} (no invoice: the latest, ?limit=N)
//   POST /_sandbox/glocash/transactions/{gcid}/status  {"status":"paid|...","risk":"ACP|REV|REJ|BAN","notify":true}
//                                                      forces a status and (by default) sends its PSN
//   POST /_sandbox/glocash/transactions/{gcid}/psn     {"status","forge_signature","price" (PGW_PRICE),
//                                                      "currency" (PGW_CURRENCY), "bil_price", "risk",
//                                                      "notify_type", "url", "repeat":1} sends one extra PSN
//                                                      now, per repeat; answers {"fields", "responses":[
//                                                      {"outcome","status","body"}]}; changes no state
//
// The wire rules below are inline so that unit tests check them without the sandbox binary.
#include "sandbox/sandbox.hpp"
#include "service/core/crypto.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace paymux::sandbox::glocash {

// ---- Appendix 1: signatures. SHA-256 over the plain concatenation, lowercase hex. ----

inline std::string sign(std::initializer_list<std::string_view> parts) {
  std::string data;
  for (auto p : parts) data.append(p);
  return crypto::sha256_hex(data, false);
}

// Payment request: BIL_METHOD is the value sent, empty when the field is absent.
inline std::string payment_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                                     std::string_view req_invoice, std::string_view cus_email,
                                     std::string_view bil_method, std::string_view bil_price,
                                     std::string_view bil_currency) {
  return sign({key, req_times, req_email, req_invoice, cus_email, bil_method, bil_price, bil_currency});
}

inline std::string query_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                                   std::string_view tns_gcid) {
  return sign({key, req_times, req_email, tns_gcid});
}

// PGW_PRICE is the amount to refund, exactly as sent.
inline std::string refund_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                                    std::string_view tns_gcid, std::string_view pgw_price) {
  return sign({key, req_times, req_email, tns_gcid, pgw_price});
}

// PSN and the browser's result POST (section 6: "与PSN请求相同").
inline std::string psn_signature(std::string_view key, std::string_view req_times, std::string_view req_email,
                                 std::string_view cus_email, std::string_view tns_gcid, std::string_view bil_status,
                                 std::string_view bil_method, std::string_view pgw_price,
                                 std::string_view pgw_currency) {
  return sign({key, req_times, req_email, cus_email, tns_gcid, bil_status, bil_method, pgw_price, pgw_currency});
}

// ---- Appendix 2: field formats ----

inline bool is_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// REQ_INVOICE: digits, letters, '_' and '-' ("允许数字、大小写字母、符号_与-"), at most 64.
inline bool valid_invoice(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

inline bool valid_currency(std::string_view s) {
  if (s.size() != 3) return false;
  for (char c : s)
    if (c < 'A' || c > 'Z') return false;
  return true;
}

// local@domain.tld: one '@', no blanks or controls, a dot inside the domain, at most 255.
inline bool plausible_email(std::string_view s) {
  if (s.size() < 5 || s.size() > 255) return false;
  auto at = s.find('@');
  if (at == std::string_view::npos || at == 0 || at > 64 || s.find('@', at + 1) != std::string_view::npos)
    return false;
  for (unsigned char c : s)
    if (c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == ',' || c == ';' || c == '"' || c == '\\')
      return false;
  auto domain = s.substr(at + 1);
  auto dot = domain.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 >= domain.size()) return false;
  if (domain.front() == '.' || domain.find("..") != std::string_view::npos) return false;
  return true;
}

inline bool valid_url(std::string_view s) { return s.size() <= 255 && valid_http_url(s); }

// Amounts are kept exactly, in units of 1/10000 (enough for every ISO 4217 exponent).
inline constexpr int kAmountDecimals = 4;
inline constexpr std::int64_t kAmountScale = 10000;

// "37.86", "15", "9.9", "0.50" -> units; rejects signs, exponents, empty parts, more than four
// significant decimals and overflow. Zero is returned as 0 (the caller decides if it is allowed).
inline std::optional<std::int64_t> parse_amount(std::string_view s) {
  if (s.empty() || s.size() > 16) return std::nullopt;
  auto dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  if (!is_digits(whole)) return std::nullopt;
  if (dot != std::string_view::npos && !is_digits(frac)) return std::nullopt;
  constexpr std::int64_t max_whole = INT64_MAX / kAmountScale - 1;
  std::int64_t v = 0;
  for (char c : whole) {
    if (v > (max_whole - 9) / 10) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  v *= kAmountScale;
  std::int64_t place = kAmountScale / 10;
  for (std::size_t i = 0; i < frac.size(); ++i) {
    if (i < static_cast<std::size_t>(kAmountDecimals)) {
      v += (frac[i] - '0') * place;
      place /= 10;
    } else if (frac[i] != '0') {
      return std::nullopt;
    }
  }
  return v;
}

// An exact decimal with at least min_decimals decimals (more only when needed):
// 378600 -> "37.86", 150000 -> "15", (50000, 2) -> "5.00".
inline std::string format_amount(std::int64_t units, int min_decimals = 0) {
  std::string out = std::to_string(units / kAmountScale);
  std::string f = std::to_string(units % kAmountScale);
  f.insert(0, static_cast<std::size_t>(kAmountDecimals) - f.size(), '0');
  while (f.size() > static_cast<std::size_t>(std::max(min_decimals, 0)) && f.back() == '0') f.pop_back();
  if (!f.empty()) out += "." + f;
  return out;
}

// Decimals written in an amount as sent ("19.99" -> 2, "15" -> 0), at most kAmountDecimals.
inline int decimals_of(std::string_view amount) {
  auto dot = amount.find('.');
  if (dot == std::string_view::npos) return 0;
  return static_cast<int>(std::min<std::size_t>(amount.size() - dot - 1, kAmountDecimals));
}

// BIL_PRICE: a positive decimal of at most 16 characters.
inline bool valid_price(std::string_view s) {
  auto v = parse_amount(s);
  return v && *v > 0;
}

// ---- Section 5: the sandbox card form ----

inline bool luhn_valid(std::string_view digits) {
  if (!is_digits(digits)) return false;
  int sum = 0;
  bool twice = false;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    int d = *it - '0';
    if (twice) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    twice = !twice;
  }
  return sum % 10 == 0;
}

enum class CardOutcome { paid, failed, pending, invalid };

// The document's three test cards decide the outcome; any other conforming card (13-19 digits,
// Luhn) pays, as "可使用任何符合规范的卡号进行测试" says. Spaces and dashes must be removed first.
inline CardOutcome card_outcome(std::string_view number) {
  if (number == "4000000000000002") return CardOutcome::paid;
  if (number == "5200000000000023") return CardOutcome::failed;
  if (number == "5200000000000106") return CardOutcome::pending;
  if (number.size() < 13 || number.size() > 19 || !luhn_valid(number)) return CardOutcome::invalid;
  return CardOutcome::paid;
}

// ---- Appendix 4 and 5 ----

inline bool known_status(std::string_view s) {
  return s == "unpaid" || s == "paid" || s == "pending" || s == "cancelled" || s == "failed" || s == "refunding" ||
         s == "refunded" || s == "complaint" || s == "chargeback";
}

inline bool known_risk_decision(std::string_view s) {
  return s == "ACP" || s == "REV" || s == "REJ" || s == "BAN";
}

// ---- The simulator ----

inline constexpr std::string_view kName = "glocash";

// Builds the simulator from its config section:
//   accounts: [{email, secret_key, merchant_name?, notify_url?}]
//   psn_retry_seconds: [5, 30, 60, 300, 600, 1800, 3600]   # gateway time, divided by time_factor
//   max_psn_attempts: 8
//   psn_timeout_ms: 5000
//   max_transactions: 200000                              # oldest forgotten beyond this
std::unique_ptr<Simulator> make_simulator(Sandbox& frame, const ConfigNode& section);

inline SimulatorFactory factory() { return {std::string(kName), make_simulator}; }

}  // namespace paymux::sandbox::glocash
