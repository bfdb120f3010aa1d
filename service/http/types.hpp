#pragma once
// The HTTP vocabulary shared by the server, the router, the handlers and the outbound client.
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace paymux::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;

// What a handler sees: the parsed request and what the server learned about it. No socket.
struct RequestContext {
  Request req;
  std::string request_id;   // echoed from a valid X-Request-Id, else generated
  std::string remote_addr;  // peer address, for logs and notification audit
  std::string_view path;    // target without the query string
  std::string_view query;   // after '?', without it; empty when absent
  std::string_view route;   // the matched route's pattern, for metrics; empty until routed
  std::vector<std::pair<std::string, std::string>> params;  // {name} captures of the route

  std::string_view param(std::string_view name) const {
    for (const auto& [k, v] : params)
      if (k == name) return v;
    return {};
  }
};

using Handler = std::function<asio::awaitable<Response>(RequestContext&)>;

// Decoded query-string or form (application/x-www-form-urlencoded) pairs, in order.
using FormFields = std::vector<std::pair<std::string, std::string>>;
FormFields parse_form(std::string_view encoded);
std::string_view form_get(const FormFields& fields, std::string_view key);
bool form_has(const FormFields& fields, std::string_view key);
std::string url_encode(std::string_view raw);
std::string encode_form(const FormFields& fields);

}  // namespace paymux::http
