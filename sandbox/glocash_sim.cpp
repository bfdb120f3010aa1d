#include "sandbox/glocash_sim.hpp"

#include "service/core/clock.hpp"
#include "service/core/secret.hpp"
#include "service/http/errors.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <unordered_map>

namespace paymux::sandbox::glocash {
namespace {

namespace json = boost::json;
using http::bhttp::status;
using http::bhttp::verb;

constexpr std::string_view kGcidAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
constexpr std::string_view kPagePath = "/glocash/gateway/payment/index/token/";

// ---------------------------------------------------------------------------------------------
// Configuration

struct Account {
  std::string email;
  Secret secret_key;
  std::string merchant_name;  // shown on the page when REQ_MERCHANT is absent
  std::string notify_url;     // the "merchant back office" PSN address, used when URL_NOTIFY is absent
  std::size_t index = 0;      // position in Settings::accounts
};

struct Settings {
  std::vector<Account> accounts;
  std::vector<std::chrono::seconds> psn_retry;
  int max_psn_attempts = 8;
  std::chrono::milliseconds psn_timeout{5000};
  std::size_t max_transactions = 200000;
};

Settings parse_settings(const ConfigNode& c) {
  c.allow_only({"accounts", "psn_retry_seconds", "max_psn_attempts", "psn_timeout_ms", "max_transactions"});
  Settings s;
  for (const auto& a : c.list("accounts")) {
    a.allow_only({"email", "secret_key", "merchant_name", "notify_url"});
    Account acc;
    acc.email = a.required_str("email");
    if (!plausible_email(acc.email)) a.fail("email", "is not an e-mail address");
    acc.secret_key = Secret(a.required_str("secret_key"));
    acc.merchant_name = a.str("merchant_name", "");
    acc.notify_url = a.str("notify_url", "");
    if (!acc.notify_url.empty() && !valid_url(acc.notify_url)) a.fail("notify_url", "must be an http(s) URL");
    for (const auto& other : s.accounts)
      if (other.email == acc.email) a.fail("email", "is configured twice");
    acc.index = s.accounts.size();
    s.accounts.push_back(std::move(acc));
  }
  for (auto v : c.integer_list("psn_retry_seconds", {5, 30, 60, 300, 600, 1800, 3600}, 0, 7 * 86400))
    s.psn_retry.emplace_back(v);
  if (s.psn_retry.empty()) c.fail("psn_retry_seconds", "must not be empty");
  s.max_psn_attempts = static_cast<int>(c.integer("max_psn_attempts", 8, 1, 1000));
  s.psn_timeout = std::chrono::milliseconds(c.integer("psn_timeout_ms", 5000, 100, 600000));
  s.max_transactions = static_cast<std::size_t>(c.integer("max_transactions", 200000, 100, 100'000'000));
  return s;
}

// ---------------------------------------------------------------------------------------------
// PHP's json_encode, which the gateway's answers show: "/" becomes "\/" and every non-ASCII
// character a \uXXXX escape. Invalid UTF-8 becomes U+FFFD.

void append_u(std::string& out, unsigned cp) {
  static constexpr char hex[] = "0123456789abcdef";
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out.push_back(hex[(cp >> shift) & 0xF]);
}

void php_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '/': out += "\\/"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20)
            append_u(out, c);
          else
            out.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    int len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    unsigned cp = len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = len != 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
               (cp >= 0xD800 && cp <= 0xDFFF)))
      ok = false;
    if (!ok) {
      append_u(out, 0xFFFD);
      ++i;
      continue;
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      append_u(out, 0xD800 + (cp >> 10));
      append_u(out, 0xDC00 + (cp & 0x3FF));
    } else {
      append_u(out, cp);
    }
    i += static_cast<std::size_t>(len);
  }
  out.push_back('"');
}

class PhpJsonObject {
 public:
  PhpJsonObject& str(std::string_view key, std::string_view value) {
    next_key(key);
    php_json_string(out_, value);
    return *this;
  }
  // A number (as text) or a nested object, written as is.
  PhpJsonObject& raw(std::string_view key, std::string_view value) {
    next_key(key);
    out_ += value;
    return *this;
  }
  PhpJsonObject& number(std::string_view key, std::int64_t value) { return raw(key, std::to_string(value)); }
  std::string done() {
    out_.push_back('}');
    return std::move(out_);
  }

 private:
  void next_key(std::string_view key) {
    if (out_.size() > 1) out_.push_back(',');
    php_json_string(out_, key);
    out_.push_back(':');
  }
  std::string out_ = "{";
};

Response gateway_json(std::string body, const http::Request& req) {
  return http::json_response(status::ok, std::move(body), req);
}

// {"REQ_ERROR":"<FIELD>"}, HTTP 200, as section 4 shows.
Response req_error(std::string_view field, const http::Request& req) {
  return gateway_json(PhpJsonObject().str("REQ_ERROR", field).done(), req);
}

// Section 10's answer shape; a bad field is named in REQ_ERROR.
Response refund_answer(int code, std::string_view error, const http::Request& req) {
  return gateway_json(PhpJsonObject().number("REQ_CODE", code).str("REQ_ERROR", error).done(), req);
}

Response nginx_404(const http::Request& req) {
  return html_response(status::not_found,
                       "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
                       "<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                       req);
}

// ---------------------------------------------------------------------------------------------
// Appendix 2: which fields a payment request may carry, how long and in which form.

enum class Format { text, digits, email, invoice, price, currency, method, url, country };

struct FieldRule {
  std::string_view name;
  bool required;
  std::size_t max_len;
  Format format;
};

constexpr FieldRule kPaymentFields[] = {
    {"REQ_TIMES", true, 10, Format::digits},
    {"REQ_EMAIL", true, 255, Format::email},
    {"REQ_INVOICE", true, 64, Format::invoice},
    {"REQ_SIGN", true, 64, Format::text},
    {"REQ_MERCHANT", false, 32, Format::text},
    {"BIL_CC3DS", false, 1, Format::digits},
    {"CUS_EMAIL", true, 255, Format::email},
    {"CUS_COUNTRY", false, 2, Format::country},
    {"CUS_STATE", false, 64, Format::text},
    {"CUS_CITY", false, 32, Format::text},
    {"CUS_ADDRESS", false, 255, Format::text},
    {"CUS_POSTAL", false, 16, Format::text},
    {"CUS_PHONE", false, 32, Format::text},
    {"CUS_MOBILE", false, 32, Format::text},
    {"CUS_IMUSR", false, 255, Format::text},
    {"CUS_FNAME", false, 32, Format::text},
    {"CUS_LNAME", false, 32, Format::text},
    {"CUS_REGISTER", false, 10, Format::digits},
    {"BIL_GOODSNAME", false, 255, Format::text},
    {"BIL_QUANTITY", false, 10, Format::digits},
    {"BIL_PRICE", true, 16, Format::price},
    {"BIL_CURRENCY", true, 3, Format::currency},
    {"BIL_METHOD", false, 3, Format::method},
    {"BIL_PRCCODE", false, 255, Format::text},
    {"URL_SUCCESS", false, 255, Format::url},
    {"URL_PENDING", false, 255, Format::url},
    {"URL_FAILED", false, 255, Format::url},
    {"URL_NOTIFY", false, 255, Format::url},
    {"CUSTOM_FD0", false, 255, Format::text},
    {"CUSTOM_FD1", false, 255, Format::text},
    {"CUSTOM_FD2", false, 255, Format::text},
    {"CUSTOM_FD3", false, 255, Format::text},
    {"CUSTOM_FD4", false, 255, Format::text},
    {"CUSTOM_FD5", false, 255, Format::text},
    {"CUSTOM_FD6", false, 255, Format::text},
    {"CUSTOM_FD7", false, 255, Format::text},
};

bool format_ok(Format f, std::string_view v) {
  switch (f) {
    case Format::text: return true;
    case Format::digits: return is_digits(v);
    case Format::email: return plausible_email(v);
    case Format::invoice: return valid_invoice(v);
    case Format::price: return valid_price(v);
    case Format::currency: return valid_currency(v);
    case Format::method:
      return std::all_of(v.begin(), v.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); });
    case Format::url: return valid_url(v);
    case Format::country:
      return v.size() == 2 && std::all_of(v.begin(), v.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
  }
  return false;
}

// The first field that is missing (when required; an empty value counts as missing) or malformed.
template <std::size_t N>
std::optional<std::string_view> first_bad_field(const FormFields& f, const FieldRule (&rules)[N]) {
  for (const auto& r : rules) {
    auto v = last_value(f, r.name);
    if (v.empty()) {
      if (r.required) return r.name;
      continue;
    }
    if (utf8_length(v) > r.max_len || !format_ok(r.format, v)) return r.name;
  }
  return std::nullopt;
}

constexpr FieldRule kQueryFields[] = {
    {"REQ_TIMES", true, 10, Format::digits},
    {"REQ_EMAIL", true, 255, Format::email},
    {"REQ_SIGN", true, 64, Format::text},
    {"TNS_GCID", true, 16, Format::text},
};

constexpr FieldRule kRefundFields[] = {
    {"REQ_TIMES", true, 10, Format::digits},
    {"REQ_EMAIL", true, 255, Format::email},
    {"REQ_SIGN", true, 64, Format::text},
    {"TNS_GCID", true, 16, Format::text},
    {"PGW_PRICE", true, 16, Format::price},
};

// ---------------------------------------------------------------------------------------------
// Transactions

// What the payment request said: fixed once the transaction exists.
struct Order {
  std::string gcid;
  std::string token;
  const Account* account = nullptr;
  std::string invoice;
  std::string customer_email;
  std::string price;  // exactly as sent: it is echoed and signed in that form
  std::int64_t price_units = 0;
  std::string currency;
  std::string method;  // BIL_METHOD, "C01" when not sent
  std::string merchant_name;
  std::string goods_name;
  std::string url_success, url_pending, url_failed, url_notify;
  FormFields custom;  // CUSTOM_FD0..7 as sent
  std::string utimes;  // TNS_UTIMES: "1512360895.5831"
  std::string request_ip;
  std::int64_t created_ms = 0;
};

struct RefundRecord {
  std::string amount;
  std::int64_t at_ms = 0;
};

// What changes; guarded by the simulator's mutex.
struct State {
  std::string status = "unpaid";
  std::string risk = "ACP";
  std::string message;
  std::string payer_ip;
  std::string card_holder;
  std::string card_last4;
  std::int64_t refunded_units = 0;
  std::vector<RefundRecord> refunds;
  std::int64_t updated_ms = 0;
  int psn_notifications = 0;
  NotifyLog psn_log;
};

struct Transaction {
  std::shared_ptr<const Order> order;
  State state;
};

// The part of State a notification or a page needs, copied out under the lock.
struct StateView {
  std::string status, risk, message, payer_ip, card_holder;
  std::int64_t refunded_units = 0;
};

StateView view_of(const State& s) {
  return {s.status, s.risk, s.message, s.payer_ip, s.card_holder, s.refunded_units};
}

std::string default_message(std::string_view status) {
  if (status == "paid") return "payment success.";
  if (status == "failed") return "payment failed: the card was declined.";
  if (status == "pending") return "payment is being processed.";
  if (status == "cancelled") return "payment cancelled by the payer.";
  if (status == "refunding") return "refund in progress.";
  if (status == "refunded") return "refund success.";
  if (status == "complaint") return "payment disputed by the payer.";
  if (status == "chargeback") return "payment charged back.";
  return "";
}

// Overrides for hand-made notifications (control API).
struct PsnOverrides {
  std::optional<std::string> status, risk, pgw_price, pgw_currency, bil_price, notify_type;
  bool forge_signature = false;
};

std::string notify_type_for(std::string_view status) { return status == "refunded" ? "refunded" : "transaction"; }

// Appendix 3, in the order of section 7's example, signed per appendix 1.
FormFields psn_fields(const Order& o, const StateView& s, const PsnOverrides& ov, std::int64_t now_s,
                      bool with_notify_type) {
  const std::string bil_status = ov.status.value_or(s.status);
  const std::string pgw_price = ov.pgw_price.value_or(o.price);
  const std::string pgw_currency = ov.pgw_currency.value_or(o.currency);
  const std::string req_times = std::to_string(now_s);
  const std::string& key = o.account->secret_key.reveal();
  std::string signature = psn_signature(ov.forge_signature ? key + "-forged" : key, req_times, o.account->email,
                                        o.customer_email, o.gcid, bil_status, o.method, pgw_price, pgw_currency);
  FormFields f;
  f.reserve(24);
  f.emplace_back("REQ_INVOICE", o.invoice);
  f.emplace_back("CUS_EMAIL", o.customer_email);
  f.emplace_back("BIL_METHOD", o.method);
  f.emplace_back("BIL_PRICE", ov.bil_price.value_or(o.price));
  f.emplace_back("BIL_CURRENCY", o.currency);
  f.emplace_back("REQ_EMAIL", o.account->email);
  f.emplace_back("REQ_SANDBOX", "ON");
  f.emplace_back("TNS_UTIMES", o.utimes);
  f.emplace_back("TNS_GCID", o.gcid);
  f.emplace_back("BIL_IPADDR", s.payer_ip.empty() ? o.request_ip : s.payer_ip);
  f.emplace_back("PGW_PRICE", pgw_price);
  f.emplace_back("PGW_CURRENCY", pgw_currency);
  if (!s.card_holder.empty()) f.emplace_back("PGW_CCHOLDER", s.card_holder);
  f.emplace_back("PGW_MESSAGE", ov.status ? default_message(*ov.status) : s.message);
  f.emplace_back("FDL_DECISION", ov.risk.value_or(s.risk));
  f.emplace_back("BIL_STATUS", bil_status);
  if (with_notify_type) f.emplace_back("PGW_NOTIFYTYPE", ov.notify_type.value_or(notify_type_for(bil_status)));
  for (const auto& kv : o.custom) f.push_back(kv);
  f.emplace_back("REQ_TIMES", req_times);
  f.emplace_back("REQ_SIGN", std::move(signature));
  return f;
}

// Section 6: what the browser POSTs to URL_SUCCESS / URL_PENDING / URL_FAILED. The table has no
// REQ_EMAIL, yet the signature (same as the PSN's) covers it: the merchant signs with its own.
FormFields browser_fields(const Order& o, const StateView& s, std::int64_t now_s) {
  const std::string req_times = std::to_string(now_s);
  FormFields f;
  f.reserve(20);
  f.emplace_back("REQ_TIMES", req_times);
  f.emplace_back("REQ_INVOICE", o.invoice);
  f.emplace_back("REQ_SIGN", psn_signature(o.account->secret_key.reveal(), req_times, o.account->email,
                                           o.customer_email, o.gcid, s.status, o.method, o.price, o.currency));
  f.emplace_back("REQ_SANDBOX", "ON");
  f.emplace_back("CUS_EMAIL", o.customer_email);
  f.emplace_back("TNS_GCID", o.gcid);
  f.emplace_back("TNS_UTIMES", o.utimes);
  f.emplace_back("BIL_STATUS", s.status);
  f.emplace_back("BIL_METHOD", o.method);
  f.emplace_back("PGW_PRICE", o.price);
  f.emplace_back("PGW_CURRENCY", o.currency);
  f.emplace_back("FDL_DECISION", s.risk);
  for (const auto& kv : o.custom) f.push_back(kv);
  return f;
}

const std::string& return_url_for(const Order& o, std::string_view status) {
  static const std::string none;
  if (status == "paid") return o.url_success;
  if (status == "pending") return o.url_pending;
  if (status == "failed" || status == "cancelled") return o.url_failed;
  return none;
}

json::object fields_json(const FormFields& f) {
  json::object o;
  for (const auto& [k, v] : f) o[k] = v;
  return o;
}

std::string format_utimes(std::chrono::system_clock::time_point t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  return fmt::format("{}.{:04d}", us / 1'000'000, (us % 1'000'000) / 100);
}

std::string strip_card_number(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c != ' ' && c != '-') out.push_back(c);
  return out;
}

// MM/YY or MM/YYYY. The document's own test cards carry past dates (01/2021, 01/2022), so the
// date is checked for form only.
bool valid_expiry(std::string_view s) {
  std::string t;
  for (char c : s)
    if (c != ' ') t.push_back(c);
  auto slash = t.find('/');
  if (slash != 2) return false;
  auto mm = std::string_view(t).substr(0, 2);
  auto yy = std::string_view(t).substr(3);
  if (!is_digits(mm) || !is_digits(yy) || (yy.size() != 2 && yy.size() != 4)) return false;
  int m = (mm[0] - '0') * 10 + (mm[1] - '0');
  return m >= 1 && m <= 12;
}

// ---------------------------------------------------------------------------------------------

class GlocashSimulator final : public Simulator {
 public:
  GlocashSimulator(Sandbox& frame, Settings settings) : frame_(frame), settings_(std::move(settings)) {
    for (const auto& a : settings_.accounts) accounts_.emplace(a.email, &a);
    by_invoice_.resize(settings_.accounts.size());
    by_gcid_.reserve(index_room(settings_.max_transactions));
    by_token_.reserve(index_room(settings_.max_transactions));
    for (auto& index : by_invoice_) index.reserve(index_room(settings_.max_transactions, settings_.accounts.size()));
    if (settings_.accounts.empty()) spdlog::warn("glocash: no accounts configured: every request will be refused");
  }

  std::string_view name() const override { return kName; }

  boost::json::object describe() const override {
    json::object o;
    json::array accounts;
    for (const auto& a : settings_.accounts) accounts.push_back(json::string(a.email));
    o["accounts"] = std::move(accounts);
    json::array retry;
    for (auto s : settings_.psn_retry) retry.push_back(s.count());
    o["psn_retry_seconds"] = std::move(retry);
    o["max_psn_attempts"] = settings_.max_psn_attempts;
    std::lock_guard lock(mutex_);
    o["transactions"] = by_gcid_.size();
    return o;
  }

  void mount(http::Router& r) override {
    r.add(verb::post, "/glocash/gateway/payment/index",
          frame_.faulty("glocash", [this](RequestContext& c) { return payment(c); }));
    r.add(verb::post, "/glocash/gateway/transaction/index",
          frame_.faulty("glocash", [this](RequestContext& c) { return query(c); }));
    r.add(verb::post, "/glocash/gateway/transaction/refund",
          frame_.faulty("glocash", [this](RequestContext& c) { return refund(c); }));
    r.add(verb::get, "/glocash/gateway/payment/index/token/{token}", [this](RequestContext& c) { return page(c); });
    r.add(verb::post, "/glocash/gateway/payment/index/token/{token}",
          [this](RequestContext& c) { return page_submit(c); });

    r.add(verb::get, "/_sandbox/glocash/transactions", [this](RequestContext& c) { return control_list(c); });
    r.add(verb::get, "/_sandbox/glocash/transactions/{gcid}", [this](RequestContext& c) { return control_get(c); });
    r.add(verb::post, "/_sandbox/glocash/transactions/{gcid}/status",
          [this](RequestContext& c) { return control_status(c); });
    r.add(verb::post, "/_sandbox/glocash/transactions/{gcid}/psn", [this](RequestContext& c) { return control_psn(c); });
  }

 private:
  const Account* find_account(std::string_view email) const {
    auto it = accounts_.find(email);
    return it == accounts_.end() ? nullptr : it->second;
  }

  std::shared_ptr<Transaction> find_gcid(std::string_view gcid) const {
    std::lock_guard lock(mutex_);
    auto it = by_gcid_.find(gcid);
    return it == by_gcid_.end() ? nullptr : it->second;
  }

  std::shared_ptr<Transaction> find_token(std::string_view token) const {
    std::lock_guard lock(mutex_);
    auto it = by_token_.find(token);
    return it == by_token_.end() ? nullptr : it->second;
  }

  // ---- POST /gateway/payment/index (section 4) ----

  asio::awaitable<Response> payment(RequestContext& ctx) {
    const FormFields f = is_form(ctx.req) ? http::parse_form(ctx.req.body()) : FormFields{};
    if (auto bad = first_bad_field(f, kPaymentFields)) co_return req_error(*bad, ctx.req);
    const auto email = last_value(f, "REQ_EMAIL");
    const Account* account = find_account(email);
    if (!account) co_return req_error("REQ_EMAIL", ctx.req);
    const auto expected =
        payment_signature(account->secret_key.reveal(), last_value(f, "REQ_TIMES"), email, last_value(f, "REQ_INVOICE"),
                          last_value(f, "CUS_EMAIL"), last_value(f, "BIL_METHOD"), last_value(f, "BIL_PRICE"),
                          last_value(f, "BIL_CURRENCY"));
    if (!crypto::equal_hex_ct(expected, last_value(f, "REQ_SIGN"))) co_return req_error("REQ_SIGN", ctx.req);

    auto order = std::make_shared<Order>();
    order->account = account;
    order->invoice = last_value(f, "REQ_INVOICE");
    order->customer_email = last_value(f, "CUS_EMAIL");
    order->price = last_value(f, "BIL_PRICE");
    order->price_units = parse_amount(order->price).value_or(0);
    order->currency = last_value(f, "BIL_CURRENCY");
    order->method = last_value(f, "BIL_METHOD");
    if (order->method.empty()) order->method = "C01";
    order->merchant_name = last_value(f, "REQ_MERCHANT");
    if (order->merchant_name.empty()) order->merchant_name = account->merchant_name;
    if (order->merchant_name.empty()) order->merchant_name = std::string(email.substr(email.find('@') + 1));
    order->goods_name = last_value(f, "BIL_GOODSNAME");
    order->url_success = last_value(f, "URL_SUCCESS");
    order->url_pending = last_value(f, "URL_PENDING");
    order->url_failed = last_value(f, "URL_FAILED");
    order->url_notify = last_value(f, "URL_NOTIFY");
    if (order->url_notify.empty()) order->url_notify = account->notify_url;
    for (int i = 0; i < 8; ++i) {
      std::string k = "CUSTOM_FD" + std::to_string(i);
      if (auto v = last_value(f, k); !v.empty()) order->custom.emplace_back(std::move(k), std::string(v));
    }
    const auto now = std::chrono::system_clock::now();
    order->utimes = format_utimes(now);
    order->created_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    order->request_ip = ctx.remote_addr;
    order->gcid = "CC" + random_string(14, kGcidAlphabet);
    order->token = random_hex(16);

    auto tx = std::make_shared<Transaction>();
    tx->state.updated_ms = order->created_ms;
    {
      std::lock_guard lock(mutex_);
      auto& invoices = by_invoice_[account->index];
      if (invoices.count(order->invoice)) co_return req_error("REQ_INVOICE", ctx.req);
      while (by_gcid_.count(order->gcid)) order->gcid = "CC" + random_string(14, kGcidAlphabet);
      while (by_token_.count(order->token)) order->token = random_hex(16);
      tx->order = order;
      // The keys view the order's own strings: the order lives as long as its entries.
      by_gcid_.emplace(order->gcid, tx);
      by_token_.emplace(order->token, tx);
      invoices.emplace(order->invoice, tx);
      created_.push_back(tx);
      evict_locked();
    }
    spdlog::debug("glocash: payment {} invoice {} {} {}", order->gcid, order->invoice, order->price, order->currency);
    std::string url = frame_.public_url();
    url += kPagePath;
    url += order->token;
    co_return gateway_json(PhpJsonObject().str("TNS_GCID", order->gcid).str("URL_PAYMENT", url).done(), ctx.req);
  }

  void evict_locked() {
    while (by_gcid_.size() > settings_.max_transactions && !created_.empty()) {
      auto tx = std::move(created_.front());  // keeps the keys' strings alive while erasing
      created_.pop_front();
      const auto& o = *tx->order;
      by_token_.erase(o.token);
      by_invoice_[o.account->index].erase(o.invoice);
      by_gcid_.erase(o.gcid);
    }
  }

  // ---- The payment page (section 5) ----

  std::string page_markup(const Order& o, std::string_view error, std::string_view holder,
                          std::string_view expiry) const {
    std::string b;
    b.reserve(4096);
    b += "<h1>Pay " + html_escape(o.merchant_name) + "</h1>\n";
    b += "<p class=\"sandbox\">Glocash sandbox: no real money moves.</p>\n<dl>\n";
    b += "<dt>Merchant</dt><dd>" + html_escape(o.merchant_name) + "</dd>\n";
    if (!o.goods_name.empty()) b += "<dt>Goods</dt><dd>" + html_escape(o.goods_name) + "</dd>\n";
    b += "<dt>Order</dt><dd>" + html_escape(o.invoice) + "</dd>\n";
    b += "<dt>Amount</dt><dd>" + html_escape(o.price) + " " + html_escape(o.currency) + "</dd>\n</dl>\n";
    if (!error.empty()) b += "<div class=\"error\" role=\"alert\" id=\"form-error\">" + html_escape(error) + "</div>\n";
    b += "<form method=\"post\" action=\"" + html_escape(frame_.public_url() + std::string(kPagePath) + o.token) +
         "\">\n";
    b += "<label for=\"card_number\">Card number</label>\n"
         "<input id=\"card_number\" name=\"card_number\" inputmode=\"numeric\" autocomplete=\"cc-number\" "
         "required maxlength=\"23\" aria-describedby=\"test-cards\"";
    if (!error.empty()) b += " aria-invalid=\"true\"";
    b += ">\n<div class=\"row\"><div>\n"
         "<label for=\"card_expiry\">Expiry (MM/YYYY)</label>\n"
         "<input id=\"card_expiry\" name=\"card_expiry\" autocomplete=\"cc-exp\" required maxlength=\"7\" "
         "placeholder=\"01/2030\" value=\"" +
         html_escape(expiry) +
         "\">\n</div><div>\n"
         "<label for=\"card_cvv\">CVV</label>\n"
         "<input id=\"card_cvv\" name=\"card_cvv\" inputmode=\"numeric\" autocomplete=\"cc-csc\" required "
         "maxlength=\"4\">\n</div></div>\n"
         "<label for=\"card_holder\">Card holder</label>\n"
         "<input id=\"card_holder\" name=\"card_holder\" autocomplete=\"cc-name\" maxlength=\"64\" value=\"" +
         html_escape(holder) +
         "\">\n"
         "<button type=\"submit\" name=\"action\" value=\"pay\">Pay " +
         html_escape(o.price) + " " + html_escape(o.currency) +
         "</button>\n"
         "<button type=\"submit\" name=\"action\" value=\"cancel\" class=\"secondary\" formnovalidate>"
         "Cancel payment</button>\n</form>\n";
    b += "<div class=\"hint\" id=\"test-cards\"><p>Test cards (with any well-formed expiry date and CVV):</p><ul>\n"
         "<li><code>4000000000000002</code> paid</li>\n"
         "<li><code>5200000000000023</code> failed</li>\n"
         "<li><code>5200000000000106</code> pending</li>\n"
         "<li>any other valid card number: paid</li>\n</ul></div>\n";
    return html_page("Glocash sandbox payment", b);
  }

  // A transaction that is no longer unpaid: say so, and offer the way back to the merchant.
  std::string final_markup(const Order& o, const StateView& s) const {
    const auto& url = return_url_for(o, s.status);
    std::string b = "<h1>Payment " + html_escape(s.status) + "</h1>\n<p role=\"status\">Order " +
                    html_escape(o.invoice) + " at " + html_escape(o.merchant_name) + ": " + html_escape(s.status) +
                    ".</p>\n";
    if (!url.empty()) {
      b += "<form method=\"post\" action=\"" + html_escape(url) + "\">\n";
      for (const auto& [k, v] : browser_fields(o, s, unix_seconds()))
        b += "<input type=\"hidden\" name=\"" + html_escape(k) + "\" value=\"" + html_escape(v) + "\">\n";
      b += "<button type=\"submit\">Return to the merchant</button>\n</form>\n";
    } else {
      b += "<p>You can close this window.</p>\n";
    }
    return html_page("Glocash sandbox payment", b);
  }

  asio::awaitable<Response> page(RequestContext& ctx) {
    auto tx = find_token(ctx.param("token"));
    if (!tx) co_return html_response(status::not_found, html_page("Payment not found", "<h1>Payment not found</h1>\n"
                                                                  "<p>This payment link is unknown or expired.</p>"),
                                     ctx.req);
    StateView s;
    {
      std::lock_guard lock(mutex_);
      // Appendix 3: BIL_IPADDR is the payer's address when entering the payment page.
      if (tx->state.payer_ip.empty()) tx->state.payer_ip = ctx.remote_addr;
      s = view_of(tx->state);
    }
    if (s.status != "unpaid") co_return html_response(status::ok, final_markup(*tx->order, s), ctx.req);
    co_return html_response(status::ok, page_markup(*tx->order, {}, {}, {}), ctx.req);
  }

  asio::awaitable<Response> page_submit(RequestContext& ctx) {
    auto tx = find_token(ctx.param("token"));
    const FormFields f = is_form(ctx.req) ? http::parse_form(ctx.req.body()) : FormFields{};
    const bool automation = last_value(f, "auto") == "1";
    if (!tx) {
      if (automation) co_return control_error(status::not_found, "unknown payment token", ctx.req);
      co_return html_response(status::not_found, html_page("Payment not found", "<h1>Payment not found</h1>"), ctx.req);
    }
    const Order& o = *tx->order;
    const bool cancel = last_value(f, "action") == "cancel";
    std::string new_status = "cancelled";
    const auto holder = last_value(f, "card_holder");
    const auto expiry = last_value(f, "card_expiry");
    std::string card;
    if (!cancel) {
      card = strip_card_number(last_value(f, "card_number"));
      const auto cvv = last_value(f, "card_cvv");
      std::string error;
      auto outcome = card_outcome(card);
      if (outcome == CardOutcome::invalid)
        error = "The card number is not valid: enter 13 to 19 digits.";
      else if ((!automation || !expiry.empty()) && !valid_expiry(expiry))
        error = "The expiry date is not valid: use MM/YYYY.";
      else if ((!automation || !cvv.empty()) && (!is_digits(cvv) || cvv.size() < 3 || cvv.size() > 4))
        error = "The CVV is not valid: enter 3 or 4 digits.";
      else if (utf8_length(holder) > 64)
        error = "The card holder's name is too long (at most 64 characters).";
      if (!error.empty()) {
        if (automation) co_return control_error(status::bad_request, error, ctx.req);
        co_return html_response(status::ok, page_markup(o, error, holder, expiry), ctx.req);
      }
      switch (outcome) {
        case CardOutcome::paid: new_status = "paid"; break;
        case CardOutcome::failed: new_status = "failed"; break;
        case CardOutcome::pending: new_status = "pending"; break;
        case CardOutcome::invalid: break;
      }
    }

    StateView s;
    bool changed = false;
    {
      std::lock_guard lock(mutex_);
      auto& st = tx->state;
      if (st.payer_ip.empty()) st.payer_ip = ctx.remote_addr;
      if (st.status == "unpaid") {
        st.status = new_status;
        st.risk = "ACP";
        st.message = default_message(new_status);
        if (!cancel) {
          st.card_holder = holder;
          st.card_last4 = card.substr(card.size() - 4);
        }
        st.updated_ms = now_ms();
        changed = true;
      }
      s = view_of(st);
    }
    if (!changed) {
      if (automation)
        co_return json_reply(status::conflict,
                             json::object{{"error", "the payment is already " + s.status}, {"status", s.status}},
                             ctx.req);
      co_return html_response(status::ok, final_markup(o, s), ctx.req);
    }
    spdlog::debug("glocash: {} {} on the payment page", o.gcid, s.status);
    notify(tx, s);

    auto fields = browser_fields(o, s, unix_seconds());
    const auto& url = return_url_for(o, s.status);
    if (automation) {
      json::object body;
      body["status"] = s.status;
      body["gcid"] = o.gcid;
      body["return_url"] = url;
      body["return_fields"] = fields_json(fields);
      co_return json_reply(status::ok, body, ctx.req);
    }
    if (url.empty()) co_return html_response(status::ok, final_markup(o, s), ctx.req);
    co_return html_response(status::ok,
                            auto_post_page("Payment " + s.status, "Returning you to " + o.merchant_name + "...", url,
                                           fields),
                            ctx.req);
  }

  // ---- PSN (section 7) ----

  void record_attempt(const std::shared_ptr<Transaction>& tx, NotifyLogEntry entry, std::string notify_type) {
    entry.notify_type = std::move(notify_type);
    std::lock_guard lock(mutex_);
    tx->state.psn_log.record(std::move(entry));
  }

  net::OutboundRequest psn_request(std::string url, const FormFields& fields) const {
    net::OutboundRequest req;
    req.method = verb::post;
    req.url = std::move(url);
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    req.body = http::encode_form(fields);
    req.connect_timeout = std::min(settings_.psn_timeout, std::chrono::milliseconds(5000));
    req.timeout = settings_.psn_timeout;
    return req;
  }

  // Sends the PSN for the state `s` now and re-sends on the schedule until HTTP 200.
  void notify(const std::shared_ptr<Transaction>& tx, const StateView& s) {
    const Order& o = *tx->order;
    if (o.url_notify.empty()) return;  // no URL_NOTIFY and none in the "back office": nothing to send
    {
      std::lock_guard lock(mutex_);
      ++tx->state.psn_notifications;
    }
    auto fields = psn_fields(o, s, {}, unix_seconds(), true);
    NotificationJob job;
    job.gateway = "glocash";
    job.subject = o.gcid + " " + s.status;
    job.request = psn_request(o.url_notify, fields);
    job.retry_delays = settings_.psn_retry;
    job.max_attempts = settings_.max_psn_attempts;
    job.on_attempt = [this, tx, status = s.status, type = notify_type_for(s.status)](const DeliveryAttempt& a) {
      record_attempt(tx, NotifyLogEntry::scheduled(a, status, 0), type);
    };
    frame_.notifier().start(std::move(job));
  }

  // ---- POST /gateway/transaction/index (section 8) ----

  asio::awaitable<Response> query(RequestContext& ctx) {
    const FormFields f = is_form(ctx.req) ? http::parse_form(ctx.req.body()) : FormFields{};
    if (auto bad = first_bad_field(f, kQueryFields)) co_return req_error(*bad, ctx.req);
    const auto email = last_value(f, "REQ_EMAIL");
    const Account* account = find_account(email);
    if (!account) co_return req_error("REQ_EMAIL", ctx.req);
    const auto gcid = last_value(f, "TNS_GCID");
    const auto expected = query_signature(account->secret_key.reveal(), last_value(f, "REQ_TIMES"), email, gcid);
    if (!crypto::equal_hex_ct(expected, last_value(f, "REQ_SIGN"))) co_return req_error("REQ_SIGN", ctx.req);
    auto tx = find_gcid(gcid);
    if (!tx || tx->order->account != account) co_return nginx_404(ctx.req);
    StateView s;
    {
      std::lock_guard lock(mutex_);
      s = view_of(tx->state);
    }
    // The same fields as the PSN; the document's example shows REQ_TIMES and TNS_UTIMES as numbers.
    PhpJsonObject inner;
    for (const auto& [k, v] : psn_fields(*tx->order, s, {}, unix_seconds(), false)) {
      if (k == "REQ_TIMES" || k == "TNS_UTIMES")
        inner.raw(k, v);
      else
        inner.str(k, v);
    }
    co_return gateway_json(PhpJsonObject().raw(tx->order->gcid, inner.done()).done(), ctx.req);
  }

  // ---- POST /gateway/transaction/refund (section 10) ----

  asio::awaitable<Response> refund(RequestContext& ctx) {
    const FormFields f = is_form(ctx.req) ? http::parse_form(ctx.req.body()) : FormFields{};
    if (auto bad = first_bad_field(f, kRefundFields)) co_return refund_answer(400, *bad, ctx.req);
    const auto email = last_value(f, "REQ_EMAIL");
    const Account* account = find_account(email);
    if (!account) co_return refund_answer(400, "REQ_EMAIL", ctx.req);
    const auto gcid = last_value(f, "TNS_GCID");
    const auto amount_text = last_value(f, "PGW_PRICE");
    const auto expected = refund_signature(account->secret_key.reveal(), last_value(f, "REQ_TIMES"), email, gcid,
                                           amount_text);
    if (!crypto::equal_hex_ct(expected, last_value(f, "REQ_SIGN"))) co_return refund_answer(400, "REQ_SIGN", ctx.req);
    auto tx = find_gcid(gcid);
    if (!tx || tx->order->account != account) co_return refund_answer(400, "TNS_GCID", ctx.req);
    const std::int64_t amount = parse_amount(amount_text).value_or(0);
    const Order& o = *tx->order;
    bool accepted = false;
    bool full = false;
    StateView s;
    std::string why;
    {
      std::lock_guard lock(mutex_);
      auto& st = tx->state;
      if (st.status != "paid") {
        why = "status is " + st.status;
      } else if (st.refunded_units + amount > o.price_units) {
        why = "would exceed the price: refunded " + format_amount(st.refunded_units, decimals_of(o.price)) + " of " +
              o.price;
      } else {
        accepted = true;
        st.refunded_units += amount;
        st.refunds.push_back({std::string(amount_text), now_ms()});
        st.updated_ms = now_ms();
        if (st.refunded_units == o.price_units) {
          full = true;
          st.status = "refunded";
          st.message = default_message("refunded");
        }
      }
      s = view_of(st);
    }
    if (!accepted) {
      spdlog::debug("glocash: refund of {} on {} refused: {}", amount_text, o.gcid, why);
      co_return refund_answer(400, "REFUND FAILED", ctx.req);
    }
    spdlog::debug("glocash: refund of {} on {} accepted{}", amount_text, o.gcid, full ? " (full)" : "");
    if (full) notify(tx, s);
    co_return refund_answer(200, "REFUND SUCCESS", ctx.req);
  }

  // ---- Control API ----

  json::object state_json(const Transaction& tx) const {  // mutex held
    const Order& o = *tx.order;
    const State& st = tx.state;
    json::object j;
    j["gcid"] = o.gcid;
    j["invoice"] = o.invoice;
    j["account"] = o.account->email;
    j["customer_email"] = o.customer_email;
    j["price"] = o.price;
    j["currency"] = o.currency;
    j["method"] = o.method;
    j["merchant_name"] = o.merchant_name;
    j["goods_name"] = o.goods_name;
    j["url_payment"] = frame_.public_url() + std::string(kPagePath) + o.token;
    j["urls"] = json::object{{"success", o.url_success},
                             {"pending", o.url_pending},
                             {"failed", o.url_failed},
                             {"notify", o.url_notify}};
    j["custom"] = fields_json(o.custom);
    j["created_at_ms"] = o.created_ms;
    j["tns_utimes"] = o.utimes;
    j["status"] = st.status;
    j["risk"] = st.risk;
    j["payer_ip"] = st.payer_ip;
    j["card_last4"] = st.card_last4;
    j["refunded"] = format_amount(st.refunded_units, decimals_of(o.price));  // in the price's form: "5.00"
    json::array refunds;
    for (const auto& r : st.refunds) refunds.push_back(json::object{{"amount", r.amount}, {"at_ms", r.at_ms}});
    j["refunds"] = std::move(refunds);
    j["updated_at_ms"] = st.updated_ms;
    json::object psn{{"notifications", st.psn_notifications}};
    st.psn_log.add_to(psn, {"bil_status", false, true});
    j["psn"] = std::move(psn);
    return j;
  }

  asio::awaitable<Response> control_get(RequestContext& ctx) {
    auto tx = find_gcid(ctx.param("gcid"));
    if (!tx) co_return control_error(status::not_found, "unknown transaction", ctx.req);
    json::object j;
    {
      std::lock_guard lock(mutex_);
      j = state_json(*tx);
    }
    co_return json_reply(status::ok, j, ctx.req);
  }

  asio::awaitable<Response> control_list(RequestContext& ctx) {
    const auto q = http::parse_form(ctx.query);
    const auto invoice = last_value(q, "invoice");
    std::size_t limit = 100;
    if (auto l = last_value(q, "limit"); is_digits(l) && l.size() < 7) limit = std::stoul(std::string(l));
    json::array out;
    {
      std::lock_guard lock(mutex_);
      if (!invoice.empty()) {
        for (const auto& invoices : by_invoice_) {
          auto it = invoices.find(invoice);
          if (it != invoices.end()) out.push_back(state_json(*it->second));
        }
      } else {
        for (auto it = created_.rbegin(); it != created_.rend() && out.size() < limit; ++it)
          out.push_back(state_json(**it));
      }
    }
    co_return json_reply(status::ok, json::object{{"transactions", std::move(out)}}, ctx.req);
  }

  static std::optional<std::string> json_string(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    if (!v || !v->is_string()) return std::nullopt;
    return std::string(v->as_string());
  }

  asio::awaitable<Response> control_status(RequestContext& ctx) {
    auto tx = find_gcid(ctx.param("gcid"));
    if (!tx) co_return control_error(status::not_found, "unknown transaction", ctx.req);
    boost::system::error_code ec;
    auto body = json::parse(ctx.req.body(), ec);
    if (ec || !body.is_object()) co_return control_error(status::bad_request, "body must be a JSON object", ctx.req);
    const auto& b = body.as_object();
    auto new_status = json_string(b, "status");
    if (!new_status || !known_status(*new_status))
      co_return control_error(status::bad_request,
                              "status must be one of unpaid, paid, pending, cancelled, failed, refunding, refunded, "
                              "complaint, chargeback",
                              ctx.req);
    auto risk = json_string(b, "risk");
    if (risk && !known_risk_decision(*risk))
      co_return control_error(status::bad_request, "risk must be ACP, REV, REJ or BAN", ctx.req);
    bool notify_now = true;
    if (const auto* n = b.if_contains("notify"); n && n->is_bool()) notify_now = n->as_bool();
    StateView s;
    {
      std::lock_guard lock(mutex_);
      auto& st = tx->state;
      st.status = *new_status;
      if (risk) st.risk = *risk;
      st.message = default_message(st.status);
      if (st.status == "refunded") st.refunded_units = tx->order->price_units;
      st.updated_ms = now_ms();
      s = view_of(st);
    }
    spdlog::info("glocash: {} forced to {} (risk {})", tx->order->gcid, s.status, s.risk);
    const bool notified = notify_now && !tx->order->url_notify.empty();
    if (notify_now) notify(tx, s);
    json::object j;
    {
      std::lock_guard lock(mutex_);
      j = state_json(*tx);
    }
    j["notified"] = notified;
    co_return json_reply(status::ok, j, ctx.req);
  }

  asio::awaitable<Response> control_psn(RequestContext& ctx) {
    auto tx = find_gcid(ctx.param("gcid"));
    if (!tx) co_return control_error(status::not_found, "unknown transaction", ctx.req);
    json::object b;
    if (!ctx.req.body().empty()) {
      boost::system::error_code ec;
      auto body = json::parse(ctx.req.body(), ec);
      if (ec || !body.is_object()) co_return control_error(status::bad_request, "body must be a JSON object", ctx.req);
      b = body.as_object();
    }
    PsnOverrides ov;
    ov.status = json_string(b, "status");
    if (ov.status && !known_status(*ov.status))
      co_return control_error(status::bad_request, "unknown status", ctx.req);
    ov.risk = json_string(b, "risk");
    ov.pgw_price = json_string(b, "price");
    ov.pgw_currency = json_string(b, "currency");
    ov.bil_price = json_string(b, "bil_price");
    ov.notify_type = json_string(b, "notify_type");
    if (const auto* v = b.if_contains("forge_signature"); v && v->is_bool()) ov.forge_signature = v->as_bool();
    std::int64_t repeat = 1;
    if (const auto* v = b.if_contains("repeat"); v && v->is_int64()) repeat = v->as_int64();
    if (repeat < 1 || repeat > 100) co_return control_error(status::bad_request, "repeat must be 1..100", ctx.req);
    std::string url = json_string(b, "url").value_or(tx->order->url_notify);
    if (url.empty())
      co_return control_error(status::bad_request, "the transaction has no URL_NOTIFY: pass \"url\"", ctx.req);

    StateView s;
    {
      std::lock_guard lock(mutex_);
      s = view_of(tx->state);
    }
    const auto fields = psn_fields(*tx->order, s, ov, unix_seconds(), true);
    const std::string bil_status(last_value(fields, "BIL_STATUS"));
    const std::string type(last_value(fields, "PGW_NOTIFYTYPE"));
    json::array responses;
    for (std::int64_t i = 1; i <= repeat; ++i) {
      auto res = co_await frame_.notifier().send_once(psn_request(url, fields));
      record_attempt(tx,
                     NotifyLogEntry::manual_send(static_cast<int>(i), res,
                                                 res.outcome == net::SendOutcome::response && res.status == 200,
                                                 bil_status, 0),
                     type);
      spdlog::info("glocash: manual PSN {} {} #{} to {}: {} {}", tx->order->gcid, bil_status, i, url,
                   to_string(res.outcome), res.status);
      json::object r;
      r["outcome"] = to_string(res.outcome);
      r["status"] = res.status;
      r["body"] = res.body.substr(0, 4096);
      if (!res.error.empty()) r["error"] = res.error;
      responses.push_back(std::move(r));
    }
    co_return json_reply(status::ok, json::object{{"fields", fields_json(fields)}, {"responses", std::move(responses)}},
                         ctx.req);
  }

  Sandbox& frame_;
  const Settings settings_;
  std::unordered_map<std::string_view, const Account*> accounts_;  // views settings_.accounts

  mutable std::mutex mutex_;
  using Index = std::unordered_map<std::string_view, std::shared_ptr<Transaction>>;
  Index by_gcid_;
  Index by_token_;
  std::vector<Index> by_invoice_;                         // per account (Account::index)
  std::deque<std::shared_ptr<Transaction>> created_;      // oldest first
};

}  // namespace

std::unique_ptr<Simulator> make_simulator(Sandbox& frame, const ConfigNode& section) {
  return std::make_unique<GlocashSimulator>(frame, parse_settings(section));
}

}  // namespace paymux::sandbox::glocash
