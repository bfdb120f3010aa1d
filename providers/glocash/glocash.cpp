#include "providers/glocash/glocash.hpp"

#include "providers/glocash/wire.hpp"
#include "service/core/crypto.hpp"
#include "service/core/money.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <ctime>

namespace paymux::providers::glocash {
namespace {

std::string unix_now() { return std::to_string(static_cast<long long>(std::time(nullptr))); }

std::string_view json_str(const boost::json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string()) return {};
  return it->value().get_string();
}

const boost::json::object* json_obj(const boost::json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_object()) return nullptr;
  return &it->value().get_object();
}

// Query answers carry numbers where PSNs carry strings; sign over their text form.
std::string scalar_text(const boost::json::value& v) {
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_int64()) return std::to_string(v.get_int64());
  if (v.is_uint64()) return std::to_string(v.get_uint64());
  if (v.is_double()) return boost::json::serialize(v);
  if (v.is_bool()) return v.get_bool() ? "1" : "0";
  return {};
}

bool plausible_email(std::string_view e) {
  auto at = e.find('@');
  return !e.empty() && e.size() <= 255 && at != std::string_view::npos && at > 0 && at + 1 < e.size() &&
         e.find(' ') == std::string_view::npos;
}

void add(WireRequest& w, http::FormFields& f, std::string_view k, std::string_view v) {
  if (!v.empty()) f.emplace_back(std::string(k), std::string(v));
}

}  // namespace

GlocashProvider::GlocashProvider(const ConnectorConfig& c, const ProviderEnv&)
    : email_(require_credential(c, "email").reveal()),
      key_(require_credential(c, "secret_key")),
      method_(setting(c, "method", "C01")),
      cc3ds_(setting(c, "cc3ds", "")),
      merchant_name_(setting(c, "merchant_name", "")) {
  for (const auto& [k, v] : c.credentials)
    if (k != "email" && k != "secret_key")
      throw ConfigError("connector " + c.id + ": credentials." + k + ": unknown key (glocash takes email, secret_key)");
  for (const auto& [k, v] : c.settings)
    if (k != "method" && k != "cc3ds" && k != "merchant_name")
      throw ConfigError("connector " + c.id + ": settings." + k + ": unknown key (glocash takes method, cc3ds, merchant_name)");
}

Capabilities GlocashProvider::capabilities() const {
  return {{Flow::authorize, Flow::sync, Flow::refund, Flow::notification}, {"hosted"}, {}};
}

std::optional<http::ApiError> GlocashProvider::validate(const store::PaymentRecord& p,
                                                        const boost::json::object& request) const {
  // Appendix 2: CUS_EMAIL is mandatory; BIL_GOODSNAME at most 255; REQ_INVOICE is ours.
  const auto* customer = json_obj(request, "customer");
  auto email = customer ? json_str(*customer, "email") : std::string_view{};
  if (email.empty())
    return http::bad_request("parameter_missing", "Glocash requires the customer's email.", "customer.email");
  if (!plausible_email(email))
    return http::bad_request("parameter_invalid", "customer.email is not a valid email address.", "customer.email");
  if (json_str(request, "description").size() > 255)
    return http::bad_request("parameter_invalid", "description is longer than 255 characters.", "description");
  return std::nullopt;
}

WireRequest GlocashProvider::build_authorize(const PaymentInput& in) const {
  const auto& p = in.payment;
  const auto currency = find_currency(p.currency);
  const std::string price = to_decimal(p.amount, currency ? currency->exponent : 2);
  const auto* customer = json_obj(in.request, "customer");
  const auto* billing = json_obj(in.request, "billing");
  const std::string cus_email(customer ? json_str(*customer, "email") : "");
  const std::string times = unix_now();

  WireRequest w;
  w.method = bhttp::verb::post;
  w.path = "/gateway/payment/index";
  w.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  http::FormFields f;
  add(w, f, "REQ_TIMES", times);
  add(w, f, "REQ_EMAIL", email_);
  add(w, f, "REQ_INVOICE", in.order_no);
  add(w, f, "CUS_EMAIL", cus_email);
  add(w, f, "BIL_METHOD", method_);
  add(w, f, "BIL_PRICE", price);
  add(w, f, "BIL_CURRENCY", p.currency);
  add(w, f, "BIL_CC3DS", cc3ds_);
  add(w, f, "REQ_MERCHANT", merchant_name_);
  add(w, f, "BIL_GOODSNAME", json_str(in.request, "description"));
  if (customer) {
    add(w, f, "CUS_FNAME", json_str(*customer, "first_name"));
    add(w, f, "CUS_LNAME", json_str(*customer, "last_name"));
  }
  if (billing) {
    add(w, f, "CUS_COUNTRY", json_str(*billing, "country"));
    add(w, f, "CUS_STATE", json_str(*billing, "state"));
    add(w, f, "CUS_CITY", json_str(*billing, "city"));
    add(w, f, "CUS_ADDRESS", json_str(*billing, "line1"));
    add(w, f, "CUS_POSTAL", json_str(*billing, "postal_code"));
  }
  add(w, f, "URL_SUCCESS", in.return_url);
  add(w, f, "URL_PENDING", in.return_url);
  add(w, f, "URL_FAILED", in.return_url);
  add(w, f, "URL_NOTIFY", in.notify_url);
  add(w, f, "REQ_SIGN",
      payment_signature(key_.reveal(), times, email_, in.order_no, cus_email, method_, price, p.currency));
  w.body = http::encode_form(f);
  return w;
}

PaymentResult GlocashProvider::parse_authorize(const net::OutboundResponse& res, const PaymentInput&) const {
  PaymentResult r;
  if (res.status != 200) {
    r.unknown = true;
    r.error = "glocash answered HTTP " + std::to_string(res.status);
    return r;
  }
  boost::system::error_code ec;
  auto v = boost::json::parse(res.body, ec);
  if (ec || !v.is_object()) {
    r.unknown = true;
    r.error = "glocash answered with a body that is not JSON";
    return r;
  }
  const auto& o = v.get_object();
  if (auto err = json_str(o, "REQ_ERROR"); !err.empty()) {
    // The gateway names the parameter it refused; nothing was created there.
    r.status = PaymentStatus::failed;
    r.failure = Failure{std::string(err), "Glocash refused the request parameter " + std::string(err) + ".",
                        "REQ_ERROR"};
    r.provider_status = "REQ_ERROR";
    return r;
  }
  auto gcid = json_str(o, "TNS_GCID");
  auto url = json_str(o, "URL_PAYMENT");
  if (gcid.empty() || url.empty()) {
    r.unknown = true;
    r.error = "glocash answer lacks TNS_GCID or URL_PAYMENT";
    return r;
  }
  r.status = PaymentStatus::requires_action;
  r.provider_payment_id = std::string(gcid);
  boost::json::object na;
  na["type"] = "redirect";
  na["url"] = url;
  r.next_action = std::move(na);
  r.provider_status = "unpaid";
  return r;
}

std::optional<WireRequest> GlocashProvider::build_sync(const store::PaymentRecord& p) const {
  if (p.provider_payment_id.empty()) return std::nullopt;  // the query API needs TNS_GCID
  const std::string times = unix_now();
  WireRequest w;
  w.path = "/gateway/transaction/index";
  w.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  w.body = http::encode_form({{"REQ_TIMES", times},
                              {"REQ_EMAIL", email_},
                              {"TNS_GCID", p.provider_payment_id},
                              {"REQ_SIGN", query_signature(key_.reveal(), times, email_, p.provider_payment_id)}});
  return w;
}

PaymentResult GlocashProvider::parse_sync(const net::OutboundResponse& res, const store::PaymentRecord& p) const {
  PaymentResult r;
  r.unknown = true;
  if (res.status == 404) {
    r.error = "glocash does not know transaction " + p.provider_payment_id;
    return r;
  }
  if (res.status != 200) {
    r.error = "glocash query answered HTTP " + std::to_string(res.status);
    return r;
  }
  boost::system::error_code ec;
  auto v = boost::json::parse(res.body, ec);
  const boost::json::object* tx = nullptr;
  if (!ec && v.is_object()) tx = json_obj(v.get_object(), p.provider_payment_id);
  if (!tx) {
    r.error = "glocash query answer is not the documented JSON";
    return r;
  }
  http::FormFields f;
  for (const auto& [k, val] : *tx) f.emplace_back(std::string(k), scalar_text(val));
  auto n = read_psn_fields(f);
  if (n.verification != Verification::verified) {
    r.error = "glocash query answer failed verification: " + n.reason;
    return r;
  }
  if (n.provider_payment_id != p.provider_payment_id) {
    r.error = "glocash query answer is for another transaction";
    return r;
  }
  return n.result;
}

std::optional<WireRequest> GlocashProvider::build_refund(const store::PaymentRecord& p,
                                                         const store::RefundRecord& r) const {
  if (p.provider_payment_id.empty()) return std::nullopt;
  const auto currency = find_currency(p.currency);
  const std::string price = to_decimal(r.amount, currency ? currency->exponent : 2);
  const std::string times = unix_now();
  WireRequest w;
  w.path = "/gateway/transaction/refund";
  w.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  w.body = http::encode_form(
      {{"REQ_TIMES", times},
       {"REQ_EMAIL", email_},
       {"TNS_GCID", p.provider_payment_id},
       {"PGW_PRICE", price},
       {"REQ_SIGN", refund_signature(key_.reveal(), times, email_, p.provider_payment_id, price)}});
  return w;
}

RefundResult GlocashProvider::parse_refund(const net::OutboundResponse& res, const store::PaymentRecord&,
                                           const store::RefundRecord&) const {
  RefundResult r;
  if (res.status != 200) {
    r.unknown = true;
    r.error = "glocash refund answered HTTP " + std::to_string(res.status);
    return r;
  }
  boost::system::error_code ec;
  // Some deployments wrap the JSON in single quotes, as the document's example shows.
  std::string_view body = res.body;
  while (!body.empty() && (body.front() == '\'' || std::isspace(static_cast<unsigned char>(body.front()))))
    body.remove_prefix(1);
  while (!body.empty() && (body.back() == '\'' || std::isspace(static_cast<unsigned char>(body.back()))))
    body.remove_suffix(1);
  auto v = boost::json::parse(body, ec);
  if (ec || !v.is_object()) {
    r.unknown = true;
    r.error = "glocash refund answer is not JSON";
    return r;
  }
  const auto& o = v.get_object();
  auto it = o.find("REQ_CODE");
  std::string code = it == o.end() ? "" : scalar_text(it->value());
  std::string message(json_str(o, "REQ_ERROR"));
  if (code == "200") {
    r.status = RefundStatus::succeeded;
    return r;
  }
  if (code.empty() && message.empty()) {
    r.unknown = true;
    r.error = "glocash refund answer has no REQ_CODE";
    return r;
  }
  r.status = RefundStatus::failed;
  r.failure = Failure{message.empty() ? "refund_failed" : message, "Glocash declined the refund.", code};
  return r;
}

Notification GlocashProvider::read_psn_fields(const http::FormFields& f) const {
  Notification n;
  auto get = [&](std::string_view k) { return std::string(http::form_get(f, k)); };
  const std::string sign = get("REQ_SIGN");
  const std::string gcid = get("TNS_GCID");
  const std::string status = get("BIL_STATUS");
  if (sign.empty() || gcid.empty() || status.empty() || get("REQ_TIMES").empty()) {
    n.verification = Verification::malformed;
    n.reason = "REQ_SIGN, REQ_TIMES, TNS_GCID and BIL_STATUS are required";
    return n;
  }
  // Some PSNs arrive without REQ_EMAIL: they are signed with the account's email.
  std::string req_email = get("REQ_EMAIL");
  if (req_email.empty()) req_email = email_;
  const auto expected = psn_signature(key_.reveal(), get("REQ_TIMES"), req_email, get("CUS_EMAIL"), gcid, status,
                                      get("BIL_METHOD"), get("PGW_PRICE"), get("PGW_CURRENCY"));
  if (!crypto::equal_hex_ct(expected, sign)) {
    n.verification = Verification::bad_signature;
    n.reason = "REQ_SIGN does not match";
    return n;
  }
  n.verification = Verification::verified;
  n.order_no = get("REQ_INVOICE");
  n.provider_payment_id = gcid;
  // The order amount: BIL_PRICE/BIL_CURRENCY as requested; PGW_* is what was actually charged,
  // possibly in another currency.
  std::string price = get("BIL_PRICE"), currency = get("BIL_CURRENCY");
  if (price.empty()) {
    price = get("PGW_PRICE");
    currency = get("PGW_CURRENCY");
  }
  if (auto cur = find_currency(currency); cur && !price.empty()) {
    n.currency = currency;
    n.amount = parse_decimal(price, cur->exponent);
    if (!n.amount) n.amount = -1;  // present but unreadable: never equal to the order
    // What was actually charged must match too when it is in the order's currency (BIL_* is not
    // covered by REQ_SIGN; PGW_* is). A charge in another currency is the gateway's conversion.
    if (get("PGW_CURRENCY") == currency && !get("PGW_PRICE").empty())
      n.charged_amount = parse_decimal(get("PGW_PRICE"), cur->exponent).value_or(-1);
  }
  const auto mapping = map_status(status);
  if (!mapping.known) spdlog::warn("glocash: unknown BIL_STATUS '{}' for {} treated as pending", status, gcid);
  n.result.status = mapping.status;
  n.result.provider_status = status;
  n.result.provider_payment_id = gcid;
  if (mapping.status == PaymentStatus::failed || mapping.status == PaymentStatus::canceled) {
    std::string message = get("PGW_MESSAGE");
    n.result.failure = Failure{status, message.empty() ? "Glocash reported the payment " + status + "." : message, status};
  }
  if (auto decision = get("FDL_DECISION"); !decision.empty()) {
    boost::json::object risk;
    risk["decision"] = decision;
    auto label = risk_label(decision);
    risk["label"] = label.empty() ? "unknown" : label;
    n.result.risk = std::move(risk);
  }
  n.refund_notice = get("PGW_NOTIFYTYPE") == "refunded";
  n.dedup_key = gcid + ":" + status + ":" + get("REQ_TIMES");
  return n;
}

Notification GlocashProvider::parse_notification(const http::RequestContext& ctx) const {
  // PSN: a form POST; tolerate the same fields in the query string.
  auto fields = http::parse_form(ctx.req.body().empty() ? ctx.query : std::string_view(ctx.req.body()));
  return read_psn_fields(fields);
}

Notification GlocashProvider::parse_return(const http::RequestContext& ctx) const {
  auto query = http::parse_form(ctx.query);
  Notification n;
  if (ctx.req.method() == bhttp::verb::post && !ctx.req.body().empty()) {
    n = read_psn_fields(http::parse_form(ctx.req.body()));
  } else {
    n.verification = Verification::malformed;  // a plain GET return carries nothing to verify
    n.reason = "no signed fields";
  }
  n.payment_id_hint = std::string(http::form_get(query, "payment"));
  return n;
}

http::Response GlocashProvider::acknowledge(bool received, const http::Request& req) const {
  // Glocash counts HTTP 200 as received; the SDKs answer "success".
  if (received) return http::text_response(bhttp::status::ok, "success", req);
  return http::text_response(bhttp::status::bad_request, "not received", req);
}

}  // namespace paymux::providers::glocash
