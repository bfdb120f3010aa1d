#pragma once
// What every merchant API handler does: authenticate, read JSON strictly, honour Idempotency-Key,
// and turn a domain Result into a response.
#include "service/app.hpp"

#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <variant>

namespace paymux::api {

namespace asio = boost::asio;
using http::ApiError;
using http::RequestContext;
using http::Response;

// The merchant behind the Bearer key, or a 401 error.
std::variant<std::string, ApiError> authenticate(const App& app, const RequestContext& ctx);

// The body as a JSON object (empty body -> {} when allow_empty); 400 on anything else.
std::variant<boost::json::object, ApiError> json_body(const RequestContext& ctx, bool allow_empty);

// The Idempotency-Key header: empty when absent; 400 when malformed.
std::variant<std::string, ApiError> idempotency_key(const RequestContext& ctx);

// SHA-256 over the endpoint and the canonical JSON of the body.
std::string fingerprint(const std::string& endpoint, const boost::json::value& body);

Response respond(const RequestContext& ctx, const Result& r);
Response respond(const RequestContext& ctx, const ApiError& e);

// Runs `work` under the request's Idempotency-Key (when it has one): a repeat replays the stored
// answer, another payload under the same key is 422, a concurrent one 409. Answers of 5xx are not
// kept, so that the request can be retried.
asio::awaitable<Result> with_idempotency(App& app, const std::string& merchant, const std::string& key,
                                         const std::string& endpoint, const std::string& fingerprint,
                                         const std::string& request_id,
                                         std::function<asio::awaitable<Result>()> work);

// Query-string integer in [lo, hi]; default when absent.
std::variant<int, ApiError> query_int(const http::FormFields& q, std::string_view name, int lo, int hi, int dflt);

}  // namespace paymux::api
