// CashyPay: the raw-body MD5 signature, exact decimal amounts in notifications, the order status
// map, and the pay-desk request's mandatory fields and limits.
#include "providers/cashypay/cashypay.hpp"
#include "providers/cashypay/wire.hpp"
#include "service/core/crypto.hpp"
#include "service/core/flat_json.hpp"
#include "service/core/ids.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

using namespace paymux;
using namespace paymux::providers;

namespace {
ConnectorConfig connector() {
  ConnectorConfig c;
  c.id = "cashypay_cl";
  c.provider = "cashypay";
  c.base_url = "http://127.0.0.1:1";
  c.credentials["merchant_id"] = Secret("1002001");
  c.credentials["api_key"] = Secret("cashy-key");
  c.settings["currency"] = "CLP";
  c.settings["amount_min"] = "1000";
  c.settings["amount_max"] = "5000000";
  return c;
}
}  // namespace

TEST_CASE("cashypay signs the raw body bytes followed by the key, upper-case MD5") {
  const std::string body = R"({"mchOrderNo":"1","nonceStr":"x"})";
  CHECK(cashypay::sign(body, "cashy-key") == crypto::md5_hex(body + "cashy-key", true));
  CHECK(cashypay::sign(body, "cashy-key").size() == 32);
}

TEST_CASE("flat JSON keeps number literals exactly") {
  auto o = json::parse_flat_object(R"({"amount":358320.00,"fee":2500.0000,"s":"a\"b","n":null,"nested":{"amount":1},"ok":true})");
  REQUIRE(o);
  CHECK(o->at("amount").text == "358320.00");
  CHECK(o->at("amount").kind == json::FlatMember::Kind::number);
  CHECK(o->at("fee").text == "2500.0000");
  CHECK(o->at("s").text == "a\"b");
  CHECK(o->at("ok").text == "true");
  CHECK(o->count("n") == 1);
  CHECK_FALSE(json::parse_flat_object("[1,2]"));
  CHECK_FALSE(json::parse_flat_object("{\"a\":"));
}

TEST_CASE("cashypay order statuses") {
  CHECK_FALSE(cashypay::map_status("PAYING").status);
  CHECK(cashypay::map_status("PAYING").known);
  CHECK(cashypay::map_status("SUCCESS").status == PaymentStatus::succeeded);
  CHECK(cashypay::map_status("FAIL").status == PaymentStatus::failed);
  CHECK_FALSE(cashypay::map_status("REFUNDED_SOMEHOW").known);
  CHECK_FALSE(cashypay::map_status("REFUNDED_SOMEHOW").status);
}

TEST_CASE("cashypay notifications are verified over the raw body and keep the exact amount") {
  auto c = connector();
  cashypay::CashypayProvider p(c, {"http://127.0.0.1:8080"});
  const std::string body =
      R"({"amount":358320.00,"completionTime":"2024-12-02 12:07:06","fee":2500.0000,"mchOrderNo":"ABC","merchantId":"1002001","nonceStr":"1733116026894","orderNo":"PAYDESK1","orderStatus":"SUCCESS","payUrl":"https://payurl.com"})";
  http::RequestContext ctx;
  ctx.req.method(bhttp::verb::post);
  ctx.req.body() = body;
  ctx.req.set("MerchantId", "1002001");
  ctx.req.set("Sign", crypto::md5_hex(body + "cashy-key", false));  // lower case accepted
  auto n = p.parse_notification(ctx);
  REQUIRE(n.verification == Verification::verified);
  CHECK(n.order_no == "ABC");
  CHECK(n.amount_decimal == "358320.00");
  CHECK(n.result.status == PaymentStatus::succeeded);
  CHECK(n.provider_payment_id == "PAYDESK1");
  CHECK(n.extra_json.find("2500.0000") != std::string::npos);
  REQUIRE(n.result.provider_data);
  CHECK(n.result.provider_data->at("fee").as_string() == "2500.0000");  // exact text, never a double

  ctx.req.body() = body + " ";  // one byte more: the signature no longer matches
  CHECK(p.parse_notification(ctx).verification == Verification::bad_signature);
  ctx.req.body() = body;
  ctx.req.set("MerchantId", "999");
  CHECK(p.parse_notification(ctx).verification == Verification::bad_signature);
}

TEST_CASE("cashypay pay desk request: mandatory payer fields and amount limits before any call") {
  auto c = connector();
  cashypay::CashypayProvider p(c, {"http://127.0.0.1:8080"});
  store::PaymentRecord rec;
  rec.id = new_id(kPaymentPrefix);
  rec.amount = 10000;
  rec.currency = "CLP";
  rec.reference = "ORDER-1";
  auto full = boost::json::parse(R"({"customer":{"first_name":"Cristian","last_name":"Alejandro","phone":"9728034619",
      "email":"d850@gmail.com","id_type":"1","id_number":"11.111.111-1"}})").as_object();
  REQUIRE_FALSE(p.validate(rec, full));
  auto no_phone = full;
  no_phone["customer"].as_object().erase("phone");
  CHECK(p.validate(rec, no_phone)->param == "customer.phone");
  rec.amount = 999;
  CHECK(p.validate(rec, full)->param == "amount");
  rec.amount = 5000001;
  CHECK(p.validate(rec, full)->param == "amount");
  rec.amount = 10000;

  PaymentInput in{rec, full, order_no_for(rec.id), "http://127.0.0.1:8080/webhooks/cashypay_cl", "", "", ""};
  auto w = p.build_authorize(in);
  CHECK(w.path == "/api/payDesk");
  auto body = boost::json::parse(w.body).as_object();
  CHECK(body.at("amount").as_int64() == 10000);
  CHECK(body.at("mchOrderNo").as_string() == order_no_for(rec.id));
  CHECK(body.at("realName").as_string() == "Cristian Alejandro");
  CHECK(body.at("notifyUrl").as_string() == "http://127.0.0.1:8080/webhooks/cashypay_cl");
  CHECK(body.at("nonceStr").as_string().size() == 32);
  std::string sign;
  for (auto& [k, v] : w.headers)
    if (k == "Sign") sign = v;
  CHECK(sign == cashypay::sign(w.body, "cashy-key"));
  // a fresh nonce every time
  CHECK(boost::json::parse(p.build_authorize(in).body).at("nonceStr") != body.at("nonceStr"));
}
