#pragma once
// Responses in the API's shapes: JSON bodies and the error object of API.md
// {"error": {"type", "code", "message", "param", "request_id"}}.
#include "service/http/types.hpp"

#include <boost/json/value.hpp>

#include <string>
#include <string_view>

namespace paymux::http {

enum class ErrorType {
  invalid_request_error,
  authentication_error,
  idempotency_error,
  rate_limit_error,
  provider_error,
  api_error,
};

std::string_view to_string(ErrorType t);

// The error a domain function reports; mapped to a response by error_response.
struct ApiError {
  unsigned status = 400;
  ErrorType type = ErrorType::invalid_request_error;
  std::string code;
  std::string message;
  std::string param;  // the offending field, empty when none
};

Response error_response(const ApiError& e, const std::string& request_id, unsigned version, bool keep_alive);
Response json_response(bhttp::status status, const boost::json::value& body, const Request& req);
Response json_response(bhttp::status status, std::string body, const Request& req);
Response text_response(bhttp::status status, std::string body, const Request& req,
                       std::string_view content_type = "text/plain; charset=utf-8");
Response redirect_response(bhttp::status status, std::string location, const Request& req);

// Common errors.
ApiError bad_request(std::string code, std::string message, std::string param = {});
ApiError not_found(std::string message);
ApiError state_conflict(std::string message);
ApiError unsupported(std::string message);
ApiError internal_error();
ApiError service_unavailable();  // 503: the store is not answering

}  // namespace paymux::http

namespace paymux::http {
// The serialized error object, for answers that are stored (idempotent replays).
std::string error_body(const ApiError& e, const std::string& request_id);
}  // namespace paymux::http
