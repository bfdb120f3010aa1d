#pragma once
// The DHpay simulators, written from the documents and SIGNING.md, not from paymux's client:
//   - the web cashier (provider-docs/001, hosted payment form), and
//   - the Cashier nonce API (provider-docs/000, OAuth2 token + server-to-server card payment with a
//     tokenized nonce, 3-D Secure through an ACS page).
// Mounted under /dhpay (a connector's base_url is "<public_url>/dhpay"):
//
// Web cashier (pages, no fault injection):
//   POST /dhpay/merchant/web/cashier[?env=dhpaysandbox]   the merchant's form (001's field table).
//        Checks every mandatory field and its form (first bad one named on an HTML error page, 400),
//        the merchant, the request hash and that invoice_id is new; then 303 to the payment page.
//   GET  /dhpay/merchant/web/pay/{token}                   the payment page (card form, test data)
//   POST /dhpay/merchant/web/pay/{token}                   card_number, card_expiry, card_cvv,
//        card_holder: pays, sends the notify to notify_url and 303s the browser to return_url with
//        the signed callback parameters appended ("&" when return_url has a query already). With
//        auto=1 the answer is JSON instead: {"status","ref_no","return_url" (with the parameters),
//        "callback":{...}} (expiry and CVV optional then).
//   Outcomes: cards 4111111111111111 succeed (01), 4000000000000002 are declined (02, M0092),
//   4000000000000119 fail the address check (02, M0023, 001's AVS description), 4000000000000259
//   stay processing (00, then 01 after pending_settle_seconds); any other Luhn-valid card goes by
//   the amount's minor units: ..02 declined (M0092), ..06 processing then 01, else 01.
//
// Cashier nonce API (fault injection "dhpay" applies):
//   POST /dhpay/api/oauth2/token        headers Accept (else E0014), Client-Id (E0015), Secret (E0016);
//        unknown client or wrong secret E0017. {"status":"01","data":{"expires_in","token_type":
//        "Bearer","access_token":<32 upper hex>}}. Lifetimes are not compressed by time_factor.
//   POST /dhpay/api/payments/nonce/v1   headers Authorization: Bearer (absent, unknown or revoked:
//        E0002; expired: E0010), version: v1 (else E0004); JSON body {"requestParam":{...},
//        "cardParam":{"tokenInfo"}}, Content-Type application/json (else E0001). Every answer is
//        HTTP 200 with the document's {"status","error_code"} or {"status":"01","data":{...}}.
//        Error codes chosen from 000's list where the document has no rule:
//          E0001 ("resource is not exists"): a body that is not the document's JSON, a mandatory
//                field missing or malformed (000's table: tokenInfo, merchant_id, invoice_id,
//                order_no, currency, amount, country, product_name, hash, buyer_email, first_name,
//                last_name, address_line, zipcode, shipping_email, buyer_id), an invoice_id used
//                before by the merchant. The field is named in the sandbox log, not in the answer.
//          E0013 ("do not have this Api-Authority"): requestParam.merchant_id is not the token's
//                client's merchant.
//          E0017 ("Client-Id or Secret is not correct"): the hash does not match (it is keyed with
//                the client's Secret; formula of SIGNING.md: the web cashier request hash).
//        Outcome by tokenInfo, else by amount minor units:
//          "tok_success" / ..01 (and any other amount): data.status 01
//          "tok_decline" / ..02: data.status 02, failure_reason M0092
//          "tok_3ds"     / ..03: data.status 00 with redirect_url (the ACS below), paReq, TermUrl, MD
//                              (= ref_no), orderId, transactionId, sessionToken
//          "tok_pending" / ..06: data.status 00 without redirect_url, then the callback with 01 to
//                              notify_url after pending_settle_seconds
//   GET|POST /dhpay/acs/pit1/acsService   the issuer's ACS page: takes exactly the six 3-D Secure
//        fields (each checked against the payment; a missing or wrong one is named, 400) and shows
//        "Authenticate" / "Fail". Posting it with action=authenticate|fail sends the browser to
//        TermUrl with PaRes and MD (auto-submitting form), or with auto=1 completes the whole round
//        trip at once and answers JSON like the payment page's.
//   POST /dhpay/merchant/bank/notify/mscskCallback   TermUrl: PaRes + MD; settles the payment (01 or
//        02), sends the callback to notify_url and 303s the browser to return_url with it.
//
// Callbacks (both products): GET notify_url?merchant_id&invoice_id&order_no&currency&amount&ref_no&
// status&failure_reason&trans_date&trans_time&description&hash, re-sent until the body is exactly
// "success", at most notify_max_sends sends, waiting notify_retry_seconds / time_factor between
// them. trans_date / trans_time are Beijing time (UTC+8).
//
// Control API (JSON) for tests, under /_sandbox/dhpay ({id}: a ref_no or an invoice_id):
//   GET  /orders[?invoice_id=X][&limit=N]   {"orders":[...]} (newest first)
//   GET  /orders/{id}                       request, state, notify {notifications, attempts,
//                                           deliveries, manual_sends, log[]}
//   POST /orders/{id}/status   {"status":"00|01|02","failure_reason","description","notify":true}
//   POST /orders/{id}/notify   {"status","failure_reason","description","amount","currency",
//                               "invoice_id","merchant_id","forge_hash":false,"repeat":1,"url"}
//                               sends one callback now per repeat (re-signed over the overrides
//                               unless forge_hash); answers {"url","fields","responses":[{"outcome",
//                               "status","body","acknowledged"}]}; changes no state
//   GET  /tokens      {"lifetime_seconds","requests","issued","refused","active","payment_requests",
//                      "stale_token_answers":{"E0002","E0010"},"by_client":{...}}
//   POST /tokens      {"lifetime_seconds":N,"expire_all":bool,"revoke_all":bool,"reset_counters":bool}
//   DELETE /tokens    revokes every token (the next call with one gets E0002)
//
// The wire rules below are inline so that unit tests check them without the sandbox binary.
#include "sandbox/sandbox.hpp"
#include "service/core/crypto.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace paymux::sandbox::dhpay {

// ---- SIGNING.md: hashes. SHA-256, uppercase hex; the secret goes in front. ----

inline std::string upper_sha256(std::string_view data) { return crypto::sha256_hex(data, /*upper=*/true); }

// Request hash (web cashier form; the nonce API's body uses the same formula): the values of
// amount, currency, invoice_id, merchant_id (ascending key order) concatenated after the secret,
// empty values skipped.
inline std::string request_hash(std::string_view secret, std::string_view amount, std::string_view currency,
                                std::string_view invoice_id, std::string_view merchant_id) {
  const std::map<std::string_view, std::string_view> signed_fields{
      {"amount", amount}, {"currency", currency}, {"invoice_id", invoice_id}, {"merchant_id", merchant_id}};
  std::string data(secret);
  for (const auto& [key, value] : signed_fields) data.append(value);
  return upper_sha256(data);
}

// Callback hash: every callback field except hash and description, by ascending key, empty values
// skipped. `fields` may hold anything; only those keys count (the last occurrence of each).
inline std::string callback_hash(std::string_view secret, const FormFields& fields) {
  std::map<std::string, std::string> signed_fields;
  for (const auto& [k, v] : fields) {
    if (k == "hash" || k == "description") continue;
    signed_fields[k] = v;
  }
  std::string data(secret);
  for (const auto& [key, value] : signed_fields) data.append(value);
  return upper_sha256(data);
}

// ---- Field forms ----

inline bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

inline bool alnum_only(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return false;
  return true;
}

// "数字 20,2 ... 必须包含 2 位小数": digits, a dot and exactly two decimals, at most 20 digits in all.
// Returns the value in hundredths.
inline std::optional<std::int64_t> parse_two_decimals(std::string_view s) {
  auto dot = s.find('.');
  if (dot == std::string_view::npos || dot == 0 || s.size() - dot - 1 != 2) return std::nullopt;
  auto whole = s.substr(0, dot);
  auto frac = s.substr(dot + 1);
  if (!all_digits(whole) || !all_digits(frac) || whole.size() > 18) return std::nullopt;
  if (whole.size() > 1 && whole.front() == '0') return std::nullopt;  // "01.00"
  std::int64_t v = 0;
  for (char c : whole) v = v * 10 + (c - '0');
  return v * 100 + (frac[0] - '0') * 10 + (frac[1] - '0');
}

// invoice_id: "以数字0-9,大小写字母组成", at most 30.
inline bool valid_invoice_id(std::string_view s) { return !s.empty() && s.size() <= 30 && alnum_only(s); }

inline bool valid_currency(std::string_view s) {
  if (s.size() != 3) return false;
  for (char c : s)
    if (c < 'A' || c > 'Z') return false;
  return true;
}

// Two-letter country codes (the appendix's list is not in our copy: any two ASCII letters).
inline bool valid_country(std::string_view s) {
  if (s.size() != 2) return false;
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return false;
  return true;
}

inline bool plausible_email(std::string_view s) {
  auto at = s.find('@');
  if (at == std::string_view::npos || at == 0 || s.find('@', at + 1) != std::string_view::npos) return false;
  auto domain = s.substr(at + 1);
  auto dot = domain.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 >= domain.size()) return false;
  for (unsigned char c : s)
    if (c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',') return false;
  return true;
}


enum class Form { text, merchant, invoice, currency, amount, price, country, email, digits, url, flag };

struct FieldRule {
  std::string_view name;
  bool required;
  std::size_t min_len;  // characters (UTF-8 code points), when present
  std::size_t max_len;
  Form form;
};

// Document 001's table, in its order ("是否必须" 是 = required).
inline constexpr FieldRule kCashierFields[] = {
    {"merchant_id", true, 6, 15, Form::merchant},
    {"invoice_id", true, 1, 30, Form::invoice},
    {"order_no", true, 1, 50, Form::text},
    {"currency", true, 3, 3, Form::currency},
    {"amount", true, 4, 21, Form::amount},
    {"buyer_email", false, 0, 30, Form::email},
    {"shipping_country", true, 2, 2, Form::country},
    {"first_name", true, 1, 50, Form::text},
    {"last_name", true, 1, 50, Form::text},
    {"country", true, 2, 2, Form::country},
    {"state", true, 1, 50, Form::text},
    {"city", true, 1, 50, Form::text},
    {"address_line", true, 1, 500, Form::text},
    {"zipcode", true, 4, 10, Form::text},
    {"product_name", true, 1, 500, Form::text},
    {"product_price", true, 4, 21, Form::price},
    {"product_quantity", true, 1, 10, Form::digits},
    {"shipping_first_name", false, 0, 50, Form::text},
    {"shipping_last_name", false, 0, 50, Form::text},
    {"shipping_address_line", false, 0, 500, Form::text},
    {"shipping_city", true, 1, 50, Form::text},
    {"shipping_state", true, 1, 50, Form::text},
    {"shipping_zipcode", true, 4, 10, Form::text},
    {"shipping_email", false, 0, 30, Form::email},
    {"shipping_phone", false, 2, 50, Form::text},
    {"return_url", false, 0, 500, Form::url},
    {"remark", false, 0, 1000, Form::text},
    {"notify_url", false, 0, 256, Form::url},
    {"buyer_id", false, 0, 40, Form::text},
    {"auto_bind_token", false, 1, 1, Form::flag},
    {"hash", true, 1, 150, Form::text},
};

// Document 000's body table ("是否必须" 是 = required), tokenInfo being cardParam's.
inline constexpr FieldRule kNonceFields[] = {
    {"tokenInfo", true, 1, 64, Form::text},  // "32" in the table, yet its own example is 44 long
    {"merchant_id", true, 1, 30, Form::text},
    {"invoice_id", true, 1, 50, Form::text},
    {"order_no", true, 1, 50, Form::text},
    {"currency", true, 3, 3, Form::currency},
    {"amount", true, 4, 21, Form::amount},
    {"country", true, 2, 2, Form::country},
    {"product_name", true, 1, 200, Form::text},
    {"hash", true, 1, 150, Form::text},
    {"product_price", false, 0, 21, Form::price},
    {"product_quantity", false, 0, 10, Form::digits},
    {"buyer_ip", false, 0, 100, Form::text},
    {"buyer_email", true, 1, 30, Form::email},
    {"state", false, 0, 50, Form::text},
    {"city", false, 0, 50, Form::text},
    {"first_name", true, 1, 50, Form::text},
    {"last_name", true, 1, 50, Form::text},
    {"address_line", true, 1, 500, Form::text},
    {"phone", false, 2, 50, Form::text},
    {"zipcode", true, 4, 10, Form::text},
    {"shipping_country", false, 2, 2, Form::country},
    {"shipping_first_name", false, 0, 50, Form::text},
    {"shipping_last_name", false, 0, 50, Form::text},
    {"shipping_address_line", false, 0, 500, Form::text},
    {"shipping_city", false, 0, 50, Form::text},
    {"shipping_state", false, 0, 50, Form::text},
    {"shipping_zipcode", false, 4, 10, Form::text},
    {"shipping_email", true, 1, 30, Form::email},
    {"shipping_phone", false, 2, 50, Form::text},
    {"return_url", false, 0, 500, Form::url},
    {"remark", false, 0, 1000, Form::text},
    {"notify_url", false, 0, 500, Form::url},
    {"buyer_id", true, 1, 40, Form::text},
};

inline bool form_ok(Form f, std::string_view v) {
  switch (f) {
    case Form::text: return true;
    case Form::merchant: return alnum_only(v);
    case Form::invoice: return valid_invoice_id(v);
    case Form::currency: return valid_currency(v);
    case Form::amount: {
      auto a = parse_two_decimals(v);
      return a && *a > 0;
    }
    case Form::price: return parse_two_decimals(v).has_value();
    case Form::country: return valid_country(v);
    case Form::email: return plausible_email(v);
    case Form::digits: return all_digits(v) && v.find_first_not_of('0') != std::string_view::npos;
    case Form::url: return valid_http_url(v);
    case Form::flag: return v == "0" || v == "1";
  }
  return false;
}

// Why a value breaks its rule; empty when it is fine. An empty value of a required field is missing.
inline std::string field_problem(const FieldRule& r, std::string_view value) {
  if (value.empty()) return r.required ? "is missing" : "";
  std::size_t n = 0;
  for (unsigned char c : value)
    if ((c & 0xC0) != 0x80) ++n;
  if (n < r.min_len || n > r.max_len) {
    if (r.min_len == r.max_len) return "must be " + std::to_string(r.max_len) + " characters long";
    if (r.min_len <= 1) return "must be at most " + std::to_string(r.max_len) + " characters long";
    return "must be " + std::to_string(r.min_len) + " to " + std::to_string(r.max_len) + " characters long";
  }
  if (!form_ok(r.form, value)) {
    switch (r.form) {
      case Form::amount: return "must be a positive amount with exactly 2 decimals (20.85)";
      case Form::price: return "must be an amount with exactly 2 decimals (10.01)";
      case Form::invoice: return "must hold only the digits 0-9 and letters";
      case Form::merchant: return "must hold only digits and letters";
      case Form::currency: return "must be a three-letter currency code (USD)";
      case Form::country: return "must be a two-letter country code (US)";
      case Form::email: return "must be an e-mail address";
      case Form::digits: return "must be a positive whole number";
      case Form::url: return "must be an http(s) URL";
      case Form::flag: return "must be 0 or 1";
      case Form::text: break;
    }
    return "is malformed";
  }
  return "";
}

// ---- Outcomes (sandbox test data) ----

enum class Outcome { success, decline, avs_decline, processing, three_ds };

inline bool luhn_valid(std::string_view digits) {
  if (!all_digits(digits)) return false;
  int sum = 0;
  bool twice = false;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    int d = *it - '0';
    if (twice && (d *= 2) > 9) d -= 9;
    sum += d;
    twice = !twice;
  }
  return sum % 10 == 0;
}

inline Outcome amount_outcome(std::int64_t hundredths, bool nonce) {
  switch (hundredths % 100) {
    case 2: return Outcome::decline;
    case 3: return nonce ? Outcome::three_ds : Outcome::success;
    case 6: return Outcome::processing;
    default: return Outcome::success;
  }
}

// The web cashier's card form. nullopt: not a card number (13-19 digits, Luhn).
inline std::optional<Outcome> card_outcome(std::string_view card, std::int64_t hundredths) {
  if (card == "4111111111111111") return Outcome::success;
  if (card == "4000000000000002") return Outcome::decline;
  if (card == "4000000000000119") return Outcome::avs_decline;
  if (card == "4000000000000259") return Outcome::processing;
  if (card.size() < 13 || card.size() > 19 || !luhn_valid(card)) return std::nullopt;
  return amount_outcome(hundredths, false);
}

inline Outcome nonce_outcome(std::string_view token_info, std::int64_t hundredths) {
  if (token_info == "tok_success") return Outcome::success;
  if (token_info == "tok_decline") return Outcome::decline;
  if (token_info == "tok_3ds") return Outcome::three_ds;
  if (token_info == "tok_pending") return Outcome::processing;
  return amount_outcome(hundredths, true);
}

// ---- The simulator ----

inline constexpr std::string_view kName = "dhpay";

// Builds the simulator from its config section:
//   merchants: [{merchant_id, secret_key, name?}]            # web cashier accounts
//   nonce_clients: [{client_id, secret, merchant_id}]        # nonce API credentials
//   token_lifetime_seconds: 28800                            # expires_in of new tokens (not scaled)
//   notify_max_sends: 10                                     # first send included
//   notify_retry_seconds: [15, 30, 60, 120, 300, 600, 1800, 3600, 7200]   # gateway time
//   notify_timeout_ms: 5000
//   pending_settle_seconds: 120                              # 00 -> 01 (gateway time); 0: never
//   max_orders: 200000
std::unique_ptr<Simulator> make_simulator(Sandbox& frame, const ConfigNode& section);

inline SimulatorFactory factory() { return {std::string(kName), make_simulator}; }

}  // namespace paymux::sandbox::dhpay
