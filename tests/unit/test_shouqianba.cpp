// Shouqianba: the SIGNING.md MD5 vector, fen amounts, the maps of appendix 2 and 3, the requests
// the provider builds (signed bytes are the bytes sent), the poll-then-cancel plan, and the RSA
// check of notifications.
#include "providers/shouqianba/shouqianba.hpp"
#include "providers/shouqianba/wire.hpp"
#include "service/core/crypto.hpp"
#include "service/core/ids.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

using namespace paymux;
using namespace paymux::providers;
namespace sqb = paymux::providers::shouqianba;
namespace bj = boost::json;

namespace {

ConnectorConfig connector() {
  ConnectorConfig c;
  c.id = "sqb_store1";
  c.provider = "shouqianba";
  c.base_url = "http://127.0.0.1:1";
  c.credentials["terminal_sn"] = Secret("100000330001");
  c.credentials["terminal_key"] = Secret("terminal-key-1");
  c.credentials["vendor_sn"] = Secret("91800000");
  c.credentials["vendor_key"] = Secret("vendor-key-1");
  c.settings["app_id"] = "2016";
  c.settings["pay_poll_interval_ms"] = "4000";
  c.settings["pay_poll_window_ms"] = "45000";
  return c;
}

store::PaymentRecord payment(const std::string& method, std::int64_t amount = 1999) {
  store::PaymentRecord p;
  p.id = new_id(kPaymentPrefix);
  p.merchant = "acme";
  p.reference = "ORDER-1";
  p.connector = "sqb_store1";
  p.amount = amount;
  p.currency = "CNY";
  p.status = PaymentStatus::processing;
  p.payment_method_json = "{\"type\":\"" + method + "\"}";
  p.created_at = 1'700'000'000'000;
  return p;
}

net::OutboundResponse answer(const std::string& body, unsigned status = 200) {
  net::OutboundResponse r;
  r.outcome = net::SendOutcome::response;
  r.status = status;
  r.body = body;
  return r;
}

std::string header(const WireRequest& w, const std::string& name) {
  for (const auto& [k, v] : w.headers)
    if (k == name) return v;
  return {};
}

}  // namespace

TEST_CASE("shouqianba MD5 signature matches the SIGNING.md vector", "[shouqianba]") {
  CHECK(sqb::sign(R"({"terminal_sn":"test"})", "testkey") == "58def9deadc1e33d985f287618bc995d");
  CHECK(sqb::authorization("test", R"({"terminal_sn":"test"})", "testkey") ==
        "test 58def9deadc1e33d985f287618bc995d");
}

TEST_CASE("shouqianba amounts are fen strings of at most 10 digits", "[shouqianba]") {
  CHECK(sqb::fen(1) == "1");
  CHECK(sqb::fen(1999) == "1999");
  CHECK(sqb::fen(9'999'999'999) == "9999999999");
  CHECK_FALSE(sqb::fen(10'000'000'000));
  CHECK_FALSE(sqb::fen(0));
}

TEST_CASE("shouqianba order statuses of appendix 3", "[shouqianba]") {
  using sqb::map_order_status;
  CHECK_FALSE(map_order_status("CREATED").status);
  CHECK(map_order_status("CREATED").known);
  CHECK(map_order_status("PAID").status == PaymentStatus::succeeded);
  CHECK(map_order_status("PAY_CANCELED").status == PaymentStatus::failed);
  CHECK_FALSE(map_order_status("PAY_ERROR").status);
  CHECK(map_order_status("PAY_ERROR").review);
  CHECK(map_order_status("REFUNDED").status == PaymentStatus::succeeded);
  CHECK(map_order_status("PARTIAL_REFUNDED").status == PaymentStatus::succeeded);
  CHECK(map_order_status("REFUND_ERROR").status == PaymentStatus::succeeded);
  CHECK(map_order_status("CANCELED").status == PaymentStatus::canceled);
  CHECK_FALSE(map_order_status("CANCEL_ERROR").status);
  CHECK(map_order_status("CANCEL_ERROR").review);
  CHECK_FALSE(map_order_status("SOMETHING_NEW").known);
  CHECK_FALSE(map_order_status("SOMETHING_NEW").status);  // never success by default
}

TEST_CASE("shouqianba business result codes of appendix 2", "[shouqianba]") {
  using namespace sqb;
  CHECK(map_pay_result("PAY_SUCCESS") == PayOutcome::succeeded);
  CHECK(map_pay_result("PAY_FAIL") == PayOutcome::failed);
  CHECK(map_pay_result("FAIL") == PayOutcome::failed);
  CHECK(map_pay_result("PAY_FAIL_ERROR") == PayOutcome::review);
  CHECK(map_pay_result("PAY_IN_PROGRESS") == PayOutcome::in_progress);
  CHECK(map_pay_result("") == PayOutcome::in_progress);

  CHECK(map_cancel_result("CANCEL_SUCCESS", "") == CancelOutcome::canceled);
  CHECK(map_cancel_result("CANCEL_ABORT_SUCCESS", "") == CancelOutcome::canceled);
  CHECK(map_cancel_result("FAIL", "UPAY_ORDER_NOT_EXISTS") == CancelOutcome::no_order);
  CHECK(map_cancel_result("FAIL", "UPAY_ORDER_NOT_EXIST") == CancelOutcome::no_order);
  CHECK(map_cancel_result("FAIL", "UPAY_CANCEL_INVALID_ORDER_STATE") == CancelOutcome::refused);
  CHECK(map_cancel_result("CANCEL_ERROR", "") == CancelOutcome::review);
  CHECK(map_cancel_result("CANCEL_ABORT_ERROR", "") == CancelOutcome::review);

  CHECK(map_refund_result("REFUND_SUCCESS") == RefundOutcome::succeeded);
  CHECK(map_refund_result("REFUND_ERROR") == RefundOutcome::unknown);
  CHECK(map_refund_result("FAIL") == RefundOutcome::failed);

  // PRECREATE_SUCCESS/PRECREATE_FAIL and SUCCESS are read by the flows below.
}

TEST_CASE("shouqianba answers: communication level 400/500 and the business level", "[shouqianba]") {
  auto a = sqb::read_answer(R"({"result_code":"400","error_code":"ILLEGAL_SIGN","error_message":"bad"})");
  CHECK(a.level == sqb::Answer::Level::client_error);
  CHECK(a.error_code == "ILLEGAL_SIGN");
  a = sqb::read_answer(R"({"result_code":"500","error_code":"UNKNOWN_SYSTEM_ERROR"})");
  CHECK(a.level == sqb::Answer::Level::server_error);
  a = sqb::read_answer("<html>");
  CHECK(a.level == sqb::Answer::Level::malformed);
  a = sqb::read_answer(R"({"result_code":"200","biz_response":{"result_code":"PAY_SUCCESS","data":{"sn":"7894","order_status":"PAID"}}})");
  CHECK(a.level == sqb::Answer::Level::ok);
  CHECK(a.data_field("sn") == "7894");
  // The field list of section 3.1 puts the order fields in biz_response itself: read both shapes.
  a = sqb::read_answer(R"({"result_code":"200","biz_response":{"result_code":"SUCCESS","sn":"1","order_status":"CREATED"}})");
  CHECK(a.data_field("order_status") == "CREATED");
}

TEST_CASE("shouqianba barcode pay: the signed bytes are the bytes sent", "[shouqianba]") {
  auto c = connector();
  sqb::ShouqianbaProvider p(c, {"http://127.0.0.1:8080"});
  auto pay = payment("barcode");
  bj::object request;
  request["description"] = "达美乐披萨";
  PaymentInput in{pay, request, order_no_for(pay.id), "", "", "130012345678901234", ""};
  auto w = p.build_authorize(in);
  CHECK(w.path == "/upay/v2/pay");
  CHECK(header(w, "Authorization") == "100000330001 " + crypto::md5_hex(w.body + "terminal-key-1"));
  auto body = bj::parse(w.body).as_object();
  CHECK(body.at("total_amount").as_string() == "1999");
  CHECK(body.at("dynamic_id").as_string() == "130012345678901234");
  CHECK(body.at("client_sn").as_string() == order_no_for(pay.id));
  CHECK(body.at("subject").as_string() == "达美乐披萨");
  CHECK_FALSE(body.contains("notify_url"));

  auto r = p.parse_authorize(answer(R"({"result_code":"200","biz_response":{"result_code":"PAY_SUCCESS","data":{"sn":"7894259244067349","order_status":"PAID"}}})"), in);
  CHECK(r.status == PaymentStatus::succeeded);
  CHECK(r.provider_payment_id == "7894259244067349");
  r = p.parse_authorize(answer(R"({"result_code":"200","biz_response":{"result_code":"PAY_FAIL","error_code":"EXPIRED_BARCODE","data":{"sn":"1","order_status":"PAY_CANCELED"}}})"), in);
  CHECK(r.status == PaymentStatus::failed);
  CHECK(r.failure->code == "EXPIRED_BARCODE");
  r = p.parse_authorize(answer(R"({"result_code":"200","biz_response":{"result_code":"FAIL","error_code":"INSUFFICIENT_FUND"}})"), in);
  CHECK(r.status == PaymentStatus::failed);
  CHECK(r.failure->code == "INSUFFICIENT_FUND");
  r = p.parse_authorize(answer(R"({"result_code":"200","biz_response":{"result_code":"PAY_FAIL_ERROR","data":{"sn":"2"}}})"), in);
  CHECK(r.unknown);
  CHECK(r.review == "PAY_FAIL_ERROR");
  CHECK(r.provider_payment_id == "2");
  r = p.parse_authorize(answer(R"({"result_code":"200","biz_response":{"result_code":"PAY_IN_PROGRESS","data":{"sn":"3","order_status":"CREATED"}}})"), in);
  CHECK(r.unknown);
  CHECK(r.review.empty());
  CHECK(r.provider_payment_id == "3");
  r = p.parse_authorize(answer(R"({"result_code":"400","error_code":"INVALID_BARCODE","error_message":"x"})"), in);
  CHECK(r.status == PaymentStatus::failed);
  CHECK(r.failure->code == "INVALID_BARCODE");
  r = p.parse_authorize(answer(R"({"result_code":"500","error_code":"UNKNOWN_SYSTEM_ERROR"})"), in);
  CHECK(r.unknown);
  CHECK_FALSE(r.status);
}

TEST_CASE("shouqianba QR precreate answers display_qr", "[shouqianba]") {
  auto c = connector();
  sqb::ShouqianbaProvider p(c, {"http://127.0.0.1:8080"});
  auto pay = payment("qr");
  bj::object request;
  PaymentInput in{pay, request, order_no_for(pay.id), "", "", "", ""};
  auto w = p.build_authorize(in);
  CHECK(w.path == "/upay/v2/precreate");
  CHECK(bj::parse(w.body).as_object().at("payway").as_string() == "3");
  auto r = p.parse_authorize(answer(R"({"result_code":"200","biz_response":{"result_code":"PRECREATE_SUCCESS","data":{"sn":"9","qr_code":"https://qr.example/9","order_status":"CREATED"}}})"), in);
  CHECK(r.status == PaymentStatus::requires_action);
  REQUIRE(r.next_action);
  CHECK(r.next_action->at("type").as_string() == "display_qr");
  CHECK(r.next_action->at("qr_code").as_string() == "https://qr.example/9");
  CHECK(r.expires_at > 0);
}

TEST_CASE("shouqianba query, cancel and refund", "[shouqianba]") {
  auto c = connector();
  sqb::ShouqianbaProvider p(c, {"http://127.0.0.1:8080"});
  auto pay = payment("barcode");
  auto w = p.build_sync(pay);
  REQUIRE(w);
  auto q = bj::parse(w->body).as_object();
  CHECK_FALSE(q.contains("sn"));  // not known yet: by client_sn
  CHECK(q.at("client_sn").as_string() == order_no_for(pay.id));
  pay.provider_payment_id = "7894";
  q = bj::parse(p.build_sync(pay)->body).as_object();
  CHECK(q.at("sn").as_string() == "7894");

  auto r = p.parse_sync(answer(R"({"result_code":"200","biz_response":{"result_code":"FAIL","error_code":"UPAY_ORDER_NOT_EXISTS"}})"), pay);
  CHECK(r.status == PaymentStatus::failed);
  r = p.parse_sync(answer(R"({"result_code":"200","biz_response":{"result_code":"SUCCESS","data":{"sn":"7894","order_status":"PAY_ERROR"}}})"), pay);
  CHECK_FALSE(r.status);
  CHECK(r.review == "PAY_ERROR");

  r = p.parse_cancel(answer(R"({"result_code":"200","biz_response":{"result_code":"CANCEL_SUCCESS","data":{"order_status":"CANCELED"}}})"), pay);
  CHECK(r.status == PaymentStatus::canceled);
  r = p.parse_cancel(answer(R"({"result_code":"200","biz_response":{"result_code":"FAIL","error_code":"UPAY_CANCEL_INVALID_ORDER_STATE","error_message":"3201"}})"), pay);
  CHECK_FALSE(r.status);
  REQUIRE(r.failure);
  CHECK(r.failure->code == "UPAY_CANCEL_INVALID_ORDER_STATE");
  r = p.parse_cancel(answer(R"({"result_code":"200","biz_response":{"result_code":"CANCEL_ERROR"}})"), pay);
  CHECK(r.review == "CANCEL_ERROR");

  store::RefundRecord rf;
  rf.id = new_id(kRefundPrefix);
  rf.amount = 500;
  auto rw = p.build_refund(pay, rf);
  REQUIRE(rw);
  auto rb = bj::parse(rw->body).as_object();
  CHECK(rb.at("refund_request_no").as_string() == refund_no_for(rf.id));
  CHECK(p.build_refund(pay, rf)->body == rw->body);  // a retry is the same refund to the gateway
  CHECK(rb.at("refund_amount").as_string() == "500");
  auto rr = p.parse_refund(answer(R"({"result_code":"200","biz_response":{"result_code":"REFUND_SUCCESS","data":{"order_status":"PARTIAL_REFUNDED"}}})"), pay, rf);
  CHECK(rr.status == RefundStatus::succeeded);
  rr = p.parse_refund(answer(R"({"result_code":"200","biz_response":{"result_code":"FAIL","error_code":"UPAY_REFUND_INVALID_ORDER_STATE"}})"), pay, rf);
  CHECK(rr.status == RefundStatus::failed);
  CHECK(rr.failure->code == "UPAY_REFUND_INVALID_ORDER_STATE");
  rr = p.parse_refund(answer(R"({"result_code":"200","biz_response":{"result_code":"REFUND_ERROR"}})"), pay, rf);
  CHECK(rr.unknown);
}

TEST_CASE("shouqianba barcode follow-up: poll every interval, cancel past the window", "[shouqianba]") {
  auto c = connector();
  sqb::ShouqianbaProvider p(c, {"http://127.0.0.1:8080"});
  auto pay = payment("barcode");
  auto f = p.follow_up(pay, pay.created_at + 1000);
  REQUIRE(f);
  CHECK_FALSE(f->cancel);
  CHECK(f->next_check_at == pay.created_at + 5000);
  f = p.follow_up(pay, pay.created_at + 43000);
  CHECK(f->next_check_at == pay.created_at + 45000);  // the last poll lands on the window's end
  f = p.follow_up(pay, pay.created_at + 45000);
  CHECK(f->cancel);
  pay.status = PaymentStatus::succeeded;
  CHECK_FALSE(p.follow_up(pay, pay.created_at + 1000));
}

TEST_CASE("shouqianba validates the currency and the amount before sending", "[shouqianba]") {
  auto c = connector();
  sqb::ShouqianbaProvider p(c, {"http://127.0.0.1:8080"});
  auto pay = payment("barcode");
  CHECK_FALSE(p.validate(pay, {}));
  pay.currency = "USD";
  auto e = p.validate(pay, {});
  REQUIRE(e);
  CHECK(e->status == 400);
  CHECK(e->param == "currency");
}

TEST_CASE("shouqianba terminal keys: activation, check-in and the key in use", "[shouqianba]") {
  auto c = connector();
  sqb::ShouqianbaProvider p(c, {"http://127.0.0.1:8080"});
  auto act = p.build_activation("12345678");
  REQUIRE(act);
  CHECK(act->path == "/terminal/activate");
  CHECK(header(*act, "Authorization") == "91800000 " + crypto::md5_hex(act->body + "vendor-key-1"));
  auto issued = p.parse_activation(answer(R"({"result_code":"200","biz_response":{"terminal_sn":"T2","terminal_key":"K2"}})"));
  REQUIRE(issued.credentials);
  p.use_credentials(*issued.credentials);
  auto pay = payment("barcode");
  auto w = p.build_sync(pay);
  CHECK(header(*w, "Authorization") == "T2 " + crypto::md5_hex(w->body + "K2"));

  auto cur = *p.current_credentials();
  auto ci = p.build_rotation(cur);
  REQUIRE(ci);
  CHECK(ci->path == "/terminal/checkin");
  CHECK(header(*ci, "Authorization") == "T2 " + crypto::md5_hex(ci->body + "K2"));
  CHECK(p.parse_rotation(answer(R"({"result_code":"500"})"), cur).unknown);
  auto refused = p.parse_rotation(answer(R"({"result_code":"400","error_code":"ILLEGAL_SIGN"})"), cur);
  CHECK_FALSE(refused.unknown);
  CHECK_FALSE(refused.credentials);
  CHECK(refused.error.find("K2") == std::string::npos);
}

namespace {

struct TestKey {
  EVP_PKEY* key = nullptr;
  TestKey() { key = EVP_RSA_gen(2048); }
  ~TestKey() { EVP_PKEY_free(key); }
  std::string public_pem() const {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, key);
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(b);
    return out;
  }
  std::string sign(const std::string& body) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key);
    std::size_t len = 0;
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(body.data()), body.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(body.data()), body.size());
    EVP_MD_CTX_free(ctx);
    sig.resize(len);
    return crypto::base64_encode(sig);
  }
};

}  // namespace

TEST_CASE("shouqianba notifications: SHA256withRSA over the raw body", "[shouqianba]") {
  TestKey k;
  auto c = connector();
  c.settings["notify"] = "true";
  c.credentials["notify_public_key"] = Secret(k.public_pem());
  sqb::ShouqianbaProvider p(c, {"http://127.0.0.1:8080"});
  auto pay = payment("barcode");
  const std::string body = R"({"sn":"7894","client_sn":")" + order_no_for(pay.id) +
                           R"(","order_status":"PAID","status":"SUCCESS","total_amount":"1999","net_amount":"1999"})";
  http::RequestContext ctx;
  ctx.req.method(bhttp::verb::post);
  ctx.req.body() = body;
  ctx.req.set("Authorization", "100000330001 " + k.sign(body));
  auto n = p.parse_notification(ctx);
  REQUIRE(n.verification == Verification::verified);
  CHECK(n.order_no == order_no_for(pay.id));
  CHECK(n.amount == 1999);
  CHECK(n.result.status == PaymentStatus::succeeded);
  ctx.req.set("Authorization", k.sign(body));  // the signature alone
  CHECK(p.parse_notification(ctx).verification == Verification::verified);
  ctx.req.body() = body + " ";
  CHECK(p.parse_notification(ctx).verification == Verification::bad_signature);
  TestKey other;
  ctx.req.body() = body;
  ctx.req.set("Authorization", "100000330001 " + other.sign(body));
  CHECK(p.parse_notification(ctx).verification == Verification::bad_signature);
  CHECK(p.acknowledge(true, ctx.req).body() == "success");
}

TEST_CASE("shouqianba connector configuration errors name the key", "[shouqianba]") {
  auto c = connector();
  c.settings["pay_poll_windw_ms"] = "1";
  CHECK_THROWS_WITH(sqb::ShouqianbaProvider(c, {"http://x"}), Catch::Contains("settings.pay_poll_windw_ms"));
  c = connector();
  c.credentials.erase("terminal_key");
  CHECK_THROWS_WITH(sqb::ShouqianbaProvider(c, {"http://x"}), Catch::Contains("terminal_sn and terminal_key"));
  c = connector();
  c.settings["notify"] = "true";
  CHECK_THROWS_WITH(sqb::ShouqianbaProvider(c, {"http://x"}), Catch::Contains("notify_public_key"));
  c.credentials["notify_public_key"] = Secret("not a key");
  CHECK_THROWS_WITH(sqb::ShouqianbaProvider(c, {"http://x"}), Catch::Contains("not an RSA public key"));
  c = connector();
  c.settings.erase("app_id");
  CHECK_THROWS_WITH(sqb::ShouqianbaProvider(c, {"http://x"}), Catch::Contains("settings.app_id"));
  c = connector();
  c.settings["pay_poll_interval_ms"] = "fast";
  CHECK_THROWS_WITH(sqb::ShouqianbaProvider(c, {"http://x"}), Catch::Contains("settings.pay_poll_interval_ms"));
  // Without any terminal the connector loads, and refuses payments until activated.
  c = connector();
  c.credentials.erase("terminal_sn");
  c.credentials.erase("terminal_key");
  sqb::ShouqianbaProvider p(c, {"http://x"});
  auto e = p.validate(payment("barcode"), {});
  REQUIRE(e);
  CHECK(e->status == 422);
  CHECK_FALSE(p.current_credentials());
}
