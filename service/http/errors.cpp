#include "service/http/errors.hpp"

#include <boost/json/serialize.hpp>

namespace paymux::http {

std::string_view to_string(ErrorType t) {
  switch (t) {
    case ErrorType::invalid_request_error: return "invalid_request_error";
    case ErrorType::authentication_error: return "authentication_error";
    case ErrorType::idempotency_error: return "idempotency_error";
    case ErrorType::rate_limit_error: return "rate_limit_error";
    case ErrorType::provider_error: return "provider_error";
    case ErrorType::api_error: return "api_error";
  }
  return "api_error";
}

std::string error_body(const ApiError& e, const std::string& request_id) {
  boost::json::object err;
  err["type"] = to_string(e.type);
  err["code"] = e.code;
  err["message"] = e.message;
  if (!e.param.empty()) err["param"] = e.param;
  err["request_id"] = request_id;
  boost::json::object body;
  body["error"] = std::move(err);
  return boost::json::serialize(body);
}

Response error_response(const ApiError& e, const std::string& request_id, unsigned version, bool keep_alive) {
  Response res{static_cast<bhttp::status>(e.status), version};
  res.set(bhttp::field::content_type, "application/json");
  res.set(bhttp::field::cache_control, "no-store");
  if (e.status == 401) res.set(bhttp::field::www_authenticate, "Bearer");
  res.body() = error_body(e, request_id);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

Response json_response(bhttp::status status, std::string body, const Request& req) {
  Response res{status, req.version()};
  res.set(bhttp::field::content_type, "application/json");
  res.set(bhttp::field::cache_control, "no-store");
  res.body() = std::move(body);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

Response json_response(bhttp::status status, const boost::json::value& body, const Request& req) {
  return json_response(status, boost::json::serialize(body), req);
}

Response text_response(bhttp::status status, std::string body, const Request& req, std::string_view content_type) {
  Response res{status, req.version()};
  res.set(bhttp::field::content_type, content_type);
  res.set(bhttp::field::cache_control, "no-store");
  res.body() = std::move(body);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

Response redirect_response(bhttp::status status, std::string location, const Request& req) {
  Response res{status, req.version()};
  res.set(bhttp::field::location, std::move(location));
  res.set(bhttp::field::cache_control, "no-store");
  res.set("Referrer-Policy", "no-referrer");
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

ApiError bad_request(std::string code, std::string message, std::string param) {
  return {400, ErrorType::invalid_request_error, std::move(code), std::move(message), std::move(param)};
}
ApiError not_found(std::string message) {
  return {404, ErrorType::invalid_request_error, "resource_missing", std::move(message), {}};
}
ApiError state_conflict(std::string message) {
  return {409, ErrorType::invalid_request_error, "state_conflict", std::move(message), {}};
}
ApiError unsupported(std::string message) {
  return {422, ErrorType::invalid_request_error, "unsupported", std::move(message), {}};
}
ApiError internal_error() {
  return {500, ErrorType::api_error, "internal_error", "An internal error occurred.", {}};
}

ApiError service_unavailable() {
  return {503, ErrorType::api_error, "service_unavailable", "The service is temporarily unavailable; retry shortly.",
          {}};
}

}  // namespace paymux::http
