#include "service/api/common.hpp"

#include "service/core/clock.hpp"
#include "service/core/crypto.hpp"
#include "service/core/json.hpp"

#include <boost/json/parse.hpp>

namespace paymux::api {

std::variant<std::string, ApiError> authenticate(const App& app, const RequestContext& ctx) {
  auto h = std::string_view(ctx.req[http::bhttp::field::authorization]);
  constexpr std::string_view bearer = "Bearer ";
  ApiError err{401, http::ErrorType::authentication_error, "invalid_api_key",
               "Missing or invalid API key: send Authorization: Bearer <api key>.", {}};
  if (h.size() <= bearer.size() || h.substr(0, bearer.size()) != bearer) return err;
  auto merchant = app.auth.merchant_for(h.substr(bearer.size()));
  if (merchant.empty()) return err;
  return merchant;
}

std::variant<boost::json::object, ApiError> json_body(const RequestContext& ctx, bool allow_empty) {
  const auto& body = ctx.req.body();
  if (body.empty()) {
    if (allow_empty) return boost::json::object{};
    return http::bad_request("body_missing", "A JSON object body is required.");
  }
  auto ct = std::string_view(ctx.req[http::bhttp::field::content_type]);
  if (!ct.empty() && ct.substr(0, 16) != "application/json")
    return http::bad_request("content_type_invalid", "Content-Type must be application/json.");
  boost::system::error_code ec;
  boost::json::parse_options opts;
  opts.max_depth = 16;
  auto v = boost::json::parse(body, ec, {}, opts);
  if (ec) return http::bad_request("json_invalid", "The body is not valid JSON: " + ec.message() + ".");
  if (!v.is_object()) return http::bad_request("json_invalid", "The body must be a JSON object.");
  return std::move(v.get_object());
}

std::variant<std::string, ApiError> idempotency_key(const RequestContext& ctx) {
  auto it = ctx.req.find("Idempotency-Key");
  if (it == ctx.req.end()) return std::string();
  std::string_view v = it->value();
  bool ok = !v.empty() && v.size() <= 255;
  for (char c : v)
    if (c < 0x20 || c > 0x7e) ok = false;
  if (!ok)
    return http::bad_request("idempotency_key_invalid", "Idempotency-Key must be 1-255 printable ASCII characters.",
                             "Idempotency-Key");
  return std::string(v);
}

std::string fingerprint(const std::string& endpoint, const boost::json::value& body) {
  return crypto::sha256_hex(endpoint + "\n" + json::canonical(body));
}

Response respond(const RequestContext& ctx, const ApiError& e) {
  return http::error_response(e, ctx.request_id, ctx.req.version(), ctx.req.keep_alive());
}

Response respond(const RequestContext& ctx, const Result& r) {
  if (const auto* e = std::get_if<ApiError>(&r)) return respond(ctx, *e);
  const auto& ok = std::get<Reply>(r);
  auto res = http::json_response(static_cast<http::bhttp::status>(ok.status), ok.body, ctx.req);
  if (ok.replayed) res.set("Idempotent-Replayed", "true");
  return res;
}

asio::awaitable<Result> with_idempotency(App& app, const std::string& merchant, const std::string& key,
                                         const std::string& endpoint, const std::string& fp,
                                         const std::string& request_id,
                                         std::function<asio::awaitable<Result>()> work) {
  if (key.empty()) co_return co_await work();
  store::IdempotencyRecord rec;
  rec.merchant = merchant;
  rec.key = key;
  rec.endpoint = endpoint;
  rec.fingerprint = fp;
  rec.created_at = now_ms();
  auto begun = co_await app.store->begin_idempotency(rec);
  if (begun.outcome == store::BeginOutcome::exists) co_return idempotency_verdict(begun.existing, endpoint, fp);
  Result result;
  std::exception_ptr failure;
  try {
    result = co_await work();
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) {
    // Nothing definite to keep: free the key so that the request can be retried.
    try {
      co_await app.store->release_idempotency(merchant, key);
    } catch (const std::exception&) {
    }
    std::rethrow_exception(failure);
  }
  const auto* err = std::get_if<ApiError>(&result);
  if (err && err->status >= 500) {
    co_await app.store->release_idempotency(merchant, key);
    co_return result;
  }
  rec.state = store::IdempotencyState::completed;
  if (err) {
    rec.response_status = err->status;
    rec.response_body = http::error_body(*err, request_id);
  } else {
    rec.response_status = std::get<Reply>(result).status;
    rec.response_body = std::get<Reply>(result).body;
  }
  co_await app.store->complete_idempotency(rec);
  co_return result;
}

std::variant<int, ApiError> query_int(const http::FormFields& q, std::string_view name, int lo, int hi, int dflt) {
  if (!http::form_has(q, name)) return dflt;
  auto v = http::form_get(q, name);
  int n = 0;
  bool ok = !v.empty() && v.size() <= 9;
  for (char c : v) {
    if (c < '0' || c > '9') ok = false;
    else n = n * 10 + (c - '0');
  }
  if (!ok || n < lo || n > hi)
    return http::bad_request("parameter_invalid",
                             std::string(name) + " must be an integer from " + std::to_string(lo) + " to " +
                                 std::to_string(hi) + ".",
                             std::string(name));
  return n;
}

}  // namespace paymux::api
