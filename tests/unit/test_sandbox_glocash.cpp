// The Glocash simulator's own wire rules (sandbox/glocash_sim.hpp), checked against values computed
// outside the code: each expected signature is `printf '%s' "<concatenation>" | sha256sum` over the
// document's sample values (section 4, 7, 8 and 10 examples) with the key TESTKEY123.
#include "sandbox/glocash_sim.hpp"

#include <catch2/catch.hpp>

using namespace paymux::sandbox::glocash;

namespace {
constexpr const char* kKey = "TESTKEY123";
}

TEST_CASE("glocash sandbox: payment request signature follows appendix 1", "[sandbox][glocash]") {
  // BIL_METHOD absent (as in the document's example request): it signs as the empty string.
  CHECK(payment_signature(kKey, "1466492149", "account123@merchant77.com", "ORDER1234567890", "customer789@gmail.com",
                          "", "37.86", "USD") ==
        "e578ad1bd50ec9762eef6beb33d96e1cacfbe83fa7903be8d35fc2f87ff60025");
  CHECK(payment_signature(kKey, "1466492149", "account123@merchant77.com", "ORDER1234567890", "customer789@gmail.com",
                          "C01", "37.86", "USD") ==
        "c7f73380e50fa9fabd4100164ab8faa227fac27a441da1ff2bc4529d6b414b84");
}

TEST_CASE("glocash sandbox: query, refund and PSN signatures follow appendix 1", "[sandbox][glocash]") {
  CHECK(query_signature(kKey, "1466492149", "account123@merchant77.com", "CCGM48FGLP11H8MT") ==
        "c33bae773dbf9c5956e61ba5d20d2482bff66e35c64eb52bda4cd809a923ea9e");
  CHECK(refund_signature(kKey, "1466492149", "account123@merchant77.com", "CCGM48FGLP11H8MT", "10") ==
        "7a0da65621292662a99211f1a66a46d8e041d40cd76319f978fe6c909154fd25");
  CHECK(psn_signature(kKey, "1512371788", "account123@merchant77.com", "customer789@gmail.com", "CCGM48FGLP11H8MT",
                      "paid", "CCG", "3.18", "EUR") ==
        "de63aeccaefbeb157db11ee72345c72d5007be292a57e6fff4a3489dabee11d5");
}

TEST_CASE("glocash sandbox: appendix 2 field formats", "[sandbox][glocash]") {
  CHECK(valid_invoice("ORDER1234567890"));
  CHECK(valid_invoice("a_b-C9"));
  CHECK(valid_invoice(std::string(64, 'x')));
  CHECK_FALSE(valid_invoice(std::string(65, 'x')));
  CHECK_FALSE(valid_invoice(""));
  CHECK_FALSE(valid_invoice("ORDER 1"));
  CHECK_FALSE(valid_invoice("ORDER.1"));

  CHECK(valid_price("37.86"));
  CHECK(valid_price("15"));
  CHECK(valid_price("9.9"));
  CHECK(valid_price("0.01"));
  CHECK_FALSE(valid_price("0"));
  CHECK_FALSE(valid_price("0.00"));
  CHECK_FALSE(valid_price("-1"));
  CHECK_FALSE(valid_price("1e3"));
  CHECK_FALSE(valid_price(".5"));
  CHECK_FALSE(valid_price("5."));
  CHECK_FALSE(valid_price("1,50"));
  CHECK_FALSE(valid_price("12345678901234567"));  // 17 characters

  CHECK(valid_currency("USD"));
  CHECK_FALSE(valid_currency("usd"));
  CHECK_FALSE(valid_currency("US"));
  CHECK_FALSE(valid_currency("USDT"));

  CHECK(plausible_email("customer789@gmail.com"));
  CHECK_FALSE(plausible_email("customer789gmail.com"));
  CHECK_FALSE(plausible_email("a@b"));
  CHECK_FALSE(plausible_email("a b@example.com"));
  CHECK_FALSE(plausible_email("a@@example.com"));

  CHECK(valid_url("https://www.merchant77.com/success.php?order=ORDER1234567890"));
  CHECK(valid_url("http://127.0.0.1:8080/webhooks/glocash_eu"));
  CHECK_FALSE(valid_url("ftp://example.com/"));
  CHECK_FALSE(valid_url("https://"));
  CHECK_FALSE(valid_url("https://example.com/" + std::string(250, 'a')));
}

TEST_CASE("glocash sandbox: amounts are exact", "[sandbox][glocash]") {
  CHECK(parse_amount("37.86") == 378600);
  CHECK(parse_amount("10") == 100000);
  CHECK(parse_amount("9.9") == 99000);
  CHECK(parse_amount("1.5000") == 15000);
  CHECK(parse_amount("1.500000") == 15000);   // extra zeros are still exact
  CHECK_FALSE(parse_amount("1.00001"));       // a fifth significant decimal is not
  CHECK_FALSE(parse_amount("9999999999999999"));  // would overflow the fixed-point units
  CHECK(format_amount(378600) == "37.86");
  CHECK(format_amount(100000) == "10");
  CHECK(format_amount(5) == "0.0005");
  CHECK(format_amount(0) == "0");
  CHECK(format_amount(50000, 2) == "5.00");    // refunded totals are shown in the price's form
  CHECK(format_amount(199900, 2) == "19.99");
  CHECK(format_amount(5, 2) == "0.0005");
  CHECK(format_amount(0, 2) == "0.00");
  CHECK(decimals_of("19.99") == 2);
  CHECK(decimals_of("15") == 0);
  CHECK(decimals_of("1.500") == 3);
}

TEST_CASE("glocash sandbox: section 5 test cards decide the outcome", "[sandbox][glocash]") {
  CHECK(card_outcome("4000000000000002") == CardOutcome::paid);
  CHECK(card_outcome("5200000000000023") == CardOutcome::failed);
  CHECK(card_outcome("5200000000000106") == CardOutcome::pending);
  CHECK(card_outcome("4111111111111111") == CardOutcome::paid);  // any conforming card
  CHECK(card_outcome("4111111111111112") == CardOutcome::invalid);  // Luhn fails
  CHECK(card_outcome("411111111111") == CardOutcome::invalid);      // too short
  CHECK(card_outcome("4111a11111111111") == CardOutcome::invalid);
  CHECK(card_outcome("") == CardOutcome::invalid);
}

TEST_CASE("glocash sandbox: appendix 4 and 5 vocabularies", "[sandbox][glocash]") {
  for (const char* s : {"unpaid", "paid", "pending", "cancelled", "failed", "refunding", "refunded", "complaint",
                        "chargeback"})
    CHECK(known_status(s));
  CHECK_FALSE(known_status("success"));
  CHECK_FALSE(known_status("PAID"));
  for (const char* d : {"ACP", "REV", "REJ", "BAN"}) CHECK(known_risk_decision(d));
  CHECK_FALSE(known_risk_decision("OK"));
}
