// Glocash wire: signing formulas (appendix 1), status map (appendix 4), request building and answer
// parsing from the document's examples.
#include "providers/glocash/glocash.hpp"
#include "providers/glocash/wire.hpp"
#include "service/core/ids.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

using namespace paymux;
using namespace paymux::providers;

namespace {

ConnectorConfig connector() {
  ConnectorConfig c;
  c.id = "glocash_eu";
  c.provider = "glocash";
  c.base_url = "http://127.0.0.1:1/glocash";
  c.credentials["email"] = Secret("account123@merchant77.com");
  c.credentials["secret_key"] = Secret("KEY");
  return c;
}

net::OutboundResponse answer(unsigned status, std::string body) {
  net::OutboundResponse r;
  r.outcome = net::SendOutcome::response;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace

TEST_CASE("glocash signatures follow appendix 1 (values concatenated in order, lowercase hex)") {
  // Expected values computed independently (python hashlib) over the document's sample values.
  CHECK(glocash::payment_signature("KEY", "1466492149", "account123@merchant77.com", "ORDER1234567890",
                                   "customer789@gmail.com", "C01", "37.86", "USD") ==
        "a1e9712166f96ba9908543e27d1e8affc9cf73388ab2b8ce9f799e7224df3739");
  CHECK(glocash::psn_signature("KEY", "1512371788", "account123@merchant77.com", "customer789@gmail.com",
                               "CCGM48FGLP11H8MT", "paid", "CCG", "3.18", "EUR") ==
        "9f9cc53b1f91e6903a797ef3ae7c77582bfb837c721586571bd95581964d7c92");
  CHECK(glocash::refund_signature("KEY", "1466492149", "account123@merchant77.com", "CCGM48FGLP11H8MT", "10") ==
        "56d4da17a679ccfb72527dfbf51e4c61dd930e0f778998a56fb0295c95d2eb71");
  CHECK(glocash::query_signature("KEY", "1466492149", "account123@merchant77.com", "CCGM48FGLP11H8MT") ==
        "5bf15444c5ccbca00cf1c2c412233931c0de90e88418cd8177d3c0ea83919d5e");
}

TEST_CASE("glocash status map names every appendix 4 status and defaults to pending") {
  using S = PaymentStatus;
  CHECK(glocash::map_status("paid").status == S::succeeded);
  CHECK(glocash::map_status("failed").status == S::failed);
  CHECK(glocash::map_status("cancelled").status == S::canceled);
  CHECK(glocash::map_status("pending").status == S::processing);
  CHECK(glocash::map_status("refunded").status == S::refunded);
  CHECK(glocash::map_status("complaint").status == S::disputed);
  CHECK(glocash::map_status("chargeback").status == S::refunded);
  CHECK_FALSE(glocash::map_status("unpaid").status);
  CHECK_FALSE(glocash::map_status("refunding").status);
  for (auto s : {"unpaid", "paid", "pending", "cancelled", "failed", "refunding", "refunded", "complaint", "chargeback"})
    CHECK(glocash::map_status(s).known);
  auto unknown = glocash::map_status("teleported");
  CHECK_FALSE(unknown.known);
  CHECK_FALSE(unknown.status);  // never success
}

TEST_CASE("glocash payment request carries the signed mandatory fields") {
  auto c = connector();
  glocash::GlocashProvider p(c, {"http://127.0.0.1:8080"});
  store::PaymentRecord rec;
  rec.id = new_id(kPaymentPrefix);
  rec.amount = 3786;
  rec.currency = "USD";
  auto request = boost::json::parse(R"({"customer":{"email":"customer789@gmail.com"},"description":"Phone"})").as_object();
  REQUIRE_FALSE(p.validate(rec, request));
  PaymentInput in{rec, request, order_no_for(rec.id), "http://127.0.0.1:8080/webhooks/glocash_eu",
                  "http://127.0.0.1:8080/return/glocash_eu?payment=" + rec.id, ""};
  auto w = p.build_authorize(in);
  CHECK(w.path == "/gateway/payment/index");
  auto f = http::parse_form(w.body);
  CHECK(http::form_get(f, "BIL_PRICE") == "37.86");
  CHECK(http::form_get(f, "BIL_CURRENCY") == "USD");
  CHECK(http::form_get(f, "BIL_METHOD") == "C01");
  CHECK(http::form_get(f, "REQ_INVOICE") == order_no_for(rec.id));
  CHECK(http::form_get(f, "URL_NOTIFY") == "http://127.0.0.1:8080/webhooks/glocash_eu");
  CHECK(http::form_get(f, "REQ_SIGN") ==
        glocash::payment_signature("KEY", http::form_get(f, "REQ_TIMES"), "account123@merchant77.com",
                                   order_no_for(rec.id), "customer789@gmail.com", "C01", "37.86", "USD"));

  auto no_email = boost::json::parse(R"({"customer":{"first_name":"A"}})").as_object();
  auto err = p.validate(rec, no_email);
  REQUIRE(err);
  CHECK(err->param == "customer.email");
  CHECK(err->status == 400);
}

TEST_CASE("glocash answers map to definite or unknown outcomes") {
  auto c = connector();
  glocash::GlocashProvider p(c, {"http://127.0.0.1:8080"});
  store::PaymentRecord rec;
  boost::json::object request;
  PaymentInput in{rec, request, "X", "", "", ""};

  auto ok = p.parse_authorize(answer(200, R"({"TNS_GCID":"CCGM48FGLP11H8MT","URL_PAYMENT":"https:\/\/sandbox.glocash.com\/gateway\/payment\/index\/token\/cd4d"})"), in);
  CHECK_FALSE(ok.unknown);
  CHECK(ok.status == PaymentStatus::requires_action);
  CHECK(ok.provider_payment_id == "CCGM48FGLP11H8MT");
  CHECK(ok.next_action->at("url").as_string() == "https://sandbox.glocash.com/gateway/payment/index/token/cd4d");

  auto refused = p.parse_authorize(answer(200, R"({"REQ_ERROR":"REQ_SIGN"})"), in);
  CHECK(refused.status == PaymentStatus::failed);
  CHECK(refused.failure->code == "REQ_SIGN");

  CHECK(p.parse_authorize(answer(500, "<html>oops</html>"), in).unknown);
  CHECK(p.parse_authorize(answer(200, "not json at all"), in).unknown);
  CHECK(p.parse_authorize(answer(200, R"({"TNS_GCID":"X"})"), in).unknown);

  store::PaymentRecord paid;
  paid.provider_payment_id = "CCGM48FGLP11H8MT";
  store::RefundRecord r;
  CHECK(p.parse_refund(answer(200, R"('{"REQ_CODE":200,"REQ_ERROR":"REFUND SUCCESS"}')"), paid, r).status ==
        RefundStatus::succeeded);
  auto failed = p.parse_refund(answer(200, R"({"REQ_CODE":400,"REQ_ERROR":"REFUND FAILED"})"), paid, r);
  CHECK(failed.status == RefundStatus::failed);
  CHECK(failed.failure->code == "REFUND FAILED");
  CHECK(p.parse_refund(answer(502, ""), paid, r).unknown);
}

TEST_CASE("glocash PSN is verified over the documented fields, REQ_EMAIL falling back to the account") {
  auto c = connector();
  glocash::GlocashProvider p(c, {"http://127.0.0.1:8080"});
  http::FormFields f{{"REQ_INVOICE", "ORDER1234567890"}, {"CUS_EMAIL", "customer789@gmail.com"},
                     {"BIL_METHOD", "CCG"},           {"BIL_PRICE", "3.79"},
                     {"BIL_CURRENCY", "USD"},         {"REQ_EMAIL", "account123@merchant77.com"},
                     {"TNS_GCID", "CCGM48FGLP11H8MT"}, {"PGW_PRICE", "3.18"},
                     {"PGW_CURRENCY", "EUR"},         {"FDL_DECISION", "ACP"},
                     {"BIL_STATUS", "paid"},          {"REQ_TIMES", "1512371788"},
                     {"REQ_SIGN", "9F9CC53B1F91E6903A797EF3AE7C77582BFB837C721586571BD95581964D7C92"}};
  http::RequestContext ctx;
  ctx.req.method(bhttp::verb::post);
  ctx.req.body() = http::encode_form(f);
  auto n = p.parse_notification(ctx);
  REQUIRE(n.verification == Verification::verified);  // upper-case hex accepted
  CHECK(n.order_no == "ORDER1234567890");
  CHECK(n.amount == 379);
  CHECK(n.currency == "USD");
  CHECK(n.result.status == PaymentStatus::succeeded);
  CHECK(n.result.risk->at("decision").as_string() == "ACP");

  // Without REQ_EMAIL the account email signs.
  http::FormFields no_email;
  for (auto& kv : f)
    if (kv.first != "REQ_EMAIL") no_email.push_back(kv);
  ctx.req.body() = http::encode_form(no_email);
  CHECK(p.parse_notification(ctx).verification == Verification::verified);

  // Any signed field changed: rejected.
  auto forged = f;
  for (auto& kv : forged)
    if (kv.first == "BIL_STATUS") kv.second = "failed";
  ctx.req.body() = http::encode_form(forged);
  CHECK(p.parse_notification(ctx).verification == Verification::bad_signature);

  ctx.req.body() = "garbage&&&=";
  CHECK(p.parse_notification(ctx).verification == Verification::malformed);
}
