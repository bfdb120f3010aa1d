// The payment object written directly from the stored row is exactly what serializing
// payment_json gives; request ids are unique and well formed.
#include "service/core/ids.hpp"
#include "service/core/views.hpp"

#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include <set>

using namespace paymux;

namespace {

store::PaymentRecord bare() {
  store::PaymentRecord p;
  p.id = "pay_0123456789ABCDEFGHIJKL";
  p.merchant = "demo";
  p.reference = "order-1";
  p.connector = "glocash_sandbox";
  p.provider = "glocash";
  p.amount = 1999;
  p.currency = "USD";
  p.created_at = p.updated_at = 1764600000123;
  return p;
}

}  // namespace

TEST_CASE("payment_text is the serialized payment_json, byte for byte", "[views]") {
  const std::string url = "http://127.0.0.1:8080";
  auto p = bare();
  CHECK(payment_text(p, url) == boost::json::serialize(payment_json(p, url)));

  p.status = PaymentStatus::requires_action;
  p.provider_payment_id = "GC-1";
  p.amount_refunded = 500;
  p.reference = "quote \" backslash \\ control \x01 and \xe4\xb8\xad";
  p.payment_method_json = R"({"type":"hosted"})";
  p.request_json = R"({"customer":{"email":"a@example.com"},"description":"Tea \"green\" \u00e9"})";
  p.next_action_json = R"({"type":"redirect","url":"http://gw/pay?x=1"})";
  p.failure_json = R"({"code":"card_declined","message":"no"})";
  p.risk_json = R"({"score":12})";
  p.attempts_json = R"([{"connector":"glocash_sandbox","outcome":"definite","latency_ms":3}])";
  p.return_url = "https://shop.example/return?a=1";
  p.metadata_json = R"({"k":"v","n":1.5E0,"b":true})";
  p.provider_data_json = R"({"fee":"0.30"})";
  p.expires_at = 1764600900000;
  CHECK(payment_text(p, url) == boost::json::serialize(payment_json(p, url)));

  // Odd stored values: a literal null, a request without description, provider_data not an object.
  p.next_action_json = "null";
  p.request_json = R"({"customer":{"name":"description"}})";
  p.provider_data_json = "[]";
  p.metadata_json = "";
  CHECK(payment_text(p, url) == boost::json::serialize(payment_json(p, url)));
  p.request_json = R"({"description":null})";
  CHECK(payment_text(p, url) == boost::json::serialize(payment_json(p, url)));
}

TEST_CASE("request ids are unique and well formed on every thread", "[views]") {
  std::set<std::string> seen;
  for (int i = 0; i < 5000; ++i) {
    auto id = new_request_id();
    REQUIRE(is_valid_id(id, "req_"));
    REQUIRE(seen.insert(id).second);
  }
}

TEST_CASE("event_text is the serialized event_json, byte for byte", "[views]") {
  const std::string url = "http://127.0.0.1:8080";
  auto p = bare();
  p.status = PaymentStatus::succeeded;
  p.reference = "quote \" and \xe4\xb8\xad";
  p.metadata_json = R"({"k":"v"})";
  const std::string type = "payment.succeeded";
  CHECK(event_text("evt_1", type, 1764600000123, payment_text(p, url)) ==
        boost::json::serialize(event_json("evt_1", type, 1764600000123, payment_json(p, url))));
  CHECK(event_text("evt_2", "refund.succeeded", 0, "{}") ==
        boost::json::serialize(event_json("evt_2", "refund.succeeded", 0, boost::json::object())));
}
