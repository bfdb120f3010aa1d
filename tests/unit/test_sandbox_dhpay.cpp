// The DHpay simulators' own wire rules (sandbox/dhpay_sim.hpp), checked against the SIGNING.md
// vectors and against values computed outside the code (`printf '%s' "<concatenation>" | sha256sum`).
#include "sandbox/dhpay_sim.hpp"

#include <catch2/catch.hpp>

using namespace paymux::sandbox::dhpay;
using paymux::sandbox::FormFields;

namespace {
constexpr const char* kSecret = "WqsnGoYONdi4fmqK12DuByazQ6OyuMAwwx3Flk4IrP88jVNsO57I7O3L9IHF";
constexpr const char* kMerchant = "200000000147049";

const FieldRule& rule(const FieldRule* begin, const FieldRule* end, std::string_view name) {
  for (auto* r = begin; r != end; ++r)
    if (r->name == name) return *r;
  FAIL("no rule for " << name);
  return *begin;
}
const FieldRule& cashier_rule(std::string_view name) {
  return rule(std::begin(kCashierFields), std::end(kCashierFields), name);
}
const FieldRule& nonce_rule(std::string_view name) { return rule(std::begin(kNonceFields), std::end(kNonceFields), name); }
}  // namespace

TEST_CASE("dhpay sandbox: request hash matches the SIGNING.md vector", "[sandbox][dhpay]") {
  CHECK(request_hash(kSecret, "458.52", "USD", "14066905163268948", kMerchant) ==
        "AF94D1D064ABC3AC5D62B8D6001C06166E95C1B0BA3262ED9B54ED6847EAA997");
  // Empty values add nothing: the same as leaving the field out of the concatenation.
  CHECK(request_hash("K", "1.00", "", "INV1", "M1") == upper_sha256("K1.00INV1M1"));
}

TEST_CASE("dhpay sandbox: callback hash matches the SIGNING.md vector", "[sandbox][dhpay]") {
  // In the document's parameter order (not sorted): the hash sorts by key itself.
  FormFields f{{"merchant_id", kMerchant},       {"invoice_id", "14066905163268948"},
               {"order_no", "564652357887"},     {"currency", "USD"},
               {"amount", "458.52"},             {"ref_no", "20140818161430_152634"},
               {"status", "01"},                 {"failure_reason", ""},
               {"trans_date", "20140722"},       {"trans_time", "182201"},
               {"description", "not signed"},    {"hash", "ignored"}};
  CHECK(callback_hash(kSecret, f) == "47B8C57E717FDD1FA94049F2E5C6D7915C65F294D47B2680E93738FEDBAD30F4");
  // description and hash are not signed; a failure_reason is (computed with sha256sum).
  f[10].second = "Declined by the issuing bank.";
  CHECK(callback_hash(kSecret, f) == "47B8C57E717FDD1FA94049F2E5C6D7915C65F294D47B2680E93738FEDBAD30F4");
  f[6].second = "02";
  f[7].second = "M0092";
  CHECK(callback_hash(kSecret, f) == "3E15209DFC6230E1B77E387BAEB8708DF300982E218E9368AE2B1794B01FA669");
}

TEST_CASE("dhpay sandbox: amounts carry exactly two decimals", "[sandbox][dhpay]") {
  CHECK(parse_two_decimals("458.52") == 45852);
  CHECK(parse_two_decimals("0.01") == 1);
  CHECK(parse_two_decimals("1500.00") == 150000);
  CHECK_FALSE(parse_two_decimals("458.5"));
  CHECK_FALSE(parse_two_decimals("458"));
  CHECK_FALSE(parse_two_decimals("458.520"));
  CHECK_FALSE(parse_two_decimals(".52"));
  CHECK_FALSE(parse_two_decimals("-1.00"));
  CHECK_FALSE(parse_two_decimals("1e3.00"));
  CHECK_FALSE(parse_two_decimals("01.00"));
  CHECK(field_problem(cashier_rule("amount"), "0.00") != "");
  CHECK(field_problem(cashier_rule("amount"), "20.85") == "");
  CHECK(field_problem(cashier_rule("product_price"), "0.00") == "");
  CHECK(field_problem(cashier_rule("product_price"), "10.1") != "");
}

TEST_CASE("dhpay sandbox: web cashier field rules follow document 001", "[sandbox][dhpay]") {
  for (auto name : {"merchant_id", "invoice_id", "order_no", "currency", "amount", "shipping_country", "first_name",
                    "last_name", "country", "state", "city", "address_line", "zipcode", "product_name",
                    "product_price", "product_quantity", "shipping_city", "shipping_state", "shipping_zipcode", "hash"}) {
    INFO(name);
    CHECK(cashier_rule(name).required);
    CHECK(field_problem(cashier_rule(name), "") == "is missing");
  }
  for (auto name : {"buyer_email", "shipping_first_name", "shipping_last_name", "shipping_address_line",
                    "shipping_email", "shipping_phone", "return_url", "remark", "notify_url", "buyer_id"}) {
    INFO(name);
    CHECK_FALSE(cashier_rule(name).required);
    CHECK(field_problem(cashier_rule(name), "") == "");
  }
  CHECK(field_problem(cashier_rule("invoice_id"), "14066905163268948") == "");
  CHECK(field_problem(cashier_rule("invoice_id"), std::string(30, 'a')) == "");
  CHECK(field_problem(cashier_rule("invoice_id"), std::string(31, 'a')) != "");
  CHECK(field_problem(cashier_rule("invoice_id"), "INV-1") != "");
  CHECK(field_problem(cashier_rule("merchant_id"), "499800") == "");
  CHECK(field_problem(cashier_rule("merchant_id"), "49980") != "");
  CHECK(field_problem(cashier_rule("zipcode"), "100081") == "");
  CHECK(field_problem(cashier_rule("zipcode"), "123") != "");
  CHECK(field_problem(cashier_rule("shipping_country"), "US") == "");
  CHECK(field_problem(cashier_rule("shipping_country"), "USA") != "");
  CHECK(field_problem(cashier_rule("currency"), "usd") != "");
  CHECK(field_problem(cashier_rule("buyer_email"), "XXX@126.com") == "");
  CHECK(field_problem(cashier_rule("buyer_email"), std::string(25, 'x') + "@126.com") != "");  // 33 > 30
  CHECK(field_problem(cashier_rule("product_quantity"), "3") == "");
  CHECK(field_problem(cashier_rule("product_quantity"), "0") != "");
  CHECK(field_problem(cashier_rule("notify_url"), "http://merchant.com/notify") == "");
  CHECK(field_problem(cashier_rule("notify_url"), "merchant.com/notify") != "");
  // Lengths are characters, not bytes: 50 Chinese characters fit a 50-character field.
  std::string fifty;
  for (int i = 0; i < 50; ++i) fifty += "\xe5\x90\x8d";  // 名
  CHECK(field_problem(cashier_rule("first_name"), fifty) == "");
  CHECK(field_problem(cashier_rule("first_name"), fifty + "x") != "");
}

TEST_CASE("dhpay sandbox: nonce body rules follow document 000", "[sandbox][dhpay]") {
  for (auto name : {"tokenInfo", "merchant_id", "invoice_id", "order_no", "currency", "amount", "country",
                    "product_name", "hash", "buyer_email", "first_name", "last_name", "address_line", "zipcode",
                    "shipping_email", "buyer_id"}) {
    INFO(name);
    CHECK(nonce_rule(name).required);
  }
  for (auto name : {"product_price", "product_quantity", "buyer_ip", "state", "city", "phone", "shipping_country",
                    "return_url", "remark", "notify_url"}) {
    INFO(name);
    CHECK_FALSE(nonce_rule(name).required);
  }
  CHECK(field_problem(nonce_rule("tokenInfo"), "sandbox_tcc_877924e3442847afb3c234829b93ddd7") == "");
  CHECK(field_problem(nonce_rule("invoice_id"), "TraderId20180101346") == "");
  CHECK(field_problem(nonce_rule("amount"), "19.88") == "");
  CHECK(field_problem(nonce_rule("amount"), "19.8") != "");
}

TEST_CASE("dhpay sandbox: outcomes by test card, nonce and amount", "[sandbox][dhpay]") {
  CHECK(card_outcome("4111111111111111", 1999) == Outcome::success);
  CHECK(card_outcome("4000000000000002", 1999) == Outcome::decline);
  CHECK(card_outcome("4000000000000119", 1999) == Outcome::avs_decline);
  CHECK(card_outcome("4000000000000259", 1999) == Outcome::processing);
  CHECK(card_outcome("5555555555554444", 1902) == Outcome::decline);
  CHECK(card_outcome("5555555555554444", 1906) == Outcome::processing);
  CHECK(card_outcome("5555555555554444", 1903) == Outcome::success);  // no 3-D Secure step on the cashier
  CHECK(card_outcome("5555555555554444", 1999) == Outcome::success);
  CHECK_FALSE(card_outcome("4111111111111112", 1999));  // Luhn
  CHECK_FALSE(card_outcome("411111", 1999));

  CHECK(nonce_outcome("tok_success", 1902) == Outcome::success);
  CHECK(nonce_outcome("tok_decline", 1999) == Outcome::decline);
  CHECK(nonce_outcome("tok_3ds", 1999) == Outcome::three_ds);
  CHECK(nonce_outcome("tok_pending", 1999) == Outcome::processing);
  CHECK(nonce_outcome("sandbox_tcc_877924e3442847afb3c234829b93ddd7", 1201) == Outcome::success);
  CHECK(nonce_outcome("sandbox_tcc_877924e3442847afb3c234829b93ddd7", 1202) == Outcome::decline);
  CHECK(nonce_outcome("sandbox_tcc_877924e3442847afb3c234829b93ddd7", 1203) == Outcome::three_ds);
  CHECK(nonce_outcome("sandbox_tcc_877924e3442847afb3c234829b93ddd7", 1206) == Outcome::processing);
  CHECK(nonce_outcome("sandbox_tcc_877924e3442847afb3c234829b93ddd7", 1230) == Outcome::success);
}
