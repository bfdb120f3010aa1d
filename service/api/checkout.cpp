#include "service/api/checkout.hpp"

#include "service/api/common.hpp"
#include "service/core/ids.hpp"
#include "service/core/json.hpp"
#include "service/core/money.hpp"

namespace paymux::api {
namespace {

std::string escape_html(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

Response page(const RequestContext& ctx, http::bhttp::status status, const std::string& title, const std::string& body) {
  std::string html = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>" +
                     escape_html(title) +
                     "</title><style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;"
                     "padding:0 1rem;color:#1a1a1a}button{font-size:1rem;padding:.6rem 1.2rem}</style></head><body>" +
                     body + "</body></html>";
  auto res = http::text_response(status, std::move(html), ctx.req, "text/html; charset=utf-8");
  res.set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'");
  res.set("Referrer-Policy", "no-referrer");
  res.set("X-Content-Type-Options", "nosniff");
  return res;
}

}  // namespace

void register_checkout_routes(http::Router& router, App& app) {
  router.add(http::bhttp::verb::get, "/checkout/{id}", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    const std::string id(ctx.param("id"));
    std::optional<store::PaymentRecord> p;
    if (is_valid_id(id, kPaymentPrefix)) p = co_await app.store->get_payment(id);
    if (!p) co_return page(ctx, http::bhttp::status::not_found, "Payment not found", "<h1>Payment not found</h1>");
    const auto cur = find_currency(p->currency);
    const std::string amount = to_decimal(p->amount, cur ? cur->exponent : 2) + " " + p->currency;
    auto request = json::parse_stored(p->request_json);
    std::string description;
    if (request.is_object()) description = std::string(json::str(request.get_object(), "description"));
    std::string head = "<h1>Pay " + escape_html(amount) + "</h1>";
    if (!description.empty()) head += "<p>" + escape_html(description) + "</p>";
    auto na = json::parse_stored(p->next_action_json);
    if (p->status != PaymentStatus::requires_action || !na.is_object()) {
      co_return page(ctx, http::bhttp::status::ok, "Payment " + std::string(to_string(p->status)),
                     head + "<p role=\"status\">This payment is <strong>" + std::string(to_string(p->status)) +
                         "</strong>. There is nothing more to do here.</p>");
    }
    const auto& action = na.get_object();
    const auto type = json::str(action, "type");
    if (type == "redirect") {
      co_return http::redirect_response(http::bhttp::status::see_other, std::string(json::str(action, "url")), ctx.req);
    }
    if (type == "form_post") {
      std::string form = "<form method=\"post\" action=\"" + escape_html(json::str(action, "url")) + "\">";
      if (const auto* fields = json::obj(action, "fields"))
        for (const auto& kv : *fields)
          if (kv.value().is_string())
            form += "<input type=\"hidden\" name=\"" + escape_html(kv.key()) + "\" value=\"" +
                    escape_html(kv.value().get_string()) + "\">";
      form += "<button type=\"submit\">Continue to payment</button></form>";
      co_return page(ctx, http::bhttp::status::ok, "Continue to payment", head + form);
    }
    if (type == "display_qr") {
      co_return page(ctx, http::bhttp::status::ok, "Scan to pay",
                     head + "<p>Scan this code with your wallet app:</p><pre>" +
                         escape_html(json::str(action, "qr_code")) + "</pre>");
    }
    co_return page(ctx, http::bhttp::status::ok, "Payment", head);
  });
}

}  // namespace paymux::api
