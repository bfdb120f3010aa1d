// The CashyPay simulator's own wire rules (sandbox/cashypay_sim.hpp), checked against values
// computed outside the code: each expected signature is
// `printf '%s' '<body><key>' | md5sum` (upper-cased) over the document's sample bodies (004: the
// /api/payDesk request example and the notification example) with the key TESTKEY123, plus the
// MD5(body + key) vector of SIGNING.md (Shouqianba, same construction).
#include "sandbox/cashypay_sim.hpp"

#include <catch2/catch.hpp>

using namespace paymux::sandbox::cashypay;

namespace {
constexpr const char* kKey = "TESTKEY123";

// The document's /api/payDesk request example, byte for byte.
constexpr std::string_view kRequest =
    R"({"amount":1000,"idType":1,"mchOrderNo":"24120966963","idCard":"154175105","remark":"payment",)"
    R"("nonceStr":"1733739205347","realName":"CRISTIAN ALEJANDRO","reusableStatus":false,"expireTime":86399,)"
    R"("phone":"9728034619","notifyUrl":"https://test.com/clcashy/payin-notify","currency":"CLP",)"
    R"("email":"D850@gmail.com"})";

// The document's notification example (curl form), byte for byte.
constexpr std::string_view kNotification =
    R"({"amount":358320.00,"completionTime":"2024-12-02 12:07:06","fee":2500.0000,)"
    R"("mchOrderNo":"1313068703462109184","merchantId":"1002001","nonceStr":"1733116026894",)"
    R"("orderNo":"PAYDESK27618551850988355260416","orderStatus":"SUCCESS","payCode":"OR.GPNQR..INOPROID_BS",)"
    R"("payType":"41","payUrl":"https://payurl.com"})";
}  // namespace

TEST_CASE("cashypay sandbox: Sign is MD5 over the raw body followed by the key", "[sandbox][cashypay]") {
  CHECK(sign(kRequest, kKey) == "27C4CF521E6881603E8B513D2CE423F8");
  CHECK(sign(kNotification, kKey) == "C222483BC9F8E5A7D3BF2D79E25BE3CC");
  CHECK(sign(R"({"terminal_sn":"test"})", "testkey", false) == "58def9deadc1e33d985f287618bc995d");
  // Verified case-insensitively; anything else about the bytes matters.
  CHECK(sign_matches(kRequest, kKey, "27C4CF521E6881603E8B513D2CE423F8"));
  CHECK(sign_matches(kRequest, kKey, "27c4cf521e6881603e8b513d2ce423f8"));
  CHECK_FALSE(sign_matches(kRequest, "OTHERKEY", "27C4CF521E6881603E8B513D2CE423F8"));
  CHECK_FALSE(sign_matches(std::string(kRequest) + " ", kKey, "27C4CF521E6881603E8B513D2CE423F8"));
  CHECK_FALSE(sign_matches(kRequest, kKey, ""));
  CHECK_FALSE(sign_matches(kRequest, kKey, "27C4CF521E6881603E8B513D2CE423F"));
}

TEST_CASE("cashypay sandbox: raw members keep numbers as written", "[sandbox][cashypay]") {
  auto m = raw_members(kNotification);
  REQUIRE(m);
  REQUIRE(m->size() == 11);
  CHECK((*m)[0].first == "amount");
  CHECK((*m)[0].second == "358320.00");
  CHECK((*m)[2].second == "2500.0000");
  CHECK((*m)[7].second == R"("SUCCESS")");
  auto r = raw_members(kRequest);
  REQUIRE(r);
  CHECK((*r)[0].second == "1000");
  CHECK((*r)[7].second == "false");
  auto nested = raw_members(R"( { "a" : {"b":[1,{"c":"}"}]} , "d":"x\"y", "e" : -1.5e3 } )");
  REQUIRE(nested);
  REQUIRE(nested->size() == 3);
  CHECK((*nested)[0].second == R"({"b":[1,{"c":"}"}]})");
  CHECK((*nested)[1].second == R"("x\"y")");
  CHECK((*nested)[2].second == "-1.5e3");
  CHECK(raw_members("{}")->empty());
  CHECK_FALSE(raw_members("[1]"));
  CHECK_FALSE(raw_members(R"({"a":1,})"));
  CHECK_FALSE(raw_members(R"({"a" 1})"));
  CHECK_FALSE(raw_members(R"({"a":"unterminated})"));
}

TEST_CASE("cashypay sandbox: amounts are decimal(20,2), kept exactly", "[sandbox][cashypay]") {
  CHECK(parse_amount_cents("1000") == 100000);
  CHECK(parse_amount_cents("1000.5") == 100050);
  CHECK(parse_amount_cents("1000.50") == 100050);
  CHECK(parse_amount_cents("358320.00") == 35832000);
  CHECK(parse_amount_cents("0.01") == 1);
  CHECK(parse_amount_cents("5000000.000") == 500000000);  // a zero third decimal is still two
  CHECK_FALSE(parse_amount_cents("1000.005"));
  CHECK_FALSE(parse_amount_cents("-1000"));
  CHECK_FALSE(parse_amount_cents("1e3"));
  CHECK_FALSE(parse_amount_cents(".5"));
  CHECK_FALSE(parse_amount_cents("5."));
  CHECK_FALSE(parse_amount_cents("01000"));
  CHECK_FALSE(parse_amount_cents("1,000"));
  CHECK_FALSE(parse_amount_cents(""));
  CHECK_FALSE(parse_amount_cents("1234567890123456789"));  // 19 integer digits

  CHECK(format_fixed(35832000, 2, 2) == "358320.00");
  CHECK(format_fixed(25000000, 4, 4) == "2500.0000");
  CHECK(format_fixed(100000, 2, 0) == "1000");
  CHECK(format_fixed(1, 2, 2) == "0.01");
  CHECK(format_fixed(5, 0, 2) == "5.00");
  CHECK(format_fixed(-150, 2, 2) == "-1.50");
  CHECK(format_cents_short(100000) == "1000");
  CHECK(format_cents_short(100050) == "1000.50");

  // 2.5 % of 358320 is 8958; of 1000.01 it is 25.00025 -> 25.0003 (half up at the fourth decimal).
  CHECK(fee_units4(35832000, 250) == 89580000);
  CHECK(format_fixed(fee_units4(100001, 250), 4, 4) == "25.0003");
  CHECK(fee_units4(100000, 0) == 0);
}

TEST_CASE("cashypay sandbox: times are the gateway's local time", "[sandbox][cashypay]") {
  // The document's pay-desk example: a request at 1733739205 (10:13:25 UTC) with expireTime 86399
  // answers "2024-12-10 06:13:24": UTC-4.
  CHECK(format_time(1733739205 + 86399, -240) == "2024-12-10 06:13:24");
  // The notification example: nonceStr 1733116026894 (ms) and completionTime 12:07:06: UTC+7.
  CHECK(format_time(1733116026, 420) == "2024-12-02 12:07:06");
  CHECK(format_time(0, 0) == "1970-01-01 00:00:00");
}

TEST_CASE("cashypay sandbox: field formats", "[sandbox][cashypay]") {
  CHECK(valid_id_card("11.111.111-1"));
  CHECK(valid_id_card("154175105"));
  CHECK(valid_id_card("12.345.678-K"));
  CHECK_FALSE(valid_id_card("ABC-DEF"));
  CHECK_FALSE(valid_id_card("--"));
  CHECK_FALSE(valid_id_card("1 2"));
  CHECK(valid_remark("payment"));
  CHECK(valid_remark("Pago de exito, pedido #12"));
  CHECK_FALSE(valid_remark("Pago de éxito"));
  CHECK(paymux::sandbox::valid_http_url("https://merchant.com/webhooks"));
  CHECK(paymux::sandbox::valid_http_url("http://127.0.0.1:8080/webhooks/cashypay_cl"));
  CHECK_FALSE(paymux::sandbox::valid_http_url("ftp://merchant.com/"));
  CHECK_FALSE(paymux::sandbox::valid_http_url("https:///x"));
  CHECK_FALSE(paymux::sandbox::valid_http_url("https://a b"));
  CHECK(known_status("PAYING"));
  CHECK(known_status("SUCCESS"));
  CHECK(known_status("FAIL"));
  CHECK_FALSE(known_status("EXPIRED"));  // reported by queries, never set directly
  CHECK(acknowledged_status(200));
  CHECK(acknowledged_status(301));
  CHECK(acknowledged_status(302));
  CHECK_FALSE(acknowledged_status(204));
  CHECK_FALSE(acknowledged_status(500));
}
