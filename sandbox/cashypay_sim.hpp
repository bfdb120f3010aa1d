#pragma once
// The CashyPay simulator (document 004, 聚合收银台 "pay desk"; SIGNING.md "CashyPay"), written from
// the document, not from paymux's client. Mounted under /cashypay:
//   POST /cashypay/api/payDesk             create a pay-desk order (创建收银台订单)
//   POST /cashypay/api/payDeskQuery        query an order by orderNo or mchOrderNo (查询收银台订单)
//   GET  /cashypay/paydesk/{orderNo}       the pay-desk page (payUrl): "Pay" and "Fail" buttons
//   POST /cashypay/paydesk/{orderNo}       action=pay|fail (form); add auto=1 for a JSON answer
//                                          (otherwise a successful payment is sent on to returnUrl
//                                          with 303, as 支付成功后会跳到商户指定页面 says; a failed one
//                                          shows the page, with a link to returnUrl)
//                                          {"orderNo","orderStatus","notified"} instead of HTML
// and sends result notifications (收银台订单结果通知) to notifyUrl: POST JSON with the headers
// MerchantId and Sign, re-sent after 1, 2, 4 ... 512 minutes (notify_retry_minutes / time_factor,
// 10 re-sends) until the answer is HTTP 200, 301 or 302.
//
// Requests (both API endpoints): POST, Content-Type application/json, headers MerchantId (a
// configured merchant) and Sign = MD5(raw body bytes + api_key), any hex case. Every answer is HTTP
// 200 with CashyPay's envelope {"msg","code","data"}; code 200 is success. The document names no
// error codes, so the simulator uses these (msg says what is wrong and names the field):
//   400  the body is not a JSON object, a mandatory field is missing or malformed, the amount is
//        outside amount_min..amount_max, the currency is not one of `currencies`, or neither
//        orderNo nor mchOrderNo is given (query). Content-Type other than application/json: 400.
//   401  the MerchantId header is missing or names no configured merchant
//   403  the Sign header is missing or does not match
//   404  no such order for this merchant (query)
//   409  mchOrderNo already used by this merchant (创建: "不允许重复")
//
// Fields of /api/payDesk (all mandatory except returnUrl), checked for type and length in characters:
//   currency string(32), one of `currencies`; amount decimal(20,2): a JSON number or a decimal
//   string, at most two decimals, no exponent, within amount_min..amount_max (whole units);
//   reusableStatus boolean; mchOrderNo string(32); expireTime long (seconds, > 0; a JSON integer or a
//   digit string); notifyUrl string(250), http(s) URL; nonceStr string(32); realName string(64);
//   phone string(32); email string(64); idType string(32) (the document's own example sends the
//   number 1: a JSON integer is accepted); idCard string(32) ("会进行格式校验": digits, '.', '-', K/k);
//   remark string(32) (English or unaccented Spanish: printable ASCII only); returnUrl string(250).
// Query: nonceStr (mandatory, string(32)), orderNo and/or mchOrderNo (orderNo wins when both).
//
// Order statuses: PAYING until paid; SUCCESS or FAIL from the page or the control API. An unpaid
// order past its expireTime reports `expired_status` (default "EXPIRED") in queries, and its page
// says it has expired; no notification is sent for an expiry (the document shows none).
// Times ("YYYY-MM-DD HH:MM:SS") are the gateway's local time, utc_offset_minutes from UTC (default
// -240: the document's pay-desk example answers a request at 10:13:25 UTC with an expireTime of
// 86399 s as "2024-12-10 06:13:24"). Fees: amount * fee_basis_points / 10000, four decimals.
//
// Notification body (the document's example, keys in its order), signed like a request:
//   {"amount":358320.00,"completionTime":"2024-12-02 16:08:32","fee":8958.0000,"mchOrderNo":"...",
//    "merchantId":"1002001","nonceStr":"1733130512894","orderNo":"PAYDESK...","orderStatus":"SUCCESS",
//    "payUrl":"..."}
// `amount` and `fee` are written textually with two and four decimals (never through a double).
//
// Control API (JSON) for tests:
//   GET  /_sandbox/cashypay/orders?mchOrderNo=X[&merchantId=M]  {"orders":[...]} (no mchOrderNo: the
//                                                      latest first, ?limit=N, default 100)
//   GET  /_sandbox/cashypay/orders/{orderNo}          the order: fields, status, fee, notify {notifications,
//                                                      attempts, deliveries, manual_sends, log[] (one per
//                                                      send: attempt, http_status, acknowledged, ...),
//                                                      sent[] (the last 10 bodies and Signs, exact bytes)}
//   POST /_sandbox/cashypay/orders/{orderNo}/status   {"status":"SUCCESS|FAIL|PAYING","notify":true,
//                                                      "url","ignore_answers":N} forces a status and
//                                                      (by default) sends its notification on the
//                                                      schedule; ignore_answers: the first N answers
//                                                      count as not received whatever they are
//   POST /_sandbox/cashypay/orders/{orderNo}/notify   one extra notification now, per repeat:
//                                                      {"status","amount" (decimal text, sent as the
//                                                      JSON number), "fee","forge_signature":true,
//                                                      "sign_case":"upper|lower","url","repeat":1,
//                                                      "extra":{...} (members appended)} ->
//                                                      {"body","sign","responses":[{"outcome",
//                                                      "status","body"}]}; changes no state.
//                                                      "schedule":true sends it on the retry schedule
//                                                      instead (with "ignore_answers") and answers at once
//   POST /_sandbox/cashypay/orders/{orderNo}/expire   the order's expireTime becomes now
//   POST /_sandbox/cashypay/delay_answers             {"ms":M,"count":N (-1: until cleared)}: payDesk
//                                                      keeps the order, then holds its answer M ms
//                                                      (a slow gateway that already has the order;
//                                                      the frame's latency fault delays before it
//                                                      exists). ms 0 clears. GET shows the setting.
//
// The wire rules below are inline so that unit tests check them without the sandbox binary.
#include "sandbox/sandbox.hpp"
#include "service/core/crypto.hpp"

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace paymux::sandbox::cashypay {

// ---- SIGNING.md: Sign = MD5(raw body bytes + apiKey); uppercase as the document shows ----

inline std::string sign(std::string_view body, std::string_view api_key, bool upper = true) {
  std::string data;
  data.reserve(body.size() + api_key.size());
  data.append(body);
  data.append(api_key);
  return crypto::md5_hex(data, upper);
}

// Case-insensitive, constant time for a given length.
inline bool sign_matches(std::string_view body, std::string_view api_key, std::string_view received) {
  if (received.size() != 32) return false;
  return crypto::equal_hex_ct(sign(body, api_key), received);
}

// ---- Raw JSON: the text of a top-level member's value, so that numbers are read exactly ----

namespace detail {

inline void skip_ws(std::string_view s, std::size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
}

// Past a JSON string starting at s[i] == '"'; false when unterminated.
inline bool skip_string(std::string_view s, std::size_t& i) {
  ++i;
  while (i < s.size()) {
    if (s[i] == '\\') {
      i += 2;
      continue;
    }
    if (s[i] == '"') {
      ++i;
      return true;
    }
    ++i;
  }
  return false;
}

// Past one JSON value (string, object, array or scalar); false when malformed.
inline bool skip_value(std::string_view s, std::size_t& i) {
  skip_ws(s, i);
  if (i >= s.size()) return false;
  if (s[i] == '"') return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      char c = s[i];
      if (c == '"') {
        if (!skip_string(s, i)) return false;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) {
          ++i;
          return true;
        }
      }
      ++i;
    }
    return false;
  }
  std::size_t start = i;
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
         s[i] != '\n' && s[i] != '\r')
    ++i;
  return i > start;
}

}  // namespace detail

// The top-level members of a JSON object as (key as written between its quotes, raw value text),
// in order; nullopt when the text is not an object. Keys are not unescaped.
inline std::optional<std::vector<std::pair<std::string_view, std::string_view>>> raw_members(std::string_view s) {
  using namespace detail;
  std::vector<std::pair<std::string_view, std::string_view>> out;
  std::size_t i = 0;
  skip_ws(s, i);
  if (i >= s.size() || s[i] != '{') return std::nullopt;
  ++i;
  skip_ws(s, i);
  if (i < s.size() && s[i] == '}') return out;
  while (i < s.size()) {
    skip_ws(s, i);
    if (i >= s.size() || s[i] != '"') return std::nullopt;
    std::size_t k = i;
    if (!skip_string(s, i)) return std::nullopt;
    std::string_view key = s.substr(k + 1, i - k - 2);
    skip_ws(s, i);
    if (i >= s.size() || s[i] != ':') return std::nullopt;
    ++i;
    skip_ws(s, i);
    std::size_t v = i;
    if (!skip_value(s, i)) return std::nullopt;
    out.emplace_back(key, s.substr(v, i - v));
    skip_ws(s, i);
    if (i < s.size() && s[i] == ',') {
      ++i;
      continue;
    }
    if (i < s.size() && s[i] == '}') return out;
    return std::nullopt;
  }
  return std::nullopt;
}

// ---- Amounts: decimal(20,2), kept in hundredths ----

inline bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// "1000", "1000.5", "1000.50", "358320.00" -> hundredths. Rejects signs, exponents, empty parts,
// leading zeros ("01"), a third decimal that is not zero and more than 18 integer digits.
inline std::optional<std::int64_t> parse_amount_cents(std::string_view s) {
  auto dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  if (!all_digits(whole) || whole.size() > 18 || (whole.size() > 1 && whole[0] == '0')) return std::nullopt;
  if (dot != std::string_view::npos && !all_digits(frac)) return std::nullopt;
  std::int64_t v = 0;
  for (char c : whole) v = v * 10 + (c - '0');
  v *= 100;
  for (std::size_t i = 0; i < frac.size(); ++i) {
    if (i < 2)
      v += (frac[i] - '0') * (i == 0 ? 10 : 1);
    else if (frac[i] != '0')
      return std::nullopt;
  }
  return v;
}

// An exact decimal of `units` in 10^-scale with exactly `decimals` places (zeros appended when
// decimals > scale, digits cut when fewer). (35832000, 2, 2) -> "358320.00";
// (89580000, 4, 4) -> "8958.0000"; (100000, 2, 0) -> "1000".
inline std::string format_fixed(std::int64_t units, int scale, int decimals) {
  std::int64_t pow = 1;
  for (int i = 0; i < scale; ++i) pow *= 10;
  const bool negative = units < 0;
  std::uint64_t u = negative ? static_cast<std::uint64_t>(-(units + 1)) + 1 : static_cast<std::uint64_t>(units);
  std::string out = (negative ? "-" : "") + std::to_string(u / static_cast<std::uint64_t>(pow));
  if (decimals > 0) {
    std::string f;
    if (scale > 0) {
      f = std::to_string(u % static_cast<std::uint64_t>(pow));
      f.insert(0, static_cast<std::size_t>(scale) - f.size(), '0');
    }
    if (static_cast<int>(f.size()) > decimals) f.resize(static_cast<std::size_t>(decimals));
    while (static_cast<int>(f.size()) < decimals) f.push_back('0');
    out += "." + f;
  }
  return out;
}

// Hundredths as the shortest exact decimal: 100000 -> "1000", 100050 -> "1000.50".
inline std::string format_cents_short(std::int64_t cents) {
  return cents % 100 == 0 ? format_fixed(cents, 2, 0) : format_fixed(cents, 2, 2);
}

// The fee in ten-thousandths: cents * bp / 10000 currency units, rounded half up.
// Amounts up to 10^12 units and basis points up to 10000 stay far from overflow.
inline std::int64_t fee_units4(std::int64_t cents, std::int64_t basis_points) {
  // A cent is 100 ten-thousandths: fee = cents * 100 * bp / 10000 = cents * bp / 100.
  return (cents / 100) * basis_points + ((cents % 100) * basis_points + 50) / 100;
}

// ---- Times: "YYYY-MM-DD HH:MM:SS" in the gateway's local time ----

inline std::string format_time(std::int64_t unix_s, int utc_offset_minutes) {
  std::time_t t = static_cast<std::time_t>(unix_s + static_cast<std::int64_t>(utc_offset_minutes) * 60);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

// ---- Field rules ----


// idCard "会进行格式校验" (example 11.111.111-1, or 154175105): digits, dots, dashes and a K check
// digit; at least one digit.
inline bool valid_id_card(std::string_view s) {
  bool digit = false;
  for (char c : s) {
    if (c >= '0' && c <= '9')
      digit = true;
    else if (c != '.' && c != '-' && c != 'K' && c != 'k')
      return false;
  }
  return digit;
}

// remark "请使用英文字符或不带重音的西语": printable ASCII.
inline bool valid_remark(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

inline bool known_status(std::string_view s) { return s == "PAYING" || s == "SUCCESS" || s == "FAIL"; }

// HTTP statuses that mean "received" (document: 200, 301 or 302).
inline bool acknowledged_status(unsigned status) { return status == 200 || status == 301 || status == 302; }

// ---- The simulator ----

inline constexpr std::string_view kName = "cashypay";

// Builds the simulator from its config section:
//   merchants: [{merchant_id, api_key}]
//   amount_min: 1000                   # whole currency units (document: 1000-5000000)
//   amount_max: 5000000
//   currencies: "CLP"                 # comma-separated: "CLP, USD"
//   notify_retry_minutes: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]   # gateway time / time_factor
//   notify_timeout_ms: 5000
//   fee_basis_points: 250             # fee = amount * 2.5 %
//   utc_offset_minutes: -240          # the gateway's local time in its answers
//   expired_status: EXPIRED           # what a query says of an unpaid order past its expireTime
//   max_orders: 200000                # the oldest are forgotten beyond this
std::unique_ptr<Simulator> make_simulator(Sandbox& frame, const ConfigNode& section);

inline SimulatorFactory factory() { return {std::string(kName), make_simulator}; }

}  // namespace paymux::sandbox::cashypay
