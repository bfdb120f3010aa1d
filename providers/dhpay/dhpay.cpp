#include "providers/dhpay/dhpay.hpp"

#include "providers/dhpay/wire.hpp"
#include "service/core/crypto.hpp"
#include "service/core/json.hpp"
#include "service/core/money.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

namespace paymux::providers::dhpay {
namespace {

namespace bj = boost::json;

std::string_view field(const bj::object& request, std::string_view object, std::string_view key) {
  const auto* o = json::obj(request, object);
  return o ? json::str(*o, key) : std::string_view{};
}

// What the gateway's form calls a product: the first item, else the description.
struct Product {
  std::string name, price, quantity;
};
Product product_of(const store::PaymentRecord& p, const bj::object& request) {
  Product out;
  out.name = std::string(json::str(request, "description"));
  out.price = two_decimals(p.amount, p.currency).value_or("");
  out.quantity = "1";
  if (auto* items = request.if_contains("items"); items && items->is_array() && !items->get_array().empty()) {
    const auto& first = items->get_array().front();
    if (first.is_object()) {
      const auto& o = first.get_object();
      if (auto n = json::str(o, "name"); !n.empty()) out.name = std::string(n);
      if (auto* ua = o.if_contains("unit_amount"); ua && ua->is_int64())
        out.price = two_decimals(ua->get_int64(), p.currency).value_or(out.price);
      if (auto* q = o.if_contains("quantity"); q && q->is_int64()) out.quantity = std::to_string(q->get_int64());
    }
  }
  return out;
}

// A field DHpay requires, with the length its document gives (min_len..max_len characters).
std::optional<http::ApiError> require(const bj::object& request, std::string_view object, std::string_view key,
                                      std::size_t max_len, std::string_view gateway_field, std::size_t min_len = 1) {
  const auto v = field(request, object, key);
  const std::string param = std::string(object) + "." + std::string(key);
  if (v.empty())
    return http::bad_request("parameter_missing",
                             "DHpay requires " + param + " (its field " + std::string(gateway_field) + ").", param);
  if (v.size() < min_len || v.size() > max_len)
    return http::bad_request("parameter_invalid",
                             param + " must be " +
                                 (min_len == max_len ? std::to_string(max_len)
                                                     : std::to_string(min_len) + " to " + std::to_string(max_len)) +
                                 " characters for DHpay (" + std::string(gateway_field) + ").",
                             param);
  return std::nullopt;
}

// An optional field: checked only when present.
std::optional<http::ApiError> optional_length(const bj::object& request, std::string_view object, std::string_view key,
                                              std::size_t min_len, std::size_t max_len, std::string_view gateway_field) {
  if (field(request, object, key).empty()) return std::nullopt;
  return require(request, object, key, max_len, gateway_field, min_len);
}

std::optional<http::ApiError> check_amount(const store::PaymentRecord& p) {
  if (!two_decimals(p.amount, p.currency))
    return http::bad_request("amount_invalid", "DHpay takes amounts with 2 decimals; this amount has more.", "amount");
  return std::nullopt;
}

std::optional<http::ApiError> check_product(const store::PaymentRecord& p, const bj::object& request) {
  if (product_of(p, request).name.empty())
    return http::bad_request("parameter_missing",
                             "DHpay requires a product name: set description or items[0].name.", "description");
  return std::nullopt;
}

std::optional<http::ApiError> check_product_length(const store::PaymentRecord& p, const bj::object& request,
                                                   std::size_t max_len) {
  if (product_of(p, request).name.size() > max_len)
    return http::bad_request("parameter_invalid",
                             "The product name (description or items[0].name) is longer than DHpay's " +
                                 std::to_string(max_len) + " characters.",
                             "description");
  return std::nullopt;
}

// Both connectors receive DHpay's callback format (the nonce API's 3-D Secure result included):
// notify as GET query parameters (a POSTed form is read the same way), the browser return as
// query parameters on our return URL, and the same "success" acknowledgement.
Notification callback_notification(const http::RequestContext& ctx, const std::string& merchant_id,
                                   const Secret& secret) {
  auto fields = http::parse_form(ctx.query.empty() ? std::string_view(ctx.req.body()) : ctx.query);
  return read_callback(fields, merchant_id, secret);
}

Notification callback_return(const http::RequestContext& ctx, const std::string& merchant_id, const Secret& secret) {
  auto fields = http::parse_form(ctx.query);
  auto n = read_callback(fields, merchant_id, secret);
  n.payment_id_hint = std::string(http::form_get(fields, "payment"));
  return n;
}

// Anything but the exact body "success" makes DHpay send again (up to 10 sends).
http::Response callback_ack(bool received, const http::Request& req) {
  if (received) return http::text_response(bhttp::status::ok, "success", req);
  return http::text_response(bhttp::status::bad_request, "fail", req);
}

}  // namespace

std::optional<std::string> two_decimals(std::int64_t minor, std::string_view currency) {
  auto c = find_currency(currency);
  if (!c) return std::nullopt;
  if (c->exponent == 2) return to_decimal(minor, 2);
  if (c->exponent == 0) return std::to_string(minor) + ".00";
  std::int64_t scale = 1;
  for (int i = 2; i < c->exponent; ++i) scale *= 10;
  if (minor % scale != 0) return std::nullopt;  // a fraction DHpay cannot carry
  return to_decimal(minor / scale, 2);
}

Notification read_callback(const http::FormFields& f, const std::string& merchant_id, const Secret& secret) {
  Notification n;
  auto get = [&](std::string_view k) { return std::string(http::form_get(f, k)); };
  const auto hash = get("hash");
  if (hash.empty() || get("invoice_id").empty() || get("status").empty()) {
    n.verification = Verification::malformed;
    n.reason = "hash, invoice_id and status are required";
    return n;
  }
  if (!crypto::equal_hex_ct(callback_hash(secret.reveal(), f), hash)) {
    n.verification = Verification::bad_signature;
    n.reason = "hash does not match";
    return n;
  }
  if (get("merchant_id") != merchant_id) {
    n.verification = Verification::bad_signature;
    n.reason = "merchant_id is not this connector's";
    return n;
  }
  n.verification = Verification::verified;
  n.order_no = get("invoice_id");
  n.provider_payment_id = get("ref_no");
  n.currency = get("currency");
  if (auto c = find_currency(n.currency)) {
    n.amount = parse_decimal(get("amount"), c->exponent);
    if (!n.amount) n.amount = -1;  // present but unreadable: never equal to the order
  } else {
    n.amount = -1;
  }
  const auto status = get("status");
  const auto mapping = map_status(status);
  if (!mapping.known) spdlog::warn("dhpay: unknown status '{}' for invoice {} treated as pending", status, n.order_no);
  n.result.status = mapping.status;
  n.result.provider_status = status;
  n.result.provider_payment_id = n.provider_payment_id;
  if (mapping.status == PaymentStatus::failed) {
    auto reason = get("failure_reason");
    auto description = get("description");
    n.result.failure = Failure{reason.empty() ? "declined" : reason,
                               description.empty() ? "DHpay declined the payment." : description, status};
  }
  n.dedup_key = get("ref_no") + ":" + status;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Web cashier

DhpayProvider::DhpayProvider(const ConnectorConfig& c, const ProviderEnv&)
    : merchant_id_(require_credential(c, "merchant_id").reveal()), secret_(require_credential(c, "secret_key")) {
  for (const auto& [k, v] : c.credentials)
    if (k != "merchant_id" && k != "secret_key")
      throw ConfigError("connector " + c.id + ": credentials." + k + ": unknown key (dhpay takes merchant_id, secret_key)");
  for (const auto& [k, v] : c.settings)
    if (k != "sandbox")
      throw ConfigError("connector " + c.id + ": settings." + k + ": unknown key (dhpay takes sandbox)");
  const auto sandbox = setting(c, "sandbox", "false");
  if (sandbox != "true" && sandbox != "false")
    throw ConfigError("connector " + c.id + ": settings.sandbox: expected true or false");
  // Sandbox mode is the same cashier with ?env=dhpaysandbox (document 001).
  cashier_url_ = c.base_url + "/merchant/web/cashier" + (sandbox == "true" ? "?env=dhpaysandbox" : "");
}

Capabilities DhpayProvider::capabilities() const { return {{Flow::authorize, Flow::notification}, {"hosted"}, {}}; }

std::optional<http::ApiError> DhpayProvider::validate(const store::PaymentRecord& p, const bj::object& r) const {
  // The fields document 001 marks mandatory, in the form's order.
  if (auto e = check_amount(p)) return e;
  if (auto e = require(r, "shipping", "country", 2, "shipping_country", 2)) return e;
  if (auto e = require(r, "customer", "first_name", 50, "first_name")) return e;
  if (auto e = require(r, "customer", "last_name", 50, "last_name")) return e;
  if (auto e = require(r, "billing", "country", 2, "country", 2)) return e;
  if (auto e = require(r, "billing", "state", 50, "state")) return e;
  if (auto e = require(r, "billing", "city", 50, "city")) return e;
  if (auto e = require(r, "billing", "line1", 500, "address_line")) return e;
  if (auto e = require(r, "billing", "postal_code", 10, "zipcode", 4)) return e;
  if (auto e = check_product(p, r)) return e;
  if (auto e = require(r, "shipping", "city", 50, "shipping_city")) return e;
  if (auto e = require(r, "shipping", "state", 50, "shipping_state")) return e;
  if (auto e = require(r, "shipping", "postal_code", 10, "shipping_zipcode", 4)) return e;
  if (auto e = optional_length(r, "customer", "email", 1, 30, "buyer_email")) return e;
  if (auto e = optional_length(r, "shipping", "email", 1, 30, "shipping_email")) return e;
  if (auto e = optional_length(r, "shipping", "phone", 2, 50, "shipping_phone")) return e;
  if (auto e = check_product_length(p, r, 500)) return e;
  return std::nullopt;
}

std::optional<PaymentResult> DhpayProvider::prepare_authorize(const PaymentInput& in) const {
  const auto& p = in.payment;
  const auto& r = in.request;
  const auto amount = two_decimals(p.amount, p.currency).value_or("");
  const auto product = product_of(p, r);
  bj::object fields;
  auto put = [&](std::string_view k, std::string_view v) { fields[k] = v; };
  put("merchant_id", merchant_id_);
  put("invoice_id", in.order_no);
  put("order_no", in.order_no);
  put("currency", p.currency);
  put("amount", amount);
  put("buyer_email", field(r, "customer", "email"));
  put("shipping_country", field(r, "shipping", "country"));
  put("first_name", field(r, "customer", "first_name"));
  put("last_name", field(r, "customer", "last_name"));
  put("country", field(r, "billing", "country"));
  put("state", field(r, "billing", "state"));
  put("city", field(r, "billing", "city"));
  put("address_line", field(r, "billing", "line1"));
  put("zipcode", field(r, "billing", "postal_code"));
  put("product_name", product.name);
  put("product_price", product.price);
  put("product_quantity", product.quantity);
  put("shipping_first_name", field(r, "shipping", "first_name"));
  put("shipping_last_name", field(r, "shipping", "last_name"));
  put("shipping_state", field(r, "shipping", "state"));
  put("shipping_city", field(r, "shipping", "city"));
  put("shipping_address_line", field(r, "shipping", "line1"));
  put("shipping_zipcode", field(r, "shipping", "postal_code"));
  put("shipping_email", field(r, "shipping", "email"));
  put("shipping_phone", field(r, "shipping", "phone"));
  put("return_url", in.return_url);
  put("notify_url", in.notify_url);
  put("remark", p.reference);
  put("hash", request_hash(secret_.reveal(), amount, p.currency, in.order_no, merchant_id_));
  PaymentResult res;
  res.status = PaymentStatus::requires_action;
  bj::object na;
  na["type"] = "form_post";
  na["url"] = cashier_url_;
  na["fields"] = std::move(fields);
  res.next_action = std::move(na);
  return res;
}

WireRequest DhpayProvider::build_authorize(const PaymentInput&) const { return {}; }  // prepare_authorize answers
PaymentResult DhpayProvider::parse_authorize(const net::OutboundResponse&, const PaymentInput&) const { return {}; }

Notification DhpayProvider::parse_notification(const http::RequestContext& ctx) const {
  return callback_notification(ctx, merchant_id_, secret_);
}

Notification DhpayProvider::parse_return(const http::RequestContext& ctx) const {
  return callback_return(ctx, merchant_id_, secret_);
}

http::Response DhpayProvider::acknowledge(bool received, const http::Request& req) const {
  return callback_ack(received, req);
}

// ---------------------------------------------------------------------------------------------
// Cashier nonce API

DhpayNonceProvider::DhpayNonceProvider(const ConnectorConfig& c, const ProviderEnv&)
    : client_id_(require_credential(c, "client_id").reveal()),
      secret_(require_credential(c, "secret")),
      merchant_id_(require_credential(c, "merchant_id").reveal()) {
  for (const auto& [k, v] : c.credentials)
    if (k != "client_id" && k != "secret" && k != "merchant_id")
      throw ConfigError("connector " + c.id + ": credentials." + k +
                        ": unknown key (dhpay_nonce takes client_id, secret, merchant_id)");
  if (!c.settings.empty())
    throw ConfigError("connector " + c.id + ": settings." + c.settings.begin()->first + ": unknown key");
}

Capabilities DhpayNonceProvider::capabilities() const {
  return {{Flow::authorize, Flow::notification}, {"card_nonce"}, {}};
}

std::optional<http::ApiError> DhpayNonceProvider::validate(const store::PaymentRecord& p, const bj::object& r) const {
  // Mandatory fields of the nonce payment body (document 000).
  if (auto e = check_amount(p)) return e;
  if (auto e = require(r, "billing", "country", 2, "country", 2)) return e;
  if (auto e = check_product(p, r)) return e;
  if (auto e = require(r, "customer", "email", 30, "buyer_email")) return e;
  if (auto e = require(r, "customer", "first_name", 50, "first_name")) return e;
  if (auto e = require(r, "customer", "last_name", 50, "last_name")) return e;
  if (auto e = require(r, "billing", "line1", 500, "address_line")) return e;
  if (auto e = require(r, "billing", "postal_code", 10, "zipcode", 4)) return e;
  if (auto e = require(r, "shipping", "email", 30, "shipping_email")) return e;
  if (auto e = require(r, "customer", "id", 40, "buyer_id")) return e;
  if (auto e = optional_length(r, "billing", "phone", 2, 50, "phone")) return e;
  if (auto e = optional_length(r, "shipping", "phone", 2, 50, "shipping_phone")) return e;
  if (auto e = optional_length(r, "shipping", "country", 2, 2, "shipping_country")) return e;
  if (auto e = check_product_length(p, r, 200)) return e;
  return std::nullopt;
}

WireRequest DhpayNonceProvider::build_authorize(const PaymentInput& in) const {
  const auto& p = in.payment;
  const auto& r = in.request;
  const auto amount = two_decimals(p.amount, p.currency).value_or("");
  const auto product = product_of(p, r);
  bj::object rp;
  auto put = [&](std::string_view k, std::string_view v) { rp[k] = v; };
  put("merchant_id", merchant_id_);
  put("invoice_id", in.order_no);
  put("order_no", in.order_no);
  put("currency", p.currency);
  put("amount", amount);
  put("country", field(r, "billing", "country"));
  put("product_name", product.name);
  put("product_price", product.price);
  put("product_quantity", product.quantity);
  put("buyer_ip", field(r, "customer", "ip"));
  put("buyer_email", field(r, "customer", "email"));
  put("state", field(r, "billing", "state"));
  put("city", field(r, "billing", "city"));
  put("first_name", field(r, "customer", "first_name"));
  put("last_name", field(r, "customer", "last_name"));
  put("address_line", field(r, "billing", "line1"));
  put("phone", field(r, "billing", "phone"));
  put("zipcode", field(r, "billing", "postal_code"));
  put("shipping_country", field(r, "shipping", "country"));
  put("shipping_first_name", field(r, "shipping", "first_name"));
  put("shipping_last_name", field(r, "shipping", "last_name"));
  put("shipping_address_line", field(r, "shipping", "line1"));
  put("shipping_city", field(r, "shipping", "city"));
  put("shipping_state", field(r, "shipping", "state"));
  put("shipping_zipcode", field(r, "shipping", "postal_code"));
  put("shipping_email", field(r, "shipping", "email"));
  put("shipping_phone", field(r, "shipping", "phone"));
  put("return_url", in.return_url);
  put("notify_url", in.notify_url);
  put("remark", p.reference);
  put("buyer_id", field(r, "customer", "id"));
  put("hash", request_hash(secret_.reveal(), amount, p.currency, in.order_no, merchant_id_));
  bj::object body;
  body["requestParam"] = std::move(rp);
  bj::object card;
  card["tokenInfo"] = in.method_secret;
  body["cardParam"] = std::move(card);

  WireRequest w;
  w.path = "/api/payments/nonce/v1";
  w.headers = {{"Content-Type", "application/json"},
               {"Accept", "application/json"},
               {"Authorization", "Bearer " + in.access_token},
               {"version", "v1"}};
  w.body = bj::serialize(body);
  return w;
}

PaymentResult DhpayNonceProvider::parse_authorize(const net::OutboundResponse& res, const PaymentInput&) const {
  PaymentResult r;
  boost::system::error_code ec;
  auto v = bj::parse(res.body, ec);
  if (res.status >= 500 || ec || !v.is_object()) {
    r.unknown = true;
    r.error = ec || !v.is_object() ? "dhpay answer is not JSON" : "dhpay answered HTTP " + std::to_string(res.status);
    return r;
  }
  const auto& o = v.get_object();
  const auto status = json::str(o, "status");
  if (status == "02") {
    // API-level refusal (E0001..E0505): nothing was charged.
    const std::string code(json::str(o, "error_code"));
    r.status = PaymentStatus::failed;
    r.failure = Failure{code.empty() ? "api_error" : code, "DHpay refused the request (" + code + ").", "02"};
    r.provider_status = "02";
    return r;
  }
  const auto* data = json::obj(o, "data");
  if (status != "01" || !data) {
    r.unknown = true;
    r.error = "dhpay answer has no status 01 data";
    return r;
  }
  const auto tx_status = json::str(*data, "status");
  r.provider_status = std::string(tx_status);
  r.provider_payment_id = std::string(json::str(*data, "ref_no"));
  if (tx_status == "01") {
    r.status = PaymentStatus::succeeded;
  } else if (tx_status == "02") {
    const std::string reason(json::str(*data, "failure_reason"));
    r.status = PaymentStatus::failed;
    r.failure = Failure{reason.empty() ? "declined" : reason, "DHpay declined the payment.", "02"};
  } else if (tx_status == "00" && !json::str(*data, "redirect_url").empty()) {
    // 3-D Secure: the browser POSTs these fields, cased exactly as the document shows.
    bj::object fields;
    for (auto k : {"MD", "TermUrl", "paReq", "orderId", "transactionId", "sessionToken"}) fields[k] = json::str(*data, k);
    bj::object na;
    na["type"] = "form_post";
    na["url"] = json::str(*data, "redirect_url");
    na["fields"] = std::move(fields);
    r.status = PaymentStatus::requires_action;
    r.next_action = std::move(na);
  } else if (tx_status == "00") {
    r.status = PaymentStatus::processing;
  } else {
    spdlog::warn("dhpay_nonce: unknown transaction status '{}' treated as pending", tx_status);
    r.status = PaymentStatus::processing;
  }
  return r;
}

std::optional<WireRequest> DhpayNonceProvider::build_access_token() const {
  WireRequest w;
  w.path = "/api/oauth2/token";
  w.headers = {{"Accept", "application/json"}, {"Client-Id", client_id_}, {"Secret", secret_.reveal()}};
  return w;
}

std::optional<AccessToken> DhpayNonceProvider::parse_access_token(const net::OutboundResponse& res) const {
  boost::system::error_code ec;
  auto v = bj::parse(res.body, ec);
  if (ec || !v.is_object() || json::str(v.get_object(), "status") != "01") return std::nullopt;
  const auto* data = json::obj(v.get_object(), "data");
  if (!data) return std::nullopt;
  AccessToken t;
  t.token = std::string(json::str(*data, "access_token"));
  auto* exp = data->if_contains("expires_in");
  t.expires_in = std::chrono::seconds(exp && exp->is_int64() ? exp->get_int64() : 0);
  if (t.token.empty()) return std::nullopt;
  return t;
}

bool DhpayNonceProvider::token_rejected(const net::OutboundResponse& res) const {
  boost::system::error_code ec;
  auto v = bj::parse(res.body, ec);
  if (ec || !v.is_object()) return false;
  const auto code = json::str(v.get_object(), "error_code");
  return json::str(v.get_object(), "status") == "02" && (code == "E0002" || code == "E0010");
}

Notification DhpayNonceProvider::parse_notification(const http::RequestContext& ctx) const {
  return callback_notification(ctx, merchant_id_, secret_);
}

Notification DhpayNonceProvider::parse_return(const http::RequestContext& ctx) const {
  return callback_return(ctx, merchant_id_, secret_);
}

http::Response DhpayNonceProvider::acknowledge(bool received, const http::Request& req) const {
  return callback_ack(received, req);
}

}  // namespace paymux::providers::dhpay
