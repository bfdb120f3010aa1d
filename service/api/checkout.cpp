#include "service/api/checkout.hpp"

#include "service/api/common.hpp"
#include "service/http/html.hpp"
#include "service/api/qr_svg.hpp"
#include "service/core/clock.hpp"
#include "service/core/ids.hpp"
#include "service/core/json.hpp"
#include "service/core/money.hpp"
#include "service/core/views.hpp"

#include <boost/url/parse.hpp>

#include <cctype>

namespace paymux::api {

using http::escape_html;
namespace {

namespace bhttp = http::bhttp;

// Submits the next-action form at once (the page's button does it without scripts), and on a
// live-status page asks /checkout/{id}/status until the payment is no longer pending, then goes
// to /checkout/{id}/return.
constexpr std::string_view kScript = R"JS((function () {
  'use strict';
  var form = document.querySelector('form[data-autosubmit]');
  if (form) {
    form.submit();
    return;
  }
  var live = document.querySelector('[data-status-url]');
  if (!live) return;
  var pending = { created: true, requires_action: true, processing: true };
  var delay = 2000;
  var polls = 0;
  function poll() {
    if (++polls > 1800) return;
    fetch(live.getAttribute('data-status-url'), { cache: 'no-store', credentials: 'omit' })
      .then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      })
      .then(function (s) {
        delay = 2000;
        if (pending[s.status]) return later();
        live.textContent = 'Payment ' + String(s.status).replace(/_/g, ' ') + '. Taking you back to the merchant...';
        window.location.replace(live.getAttribute('data-done-url'));
      })
      .catch(function () {
        delay = Math.min(delay * 2, 30000);
        later();
      });
  }
  function later() {
    setTimeout(poll, delay);
  }
  later();
})();
)JS";

constexpr std::string_view kStyle =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:32rem;margin:2rem auto;"
    "padding:0 1rem;color:#111827;line-height:1.5}\n"
    "h1{font-size:1.5rem;margin:0 0 .5rem}\n"
    ".amount{font-size:1.25rem;font-weight:600;margin:0}\n"
    ".description{color:#374151;margin:.25rem 0 1rem}\n"
    "button,.button{display:inline-block;margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem;border-radius:.25rem;"
    "border:1px solid #1e40af;background:#1d4ed8;color:#fff;cursor:pointer;text-decoration:none}\n"
    "button:focus,a:focus{outline:3px solid #2563eb;outline-offset:2px}\n"
    "figure{margin:1rem 0}figcaption{color:#374151}\n"
    ".qr{display:block;width:16rem;height:16rem;max-width:100%;border:1px solid #d1d5db}\n"
    ".status{font-weight:600}\n"
    ".notice{background:#f3f4f6;border-radius:.25rem;padding:.75rem}\n"
    "code{word-break:break-all}\n";

constexpr std::string_view kAssets = "/checkout/assets/";

// Strict headers on every answer of these routes; `form_action` is what the page's form needs.
void secure(Response& res, std::string_view form_action = "'none'") {
  res.set("Content-Security-Policy",
          "default-src 'none'; script-src 'self'; style-src 'self'; img-src data: 'self'; connect-src 'self'; "
          "form-action " +
              std::string(form_action) + "; frame-ancestors 'none'; base-uri 'none'");
  res.set("Referrer-Policy", "no-referrer");
  res.set("X-Content-Type-Options", "nosniff");
  res.set(bhttp::field::cache_control, "no-store");
}

// What a page does besides showing itself: nothing, submit its form, or follow the status (with
// scripts off, by reloading itself).
enum class Behaviour { none, submit, live };

Response page(const RequestContext& ctx, bhttp::status status, const std::string& title, const std::string& body,
              Behaviour behaviour = Behaviour::none, std::string_view form_action = "'none'") {
  std::string html =
      "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<meta name=\"robots\" content=\"noindex\">\n<title>" +
      escape_html(title) + "</title>\n<link rel=\"stylesheet\" href=\"" + std::string(kAssets) + "checkout.css\">\n";
  if (behaviour != Behaviour::none)
    html += "<script src=\"" + std::string(kAssets) + "checkout.js\" defer></script>\n";
  if (behaviour == Behaviour::live) html += "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>\n";
  html += "</head>\n<body>\n<main>\n" + body + "\n</main>\n</body>\n</html>\n";
  auto res = http::text_response(status, std::move(html), ctx.req, "text/html; charset=utf-8");
  secure(res, form_action);
  return res;
}

Response redirect(const RequestContext& ctx, std::string location) {
  auto res = http::redirect_response(bhttp::status::see_other, std::move(location), ctx.req);
  secure(res);
  return res;
}

Response asset(const RequestContext& ctx, std::string_view body, std::string_view type) {
  auto res = http::text_response(bhttp::status::ok, std::string(body), ctx.req, type);
  secure(res);
  res.set(bhttp::field::cache_control, "public, max-age=3600");
  return res;
}

Response not_found_page(const RequestContext& ctx) {
  return page(ctx, bhttp::status::not_found, "Payment not found",
              "<h1>Payment not found</h1>\n<p>This payment link is not valid. Please return to the shop and try "
              "again.</p>");
}

asio::awaitable<std::optional<store::PaymentRecord>> find_payment(App& app, const RequestContext& ctx) {
  const std::string id(ctx.param("id"));
  if (!is_valid_id(id, kPaymentPrefix)) co_return std::nullopt;
  co_return co_await app.store->get_payment(id);
}

// What the customer is told about a payment: a heading and a sentence.
struct Outcome {
  const char* heading;
  const char* text;
};

Outcome outcome(PaymentStatus s, bool lapsed) {
  if (lapsed) s = PaymentStatus::expired;
  switch (s) {
    case PaymentStatus::succeeded:
    case PaymentStatus::partially_refunded:
    case PaymentStatus::refunded:
    case PaymentStatus::disputed: return {"Payment received", "This payment has been received. Thank you."};
    case PaymentStatus::failed: return {"Payment failed", "This payment did not go through. No money was taken."};
    case PaymentStatus::canceled: return {"Payment canceled", "This payment was canceled."};
    case PaymentStatus::expired: return {"Payment expired", "This payment has expired and can no longer be paid."};
    default: return {"Payment processing", "This payment is being processed. This page updates when it is done."};
  }
}

}  // namespace

Response checkout_page(const RequestContext& ctx, const store::PaymentRecord& p) {
  const auto cur = find_currency(p.currency);
  const std::string amount = to_decimal(p.amount, cur ? cur->exponent : 2) + " " + p.currency;
  std::string description;
  auto request = json::parse_stored(p.request_json);
  if (request.is_object()) description = std::string(json::str(request.get_object(), "description"));
  std::string head = "<p class=\"amount\">" + escape_html(amount) + "</p>\n";
  if (!description.empty()) head += "<p class=\"description\">" + escape_html(description) + "</p>\n";
  const std::string base = "/checkout/" + p.id;
  const std::string back = p.return_url.empty() ? std::string() : return_location(p);
  const auto back_link = [&](std::string_view text) {
    return back.empty() ? std::string()
                        : "<p><a class=\"button\" href=\"" + escape_html(back) + "\">" + std::string(text) + "</a></p>\n";
  };
  const std::string live = "<p id=\"payment-status\" class=\"status\" role=\"status\" aria-live=\"polite\" "
                           "data-status-url=\"" + base + "/status\" data-done-url=\"" + base + "/return\">";

  const bool lapsed = is_pending(p.status) && p.expires_at && now_ms() >= p.expires_at;
  auto na = json::parse_stored(p.next_action_json);
  if (lapsed || !is_pending(p.status)) {
    const auto o = outcome(p.status, lapsed);
    return page(ctx, bhttp::status::ok, o.heading,
                "<h1>" + std::string(o.heading) + "</h1>\n" + head + "<p class=\"notice\" role=\"status\">" +
                    o.text + "</p>\n" + back_link("Return to the merchant"));
  }
  const auto processing = [&] {
    const auto o = outcome(p.status, false);
    return page(ctx, bhttp::status::ok, o.heading,
                "<h1>" + std::string(o.heading) + "</h1>\n" + head + live + o.text + "</p>\n", Behaviour::live);
  };
  if (p.status != PaymentStatus::requires_action || !na.is_object()) return processing();
  const auto& action = na.get_object();
  const auto type = json::str(action, "type");
  if (type == "redirect") return redirect(ctx, std::string(json::str(action, "url")));
  if (type == "form_post") {
    const std::string url(json::str(action, "url"));
    std::string form = "<form id=\"next-action\" method=\"post\" action=\"" + escape_html(url) + "\" data-autosubmit>\n";
    if (const auto* fields = json::obj(action, "fields"))
      for (const auto& kv : *fields)
        if (kv.value().is_string())
          form += "<input type=\"hidden\" name=\"" + escape_html(kv.key()) + "\" value=\"" +
                  escape_html(kv.value().get_string()) + "\">\n";
    form += "<p role=\"status\">Taking you to the secure payment page...</p>\n"
            "<button type=\"submit\">Continue to payment</button>\n</form>\n";
    return page(ctx, bhttp::status::ok, "Continue to payment", "<h1>Pay " + escape_html(amount) + "</h1>\n" +
                (description.empty() ? "" : "<p class=\"description\">" + escape_html(description) + "</p>\n") + form,
                Behaviour::submit, form_action_source(url));
  }
  if (type == "display_qr") {
    const std::string code(json::str(action, "qr_code"));
    std::string body = "<h1>Scan to pay</h1>\n" + head;
    if (auto svg = qr_svg(code, "QR code to pay " + amount)) {
      body += "<figure>\n" + *svg + "\n<figcaption>Scan this code with your payment app.</figcaption>\n</figure>\n";
    } else {
      body += "<p>Open this code in your payment app:</p>\n<p><code>" + escape_html(code) + "</code></p>\n";
    }
    body += live + "Waiting for your payment...</p>\n";
    if (!p.return_url.empty())
      body += "<p><a href=\"" + base + "/return\">Back to the merchant</a></p>\n";
    return page(ctx, bhttp::status::ok, "Scan to pay " + amount, body, Behaviour::live);
  }
  return processing();  // an action this page does not know: follow the status
}

namespace {

asio::awaitable<Response> checkout(App& app, RequestContext& ctx) {
  auto p = co_await find_payment(app, ctx);
  if (!p) co_return not_found_page(ctx);
  co_return checkout_page(ctx, *p);
}

asio::awaitable<Response> status_json(App& app, RequestContext& ctx) {
  auto p = co_await find_payment(app, ctx);
  if (!p) {
    auto res = http::error_response(http::not_found("No such payment."), ctx.request_id, ctx.req.version(),
                                    ctx.req.keep_alive());
    secure(res);
    co_return res;
  }
  boost::json::object o;
  o["status"] = to_string(p->status);
  auto res = http::json_response(bhttp::status::ok, o, ctx.req);
  secure(res);
  co_return res;
}

asio::awaitable<Response> go_back(App& app, RequestContext& ctx) {
  auto p = co_await find_payment(app, ctx);
  if (!p) co_return not_found_page(ctx);
  if (p->return_url.empty()) co_return checkout_page(ctx, *p);  // nowhere to go: where it stands
  co_return redirect(ctx, return_location(*p));
}

}  // namespace

std::string form_action_source(std::string_view url) {
  auto u = boost::urls::parse_absolute_uri(url);
  if (!u || (u->scheme() != "https" && u->scheme() != "http") || !u->has_authority() || u->host().empty())
    return "'none'";
  std::string out = std::string(u->scheme()) + "://" + std::string(u->encoded_host_and_port());
  for (char c : out)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '/' || c == '[' ||
          c == ']'))
      return "'none'";
  return out;
}

void register_checkout_routes(http::Router& router, App& app) {
  using bhttp::verb;
  router.add(verb::get, "/checkout/assets/checkout.js", [](RequestContext& ctx) -> asio::awaitable<Response> {
    co_return asset(ctx, kScript, "text/javascript; charset=utf-8");
  });
  router.add(verb::get, "/checkout/assets/checkout.css", [](RequestContext& ctx) -> asio::awaitable<Response> {
    co_return asset(ctx, kStyle, "text/css; charset=utf-8");
  });
  router.add(verb::get, "/checkout/{id}", [&app](RequestContext& ctx) { return checkout(app, ctx); });
  router.add(verb::get, "/checkout/{id}/status", [&app](RequestContext& ctx) { return status_json(app, ctx); });
  router.add(verb::get, "/checkout/{id}/return", [&app](RequestContext& ctx) { return go_back(app, ctx); });
}

}  // namespace paymux::api
