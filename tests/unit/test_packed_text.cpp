// Packed texts of the SQLite store: what pack_text packs comes back byte for byte, what it keeps as
// text is the text, and bytes it did not make are refused, not unpacked into some other text.
#include "service/store/sqlite/packed_text.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

using namespace paymux::store::sqlite;

namespace {

const std::string kPayment =
    R"({"id":"pay_3yNzK0RJeGBNlJLlGHbsB7HUPqlfG","object":"payment","merchant":"demo","status":"requires_action",)"
    R"("amount":1999,"currency":"USD","amount_refunded":0,"reference":"ORDER-99","connector":"glocash_sandbox",)"
    R"("provider":"glocash","provider_payment_id":"CCAIO4SP6LXYPGGI","payment_method":{"type":"hosted"},)"
    R"("next_action":{"type":"redirect","url":"http://127.0.0.1:37961/glocash/gateway/payment/index/token/1e07a1"},)"
    R"("checkout_url":"http://127.0.0.1:49735/checkout/pay_3yNzK0RJeGBNlJLlGHbsB7HUPqlfG","failure":null,)"
    R"("risk":null,"attempts":[{"connector":"glocash_sandbox","outcome":"definite","error":null,"latency_ms":0,)"
    R"("at":"2026-12-02T07:26:37Z"}],"return_url":null,"metadata":{"note":"caf\u00e9 \u2713"},"provider_data":{},)"
    R"("created_at":"2026-12-02T07:26:37Z","updated_at":"2026-12-02T07:26:37Z","expires_at":null})";

// n random bytes: letters of an alphabet of `alphabet` letters, or any byte (NULs included).
std::string random_text(std::mt19937& rng, std::size_t n, int alphabet) {
  std::uniform_int_distribution<int> d(0, alphabet - 1);
  std::string s(n, ' ');
  for (auto& c : s) c = static_cast<char>(alphabet >= 256 ? d(rng) : 'a' + d(rng));
  return s;
}

// About n bytes of JSON-like text: keys and values drawn from a few words, with random numbers.
std::string random_json(std::mt19937& rng, std::size_t n) {
  static const char* const words[] = {"id", "payment", "status", "amount", "currency", "reference", "connector",
                                      "succeeded", "metadata", "order", "customer", "\u00e9t\u00e9"};
  std::uniform_int_distribution<int> w(0, 11), num(0, 999999);
  std::string s = "{";
  while (s.size() < n)
    s += std::string("\"") + words[w(rng)] + "\":\"" + words[w(rng)] + "-" + std::to_string(num(rng)) + "\",";
  s.back() = '}';
  return s;
}

}  // namespace

TEST_CASE("packed texts come back byte for byte", "[store]") {
  const auto p = pack_text(kPayment);
  REQUIRE(p.packed);
  // A payment's JSON packs to well under half its size: two or more rows share a 2 KiB page.
  CHECK(p.bytes.size() * 3 < kPayment.size());
  CHECK(unpack_text(p.bytes) == kPayment);

  std::mt19937 rng(7);
  std::vector<std::string> texts;
  for (std::size_t n : {64u, 65u, 100u, 1000u, 4096u, 70000u, 1u << 20}) {
    texts.push_back(random_json(rng, n));      // compresses
    texts.push_back(random_text(rng, n, 4));    // may or may not
    texts.push_back(random_text(rng, n, 256));  // does not
  }
  texts.push_back(std::string(5000, '\0'));
  texts.push_back(kPayment + kPayment + kPayment);
  int packed = 0;
  for (const auto& t : texts) {
    INFO("length " << t.size());
    const auto s = pack_text(t);
    if (s.packed) {
      ++packed;
      CHECK(s.bytes.size() < t.size());
      CHECK(unpack_text(s.bytes) == t);
    } else {
      CHECK(s.bytes == t);
    }
  }
  CHECK(packed >= 9);  // the JSON ones, the NULs and the repeated payment at least
}

TEST_CASE("short or incompressible texts are kept as they are", "[store]") {
  for (std::string t : {std::string(), std::string("{}"), std::string(63, 'a')}) {
    const auto s = pack_text(t);
    CHECK_FALSE(s.packed);
    CHECK(s.bytes == t);
  }
  std::mt19937 rng(11);
  const auto noise = random_text(rng, 2000, 256);
  const auto s = pack_text(noise);
  CHECK_FALSE(s.packed);
  CHECK(s.bytes == noise);
}

TEST_CASE("bytes that are not a packed text are refused", "[store]") {
  const auto good = pack_text(kPayment).bytes;
  REQUIRE(unpack_text(good) == kPayment);
  CHECK_THROWS(unpack_text(""));
  CHECK_THROWS(unpack_text("\x01\x02"));
  CHECK_THROWS(unpack_text(kPayment));  // a text, not a packed value
  auto other_format = good;
  other_format[0] = 2;
  CHECK_THROWS(unpack_text(other_format));
  auto longer = good;  // a length that the data does not have
  longer[1] = static_cast<char>(longer[1] + 1);
  CHECK_THROWS(unpack_text(longer));
  auto shorter = good;
  shorter[1] = static_cast<char>(shorter[1] - 1);
  CHECK_THROWS(unpack_text(shorter));
  CHECK_THROWS(unpack_text(good.substr(0, good.size() - 1)));  // cut short
  CHECK_THROWS(unpack_text(good + "x"));                        // bytes after the frame
  // Damage anywhere in the data is refused (the frame's checksum, or its structure); never does it
  // unpack into another text. (A few bits of a frame's header are unused: flipped, the text is
  // still the text.)
  for (std::size_t i = 5; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      INFO("byte " << i << " bit " << bit);
      std::string text;
      try {
        text = unpack_text(bad);
      } catch (const std::runtime_error&) {
        continue;
      }
      CHECK(text == kPayment);
    }
  }
}
