// /v1/payments and /v1/refunds: strict parsing of the request, then the orchestrator.
#include "service/api/common.hpp"
#include "service/core/ids.hpp"
#include "service/core/json.hpp"
#include "service/core/money.hpp"

#include <boost/asio/use_awaitable.hpp>

#include <set>

namespace paymux::api {
namespace {

using http::bad_request;
using http::bhttp::verb;
namespace bj = boost::json;

ApiError unknown_field(const std::string& path) {
  return bad_request("parameter_unknown", "Unknown field: " + path + ".", path);
}
ApiError invalid(const std::string& path, const std::string& why) {
  return bad_request("parameter_invalid", path + " " + why + ".", path);
}
ApiError missing(const std::string& path) {
  return bad_request("parameter_missing", "Missing required field: " + path + ".", path);
}

// A string field: absent is fine (returns nullopt error), wrong type or too long is an error.
std::optional<ApiError> check_string(const bj::object& o, std::string_view key, const std::string& path,
                                     std::size_t max_len) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::nullopt;
  if (!it->value().is_string()) return invalid(path, "must be a string");
  if (it->value().get_string().size() > max_len)
    return invalid(path, "must be at most " + std::to_string(max_len) + " characters");
  return std::nullopt;
}

// An object whose members are all optional strings from `allowed`.
std::optional<ApiError> check_string_object(const bj::object& parent, std::string_view key,
                                            const std::set<std::string_view>& allowed, std::size_t max_len) {
  auto it = parent.find(key);
  if (it == parent.end() || it->value().is_null()) return std::nullopt;
  const std::string path(key);
  if (!it->value().is_object()) return invalid(path, "must be an object");
  for (const auto& kv : it->value().get_object()) {
    const std::string sub = path + "." + std::string(kv.key());
    if (!allowed.count(kv.key())) return unknown_field(sub);
    if (auto e = check_string(it->value().get_object(), kv.key(), sub, max_len)) return e;
  }
  return std::nullopt;
}

std::optional<std::int64_t> as_integer(const bj::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<std::int64_t>(v.get_uint64());
  return std::nullopt;
}

bool is_http_url(std::string_view u) {
  return (u.rfind("https://", 0) == 0 || u.rfind("http://", 0) == 0) && u.size() <= 2048 &&
         u.find_first_of(" \r\n\t<>\"") == std::string_view::npos;
}

std::variant<CreatePaymentCommand, ApiError> parse_create(const bj::object& body) {
  static const std::set<std::string_view> top{"amount",      "currency", "reference", "connector",
                                              "payment_method", "description", "customer", "billing",
                                              "shipping",    "items",    "return_url", "expires_in",
                                              "metadata"};
  for (const auto& kv : body)
    if (!top.count(kv.key())) return unknown_field(std::string(kv.key()));

  CreatePaymentCommand c;
  // amount: integer minor units, never a float
  auto it = body.find("amount");
  if (it == body.end()) return missing("amount");
  if (it->value().is_double())
    return invalid("amount", "must be an integer number of minor units (19.99 USD is 1999), not a decimal");
  auto amount = as_integer(it->value());
  if (!amount) return invalid("amount", "must be an integer number of minor units");
  if (*amount <= 0) return invalid("amount", "must be greater than zero");
  if (*amount > max_amount_minor) return invalid("amount", "is too large");
  c.amount = *amount;

  it = body.find("currency");
  if (it == body.end()) return missing("currency");
  if (!it->value().is_string()) return invalid("currency", "must be an ISO 4217 code such as \"USD\"");
  c.currency = std::string(it->value().get_string());
  if (!find_currency(c.currency)) return invalid("currency", "is not a supported ISO 4217 code");

  it = body.find("reference");
  if (it == body.end()) return missing("reference");
  if (!it->value().is_string() || it->value().get_string().empty() || it->value().get_string().size() > 255)
    return invalid("reference", "must be a string of 1 to 255 characters");
  c.reference = std::string(it->value().get_string());

  if (auto e = check_string(body, "connector", "connector", 64)) return *e;
  if (auto* v = body.if_contains("connector"); v && v->is_string()) c.connector = std::string(v->get_string());

  it = body.find("payment_method");
  if (it == body.end()) return missing("payment_method");
  if (!it->value().is_object()) return invalid("payment_method", "must be an object such as {\"type\":\"hosted\"}");
  const auto& pm = it->value().get_object();
  auto type = pm.find("type");
  if (type == pm.end()) return missing("payment_method.type");
  if (!type->value().is_string()) return invalid("payment_method.type", "must be a string");
  c.method = std::string(type->value().get_string());
  std::string secret_field;
  if (c.method == "card_nonce") secret_field = "nonce";
  else if (c.method == "barcode") secret_field = "barcode";
  else if (c.method != "hosted" && c.method != "qr")
    return invalid("payment_method.type", "must be one of hosted, card_nonce, barcode, qr");
  for (const auto& kv : pm)
    if (kv.key() != "type" && kv.key() != secret_field) return unknown_field("payment_method." + std::string(kv.key()));
  if (!secret_field.empty()) {
    const std::string path = "payment_method." + secret_field;
    auto s = pm.find(secret_field);
    if (s == pm.end()) return missing(path);
    if (!s->value().is_string() || s->value().get_string().empty() || s->value().get_string().size() > 512)
      return invalid(path, "must be a non-empty string");
    c.method_secret = std::string(s->value().get_string());
  }

  if (auto e = check_string(body, "description", "description", 1000)) return *e;
  if (auto e = check_string_object(body, "customer",
                                   {"email", "first_name", "last_name", "phone", "ip", "id", "id_type", "id_number"},
                                   255))
    return *e;
  if (auto e = check_string_object(body, "billing", {"country", "state", "city", "line1", "postal_code", "phone"}, 255))
    return *e;
  if (auto e = check_string_object(body, "shipping",
                                   {"first_name", "last_name", "country", "state", "city", "line1", "postal_code",
                                    "email", "phone"},
                                   255))
    return *e;
  for (auto key : {"description", "customer", "billing", "shipping"})
    if (auto* v = body.if_contains(key); v && !v->is_null()) c.request[key] = *v;

  if (auto* items = body.if_contains("items"); items && !items->is_null()) {
    if (!items->is_array()) return invalid("items", "must be an array");
    if (items->get_array().size() > 100) return invalid("items", "must have at most 100 entries");
    std::size_t i = 0;
    for (const auto& item : items->get_array()) {
      const std::string path = "items[" + std::to_string(i++) + "]";
      if (!item.is_object()) return invalid(path, "must be an object");
      const auto& io = item.get_object();
      for (const auto& kv : io)
        if (kv.key() != "name" && kv.key() != "unit_amount" && kv.key() != "quantity")
          return unknown_field(path + "." + std::string(kv.key()));
      if (auto e = check_string(io, "name", path + ".name", 255)) return *e;
      if (auto* ua = io.if_contains("unit_amount")) {
        auto n = as_integer(*ua);
        if (!n || *n < 0) return invalid(path + ".unit_amount", "must be a non-negative integer of minor units");
      }
      if (auto* q = io.if_contains("quantity")) {
        auto n = as_integer(*q);
        if (!n || *n < 1 || *n > 1000000) return invalid(path + ".quantity", "must be a positive integer");
      }
    }
    c.request["items"] = *items;
  }

  if (auto* v = body.if_contains("return_url"); v && !v->is_null()) {
    if (!v->is_string() || !is_http_url(v->get_string()))
      return invalid("return_url", "must be an http(s) URL of at most 2048 characters");
    c.return_url = std::string(v->get_string());
  }
  if (auto* v = body.if_contains("expires_in"); v && !v->is_null()) {
    auto n = as_integer(*v);
    if (!n || *n < 10 || *n > 30LL * 24 * 3600) return invalid("expires_in", "must be an integer of seconds from 10 to 2592000");
    c.expires_in = *n;
  }
  if (auto* v = body.if_contains("metadata"); v && !v->is_null()) {
    if (!v->is_object()) return invalid("metadata", "must be an object of string values");
    if (v->get_object().size() > 20) return invalid("metadata", "must have at most 20 keys");
    for (const auto& kv : v->get_object()) {
      const std::string path = "metadata." + std::string(kv.key());
      if (kv.key().empty() || kv.key().size() > 40) return invalid(path, "key must be 1 to 40 characters");
      if (!kv.value().is_string() || kv.value().get_string().size() > 500)
        return invalid(path, "must be a string of at most 500 characters");
    }
    c.metadata = v->get_object();
  }
  return c;
}

}  // namespace

void register_payment_routes(http::Router& router, App& app) {
  router.add(verb::post, "/v1/payments", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    auto key = idempotency_key(ctx);
    if (auto* e = std::get_if<ApiError>(&key)) co_return respond(ctx, *e);
    if (std::get<std::string>(key).empty())
      co_return respond(ctx, bad_request("idempotency_key_missing",
                                         "POST /v1/payments requires an Idempotency-Key header, so that a retried "
                                         "request never creates a second payment.",
                                         "Idempotency-Key"));
    auto body = json_body(ctx, false);
    if (auto* e = std::get_if<ApiError>(&body)) co_return respond(ctx, *e);
    auto parsed = parse_create(std::get<bj::object>(body));
    if (auto* e = std::get_if<ApiError>(&parsed)) co_return respond(ctx, *e);
    auto& cmd = std::get<CreatePaymentCommand>(parsed);
    cmd.merchant = std::get<std::string>(who);
    cmd.idempotency_key = std::get<std::string>(key);
    cmd.fingerprint = fingerprint("POST /v1/payments", std::get<bj::object>(body));
    cmd.request_id = ctx.request_id;
    co_return respond(ctx, co_await app.orchestrator.create_payment(std::move(cmd)));
  });

  router.add(verb::get, "/v1/payments", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    auto q = http::parse_form(ctx.query);
    for (const auto& [k, v] : q)
      if (k != "reference" && k != "status" && k != "limit" && k != "starting_after")
        co_return respond(ctx, bad_request("parameter_unknown", "Unknown query parameter: " + k + ".", k));
    auto limit = query_int(q, "limit", 1, 100, 10);
    if (auto* e = std::get_if<ApiError>(&limit)) co_return respond(ctx, *e);
    store::PaymentQuery query;
    query.merchant = std::get<std::string>(who);
    query.limit = std::get<int>(limit);
    query.reference = std::string(http::form_get(q, "reference"));
    query.starting_after = std::string(http::form_get(q, "starting_after"));
    if (auto s = http::form_get(q, "status"); !s.empty()) {
      query.status = payment_status_from(s);
      if (!query.status) co_return respond(ctx, bad_request("parameter_invalid", "Unknown status: " + std::string(s) + ".", "status"));
    }
    co_return respond(ctx, co_await app.orchestrator.list_payments(std::move(query)));
  });

  router.add(verb::get, "/v1/payments/{id}", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    co_return respond(ctx, co_await app.orchestrator.get_payment(std::get<std::string>(who), std::string(ctx.param("id"))));
  });

  // sync, cancel: no body (an empty JSON object is accepted), optional Idempotency-Key.
  auto action = [&app](std::string name) {
    return [&app, name](RequestContext& ctx) -> asio::awaitable<Response> {
      auto who = authenticate(app, ctx);
      if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
      auto key = idempotency_key(ctx);
      if (auto* e = std::get_if<ApiError>(&key)) co_return respond(ctx, *e);
      auto body = json_body(ctx, true);
      if (auto* e = std::get_if<ApiError>(&body)) co_return respond(ctx, *e);
      if (!std::get<bj::object>(body).empty()) {
        co_return respond(ctx, bad_request("parameter_unknown",
                                           "Unknown field: " + std::string(std::get<bj::object>(body).begin()->key()) + ".",
                                           std::string(std::get<bj::object>(body).begin()->key())));
      }
      const std::string merchant = std::get<std::string>(who);
      const std::string id(ctx.param("id"));
      const std::string endpoint = "POST /v1/payments/" + id + "/" + name;
      // Not a coroutine itself: the orchestrator's coroutines take their arguments by value, so
      // nothing refers back into this closure once it has been called.
      std::function<asio::awaitable<Result>()> work = [&app, merchant, id, name]() {
        return name == "sync" ? app.orchestrator.sync_payment(merchant, id)
                              : app.orchestrator.cancel_payment(merchant, id);
      };
      const std::string fp = fingerprint(endpoint, bj::object{});
      const std::string idem = std::get<std::string>(key);
      auto result = co_await with_idempotency(app, merchant, idem, endpoint, fp, ctx.request_id, std::move(work));
      co_return respond(ctx, result);
    };
  };
  router.add(verb::post, "/v1/payments/{id}/sync", action("sync"));
  router.add(verb::post, "/v1/payments/{id}/cancel", action("cancel"));

  router.add(verb::post, "/v1/payments/{id}/refunds", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    auto key = idempotency_key(ctx);
    if (auto* e = std::get_if<ApiError>(&key)) co_return respond(ctx, *e);
    auto body = json_body(ctx, true);
    if (auto* e = std::get_if<ApiError>(&body)) co_return respond(ctx, *e);
    const auto& o = std::get<bj::object>(body);
    CreateRefundCommand cmd;
    for (const auto& kv : o)
      if (kv.key() != "amount" && kv.key() != "reason" && kv.key() != "reference")
        co_return respond(ctx, unknown_field(std::string(kv.key())));
    if (auto* a = o.if_contains("amount"); a && !a->is_null()) {
      if (a->is_double())
        co_return respond(ctx, invalid("amount", "must be an integer number of minor units, not a decimal"));
      auto n = as_integer(*a);
      if (!n) co_return respond(ctx, invalid("amount", "must be an integer number of minor units"));
      if (*n <= 0) co_return respond(ctx, invalid("amount", "must be greater than zero"));
      cmd.amount = *n;
    }
    if (auto e = check_string(o, "reason", "reason", 500)) co_return respond(ctx, *e);
    if (auto e = check_string(o, "reference", "reference", 255)) co_return respond(ctx, *e);
    cmd.reason = std::string(json::str(o, "reason"));
    cmd.reference = std::string(json::str(o, "reference"));
    cmd.merchant = std::get<std::string>(who);
    cmd.payment_id = std::string(ctx.param("id"));
    const std::string endpoint = "POST /v1/payments/" + cmd.payment_id + "/refunds";
    std::function<asio::awaitable<Result>()> work = [&app, cmd]() { return app.orchestrator.create_refund(cmd); };
    const std::string fp = fingerprint(endpoint, o);
    const std::string idem = std::get<std::string>(key);
    auto result = co_await with_idempotency(app, cmd.merchant, idem, endpoint, fp, ctx.request_id, std::move(work));
    co_return respond(ctx, result);
  });

  router.add(verb::get, "/v1/payments/{id}/refunds", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    co_return respond(ctx, co_await app.orchestrator.list_refunds(std::get<std::string>(who), std::string(ctx.param("id"))));
  });

  router.add(verb::get, "/v1/refunds/{id}", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    co_return respond(ctx, co_await app.orchestrator.get_refund(std::get<std::string>(who), std::string(ctx.param("id"))));
  });
}

}  // namespace paymux::api
