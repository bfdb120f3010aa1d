// The Shouqianba simulator's own wire rules (sandbox/shouqianba_sim.hpp): the MD5 transport
// signature against the vector of SIGNING.md, the fen amounts, the barcode outcomes, and the
// notification key pair committed under sandbox/keys/.
#include "sandbox/shouqianba_sim.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

using namespace paymux::sandbox::shouqianba;

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace

TEST_CASE("shouqianba sandbox: sign is MD5 over the body bytes followed by the key", "[sandbox][shouqianba]") {
  // SIGNING.md vector.
  CHECK(sign(R"({"terminal_sn":"test"})", "testkey") == "58def9deadc1e33d985f287618bc995d");
  CHECK(sign_matches(R"({"terminal_sn":"test"})", "testkey", "58def9deadc1e33d985f287618bc995d"));
  CHECK(sign_matches(R"({"terminal_sn":"test"})", "testkey", "58DEF9DEADC1E33D985F287618BC995D"));
  CHECK_FALSE(sign_matches(R"({"terminal_sn": "test"})", "testkey", "58def9deadc1e33d985f287618bc995d"));
  CHECK_FALSE(sign_matches(R"({"terminal_sn":"test"})", "otherkey", "58def9deadc1e33d985f287618bc995d"));
  CHECK_FALSE(sign_matches(R"({"terminal_sn":"test"})", "testkey", "58def9deadc1e33d985f287618bc995"));
}

TEST_CASE("shouqianba sandbox: Authorization is \"<sn> <sign>\"", "[sandbox][shouqianba]") {
  auto a = parse_authorization("100000330006324471 58def9deadc1e33d985f287618bc995d");
  REQUIRE(a);
  CHECK(a->first == "100000330006324471");
  CHECK(a->second == "58def9deadc1e33d985f287618bc995d");
  CHECK_FALSE(parse_authorization(""));
  CHECK_FALSE(parse_authorization("58def9deadc1e33d985f287618bc995d"));
  CHECK_FALSE(parse_authorization(" 58def9deadc1e33d985f287618bc995d"));
  CHECK_FALSE(parse_authorization("sn "));
  CHECK_FALSE(parse_authorization("sn a b"));
}

TEST_CASE("shouqianba sandbox: amounts are whole fen of at most 10 digits", "[sandbox][shouqianba]") {
  CHECK(parse_fen("1") == 1);
  CHECK(parse_fen("9999999999") == 9999999999LL);
  CHECK_FALSE(parse_fen(""));
  CHECK_FALSE(parse_fen("0"));
  CHECK_FALSE(parse_fen("01"));
  CHECK_FALSE(parse_fen("1.00"));
  CHECK_FALSE(parse_fen("-1"));
  CHECK_FALSE(parse_fen("+1"));
  CHECK_FALSE(parse_fen("10000000000"));
  CHECK_FALSE(parse_fen("1e3"));
}

TEST_CASE("shouqianba sandbox: barcode outcomes by prefix", "[sandbox][shouqianba]") {
  CHECK(barcode_outcome("130012345678901234") == Outcome::success);
  CHECK(barcode_outcome("130112345678901234") == Outcome::declined);
  CHECK(barcode_outcome("130212345678901234") == Outcome::paid_after_queries);
  CHECK(barcode_outcome("130312345678901234") == Outcome::pending_cancelable);
  CHECK(barcode_outcome("130412345678901234") == Outcome::pay_error);
  CHECK(barcode_outcome("130512345678901234") == Outcome::lost_answer);
  CHECK(barcode_outcome("130612345678901234") == Outcome::business_fail);
  CHECK(barcode_outcome("130712345678901234") == Outcome::cancel_error);
  CHECK(barcode_outcome("130812345678901234") == Outcome::cancel_abort);
  CHECK(barcode_outcome("130912345678901234") == Outcome::success);
  CHECK(barcode_outcome("134512345678901234") == Outcome::success);
  CHECK(barcode_outcome("281234567890123456") == Outcome::success);
  CHECK(barcode_outcome("130") == Outcome::success);
  CHECK(paid_on_query(Outcome::paid_after_queries) == 2);
  CHECK(paid_on_query(Outcome::lost_answer) == 1);
  CHECK(paid_on_query(Outcome::pending_cancelable) == 0);
  CHECK(payway_of_barcode("281234567890123456") == "1");
  CHECK(payway_of_barcode("130012345678901234") == "3");
}

TEST_CASE("shouqianba sandbox: notifications are signed with the committed test key pair", "[sandbox][shouqianba]") {
  const std::string dir = std::string(PAYMUX_SOURCE_DIR) + "/sandbox/keys/";
  const auto private_pem = read_file(dir + "shouqianba_sandbox_test_private.pem");
  const auto public_pem = read_file(dir + "shouqianba_sandbox_test_public.pem");
  // The built-in key is the committed file, so that the public key file verifies what the sandbox sends.
  CHECK(private_pem == std::string(kTestPrivateKeyPem));
  auto priv = load_pem_key(kTestPrivateKeyPem, true);
  auto pub = load_pem_key(public_pem, false);
  REQUIRE(priv);
  REQUIRE(pub);
  const std::string body = R"({"sn":"7894259244067349","client_sn":"12345677767776","order_status":"PAID"})";
  const auto sig = rsa_sign_base64(priv.get(), body);
  REQUIRE_FALSE(sig.empty());
  CHECK(rsa_verify_base64(pub.get(), body, sig));
  CHECK_FALSE(rsa_verify_base64(pub.get(), body + " ", sig));
  CHECK_FALSE(rsa_verify_base64(pub.get(), body, "AAAA"));
  CHECK(acknowledged(200, "success"));
  CHECK(acknowledged(200, "success\n"));
  CHECK_FALSE(acknowledged(200, "SUCCESS!"));
  CHECK_FALSE(acknowledged(500, "success"));
}
