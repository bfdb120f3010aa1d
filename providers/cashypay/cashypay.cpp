#include "providers/cashypay/cashypay.hpp"

#include "providers/cashypay/wire.hpp"
#include "service/core/clock.hpp"
#include "service/core/crypto.hpp"
#include "service/core/flat_json.hpp"
#include "service/core/json.hpp"
#include "service/core/money.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

namespace paymux::providers::cashypay {
namespace {

namespace bj = boost::json;

std::string_view field(const bj::object& request, std::string_view object, std::string_view key) {
  const auto* o = json::obj(request, object);
  return o ? json::str(*o, key) : std::string_view{};
}

std::string quoted(std::string_view s) { return bj::serialize(bj::value(bj::string_view(s.data(), s.size()))); }

std::string nonce_str() {
  unsigned char b[16];
  crypto::random_bytes(b, sizeof b);
  static constexpr char hex[] = "0123456789abcdef";
  std::string s;
  for (auto c : b) {
    s.push_back(hex[c >> 4]);
    s.push_back(hex[c & 0xF]);
  }
  return s;  // 32 characters, the document's limit
}

std::optional<std::int64_t> parse_limit(const ConnectorConfig& c, const std::string& key) {
  auto v = setting(c, key, "");
  if (v.empty()) return std::nullopt;
  auto n = parse_decimal(v, 0);
  if (!n) throw ConfigError("connector " + c.id + ": settings." + key + ": expected an integer of minor units");
  return n;
}

std::size_t utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

// The first max_chars characters, never splitting a UTF-8 sequence.
std::string utf8_prefix(std::string_view s, std::size_t max_chars) {
  std::size_t chars = 0, i = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (chars == max_chars) break;
      ++chars;
    }
  }
  return std::string(s.substr(0, i));
}

// remark: at most 32 plain ASCII characters (the document asks for English or unaccented Spanish).
std::string remark_of(std::string_view s) {
  std::string out;
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f && out.size() < 32)
      out.push_back(c);
  return out.empty() ? "payment" : out;
}

}  // namespace

CashypayProvider::CashypayProvider(const ConnectorConfig& c, const ProviderEnv&)
    : merchant_id_(require_credential(c, "merchant_id").reveal()),
      api_key_(require_credential(c, "api_key")),
      query_path_(setting(c, "query_path", "/api/payDeskQuery")) {
  for (const auto& [k, v] : c.credentials)
    if (k != "merchant_id" && k != "api_key")
      throw ConfigError("connector " + c.id + ": credentials." + k + ": unknown key (cashypay takes merchant_id, api_key)");
  for (const auto& [k, v] : c.settings)
    if (k != "query_path" && k != "currency" && k != "amount_min" && k != "amount_max" && k != "expire_seconds")
      throw ConfigError("connector " + c.id + ": settings." + k +
                        ": unknown key (cashypay takes query_path, currency, amount_min, amount_max, expire_seconds)");
  if (auto cur = setting(c, "currency", ""); !cur.empty()) {
    if (!find_currency(cur)) throw ConfigError("connector " + c.id + ": settings.currency: unknown currency");
    currencies_.push_back(cur);
  }
  amount_min_ = parse_limit(c, "amount_min");
  amount_max_ = parse_limit(c, "amount_max");
  if (auto e = parse_limit(c, "expire_seconds")) default_expire_seconds_ = *e;
}

Capabilities CashypayProvider::capabilities() const {
  return {{Flow::authorize, Flow::sync, Flow::notification}, {"hosted"}, currencies_};
}

std::optional<http::ApiError> CashypayProvider::validate(const store::PaymentRecord& p, const bj::object& r) const {
  if (amount_min_ && p.amount < *amount_min_)
    return http::bad_request("amount_too_small", "CashyPay takes at least " + std::to_string(*amount_min_) +
                                                     " (minor units) on this connector.", "amount");
  if (amount_max_ && p.amount > *amount_max_)
    return http::bad_request("amount_too_large", "CashyPay takes at most " + std::to_string(*amount_max_) +
                                                     " (minor units) on this connector.", "amount");
  // Mandatory payer fields of /api/payDesk.
  struct Need {
    std::string_view key, gateway, max;
    std::size_t max_len;
  };
  for (auto [key, gateway, max_len] : {std::tuple{"first_name", "realName", 64}, {"phone", "phone", 32},
                                       {"email", "email", 64}, {"id_type", "idType", 32},
                                       {"id_number", "idCard", 32}}) {
    const std::string param = std::string("customer.") + key;
    auto v = field(r, "customer", key);
    if (v.empty())
      return http::bad_request("parameter_missing",
                               "CashyPay requires " + param + " (its field " + gateway + ").", param);
    if (utf8_length(v) > static_cast<std::size_t>(max_len))
      return http::bad_request("parameter_invalid", param + " is longer than CashyPay's " + std::to_string(max_len) +
                                                        " characters.", param);
  }
  return std::nullopt;
}

WireRequest CashypayProvider::signed_post(std::string path, std::string body) const {
  WireRequest w;
  w.path = std::move(path);
  w.headers = {{"Content-Type", "application/json"}, {"MerchantId", merchant_id_}, {"Sign", sign(body, api_key_.reveal())}};
  w.body = std::move(body);
  return w;
}

WireRequest CashypayProvider::build_authorize(const PaymentInput& in) const {
  const auto& p = in.payment;
  const auto& r = in.request;
  const auto cur = find_currency(p.currency);
  std::string real_name(field(r, "customer", "first_name"));
  if (auto last = field(r, "customer", "last_name"); !last.empty()) real_name += " " + std::string(last);
  real_name = utf8_prefix(real_name, 64);
  // The pay desk lapses exactly when the payment does (never later: a late payment would be lost).
  const std::int64_t expire = p.expires_at ? std::max<std::int64_t>(1, (p.expires_at - p.created_at) / 1000)
                                           : default_expire_seconds_;
  // The body is written by hand so that the amount is an exact decimal literal, never a double.
  std::string body = "{";
  body += "\"currency\":" + quoted(p.currency);
  body += ",\"amount\":" + to_decimal(p.amount, cur ? cur->exponent : 2);
  body += ",\"reusableStatus\":false";
  body += ",\"mchOrderNo\":" + quoted(in.order_no);
  body += ",\"expireTime\":" + std::to_string(expire);
  body += ",\"notifyUrl\":" + quoted(in.notify_url);
  body += ",\"nonceStr\":" + quoted(nonce_str());
  body += ",\"realName\":" + quoted(real_name);
  body += ",\"phone\":" + quoted(field(r, "customer", "phone"));
  body += ",\"email\":" + quoted(field(r, "customer", "email"));
  body += ",\"idType\":" + quoted(field(r, "customer", "id_type"));
  body += ",\"idCard\":" + quoted(field(r, "customer", "id_number"));
  body += ",\"remark\":" + quoted(remark_of(json::str(r, "description").empty() ? std::string_view(p.reference)
                                                                                 : json::str(r, "description")));
  body += ",\"returnUrl\":" + quoted(in.return_url);
  body += "}";
  return signed_post("/api/payDesk", std::move(body));
}

PaymentResult CashypayProvider::parse_authorize(const net::OutboundResponse& res, const PaymentInput& in) const {
  PaymentResult r;
  boost::system::error_code ec;
  auto v = bj::parse(res.body, ec);
  if (res.status >= 500 || ec || !v.is_object()) {
    r.unknown = true;
    r.error = ec || !v.is_object() ? "cashypay answer is not JSON" : "cashypay answered HTTP " + std::to_string(res.status);
    return r;
  }
  const auto& o = v.get_object();
  auto* code = o.if_contains("code");
  const std::string code_text = code ? (code->is_int64() ? std::to_string(code->get_int64())
                                                         : code->is_string() ? std::string(code->get_string()) : "")
                                     : "";
  if (code_text != "200") {
    if (code_text.empty()) {
      r.unknown = true;
      r.error = "cashypay answer has no code";
      return r;
    }
    r.status = PaymentStatus::failed;
    r.failure = Failure{code_text, std::string(json::str(o, "msg")), code_text};
    return r;
  }
  const auto* data = json::obj(o, "data");
  if (!data || json::str(*data, "payUrl").empty()) {
    r.unknown = true;
    r.error = "cashypay answer lacks data.payUrl";
    return r;
  }
  r.status = PaymentStatus::requires_action;
  r.provider_payment_id = std::string(json::str(*data, "orderNo"));
  // The link lasts expireTime seconds from now: the payment expires with it.
  if (!in.payment.expires_at) r.expires_at = now_ms() + default_expire_seconds_ * 1000;
  bj::object na;
  na["type"] = "redirect";
  na["url"] = json::str(*data, "payUrl");
  r.next_action = std::move(na);
  r.provider_status = "PAYING";
  return r;
}

std::optional<WireRequest> CashypayProvider::build_sync(const store::PaymentRecord& p) const {
  // The platform order number is preferred; the merchant order number works too.
  std::string body = "{";
  if (!p.provider_payment_id.empty())
    body += "\"orderNo\":" + quoted(p.provider_payment_id);
  else
    body += "\"mchOrderNo\":" + quoted(p.id.substr(4));
  body += ",\"nonceStr\":" + quoted(nonce_str()) + "}";
  return signed_post(query_path_, std::move(body));
}

PaymentResult CashypayProvider::read_order(std::string_view body, bool from_query) const {
  PaymentResult r;
  auto flat = json::parse_flat_object(body);
  if (!flat) {
    r.unknown = true;
    r.error = "cashypay order is not a JSON object";
    return r;
  }
  auto get = [&](std::string_view k) -> std::string {
    auto it = flat->find(k);
    return it == flat->end() ? std::string() : it->second.text;
  };
  const auto status = get("orderStatus");
  const auto mapping = map_status(status);
  if (!mapping.known) spdlog::warn("cashypay: unknown orderStatus '{}' treated as pending", status);
  r.status = mapping.status;
  r.provider_status = status;
  r.provider_payment_id = get("orderNo");
  if (mapping.status == PaymentStatus::failed) r.failure = Failure{"FAIL", "CashyPay reported the payment failed.", status};
  // The fee (4 decimals, finer than the currency's minor unit) is kept as CashyPay's own text.
  bj::object data;
  if (auto fee = get("fee"); !fee.empty() && fee != "null") data["fee"] = fee;
  if (auto t = get("completionTime"); !t.empty() && t != "null") data["completion_time"] = t;
  if (!data.empty()) r.provider_data = std::move(data);
  (void)from_query;
  return r;
}

PaymentResult CashypayProvider::parse_sync(const net::OutboundResponse& res, const store::PaymentRecord&) const {
  PaymentResult r;
  boost::system::error_code ec;
  auto v = bj::parse(res.body, ec);
  if (res.status != 200 || ec || !v.is_object()) {
    r.unknown = true;
    r.error = "cashypay query answered HTTP " + std::to_string(res.status);
    return r;
  }
  const auto& o = v.get_object();
  auto* code = o.if_contains("code");
  if (!code || !((code->is_int64() && code->get_int64() == 200) || (code->is_string() && code->get_string() == "200"))) {
    r.unknown = true;
    r.error = "cashypay query refused: " + std::string(json::str(o, "msg"));
    return r;
  }
  auto* data = o.if_contains("data");
  if (!data || !data->is_object()) {
    r.unknown = true;
    r.error = "cashypay query answer has no data";
    return r;
  }
  return read_order(bj::serialize(*data), true);
}

Notification CashypayProvider::parse_notification(const http::RequestContext& ctx) const {
  Notification n;
  const std::string_view body = ctx.req.body();
  const auto sig = std::string_view(ctx.req["Sign"]);
  const auto mid = std::string_view(ctx.req["MerchantId"]);
  auto flat = json::parse_flat_object(body);
  if (sig.empty() || !flat) {
    n.verification = Verification::malformed;
    n.reason = "a JSON body with a Sign header is required";
    return n;
  }
  // The signature covers the raw body bytes exactly as received.
  if (!crypto::equal_hex_ct(sign(body, api_key_.reveal()), sig) || mid != merchant_id_) {
    n.verification = Verification::bad_signature;
    n.reason = "Sign does not match";
    return n;
  }
  auto get = [&](std::string_view k) -> std::string {
    auto it = flat->find(k);
    return it == flat->end() ? std::string() : it->second.text;
  };
  n.verification = Verification::verified;
  n.order_no = get("mchOrderNo");
  n.provider_payment_id = get("orderNo");
  n.amount_decimal = get("amount");
  if (n.amount_decimal.empty()) n.amount_decimal = "missing";  // never equal to the order
  n.result = read_order(body, false);
  bj::object extra;
  if (auto fee = get("fee"); !fee.empty()) extra["fee"] = fee;
  if (auto t = get("completionTime"); !t.empty()) extra["completion_time"] = t;
  n.extra_json = bj::serialize(extra);
  n.dedup_key = n.provider_payment_id + ":" + get("orderStatus");
  return n;
}

Notification CashypayProvider::parse_return(const http::RequestContext& ctx) const {
  // The pay desk's browser return carries nothing signed: only our own payment id.
  Notification n;
  n.verification = Verification::malformed;
  n.reason = "no signed fields";
  n.payment_id_hint = std::string(http::form_get(http::parse_form(ctx.query), "payment"));
  return n;
}

http::Response CashypayProvider::acknowledge(bool received, const http::Request& req) const {
  // 200, 301 and 302 count as received; anything else is retried (1, 2, 4 ... 512 minutes).
  if (received) return http::text_response(bhttp::status::ok, "SUCCESS", req);
  return http::text_response(bhttp::status::bad_request, "FAIL", req);
}

}  // namespace paymux::providers::cashypay
