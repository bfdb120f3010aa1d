// Routing: the merchant's ordered rules pick the candidate connectors by currency, payment method,
// amount range and metadata; an explicit connector bypasses them; candidates that cannot take the
// payment are skipped with a reason.
#include "service/core/config.hpp"
#include "service/core/connectors.hpp"

#include <boost/json/object.hpp>
#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace paymux;

namespace {

const char* kConfig = R"yaml(
merchants:
  - id: acme
    api_keys: [k1]
    routing:
      - {when: {currency: [CLP]}, connectors: [cp]}
      - {when: {metadata: {tier: gold}}, connectors: [dh, gc]}
      - {when: {currency: [USD], amount_min: 100000, amount_max: 200000}, connectors: [dh]}
      - {when: {payment_method: [card_nonce]}, connectors: [dn]}
      - {connectors: [cp, gc, dh]}
    connectors:
      - {id: gc, provider: glocash, base_url: "https://gc.example", credentials: {email: a@b.c, secret_key: s}}
      - {id: cp, provider: cashypay, base_url: "https://cp.example",
         credentials: {merchant_id: "1", api_key: k}, settings: {currency: CLP}}
      - {id: dh, provider: dhpay, base_url: "https://dh.example", credentials: {merchant_id: "2", secret_key: s}}
      - {id: dn, provider: dhpay_nonce, base_url: "https://dn.example",
         credentials: {client_id: "3", secret: s, merchant_id: "4"}}
  - id: other
    api_keys: [k2]
    connectors:
      - {id: gc2, provider: glocash, base_url: "https://gc.example", credentials: {email: a@b.c, secret_key: s}}
      - {id: dh2, provider: dhpay, base_url: "https://dh.example", credentials: {merchant_id: "2", secret_key: s}}
)yaml";

struct Fixture {
  Config config = load_config_string(kConfig);
  Connectors connectors{config, providers::ProviderEnv{"http://localhost:8080"}};

  Route route(std::string currency, std::string method, std::int64_t amount, const boost::json::object* metadata = nullptr,
              std::string merchant = "acme", std::string explicit_connector = "") {
    return connectors.route(RouteRequest{merchant, explicit_connector, currency, method, amount, metadata});
  }
};

std::vector<std::string> ids(const Route& r) {
  std::vector<std::string> out;
  for (const auto* c : r.candidates) out.push_back(c->id());
  return out;
}

}  // namespace

TEST_CASE("the first matching rule picks the candidates, in its order", "[routing]") {
  Fixture f;
  CHECK(ids(f.route("CLP", "hosted", 358320)) == std::vector<std::string>{"cp"});
  CHECK(ids(f.route("USD", "hosted", 1999)) == std::vector<std::string>{"gc", "dh"});
  // Amount range, bounds included.
  CHECK(ids(f.route("USD", "hosted", 100000)) == std::vector<std::string>{"dh"});
  CHECK(ids(f.route("USD", "hosted", 200000)) == std::vector<std::string>{"dh"});
  CHECK(ids(f.route("USD", "hosted", 200001)) == std::vector<std::string>{"gc", "dh"});
  CHECK(ids(f.route("EUR", "hosted", 150000)) == std::vector<std::string>{"gc", "dh"});
  // Payment method.
  CHECK(ids(f.route("USD", "card_nonce", 1999)) == std::vector<std::string>{"dn"});
}

TEST_CASE("metadata rules match string values exactly", "[routing]") {
  Fixture f;
  boost::json::object gold{{"tier", "gold"}};
  boost::json::object silver{{"tier", "silver"}};
  boost::json::object number{{"tier", 1}};
  CHECK(ids(f.route("USD", "hosted", 1999, &gold)) == std::vector<std::string>{"dh", "gc"});
  CHECK(ids(f.route("USD", "hosted", 1999, &silver)) == std::vector<std::string>{"gc", "dh"});
  CHECK(ids(f.route("USD", "hosted", 1999, &number)) == std::vector<std::string>{"gc", "dh"});
  // A CLP payment meets the CLP rule first, whatever its metadata.
  CHECK(ids(f.route("CLP", "hosted", 5000, &gold)) == std::vector<std::string>{"cp"});
}

TEST_CASE("a connector that cannot take the payment is skipped with the reason", "[routing]") {
  Fixture f;
  auto r = f.route("USD", "hosted", 1999);
  // The catch-all rule lists cp first: CashyPay takes CLP only.
  REQUIRE(r.skipped.size() == 1);
  CHECK(r.skipped[0].connector == "cp");
  CHECK(r.skipped[0].reason == "currency USD not supported");
  // No candidate takes a QR payment: all skipped, each with its reason.
  auto qr = f.route("USD", "qr", 1999);
  CHECK(qr.candidates.empty());
  REQUIRE(qr.skipped.size() == 3);
  for (const auto& s : qr.skipped) CHECK(s.reason == "payment method qr not supported");
}

TEST_CASE("an explicit connector bypasses the rules but not the connector's abilities", "[routing]") {
  Fixture f;
  CHECK(ids(f.route("CLP", "hosted", 5000, nullptr, "acme", "gc")) == std::vector<std::string>{"gc"});
  auto r = f.route("USD", "hosted", 5000, nullptr, "acme", "cp");
  CHECK(r.candidates.empty());
  REQUIRE(r.skipped.size() == 1);
  CHECK(r.skipped[0].reason == "currency USD not supported");
  // Another merchant's connector is never a candidate.
  CHECK(f.route("USD", "hosted", 5000, nullptr, "acme", "gc2").candidates.empty());
}

TEST_CASE("without rules every connector of the merchant is a candidate, in configuration order", "[routing]") {
  Fixture f;
  CHECK(ids(f.route("USD", "hosted", 1999, nullptr, "other")) == std::vector<std::string>{"gc2", "dh2"});
  CHECK(f.route("USD", "hosted", 1999, nullptr, "nobody").candidates.empty());
  CHECK(f.connectors.all().size() == 6);
}
