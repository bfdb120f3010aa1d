// Merchant webhooks: Standard Webhooks signing (the specification's own vector and the README's
// worked example), secret rotation, Retry-After, the retry schedule, what an answer means, the SSRF
// address policy, the sandbox receiver's independent verifier, and the store's outbox.
#include "sandbox/merchant_receiver.hpp"
#include "service/core/clock.hpp"
#include "service/core/config.hpp"
#include "service/core/ids.hpp"
#include "service/net/address_policy.hpp"
#include "service/notify/webhooks.hpp"
#include "service/store/sqlite/sqlite_store.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

using namespace paymux;
namespace asio = boost::asio;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// The "Worked example" block of README.md, as label -> value.
std::map<std::string, std::string> readme_example() {
  std::ifstream in(std::string(PAYMUX_SOURCE_DIR) + "/README.md");
  REQUIRE(in);
  std::string line;
  bool in_section = false, in_block = false;
  std::map<std::string, std::string> out;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) in_section = line == "## Merchant webhooks";
    if (!in_section) continue;
    if (line.rfind("Worked example", 0) == 0) in_block = true;
    if (!in_block) continue;
    if (line == "```" && !out.empty()) break;
    const auto colon = line.find(": ");
    if (colon == std::string::npos || line.rfind("```", 0) == 0) continue;
    const auto value_at = line.find_first_not_of(' ', colon + 1);
    out[line.substr(0, colon)] = line.substr(value_at);
  }
  return out;
}

net::OutboundResponse answer(unsigned status) {
  net::OutboundResponse r;
  r.outcome = net::SendOutcome::response;
  r.status = status;
  return r;
}

}  // namespace

TEST_CASE("Standard Webhooks: the specification's test vector", "[webhooks]") {
  // From the Standard Webhooks reference libraries' tests.
  CHECK(notify::sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                     R"({"test": 2432232314})") == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST_CASE("README worked example", "[webhooks]") {
  auto ex = readme_example();
  REQUIRE(ex.count("secret"));
  REQUIRE(ex.count("webhook-id"));
  REQUIRE(ex.count("webhook-timestamp"));
  REQUIRE(ex.count("body"));
  REQUIRE(ex.count("webhook-signature"));
  const auto ts = std::stoll(ex["webhook-timestamp"]);
  CHECK(notify::sign(ex["secret"], ex["webhook-id"], ts, ex["body"]) == ex["webhook-signature"]);
  CHECK(notify::signature_header({Secret(ex["secret"])}, ex["webhook-id"], ts, ex["body"]) == ex["webhook-signature"]);
  // The sandbox's own verifier (separate HMAC code) agrees.
  CHECK(sandbox::merchant::verify_signature({ex["secret"]}, ex["webhook-id"], ex["webhook-timestamp"], ex["body"],
                                            ex["webhook-signature"]));
  // One changed byte of the body, id or timestamp fails.
  CHECK_FALSE(sandbox::merchant::verify_signature({ex["secret"]}, ex["webhook-id"], ex["webhook-timestamp"],
                                                  ex["body"] + " ", ex["webhook-signature"]));
  CHECK_FALSE(sandbox::merchant::verify_signature({ex["secret"]}, ex["webhook-id"],
                                                  std::to_string(ts + 1), ex["body"], ex["webhook-signature"]));
}

TEST_CASE("a rotation signs with every secret, space-separated", "[webhooks]") {
  auto ex = readme_example();
  const std::string old_secret = "whsec_QUAm5df9CLyqe5e9rnwSD8QzefrANJAo";
  const auto ts = std::stoll(ex["webhook-timestamp"]);
  const auto header = notify::signature_header({Secret(ex["secret"]), Secret(old_secret)}, ex["webhook-id"], ts,
                                               ex["body"]);
  CHECK(header == ex["webhook-signature"] + " v1,6hFxu3i37vmV+m8muVhpTVJK8Sk6Elcbxgio/PEc8AE=");
  // A receiver that knows only one of the two accepts it.
  CHECK(sandbox::merchant::verify_signature({old_secret}, ex["webhook-id"], ex["webhook-timestamp"], ex["body"], header));
  CHECK(sandbox::merchant::verify_signature({ex["secret"]}, ex["webhook-id"], ex["webhook-timestamp"], ex["body"], header));
  CHECK_FALSE(sandbox::merchant::verify_signature({"whsec_dGVzdA=="}, ex["webhook-id"], ex["webhook-timestamp"],
                                                  ex["body"], header));
}

TEST_CASE("a malformed secret is refused, never used", "[webhooks]") {
  CHECK_THROWS_AS(notify::sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "evt_x", 1, "{}"), std::invalid_argument);
  CHECK_THROWS_AS(notify::sign("whsec_not*base64", "evt_x", 1, "{}"), std::invalid_argument);
}

TEST_CASE("Retry-After: seconds or an HTTP date", "[webhooks]") {
  const std::int64_t now = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
  CHECK(notify::parse_retry_after("120", now) == seconds(120));
  CHECK(notify::parse_retry_after(" 0 ", now) == seconds(0));
  CHECK(notify::parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now) == seconds(30));   // IMF-fixdate
  CHECK(notify::parse_retry_after("Sunday, 06-Nov-94 08:51:37 GMT", now) == seconds(120)); // RFC 850
  CHECK(notify::parse_retry_after("Sun Nov  6 08:49:47 1994", now) == seconds(10));         // asctime
  CHECK(notify::parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now) == seconds(0));    // in the past
  CHECK(notify::parse_retry_after("Thu, 01 Jan 2099 00:00:00 GMT", now) == notify::kMaxRetryAfter);
  CHECK(notify::parse_retry_after("99999999999999999999999", now) == notify::kMaxRetryAfter);
  CHECK(notify::parse_retry_after("1000000", now) == notify::kMaxRetryAfter);
  for (const char* bad : {"", "-5", "1.5", "soon", "Sun, 06 Nov 1994 08:49:37 CET", "Sun, 06 Foo 1994 08:49:37 GMT",
                          "Sun, 06 Nov 1994 25:49:37 GMT", "5 seconds"})
    CHECK_FALSE(notify::parse_retry_after(bad, now).has_value());
}

TEST_CASE("the retry schedule with jitter, Retry-After when longer, and its end", "[webhooks]") {
  const std::vector<seconds> schedule{seconds(5), seconds(30), seconds(120)};
  CHECK(notify::retry_delay(schedule, 1, 0.0, std::nullopt) == milliseconds(4000));
  CHECK(notify::retry_delay(schedule, 1, 0.5, std::nullopt) == milliseconds(5000));
  CHECK(notify::retry_delay(schedule, 1, 1.0, std::nullopt) == milliseconds(6000));
  CHECK(notify::retry_delay(schedule, 3, 0.5, std::nullopt) == milliseconds(120000));
  CHECK(notify::retry_delay(schedule, 2, 0.5, seconds(60)) == milliseconds(60000));   // longer: honoured
  CHECK(notify::retry_delay(schedule, 2, 0.5, seconds(10)) == milliseconds(30000));   // shorter: the schedule
  CHECK(notify::retry_delay(schedule, 2, 0.5, seconds(10 * 24 * 3600)) == milliseconds(86400000));
  CHECK_FALSE(notify::retry_delay(schedule, 4, 0.5, std::nullopt).has_value());      // given up
  CHECK_FALSE(notify::retry_delay(schedule, 4, 0.5, seconds(1)).has_value());
}

TEST_CASE("the default schedule retries for at least 3 days, whatever the jitter", "[webhooks]") {
  const auto& schedule = default_webhook_retry_schedule();
  std::int64_t shortest_ms = 0;
  for (int i = 1; i <= static_cast<int>(schedule.size()); ++i)
    shortest_ms += notify::retry_delay(schedule, i, 0.0, std::nullopt)->count();
  CHECK(shortest_ms >= 3LL * 24 * 3600 * 1000);
  CHECK(std::is_sorted(schedule.begin(), schedule.end()));
  CHECK(Config{}.merchants.empty());
  WebhookEndpoint ep;
  CHECK(ep.timeout == milliseconds(15000));
  CHECK(ep.retry_schedule == schedule);
}

TEST_CASE("what an answer means", "[webhooks]") {
  for (unsigned s : {200u, 201u, 202u, 204u, 299u}) CHECK(notify::classify(answer(s)) == notify::Verdict::delivered);
  CHECK(notify::classify(answer(410)) == notify::Verdict::disable);
  for (unsigned s : {300u, 301u, 302u, 304u, 307u, 400u, 404u, 429u, 500u, 503u})
    CHECK(notify::classify(answer(s)) == notify::Verdict::retry);
  net::OutboundResponse lost;
  lost.outcome = net::SendOutcome::unknown;
  CHECK(notify::classify(lost) == notify::Verdict::retry);
  lost.outcome = net::SendOutcome::not_sent;
  CHECK(notify::classify(lost) == notify::Verdict::retry);
}

TEST_CASE("SSRF guard: which addresses are not public", "[webhooks]") {
  auto np = [](const char* a) { return net::is_non_public_address(asio::ip::make_address(a)); };
  for (const char* a : {"127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
                        "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "198.18.0.1",
                        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
                        "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "ff02::1"})
    CHECK(np(a));
  for (const char* a : {"8.8.8.8", "172.32.0.1", "192.169.0.1", "100.128.0.1", "93.184.216.34",
                        "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"})
    CHECK_FALSE(np(a));
  CHECK(net::host_is_non_public("localhost") == true);
  CHECK(net::host_is_non_public("LOCALHOST.") == true);
  CHECK(net::host_is_non_public("api.localhost") == true);
  CHECK(net::host_is_non_public("[::1]") == true);
  CHECK(net::host_is_non_public("127.0.0.1") == true);
  CHECK(net::host_is_non_public("8.8.8.8") == false);
  CHECK_FALSE(net::host_is_non_public("shop.example").has_value());  // judged after resolution
  CHECK(net::url_host("https://[::1]:8443/hooks") == "::1");
  CHECK(net::url_host("http://127.0.0.1:9/x") == "127.0.0.1");
}

// ---- the outbox in the store ---------------------------------------------------------------------
// (Catch's macros stay outside coroutines: each store call runs to its end first.)

namespace {

std::string temp_db() {
  auto dir = std::filesystem::temp_directory_path() / ("paymux-webhooks-" + new_id(""));
  std::filesystem::create_directories(dir);
  return (dir / "test.db").string();
}

template <class F>
auto run(F f) {
  asio::io_context ioc;
  auto fut = asio::co_spawn(ioc, f(), asio::use_future);
  ioc.run();
  return fut.get();
}

// A store on a fresh database, with synchronous helpers.
struct Outbox {
  std::string db = temp_db();
  std::unique_ptr<store::Store> s = store::sqlite::open_sqlite_store({db});
  ~Outbox() {
    s.reset();
    std::filesystem::remove_all(std::filesystem::path(db).parent_path());
  }

  std::vector<store::WebhookEndpointRecord> sync(std::vector<std::pair<std::string, std::string>> endpoints) {
    std::vector<store::WebhookEndpointRecord> recs;
    for (auto& [m, url] : endpoints) recs.push_back({m, url, 0, {}, 0});
    return run([&] { return s->sync_webhook_endpoints(recs, now_ms()); });
  }
  store::PaymentRecord payment(const std::string& merchant) {
    store::PaymentRecord p;
    p.id = new_id(kPaymentPrefix);
    p.merchant = merchant;
    p.reference = "R-" + p.id;
    p.connector = "c1";
    p.provider = "glocash";
    p.amount = 1999;
    p.currency = "USD";
    p.created_at = p.updated_at = now_ms();
    run([&] { return s->create_payment(p, std::nullopt); });
    return p;
  }
  // Moves the payment one version on with one event; returns the event id (empty: not applied).
  std::string event(store::PaymentRecord& p, const std::string& type, std::int64_t expected_version = -1) {
    store::PaymentChange c;
    c.expected_version = expected_version < 0 ? p.version : expected_version;
    c.payment = p;
    store::EventRecord e;
    e.id = new_id(kEventPrefix);
    e.merchant = p.merchant;
    e.type = type;
    e.object_id = p.id;
    e.payload_json = R"({"id":")" + e.id + R"(","type":")" + type + R"("})";
    e.created_at = now_ms();
    c.events.push_back(e);
    if (!run([&] { return s->apply_payment_change(c); })) return {};
    ++p.version;
    return e.id;
  }
  std::vector<store::ClaimedDelivery> claim(std::int64_t now, int limit = 10) {
    return run([&] { return s->claim_deliveries("acme", now, limit, now + 60000); });
  }
  void record(const store::ClaimedDelivery& c, store::DeliveryState state, unsigned status,
              std::int64_t next_attempt_at = 0, bool disable = false) {
    store::DeliveryResult r;
    r.merchant = c.delivery.merchant;
    r.generation = c.delivery.generation;
    r.state = state;
    r.failures = c.delivery.failures + (state == store::DeliveryState::pending ? 1 : 0);
    r.next_attempt_at = next_attempt_at ? next_attempt_at : now_ms();
    r.disable_endpoint = disable;
    r.attempt = {c.delivery.event_id, now_ms(), status, 3, status == 200 ? "" : "HTTP " + std::to_string(status),
                 std::string(to_string(state))};
    run([&] { return s->record_deliveries({r}); });
  }
  std::optional<store::DeliveryRecord> delivery(const std::string& id) {
    return run([&] { return s->get_delivery(id); });
  }
  std::optional<store::WebhookEndpointRecord> endpoint() {
    return run([&] { return s->get_webhook_endpoint("acme"); });
  }
};

}  // namespace

TEST_CASE("store: every event gets its delivery row in its own transaction", "[webhooks][store]") {
  Outbox o;
  REQUIRE(o.sync({{"acme", "https://shop.example/hooks"}}).size() == 1);
  auto pa = o.payment("acme");
  auto pb = o.payment("globex");
  const auto ea = o.event(pa, "payment.requires_action");
  const auto eb = o.event(pb, "payment.requires_action");
  auto da = o.delivery(ea);
  auto db = o.delivery(eb);
  REQUIRE(da);
  REQUIRE(db);
  CHECK(da->state == store::DeliveryState::pending);
  CHECK(da->order_key == pa.id);
  CHECK(db->state == store::DeliveryState::skipped);  // globex has no webhook URL
  // A redelivery (the API allows it once the merchant has a URL) queues even a skipped row.
  CHECK(run([&] { return o.s->redeliver(eb, now_ms()); }));
  CHECK(o.delivery(eb)->state == store::DeliveryState::pending);
  CHECK_FALSE(run([&] { return o.s->redeliver(new_id(kEventPrefix), now_ms()); }));
  // A change that is not applied (stale version) writes neither its event nor a delivery row.
  CHECK(o.event(pa, "payment.succeeded", 0).empty());
  CHECK(run([&] { return o.s->list_events(store::EventQuery{"acme", "", pa.id, "", 10}); }).size() == 1);
}

TEST_CASE("store: claims keep each payment's order, lease rows, and record attempts", "[webhooks][store]") {
  Outbox o;
  o.sync({{"acme", "https://shop.example/hooks"}});
  auto p1 = o.payment("acme");
  auto p2 = o.payment("acme");
  const auto a1 = o.event(p1, "payment.requires_action");
  const auto a2 = o.event(p1, "payment.succeeded");
  const auto b1 = o.event(p2, "payment.requires_action");
  const auto now = now_ms() + 1;

  auto first = o.claim(now);
  REQUIRE(first.size() == 2);  // a2 waits for a1
  CHECK(first[0].delivery.event_id == a1);
  CHECK(first[1].delivery.event_id == b1);
  CHECK(first[0].payload_json.find(a1) != std::string::npos);
  CHECK(o.claim(now).empty());  // leased: not even a2

  // a1 fails once (retry in 5 s): a2 still waits, and a1 is not due yet.
  o.record(first[0], store::DeliveryState::pending, 503, now + 5000);
  CHECK(o.claim(now).empty());
  auto again = o.claim(now + 5000);
  REQUIRE(again.size() == 1);
  CHECK(again[0].delivery.event_id == a1);
  CHECK(again[0].delivery.failures == 1);
  o.record(again[0], store::DeliveryState::delivered, 200);
  auto next = o.claim(now + 5000);
  REQUIRE(next.size() == 1);
  CHECK(next[0].delivery.event_id == a2);

  auto attempts = run([&] { return o.s->list_delivery_attempts(a1, 10); });
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0].http_status == 503);
  CHECK(attempts[1].http_status == 200);
  CHECK(attempts[1].outcome == "delivered");
  auto d = o.delivery(a1);
  CHECK(d->state == store::DeliveryState::delivered);
  CHECK(d->attempts == 2);

  // Leases that ran out (a crash) make the rows claimable again.
  CHECK(o.claim(now + 70000).size() == 2);
}

TEST_CASE("store: redelivery wins over a late result; 410 disables; enable resumes in order", "[webhooks][store]") {
  Outbox o;
  o.sync({{"acme", "https://shop.example/hooks"}});
  auto p = o.payment("acme");
  const auto e1 = o.event(p, "payment.requires_action");
  auto now = now_ms() + 1;
  auto claimed = o.claim(now);
  REQUIRE(claimed.size() == 1);
  CHECK(run([&] { return o.s->redeliver(e1, now); }));  // while in flight
  o.record(claimed[0], store::DeliveryState::delivered, 200);
  auto d = o.delivery(e1);
  CHECK(d->state == store::DeliveryState::pending);  // the redelivery stands
  CHECK(d->generation == 1);
  CHECK(d->attempts == 1);

  // 410: the row and the endpoint are disabled; nothing is claimed any more.
  auto again = o.claim(now);
  REQUIRE(again.size() == 1);
  o.record(again[0], store::DeliveryState::disabled, 410, 0, true);
  const auto e2 = o.event(p, "payment.succeeded");
  REQUIRE(o.endpoint());
  CHECK(o.endpoint()->disabled_at != 0);
  CHECK(o.claim(now_ms() + 1).empty());
  // The same URL at start-up keeps it disabled.
  o.sync({{"acme", "https://shop.example/hooks"}});
  CHECK(o.endpoint()->disabled_at != 0);

  // Enabled: both go out, in order.
  CHECK(run([&] { return o.s->enable_webhook_endpoint("acme", now_ms()); }));
  now = now_ms() + 1;
  auto resumed = o.claim(now);
  REQUIRE(resumed.size() == 1);
  CHECK(resumed[0].delivery.event_id == e1);
  o.record(resumed[0], store::DeliveryState::delivered, 200);
  auto last = o.claim(now);
  REQUIRE(last.size() == 1);
  CHECK(last[0].delivery.event_id == e2);

  // A merchant whose URL leaves the configuration has its pending rows skipped.
  o.sync({});
  CHECK(o.delivery(e2)->state == store::DeliveryState::skipped);
  CHECK_FALSE(o.endpoint().has_value());
}

TEST_CASE("store: a new webhook URL enables a disabled endpoint", "[webhooks][store]") {
  Outbox o;
  o.sync({{"acme", "https://old.example/hooks"}});
  auto p = o.payment("acme");
  const auto e1 = o.event(p, "payment.requires_action");
  auto claimed = o.claim(now_ms() + 1);
  REQUIRE(claimed.size() == 1);
  o.record(claimed[0], store::DeliveryState::disabled, 410, 0, true);
  auto eps = o.sync({{"acme", "https://new.example/hooks"}});
  REQUIRE(eps.size() == 1);
  CHECK(eps[0].disabled_at == 0);
  CHECK(o.delivery(e1)->state == store::DeliveryState::pending);
}
