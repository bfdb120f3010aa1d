// Money, ids, the state machines, crypto helpers and canonical JSON.
#include "service/core/crypto.hpp"
#include "service/core/ids.hpp"
#include "service/core/json.hpp"
#include "service/core/money.hpp"
#include "service/core/status.hpp"
#include "service/core/secret.hpp"
#include "service/http/types.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include <set>
#include <sstream>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

using namespace paymux;

TEST_CASE("currencies carry their ISO 4217 exponents") {
  REQUIRE(find_currency("USD")->exponent == 2);
  REQUIRE(find_currency("JPY")->exponent == 0);
  REQUIRE(find_currency("CLP")->exponent == 0);
  REQUIRE(find_currency("KWD")->exponent == 3);
  REQUIRE(find_currency("CNY")->exponent == 2);
  REQUIRE_FALSE(find_currency("usd"));
  REQUIRE_FALSE(find_currency("XXX"));
  REQUIRE_FALSE(find_currency("US"));
  REQUIRE_FALSE(find_currency(""));
}

TEST_CASE("minor units format as gateway decimals for every exponent") {
  CHECK(to_decimal(1999, 2) == "19.99");
  CHECK(to_decimal(5, 2) == "0.05");
  CHECK(to_decimal(100, 2) == "1.00");
  CHECK(to_decimal(1500, 0) == "1500");
  CHECK(to_decimal(1500, 3) == "1.500");
  CHECK(to_decimal(1, 3) == "0.001");
  CHECK(to_decimal_trimmed(990, 2) == "9.9");
  CHECK(to_decimal_trimmed(1500, 2) == "15");
  CHECK(to_decimal_trimmed(1500, 0) == "1500");
}

TEST_CASE("gateway decimals parse exactly, without floats") {
  CHECK(parse_decimal("37.86", 2) == 3786);
  CHECK(parse_decimal("15", 2) == 1500);
  CHECK(parse_decimal("9.9", 2) == 990);
  CHECK(parse_decimal("358320.00", 0) == 358320);  // CashyPay sends CLP with decimals
  CHECK(parse_decimal("1.500", 3) == 1500);
  CHECK(parse_decimal("0.1", 2) == 10);
  // 0.1 + 0.2 style float traps never arise: every digit is kept
  CHECK(parse_decimal("1234567890123.45", 2) == 123456789012345);
  CHECK_FALSE(parse_decimal("358320.50", 0));  // a fraction CLP cannot have
  CHECK_FALSE(parse_decimal("1.234", 2));
  CHECK_FALSE(parse_decimal("-1.00", 2));
  CHECK_FALSE(parse_decimal("+1", 2));
  CHECK_FALSE(parse_decimal("1e3", 2));
  CHECK_FALSE(parse_decimal(".5", 2));
  CHECK_FALSE(parse_decimal("5.", 2));
  CHECK_FALSE(parse_decimal("", 2));
  CHECK_FALSE(parse_decimal("1,00", 2));
  CHECK_FALSE(parse_decimal("99999999999999999999", 2));  // overflow
}

TEST_CASE("ids are prefixed base62 with 128 random bits and give gateway order numbers") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto id = new_id(kPaymentPrefix);
    REQUIRE(id.size() == 4 + 29);
    REQUIRE(is_valid_id(id, kPaymentPrefix));
    REQUIRE(seen.insert(id).second);
    auto order = order_no_for(id);
    // DHpay: letters and digits only, at most 30; CashyPay: at most 32
    REQUIRE(order.size() <= 30);
    for (char c : order) REQUIRE(std::isalnum(static_cast<unsigned char>(c)));
    REQUIRE(payment_id_from_order_no(order) == id);
  }
  // Shouqianba's refund_request_no: at most 32.
  CHECK(refund_no_for(new_id(kRefundPrefix)).size() <= 32);
  CHECK_FALSE(is_valid_id("pay_short", kPaymentPrefix));
  CHECK_FALSE(is_valid_id("re_0123456789012345678901", kPaymentPrefix));
  CHECK_FALSE(is_valid_id("pay_012345678901234567890123456789", kPaymentPrefix));  // 30
  CHECK_FALSE(is_valid_id("pay_0123456789012345678901-", kPaymentPrefix));
  CHECK_FALSE(payment_id_from_order_no("ORDER-1001"));
  CHECK(is_valid_id(new_id(kRefundPrefix), kRefundPrefix));
  CHECK(is_valid_id(new_id(kEventPrefix), kEventPrefix));
  // An id made before ids carried their time (22 characters) is still one.
  CHECK(is_valid_id("pay_3xN8eQ0cVb2Lm9Rt5Yw1Kd", kPaymentPrefix));
  CHECK(payment_id_from_order_no("3xN8eQ0cVb2Lm9Rt5Yw1Kd") == "pay_3xN8eQ0cVb2Lm9Rt5Yw1Kd");
}

TEST_CASE("ids made a millisecond or more apart sort in the order they were made") {
  for (int i = 0; i < 20; ++i) {
    auto earlier = new_id(kPaymentPrefix);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    auto later = new_id(kPaymentPrefix);
    // The time comes first, fixed-width: the later id sorts after the earlier one.
    REQUIRE(earlier.size() == 4 + kIdBodyLength);
    REQUIRE(later.size() == earlier.size());
    REQUIRE(earlier < later);
  }
}

TEST_CASE("random bytes from the per-thread pool never repeat, not across a fork either") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {  // several refills of the pool
    std::string b(16, '\0');
    crypto::random_bytes(b.data(), b.size());
    REQUIRE(seen.insert(b).second);
  }
  std::string big(300, '\0');  // beyond the pool's share: straight from OpenSSL
  crypto::random_bytes(big.data(), big.size());
  CHECK(big != std::string(300, '\0'));

  // A forked child must not take the bytes its parent takes next from the same pool.
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    unsigned char b[16];
    crypto::random_bytes(b, sizeof b);
    const bool written = write(fds[1], b, sizeof b) == static_cast<ssize_t>(sizeof b);
    _exit(written ? 0 : 1);
  }
  unsigned char mine[16], childs[16];
  crypto::random_bytes(mine, sizeof mine);
  close(fds[1]);
  REQUIRE(read(fds[0], childs, sizeof childs) == static_cast<ssize_t>(sizeof childs));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(std::memcmp(mine, childs, sizeof mine) != 0);
}

TEST_CASE("payment statuses only move forward") {
  using S = PaymentStatus;
  CHECK(can_transition(S::created, S::requires_action));
  CHECK(can_transition(S::created, S::succeeded));
  CHECK(can_transition(S::requires_action, S::processing));
  CHECK(can_transition(S::processing, S::succeeded));
  CHECK(can_transition(S::succeeded, S::partially_refunded));
  CHECK(can_transition(S::partially_refunded, S::refunded));
  CHECK(can_transition(S::succeeded, S::disputed));
  CHECK(can_transition(S::disputed, S::succeeded));
  CHECK(can_transition(S::disputed, S::refunded));
  // backwards or out of a final status: never
  CHECK_FALSE(can_transition(S::succeeded, S::processing));
  CHECK_FALSE(can_transition(S::succeeded, S::requires_action));
  CHECK_FALSE(can_transition(S::processing, S::requires_action));
  CHECK_FALSE(can_transition(S::partially_refunded, S::succeeded));
  CHECK_FALSE(can_transition(S::succeeded, S::failed));
  for (auto final_status : {S::failed, S::canceled, S::expired, S::refunded})
    for (auto to : {S::created, S::requires_action, S::processing, S::succeeded, S::failed, S::canceled, S::expired,
                    S::partially_refunded, S::refunded, S::disputed})
      CHECK_FALSE(can_transition(final_status, to));
  for (auto s : {S::failed, S::canceled, S::expired, S::refunded}) CHECK(is_final(s));
  CHECK(payment_status_from("partially_refunded") == S::partially_refunded);
  CHECK_FALSE(payment_status_from("paid"));
  CHECK(payment_event_type(S::succeeded) == "payment.succeeded");
  CHECK_FALSE(payment_event_type(S::created));
}

TEST_CASE("refund statuses only move from pending") {
  CHECK(can_transition(RefundStatus::pending, RefundStatus::succeeded));
  CHECK(can_transition(RefundStatus::pending, RefundStatus::failed));
  CHECK_FALSE(can_transition(RefundStatus::succeeded, RefundStatus::failed));
  CHECK_FALSE(can_transition(RefundStatus::failed, RefundStatus::succeeded));
}

TEST_CASE("crypto helpers") {
  CHECK(crypto::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(crypto::md5_hex("abc") == "900150983cd24fb0d6963f7d28e17f72");
  CHECK(crypto::equal_hex_ct("ABCDEF01", "abcdef01"));
  CHECK_FALSE(crypto::equal_hex_ct("ABCDEF01", "abcdef02"));
  CHECK_FALSE(crypto::equal_hex_ct("abc", "abcd"));
  CHECK(crypto::equal_ct("same", "same"));
  CHECK_FALSE(crypto::equal_ct("same", "Same"));
  // RFC 4231 test case 2 (5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843)
  auto mac = crypto::hmac_sha256_raw("Jefe", "what do ya want for nothing?");
  CHECK(crypto::base64_encode(mac) == "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
  std::string decoded;
  REQUIRE(crypto::base64_decode("aGVsbG8=", decoded));
  CHECK(decoded == "hello");
  CHECK_FALSE(crypto::base64_decode("abc", decoded));
}

TEST_CASE("canonical JSON sorts keys at every depth") {
  auto a = boost::json::parse(R"({"b":1,"a":{"y":[3,{"d":1,"c":2}],"x":"s"}})");
  auto b = boost::json::parse(R"({"a":{"x":"s","y":[3,{"c":2,"d":1}]},"b":1})");
  CHECK(json::canonical(a) == json::canonical(b));
  CHECK(json::canonical(a) == R"({"a":{"x":"s","y":[3,{"c":2,"d":1}]},"b":1})");
  auto c = boost::json::parse(R"({"a":{"x":"s","y":[{"c":2,"d":1},3]},"b":1})");
  CHECK(json::canonical(a) != json::canonical(c));  // array order matters
}

TEST_CASE("secrets never print") {
  Secret s("super-secret-value");
  std::ostringstream os;
  os << s;
  CHECK(os.str() == "***");
  CHECK(fmt::format("{}", s) == "***");
  CHECK(s.reveal() == "super-secret-value");
}

TEST_CASE("form encoding round-trips and decodes gateway posts") {
  auto f = http::parse_form("REQ_INVOICE=ORDER1&CUS_EMAIL=customer789%40gmail.com&REQ_REFERER=https%3A%2F%2Fx.com%2Fa+b&E=");
  CHECK(http::form_get(f, "CUS_EMAIL") == "customer789@gmail.com");
  CHECK(http::form_get(f, "REQ_REFERER") == "https://x.com/a b");
  CHECK(http::form_has(f, "E"));
  CHECK(http::form_get(f, "E").empty());
  CHECK_FALSE(http::form_has(f, "MISSING"));
  http::FormFields g{{"a b", "x&y=z"}, {"k", "é"}};
  CHECK(http::parse_form(http::encode_form(g)) == g);
  // stray percent signs are kept rather than crashing
  CHECK(http::form_get(http::parse_form("a=100%"), "a") == "100%");
}
