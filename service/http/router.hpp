#pragma once
// Maps (method, path pattern) to a handler. Patterns are literal segments and {name} captures:
// "/v1/payments/{id}/refunds". A path that matches with another method answers 405 with Allow;
// no match answers 404; both in the API's error shape.
#include "service/http/errors.hpp"
#include "service/http/types.hpp"

#include <string>
#include <vector>

namespace paymux::http {

class Router {
 public:
  void add(bhttp::verb method, std::string pattern, Handler handler);

  // Runs the matching handler. Exceptions escaping a handler become a 500 api_error (logged once).
  asio::awaitable<Response> dispatch(RequestContext& ctx) const;

 private:
  struct Route {
    bhttp::verb method;
    std::string pattern;
    std::vector<std::string> segments;  // "{name}" for a capture
    Handler handler;
  };
  static bool match(const Route& r, const std::vector<std::string_view>& parts, RequestContext* ctx);
  std::vector<Route> routes_;
};

}  // namespace paymux::http
