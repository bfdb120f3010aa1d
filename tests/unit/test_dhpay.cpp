// DHpay: the SIGNING.md vectors, the callback verification shared by both connectors, the web
// cashier form and the nonce API's answers.
#include "providers/dhpay/dhpay.hpp"
#include "providers/dhpay/wire.hpp"
#include "service/core/ids.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

using namespace paymux;
using namespace paymux::providers;

namespace {
const char* kSecret = "WqsnGoYONdi4fmqK12DuByazQ6OyuMAwwx3Flk4IrP88jVNsO57I7O3L9IHF";

http::FormFields vector_callback() {
  return {{"merchant_id", "200000000147049"}, {"invoice_id", "14066905163268948"}, {"order_no", "564652357887"},
          {"currency", "USD"},               {"amount", "458.52"},                {"ref_no", "20140818161430_152634"},
          {"status", "01"},                  {"failure_reason", ""},              {"trans_date", "20140722"},
          {"trans_time", "182201"},          {"description", "not signed"}};
}

net::OutboundResponse answer(unsigned status, std::string body) {
  net::OutboundResponse r;
  r.outcome = net::SendOutcome::response;
  r.status = status;
  r.body = std::move(body);
  return r;
}
}  // namespace

TEST_CASE("dhpay request hash matches the SIGNING.md vector") {
  CHECK(dhpay::request_hash(kSecret, "458.52", "USD", "14066905163268948", "200000000147049") ==
        "AF94D1D064ABC3AC5D62B8D6001C06166E95C1B0BA3262ED9B54ED6847EAA997");
}

TEST_CASE("dhpay callback hash matches the SIGNING.md vector and verifies case-insensitively") {
  auto f = vector_callback();
  CHECK(dhpay::callback_hash(kSecret, f) == "47B8C57E717FDD1FA94049F2E5C6D7915C65F294D47B2680E93738FEDBAD30F4");
  f.emplace_back("hash", "47b8c57e717fdd1fa94049f2e5c6d7915c65f294d47b2680e93738fedbad30f4");
  auto n = dhpay::read_callback(f, "200000000147049", Secret(kSecret));
  REQUIRE(n.verification == Verification::verified);
  CHECK(n.order_no == "14066905163268948");
  CHECK(n.amount == 45852);
  CHECK(n.result.status == PaymentStatus::succeeded);
  CHECK(n.provider_payment_id == "20140818161430_152634");

  auto forged = f;
  for (auto& kv : forged)
    if (kv.first == "amount") kv.second = "1.00";
  CHECK(dhpay::read_callback(forged, "200000000147049", Secret(kSecret)).verification == Verification::bad_signature);
  CHECK(dhpay::read_callback(f, "999", Secret(kSecret)).verification == Verification::bad_signature);
}

TEST_CASE("dhpay status codes") {
  CHECK(dhpay::map_status("00").status == PaymentStatus::processing);
  CHECK(dhpay::map_status("01").status == PaymentStatus::succeeded);
  CHECK(dhpay::map_status("02").status == PaymentStatus::failed);
  CHECK_FALSE(dhpay::map_status("07").known);
  CHECK_FALSE(dhpay::map_status("07").status);
}

TEST_CASE("dhpay amounts always carry two decimals") {
  CHECK(dhpay::two_decimals(45852, "USD") == "458.52");
  CHECK(dhpay::two_decimals(1500, "JPY") == "1500.00");
  CHECK(dhpay::two_decimals(1500, "KWD") == "1.50");
  CHECK_FALSE(dhpay::two_decimals(1505, "KWD"));
}

TEST_CASE("dhpay nonce answers: API errors, declines, success and 3-D Secure") {
  ConnectorConfig c;
  c.id = "dhn";
  c.provider = "dhpay_nonce";
  c.base_url = "http://127.0.0.1:1";
  c.credentials["client_id"] = Secret("50517365");
  c.credentials["secret"] = Secret("s3cr3t");
  c.credentials["merchant_id"] = Secret("200000000167187");
  dhpay::DhpayNonceProvider p(c, {"http://127.0.0.1:8080"});
  store::PaymentRecord rec;
  boost::json::object req;
  PaymentInput in{rec, req, "X", "", "", "nonce", "tok"};

  auto api_error = p.parse_authorize(answer(200, R"({"status":"02","error_code":"E0001"})"), in);
  CHECK(api_error.status == PaymentStatus::failed);
  CHECK(api_error.failure->code == "E0001");
  CHECK(p.token_rejected(answer(200, R"({"status":"02","error_code":"E0010"})")));
  CHECK(p.token_rejected(answer(200, R"({"status":"02","error_code":"E0002"})")));
  CHECK_FALSE(p.token_rejected(answer(200, R"({"status":"02","error_code":"E0001"})")));

  auto declined = p.parse_authorize(
      answer(200, R"({"status":"01","data":{"status":"02","failure_reason":"M0092","ref_no":"R1"}})"), in);
  CHECK(declined.status == PaymentStatus::failed);
  CHECK(declined.failure->code == "M0092");
  auto ok = p.parse_authorize(answer(200, R"({"status":"01","data":{"status":"01","ref_no":"R2"}})"), in);
  CHECK(ok.status == PaymentStatus::succeeded);
  CHECK(ok.provider_payment_id == "R2");

  auto three_ds = p.parse_authorize(answer(200, R"({"status":"01","data":{"status":"00","ref_no":"R3",
      "redirect_url":"https://acs.example/acs","paReq":"PAREQ","TermUrl":"https://term","MD":"MD1",
      "orderId":"232571063","transactionId":"1513061066","sessionToken":"tok-1"}})"), in);
  REQUIRE(three_ds.status == PaymentStatus::requires_action);
  const auto& na = *three_ds.next_action;
  CHECK(na.at("type").as_string() == "form_post");
  CHECK(na.at("url").as_string() == "https://acs.example/acs");
  const auto& fields = na.at("fields").as_object();
  for (auto k : {"MD", "TermUrl", "paReq", "orderId", "transactionId", "sessionToken"}) CHECK(fields.contains(k));
  CHECK(fields.at("paReq").as_string() == "PAREQ");

  CHECK(p.parse_authorize(answer(503, "busy"), in).unknown);
  CHECK(p.parse_authorize(answer(200, "<html>"), in).unknown);

  auto token = p.parse_access_token(
      answer(200, R"({"status":"01","data":{"expires_in":28800,"token_type":"Bearer","access_token":"6817F5DE"}})"));
  REQUIRE(token);
  CHECK(token->token == "6817F5DE");
  CHECK(token->expires_in.count() == 28800);
  CHECK_FALSE(p.parse_access_token(answer(200, R"({"status":"02","error_code":"E0017"})")));
}

TEST_CASE("dhpay web cashier builds the signed form locally and checks mandatory fields first") {
  ConnectorConfig c;
  c.id = "dh";
  c.provider = "dhpay";
  c.base_url = "https://www.dhpay.com";
  c.credentials["merchant_id"] = Secret("200000000147049");
  c.credentials["secret_key"] = Secret(kSecret);
  c.settings["sandbox"] = "true";
  dhpay::DhpayProvider p(c, {"http://127.0.0.1:8080"});
  store::PaymentRecord rec;
  rec.id = new_id(kPaymentPrefix);
  rec.amount = 45852;
  rec.currency = "USD";
  auto full = boost::json::parse(R"({"description":"book",
    "customer":{"first_name":"Steve","last_name":"martin","email":"x@126.com"},
    "billing":{"country":"US","state":"alabama","city":"newyork","line1":"Bboolltem st.02","postal_code":"100081"},
    "shipping":{"country":"US","state":"alabama","city":"newyork","postal_code":"100081"}})").as_object();
  REQUIRE_FALSE(p.validate(rec, full));
  auto partial = full;
  partial["billing"].as_object().erase("postal_code");
  auto err = p.validate(rec, partial);
  REQUIRE(err);
  CHECK(err->param == "billing.postal_code");

  PaymentInput in{rec, full, order_no_for(rec.id), "http://127.0.0.1:8080/webhooks/dh",
                  "http://127.0.0.1:8080/return/dh?payment=" + rec.id, "", ""};
  auto r = p.prepare_authorize(in);
  REQUIRE(r);
  CHECK(r->status == PaymentStatus::requires_action);
  const auto& na = *r->next_action;
  CHECK(na.at("type").as_string() == "form_post");
  CHECK(na.at("url").as_string() == "https://www.dhpay.com/merchant/web/cashier?env=dhpaysandbox");
  const auto& f = na.at("fields").as_object();
  CHECK(f.at("amount").as_string() == "458.52");
  CHECK(f.at("invoice_id").as_string() == order_no_for(rec.id));
  CHECK(f.at("notify_url").as_string() == "http://127.0.0.1:8080/webhooks/dh");
  CHECK(f.at("hash").as_string() ==
        dhpay::request_hash(kSecret, "458.52", "USD", order_no_for(rec.id), "200000000147049"));
}
