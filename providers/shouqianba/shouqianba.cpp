#include "providers/shouqianba/shouqianba.hpp"

#include "providers/shouqianba/wire.hpp"
#include "service/core/clock.hpp"
#include "service/core/ids.hpp"
#include "service/core/json.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <set>

namespace paymux::providers::shouqianba {
namespace {

namespace bj = boost::json;

std::int64_t millis_setting(const ConnectorConfig& c, const std::string& key, std::int64_t fallback) {
  auto v = setting(c, key, "");
  if (v.empty()) return fallback;
  try {
    std::size_t used = 0;
    auto n = std::stoll(v, &used);
    if (used != v.size() || n < 0) throw std::invalid_argument(key);
    return n;
  } catch (const std::exception&) {
    throw ConfigError("connector " + c.id + ": settings." + key + ": expected a non-negative integer");
  }
}

std::string optional_credential(const ConnectorConfig& c, const std::string& key) {
  auto it = c.credentials.find(key);
  return it == c.credentials.end() ? std::string() : it->second.reveal();
}

// At most max_bytes of UTF-8, never splitting a character (the document's lengths are bytes).
std::string utf8_prefix_bytes(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return std::string(s);
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return std::string(s.substr(0, end));
}

std::string method_of(const store::PaymentRecord& p) {
  auto m = json::parse_stored(p.payment_method_json);
  if (!m.is_object()) return {};
  return std::string(json::str(m.get_object(), "type"));
}

// Gateway facts kept on the payment, as stated.
bj::object facts(const bj::object& data) {
  bj::object d;
  for (auto key : {"order_status", "status", "trade_no", "payway", "sub_payway", "net_amount"})
    if (auto v = json::str(data, key); !v.empty()) d[key] = v;
  return d;
}

Failure failure_of(const Answer& a, std::string fallback_code, std::string fallback_message) {
  Failure f;
  if (a.level == Answer::Level::client_error) {
    f.code = a.error_code.empty() ? "400" : a.error_code;
    f.message = a.error_message;
    f.provider_status = "400";
    return f;
  }
  f.code = a.biz_error_code.empty() ? std::move(fallback_code) : a.biz_error_code;
  f.message = a.biz_error_message.empty() ? std::move(fallback_message) : a.biz_error_message;
  f.provider_status = a.data_field("order_status");
  if (f.provider_status.empty()) f.provider_status = a.biz_result_code;
  return f;
}

// Why an answer says nothing definite (500, garbage): for logs and attempts.
std::string unknown_reason(const net::OutboundResponse& res, const Answer& a, std::string_view flow) {
  if (a.level == Answer::Level::server_error)
    return "shouqianba " + std::string(flow) + ": result_code " + a.result_code + " " + a.error_code;
  if (a.level == Answer::Level::malformed)
    return "shouqianba " + std::string(flow) + ": unreadable answer (HTTP " + std::to_string(res.status) + ")";
  return "shouqianba " + std::string(flow) + ": " + a.biz_result_code + " " + a.biz_error_code;
}

}  // namespace

ShouqianbaProvider::ShouqianbaProvider(const ConnectorConfig& c, const ProviderEnv& env) : id_(c.id) {
  static const std::set<std::string> credential_keys{"terminal_sn", "terminal_key", "vendor_sn", "vendor_key",
                                                     "notify_public_key"};
  static const std::set<std::string> setting_keys{
      "operator",           "device_id",           "app_id",           "qr_payway",
      "notify",             "pay_poll_interval_ms", "pay_poll_window_ms", "qr_poll_interval_ms",
      "qr_poll_fast_window_ms", "qr_poll_slow_interval_ms", "qr_lifetime_seconds", "checkin_interval_seconds"};
  for (const auto& [k, v] : c.credentials)
    if (!credential_keys.count(k))
      throw ConfigError("connector " + c.id + ": credentials." + k +
                        ": unknown key (shouqianba takes terminal_sn, terminal_key, vendor_sn, vendor_key, "
                        "notify_public_key)");
  for (const auto& [k, v] : c.settings)
    if (!setting_keys.count(k))
      throw ConfigError("connector " + c.id + ": settings." + k + ": unknown key for shouqianba");
  terminal_.sn = optional_credential(c, "terminal_sn");
  terminal_.key = Secret(optional_credential(c, "terminal_key"));
  if (terminal_.sn.empty() != terminal_.key.empty())
    throw ConfigError("connector " + c.id + ": credentials: terminal_sn and terminal_key go together");
  vendor_sn_ = Secret(optional_credential(c, "vendor_sn"));
  vendor_key_ = Secret(optional_credential(c, "vendor_key"));
  if (vendor_sn_.empty() != vendor_key_.empty())
    throw ConfigError("connector " + c.id + ": credentials: vendor_sn and vendor_key go together");
  operator_ = setting(c, "operator", "paymux");
  device_id_ = setting(c, "device_id", c.id);
  if (device_id_.size() > 32) throw ConfigError("connector " + c.id + ": settings.device_id: at most 32 characters");
  app_id_ = setting(c, "app_id", "");
  if (!vendor_sn_.empty() && app_id_.empty())
    throw ConfigError("connector " + c.id + ": settings.app_id: missing (activation with vendor_sn sends it)");
  qr_payway_ = setting(c, "qr_payway", "3");
  const auto notify = setting(c, "notify", "false");
  if (notify != "true" && notify != "false")
    throw ConfigError("connector " + c.id + ": settings.notify: expected true or false");
  if (notify == "true") {
    notify_public_key_ = Secret(optional_credential(c, "notify_public_key"));
    if (notify_public_key_.empty())
      throw ConfigError("connector " + c.id + ": credentials.notify_public_key: missing (settings.notify is true)");
    if (!is_usable_public_key(notify_public_key_.reveal()))
      throw ConfigError("connector " + c.id + ": credentials.notify_public_key: not an RSA public key");
    notify_url_ = env.public_url + "/webhooks/" + c.id;
  }
  plan_.pay_interval_ms = millis_setting(c, "pay_poll_interval_ms", plan_.pay_interval_ms);
  plan_.pay_window_ms = millis_setting(c, "pay_poll_window_ms", plan_.pay_window_ms);
  plan_.qr_interval_ms = millis_setting(c, "qr_poll_interval_ms", plan_.qr_interval_ms);
  plan_.qr_fast_window_ms = millis_setting(c, "qr_poll_fast_window_ms", plan_.qr_fast_window_ms);
  plan_.qr_slow_interval_ms = millis_setting(c, "qr_poll_slow_interval_ms", plan_.qr_slow_interval_ms);
  plan_.qr_lifetime_ms = millis_setting(c, "qr_lifetime_seconds", plan_.qr_lifetime_ms / 1000) * 1000;
  if (plan_.pay_interval_ms < 100 || plan_.qr_interval_ms < 100 || plan_.qr_slow_interval_ms < 100)
    throw ConfigError("connector " + c.id + ": settings: poll intervals must be at least 100 ms");
  checkin_interval_ = std::chrono::seconds(millis_setting(c, "checkin_interval_seconds", 86400));
}

Capabilities ShouqianbaProvider::capabilities() const {
  // Currencies are checked by validate (CNY only) so that another currency is a 400 naming it.
  return {{Flow::authorize, Flow::sync, Flow::refund, Flow::refund_sync, Flow::cancel, Flow::notification},
          {"barcode", "qr"},
          {}};
}

std::optional<http::ApiError> ShouqianbaProvider::validate(const store::PaymentRecord& p, const bj::object&) const {
  if (p.currency != "CNY")
    return http::bad_request("currency_unsupported", "Shouqianba takes CNY only (amounts in fen).", "currency");
  if (!fen(p.amount))
    return http::bad_request("amount_too_large", "Shouqianba amounts have at most 10 digits of fen.", "amount");
  if (terminal().sn.empty())
    return http::unsupported("Connector " + id_ +
                             " has no terminal key yet: activate it with `paymux shouqianba activate`.");
  return std::nullopt;
}

void ShouqianbaProvider::use_credentials(const bj::object& issued) {
  auto sn = std::string(json::str(issued, "terminal_sn"));
  auto key = std::string(json::str(issued, "terminal_key"));
  if (sn.empty() || key.empty()) return;
  std::lock_guard lock(m_);
  terminal_.sn = std::move(sn);
  terminal_.key = Secret(std::move(key));
}

std::optional<bj::object> ShouqianbaProvider::current_credentials() const {
  auto t = terminal();
  if (t.sn.empty()) return std::nullopt;
  bj::object o;
  o["terminal_sn"] = t.sn;
  o["terminal_key"] = t.key.reveal();
  return o;
}

ShouqianbaProvider::Terminal ShouqianbaProvider::terminal() const {
  std::lock_guard lock(m_);
  return terminal_;
}

WireRequest ShouqianbaProvider::signed_post(std::string path, std::string body, const std::string& sn,
                                            const Secret& key) const {
  WireRequest w;
  w.path = std::move(path);
  // The signature covers exactly the bytes sent.
  w.headers = {{"Content-Type", "application/json"}, {"Authorization", authorization(sn, body, key.reveal())}};
  w.body = std::move(body);
  return w;
}

bj::object ShouqianbaProvider::order_ref(const store::PaymentRecord& p, const Terminal& t) const {
  bj::object o;
  o["terminal_sn"] = t.sn;
  if (!p.provider_payment_id.empty()) o["sn"] = p.provider_payment_id;
  o["client_sn"] = order_no_for(p.id);  // the gateway looks the order up by sn first, then by client_sn
  return o;
}

WireRequest ShouqianbaProvider::build_authorize(const PaymentInput& in) const {
  const auto& p = in.payment;
  const bool qr = method_of(p) == "qr";
  auto t = terminal();
  bj::object b;
  b["terminal_sn"] = t.sn;
  b["client_sn"] = in.order_no;
  b["total_amount"] = fen(p.amount).value_or("0");
  if (qr)
    b["payway"] = qr_payway_;  // mandatory for precreate
  else
    b["dynamic_id"] = in.method_secret;
  auto description = json::str(in.request, "description");
  b["subject"] = utf8_prefix_bytes(description.empty() ? std::string_view(p.reference) : description, 64);
  b["operator"] = utf8_prefix_bytes(operator_, 32);
  if (!description.empty()) b["description"] = utf8_prefix_bytes(description, 256);
  b["device_id"] = device_id_;
  if (!notify_url_.empty()) b["notify_url"] = notify_url_;
  return signed_post(qr ? "/upay/v2/precreate" : "/upay/v2/pay", bj::serialize(b), t.sn, t.key);
}

PaymentResult ShouqianbaProvider::parse_authorize(const net::OutboundResponse& res, const PaymentInput& in) const {
  PaymentResult r;
  const auto a = read_answer(res.body);
  const bool qr = method_of(in.payment) == "qr";
  if (a.level == Answer::Level::client_error) {
    // Refused before anything happened (bad parameters, signature, terminal, barcode).
    r.status = PaymentStatus::failed;
    r.failure = failure_of(a, "", "");
    r.provider_status = "400";
    return r;
  }
  if (a.level != Answer::Level::ok) {
    r.unknown = true;
    r.error = unknown_reason(res, a, qr ? "precreate" : "pay");
    return r;
  }
  r.provider_payment_id = a.data_field("sn");
  r.provider_status = a.biz_result_code;
  if (auto d = facts(a.data); !d.empty()) r.provider_data = std::move(d);
  if (qr) {
    if (a.biz_result_code == "PRECREATE_SUCCESS" && !a.data_field("qr_code").empty()) {
      r.status = PaymentStatus::requires_action;
      bj::object na;
      na["type"] = "display_qr";
      na["qr_code"] = a.data_field("qr_code");
      r.next_action = std::move(na);
      r.expires_at = now_ms() + plan_.qr_lifetime_ms;  // kept when the payment lapses earlier
      return r;
    }
    if (a.biz_result_code == "PRECREATE_FAIL" || a.biz_result_code == "FAIL") {
      r.status = PaymentStatus::failed;
      r.failure = failure_of(a, a.biz_result_code, "Shouqianba refused the QR order.");
      return r;
    }
    r.unknown = true;
    r.error = unknown_reason(res, a, "precreate");
    return r;
  }
  switch (map_pay_result(a.biz_result_code)) {
    case PayOutcome::succeeded: r.status = PaymentStatus::succeeded; return r;
    case PayOutcome::failed:
      r.status = PaymentStatus::failed;
      r.failure = failure_of(a, a.biz_result_code,
                             a.biz_result_code == "PAY_FAIL" ? "The payment failed; any money taken was returned."
                                                             : "The payment failed; no money moved.");
      return r;
    case PayOutcome::review:
      // Failed, and the gateway cannot tell the payer's side: a person must look (section 2.4).
      r.unknown = true;
      r.review = a.biz_result_code;
      r.error = "shouqianba pay: " + a.biz_result_code;
      return r;
    case PayOutcome::in_progress:
      r.unknown = true;
      r.error = "shouqianba pay: " + a.biz_result_code + " (polling)";
      return r;
  }
  return r;
}

PaymentResult ShouqianbaProvider::read_order(const bj::object& data, std::string_view flow) const {
  PaymentResult r;
  auto field = [&](std::string_view k) { return std::string(json::str(data, k)); };
  const auto status = field("order_status");
  const auto m = map_order_status(status);
  if (!m.known) spdlog::warn("shouqianba {}: unknown order_status '{}' treated as pending", flow, status);
  r.status = m.status;
  if (m.review) r.review = status;
  r.provider_status = status;
  r.provider_payment_id = field("sn");
  if (m.status == PaymentStatus::failed)
    r.failure = Failure{status, "The payment failed and was reversed at the gateway.", status};
  if (auto d = facts(data); !d.empty()) r.provider_data = std::move(d);
  return r;
}

std::optional<WireRequest> ShouqianbaProvider::build_sync(const store::PaymentRecord& p) const {
  auto t = terminal();
  if (t.sn.empty()) return std::nullopt;
  return signed_post("/upay/v2/query", bj::serialize(order_ref(p, t)), t.sn, t.key);
}

PaymentResult ShouqianbaProvider::parse_sync(const net::OutboundResponse& res, const store::PaymentRecord&) const {
  const auto a = read_answer(res.body);
  if (a.level == Answer::Level::ok && a.biz_result_code == "SUCCESS") return read_order(a.data, "query");
  PaymentResult r;
  if (a.level == Answer::Level::ok && a.biz_result_code == "FAIL" && is_order_not_exists(a.biz_error_code)) {
    // Section 2.4: no such order, so nothing was charged and nothing needs cancelling.
    r.status = PaymentStatus::failed;
    r.provider_status = a.biz_error_code;
    r.failure = Failure{a.biz_error_code, "The gateway has no such order: nothing was charged.", a.biz_error_code};
    return r;
  }
  r.unknown = true;
  r.error = a.level == Answer::Level::client_error ? "shouqianba query: result_code 400 " + a.error_code
                                                   : unknown_reason(res, a, "query");
  return r;
}

std::optional<WireRequest> ShouqianbaProvider::build_cancel(const store::PaymentRecord& p) const {
  auto t = terminal();
  if (t.sn.empty()) return std::nullopt;
  return signed_post("/upay/v2/cancel", bj::serialize(order_ref(p, t)), t.sn, t.key);
}

PaymentResult ShouqianbaProvider::parse_cancel(const net::OutboundResponse& res, const store::PaymentRecord&) const {
  PaymentResult r;
  const auto a = read_answer(res.body);
  if (a.level == Answer::Level::client_error) {
    r.failure = failure_of(a, "", "");  // refused: nothing changed
    r.provider_status = "400";
    return r;
  }
  if (a.level != Answer::Level::ok) {
    r.unknown = true;
    r.error = unknown_reason(res, a, "cancel");
    return r;
  }
  r.provider_status = a.biz_result_code;
  if (auto d = facts(a.data); !d.empty()) r.provider_data = std::move(d);
  switch (map_cancel_result(a.biz_result_code, a.biz_error_code)) {
    case CancelOutcome::canceled:
      r.status = PaymentStatus::canceled;
      r.provider_payment_id = a.data_field("sn");
      return r;
    case CancelOutcome::no_order:
      r.status = PaymentStatus::failed;
      r.failure = Failure{a.biz_error_code, "The gateway has no such order: nothing was charged.", a.biz_error_code};
      return r;
    case CancelOutcome::review: r.review = a.biz_result_code; return r;
    case CancelOutcome::refused: r.failure = failure_of(a, "FAIL", "The gateway refused to cancel."); return r;
  }
  return r;
}

std::optional<WireRequest> ShouqianbaProvider::build_refund(const store::PaymentRecord& p,
                                                            const store::RefundRecord& rf) const {
  auto t = terminal();
  auto amount = fen(rf.amount);
  if (t.sn.empty() || !amount) return std::nullopt;
  auto b = order_ref(p, t);
  // One number per paymux refund: a retried refund is the same refund to the gateway.
  b["refund_request_no"] = refund_no_for(rf.id);
  b["operator"] = utf8_prefix_bytes(operator_, 64);
  b["refund_amount"] = *amount;
  return signed_post("/upay/v2/refund", bj::serialize(b), t.sn, t.key);
}

RefundResult ShouqianbaProvider::parse_refund(const net::OutboundResponse& res, const store::PaymentRecord&,
                                              const store::RefundRecord& rf) const {
  RefundResult r;
  const auto a = read_answer(res.body);
  if (a.level == Answer::Level::client_error) {
    r.status = RefundStatus::failed;
    r.failure = failure_of(a, "", "");
    return r;
  }
  if (a.level != Answer::Level::ok) {
    r.unknown = true;
    r.error = unknown_reason(res, a, "refund");
    return r;
  }
  switch (map_refund_result(a.biz_result_code)) {
    case RefundOutcome::succeeded:
      r.status = RefundStatus::succeeded;
      r.provider_refund_id = refund_no_for(rf.id);
      return r;
    case RefundOutcome::failed:
      r.status = RefundStatus::failed;
      r.failure = failure_of(a, "FAIL", "The gateway refused the refund.");
      return r;
    case RefundOutcome::unknown:
      r.unknown = true;
      r.error = "shouqianba refund: " + a.biz_result_code;
      return r;
  }
  return r;
}

std::optional<FollowUp> ShouqianbaProvider::follow_up(const store::PaymentRecord& p, std::int64_t now) const {
  if (!is_pending(p.status)) return std::nullopt;
  if (method_of(p) == "qr") {
    // Until the order lapses; then it is closed at the gateway, so that a late scan cannot pay it.
    if (p.expires_at && now >= p.expires_at) return FollowUp{now, true};
    const bool fast = now < p.created_at + plan_.qr_fast_window_ms;
    std::int64_t next = now + (fast ? plan_.qr_interval_ms : plan_.qr_slow_interval_ms);
    if (p.expires_at) next = std::min(next, p.expires_at);
    return FollowUp{next, false};
  }
  const std::int64_t deadline = p.created_at + plan_.pay_window_ms;
  if (now >= deadline) return FollowUp{now, true};  // poll's "remaining_time < 0": cancel
  return FollowUp{std::min(now + plan_.pay_interval_ms, deadline), false};
}

// ---------------------------------------------------------------------------------------------
// Terminal keys

std::optional<WireRequest> ShouqianbaProvider::build_activation(const std::string& code) const {
  if (vendor_sn_.empty()) return std::nullopt;
  bj::object b;
  b["app_id"] = app_id_;
  b["code"] = code;
  b["device_id"] = device_id_;
  return signed_post("/terminal/activate", bj::serialize(b), vendor_sn_.reveal(), vendor_key_);
}

IssuedCredentials ShouqianbaProvider::read_terminal(const net::OutboundResponse& res, std::string_view what) const {
  IssuedCredentials out;
  boost::system::error_code ec;
  auto v = bj::parse(res.body, ec);
  const bj::object* o = !ec && v.is_object() ? &v.get_object() : nullptr;
  const std::string code = o ? std::string(json::str(*o, "result_code")) : std::string();
  if (!o || code.empty() || code == "500") {
    out.unknown = true;
    out.error = std::string(what) + ": no usable answer (HTTP " + std::to_string(res.status) + ")";
    return out;
  }
  if (code != "200") {
    out.error = std::string(what) + " refused: " + std::string(json::str(*o, "error_code")) + " " +
                std::string(json::str(*o, "error_message"));
    return out;
  }
  const auto* biz = json::obj(*o, "biz_response");
  const auto sn = biz ? json::str(*biz, "terminal_sn") : std::string_view{};
  const auto key = biz ? json::str(*biz, "terminal_key") : std::string_view{};
  if (sn.empty() || key.empty()) {
    out.error = std::string(what) + ": the answer lacks terminal_sn/terminal_key";
    if (biz && !json::str(*biz, "result_code").empty())
      out.error += " (" + std::string(json::str(*biz, "result_code")) + " " +
                   std::string(json::str(*biz, "error_code")) + ")";
    return out;
  }
  bj::object c;
  c["terminal_sn"] = sn;
  c["terminal_key"] = key;
  out.credentials = std::move(c);
  return out;
}

IssuedCredentials ShouqianbaProvider::parse_activation(const net::OutboundResponse& res) const {
  return read_terminal(res, "activation");
}

std::optional<WireRequest> ShouqianbaProvider::build_rotation(const bj::object& current) const {
  const std::string sn(json::str(current, "terminal_sn"));
  const Secret key{std::string(json::str(current, "terminal_key"))};
  if (sn.empty() || key.empty()) return std::nullopt;
  bj::object b;
  b["terminal_sn"] = sn;
  b["device_id"] = device_id_;
  return signed_post("/terminal/checkin", bj::serialize(b), sn, key);
}

IssuedCredentials ShouqianbaProvider::parse_rotation(const net::OutboundResponse& res, const bj::object&) const {
  return read_terminal(res, "check-in");
}

// ---------------------------------------------------------------------------------------------
// Notifications

Notification ShouqianbaProvider::parse_notification(const http::RequestContext& ctx) const {
  Notification n;
  if (notify_public_key_.empty()) {
    n.verification = Verification::malformed;
    n.reason = "notifications are not enabled on this connector";
    return n;
  }
  const std::string_view body = ctx.req.body();
  const auto auth = std::string_view(ctx.req["Authorization"]);
  if (auth.empty() || body.empty()) {
    n.verification = Verification::malformed;
    n.reason = "a body and an Authorization header are required";
    return n;
  }
  // The signature covers the raw body bytes exactly as received.
  if (verify_notification(body, auth, notify_public_key_.reveal()) != NotifyCheck::valid) {
    n.verification = Verification::bad_signature;
    n.reason = "the RSA signature does not verify";
    return n;
  }
  boost::system::error_code ec;
  auto v = bj::parse(body, ec);
  if (ec || !v.is_object()) {
    n.verification = Verification::malformed;
    n.reason = "the body is not a JSON object";
    return n;
  }
  // The order fields, flat or inside the usual answer envelope.
  bj::object data = v.get_object();
  if (data.contains("biz_response")) data = read_answer(body).data;
  auto field = [&](std::string_view k) { return std::string(json::str(data, k)); };
  n.verification = Verification::verified;
  n.order_no = field("client_sn");
  n.provider_payment_id = field("sn");
  const auto total = field("total_amount");
  std::int64_t amount = -1;
  if (!total.empty() && total.size() <= 12 && total.find_first_not_of("0123456789") == std::string::npos)
    amount = std::stoll(total);
  n.amount = amount;  // -1 never equals the order: a missing amount is a mismatch
  n.result = read_order(data, "notify");
  n.dedup_key = n.provider_payment_id + ":" + field("order_status");
  return n;
}

Notification ShouqianbaProvider::parse_return(const http::RequestContext& ctx) const {
  Notification n;
  n.verification = Verification::malformed;
  n.reason = "Shouqianba has no browser return";
  n.payment_id_hint = std::string(http::form_get(http::parse_form(ctx.query), "payment"));
  return n;
}

http::Response ShouqianbaProvider::acknowledge(bool received, const http::Request& req) const {
  // SIGNING.md: the body "success" counts as received; anything else is sent again.
  if (received) return http::text_response(bhttp::status::ok, "success", req);
  return http::text_response(bhttp::status::bad_request, "fail", req);
}

}  // namespace paymux::providers::shouqianba
