// The customer-facing checkout pages: the QR code drawn as SVG, the page for each next action and
// for final or lapsed payments, their security headers, and the merchant's return location.
#include "service/api/checkout.hpp"
#include "service/api/qr_svg.hpp"
#include "service/core/clock.hpp"
#include "service/core/views.hpp"

#include <qrencode.h>

#include <catch2/catch.hpp>

#include <regex>
#include <set>

using namespace paymux;

namespace {

// The dark modules an SVG of qr_svg draws, read back from its path ("Mx yhNv1h-Nz" per run) and
// its viewBox: (x, y) in module units, quiet zone removed.
struct Drawn {
  int side = 0;
  std::set<std::pair<int, int>> dark;
};

Drawn read_svg(const std::string& svg) {
  Drawn d;
  std::smatch m;
  REQUIRE(std::regex_search(svg, m, std::regex("viewBox=\"0 0 (\\d+) (\\d+)\"")));
  REQUIRE(m[1] == m[2]);
  d.side = std::stoi(m[1]);
  REQUIRE(std::regex_search(svg, m, std::regex(" d=\"([^\"]*)\"")));
  const std::string path = m[1];
  const std::regex run("M(\\d+) (\\d+)h(\\d+)v1h-(\\d+)z");
  std::size_t covered = 0;
  for (auto it = std::sregex_iterator(path.begin(), path.end(), run); it != std::sregex_iterator(); ++it) {
    const int x = std::stoi((*it)[1]), y = std::stoi((*it)[2]), n = std::stoi((*it)[3]);
    REQUIRE(std::stoi((*it)[4]) == n);
    for (int i = 0; i < n; ++i) d.dark.insert({x + i - 4, y - 4});
    covered += static_cast<std::size_t>(it->length());
  }
  REQUIRE(covered == path.size());  // nothing but runs
  return d;
}

store::PaymentRecord payment(std::string next_action, PaymentStatus status = PaymentStatus::requires_action) {
  store::PaymentRecord p;
  p.id = "pay_2kq8f3n1c5x7m9v4b6z0d";
  p.amount = 1999;
  p.currency = "CNY";
  p.status = status;
  p.request_json =
      R"({"description":"Tea <green> & \"jasmine\"","customer":{"email":"buyer@example.com","first_name":"Xiaoling"}})";
  p.next_action_json = std::move(next_action);
  p.return_url = "https://shop.example/orders/1001?lang=en&status=old#top";
  return p;
}

std::string header(const http::Response& r, std::string_view name) { return std::string(r[name]); }

void check_security_headers(const http::Response& r) {
  const auto csp = header(r, "Content-Security-Policy");
  for (const char* part : {"default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src data: 'self'",
                           "frame-ancestors 'none'", "base-uri 'none'", "form-action "})
    CHECK(csp.find(part) != std::string::npos);
  CHECK(csp.find("unsafe-inline") == std::string::npos);
  CHECK(csp.find('*') == std::string::npos);
  CHECK(header(r, "Referrer-Policy") == "no-referrer");
  CHECK(header(r, "X-Content-Type-Options") == "nosniff");
  CHECK(header(r, "Cache-Control") == "no-store");
}

}  // namespace

TEST_CASE("a QR code is drawn module for module as libqrencode encodes it", "[checkout]") {
  const std::string text = "https://qr.shouqianba.example/pay?o=7895238&sn=ab12";
  auto svg = api::qr_svg(text, "QR code to pay 19.99 CNY");
  REQUIRE(svg);
  CHECK(svg->rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg->find("role=\"img\" aria-label=\"QR code to pay 19.99 CNY\"") != std::string::npos);
  const auto drawn = read_svg(*svg);

  QRcode* code = QRcode_encodeData(static_cast<int>(text.size()), reinterpret_cast<const unsigned char*>(text.data()),
                                   0, QR_ECLEVEL_M);
  REQUIRE(code);
  const int w = code->width;
  std::set<std::pair<int, int>> expected;
  for (int y = 0; y < w; ++y)
    for (int x = 0; x < w; ++x)
      if (code->data[y * w + x] & 1) expected.insert({x, y});
  QRcode_free(code);
  CHECK(drawn.side == w + 8);  // a quiet zone of four modules on each side
  CHECK(drawn.dark == expected);

  // Independently of libqrencode: the three finder patterns (7x7 ring around a 3x3 core).
  const auto finder_ok = [&](int ox, int oy) {
    for (int y = 0; y < 7; ++y)
      for (int x = 0; x < 7; ++x) {
        const bool ring = x == 0 || y == 0 || x == 6 || y == 6;
        const bool core = x >= 2 && x <= 4 && y >= 2 && y <= 4;
        if (drawn.dark.count({ox + x, oy + y}) != ((ring || core) ? 1u : 0u)) return false;
      }
    return true;
  };
  CHECK(finder_ok(0, 0));
  CHECK(finder_ok(w - 7, 0));
  CHECK(finder_ok(0, w - 7));
  CHECK(w >= 21);
  CHECK((w - 17) % 4 == 0);  // a QR size: 21, 25, ... (version * 4 + 17)
}

TEST_CASE("qr_svg escapes its label and refuses what no QR code holds", "[checkout]") {
  auto svg = api::qr_svg("x", "a \"quoted\" <label>");
  REQUIRE(svg);
  CHECK(svg->find("aria-label=\"a &quot;quoted&quot; &lt;label&gt;\"") != std::string::npos);
  CHECK_FALSE(api::qr_svg("", "empty"));
  CHECK_FALSE(api::qr_svg(std::string(4000, 'x'), "too long"));  // byte mode, level M holds 2331 at most
}

TEST_CASE("form-action allows exactly the origin the form posts to", "[checkout]") {
  CHECK(api::form_action_source("https://pay.glocash.com/gateway/payment/index") == "https://pay.glocash.com");
  CHECK(api::form_action_source("http://127.0.0.1:9090/dhpay/acs/pit1/acsService?x=1") == "http://127.0.0.1:9090");
  CHECK(api::form_action_source("https://[::1]:8443/pay") == "https://[::1]:8443");
  CHECK(api::form_action_source("javascript:alert(1)") == "'none'");
  CHECK(api::form_action_source("/relative/path") == "'none'");
  CHECK(api::form_action_source("https://a;b.example/") == "'none'");
  CHECK(api::form_action_source("") == "'none'");
}

TEST_CASE("the return location merges payment_id and status into the merchant's URL", "[checkout]") {
  auto p = payment("", PaymentStatus::succeeded);
  CHECK(return_location(p) ==
        "https://shop.example/orders/1001?lang=en&status=succeeded&payment_id=pay_2kq8f3n1c5x7m9v4b6z0d#top");
  p.return_url = "https://shop.example/done";
  p.status = PaymentStatus::failed;
  CHECK(return_location(p) == "https://shop.example/done?payment_id=pay_2kq8f3n1c5x7m9v4b6z0d&status=failed");
  p.return_url = "https://shop.example/done?payment_id=forged&payment_id=again";
  CHECK(return_location(p) == "https://shop.example/done?payment_id=pay_2kq8f3n1c5x7m9v4b6z0d&status=failed");
  p.return_url.clear();
  CHECK(return_location(p).empty());
}

TEST_CASE("the checkout page of a display_qr action shows the code, the amount and a live status", "[checkout]") {
  http::RequestContext ctx;
  auto res = api::checkout_page(ctx, payment(R"({"type":"display_qr","qr_code":"https://qr.example/p?o=1&s=2"})"));
  CHECK(res.result() == http::bhttp::status::ok);
  check_security_headers(res);
  CHECK(header(res, "Content-Security-Policy").find("form-action 'none'") != std::string::npos);
  CHECK(header(res, "Content-Type") == "text/html; charset=utf-8");
  const auto& body = res.body();
  CHECK(body.find("<svg") != std::string::npos);
  CHECK(body.find("19.99 CNY") != std::string::npos);
  CHECK(body.find("Tea &lt;green&gt; &amp; &quot;jasmine&quot;") != std::string::npos);
  CHECK(body.find("data-status-url=\"/checkout/pay_2kq8f3n1c5x7m9v4b6z0d/status\"") != std::string::npos);
  CHECK(body.find("data-done-url=\"/checkout/pay_2kq8f3n1c5x7m9v4b6z0d/return\"") != std::string::npos);
  CHECK(body.find("<script src=\"/checkout/assets/checkout.js\" defer></script>") != std::string::npos);
  // No inline script or style, and nothing about the customer beyond amount and description.
  CHECK(body.find("<script>") == std::string::npos);
  CHECK(body.find("<style") == std::string::npos);
  CHECK(body.find("style=") == std::string::npos);
  CHECK(body.find("buyer@example.com") == std::string::npos);
  CHECK(body.find("Xiaoling") == std::string::npos);
}

TEST_CASE("the checkout page of a form_post action posts the fields, with a button and its origin allowed",
          "[checkout]") {
  http::RequestContext ctx;
  auto res = api::checkout_page(
      ctx, payment(R"({"type":"form_post","url":"https://pay.example:8443/gw?a=1&b=2",)"
                   R"("fields":{"REQ_INVOICE":"2kq8\"><script>","SIGN":"abc"}})"));
  CHECK(res.result() == http::bhttp::status::ok);
  check_security_headers(res);
  CHECK(header(res, "Content-Security-Policy").find("form-action https://pay.example:8443;") != std::string::npos);
  const auto& body = res.body();
  CHECK(body.find("<form id=\"next-action\" method=\"post\" action=\"https://pay.example:8443/gw?a=1&amp;b=2\" "
                  "data-autosubmit>") != std::string::npos);
  CHECK(body.find("<input type=\"hidden\" name=\"REQ_INVOICE\" value=\"2kq8&quot;&gt;&lt;script&gt;\">") !=
        std::string::npos);
  CHECK(body.find("<button type=\"submit\">Continue to payment</button>") != std::string::npos);
  CHECK(body.find("<script>") == std::string::npos);
}

TEST_CASE("a redirect action is a 303; final and lapsed payments say so and link back", "[checkout]") {
  http::RequestContext ctx;
  auto res = api::checkout_page(ctx, payment(R"({"type":"redirect","url":"https://desk.example/pay/1"})"));
  CHECK(res.result() == http::bhttp::status::see_other);
  CHECK(header(res, "Location") == "https://desk.example/pay/1");
  CHECK(header(res, "Referrer-Policy") == "no-referrer");

  auto done = api::checkout_page(ctx, payment("", PaymentStatus::succeeded));
  CHECK(done.result() == http::bhttp::status::ok);
  check_security_headers(done);
  CHECK(done.body().find("This payment has been received") != std::string::npos);
  CHECK(done.body().find("href=\"https://shop.example/orders/1001?lang=en&amp;status=succeeded&amp;payment_id="
                         "pay_2kq8f3n1c5x7m9v4b6z0d#top\"") != std::string::npos);
  CHECK(done.body().find("data-status-url") == std::string::npos);

  auto failed = api::checkout_page(ctx, payment("", PaymentStatus::failed));
  CHECK(failed.body().find("did not go through") != std::string::npos);

  // Still requires_action in the store, but past its expiry: no QR code any more.
  auto lapsed = payment(R"({"type":"display_qr","qr_code":"https://qr.example/p"})");
  lapsed.expires_at = now_ms() - 1000;
  auto expired = api::checkout_page(ctx, lapsed);
  CHECK(expired.body().find("has expired") != std::string::npos);
  CHECK(expired.body().find("<svg") == std::string::npos);
  CHECK(expired.body().find("Return to the merchant") != std::string::npos);

  auto processing = api::checkout_page(ctx, payment("", PaymentStatus::processing));
  CHECK(processing.body().find("data-status-url") != std::string::npos);
}
