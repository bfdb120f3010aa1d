#include "service/notify/webhooks.hpp"

#include "service/core/clock.hpp"
#include "service/core/crypto.hpp"
#include "service/core/ids.hpp"
#include "service/net/address_policy.hpp"
#include "service/obs/metrics.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <stdexcept>
#include <unordered_set>

namespace paymux::notify {

namespace asio = boost::asio;
namespace bj = boost::json;
using http::ApiError;
using http::ErrorType;

// ---------------------------------------------------------------------------------------------
// Signing

std::string sign(std::string_view secret, std::string_view id, std::int64_t timestamp, std::string_view body) {
  constexpr std::string_view prefix = "whsec_";
  if (secret.substr(0, prefix.size()) != prefix) throw std::invalid_argument("webhook secret without whsec_ prefix");
  std::string key;
  if (!crypto::base64_decode(secret.substr(prefix.size()), key) || key.empty())
    throw std::invalid_argument("webhook secret is not base64 after whsec_");
  std::string content;
  content.reserve(id.size() + body.size() + 24);
  content.append(id);
  content += '.';
  content += std::to_string(timestamp);
  content += '.';
  content.append(body);
  return "v1," + crypto::base64_encode(crypto::hmac_sha256_raw(key, content));
}

std::string signature_header(const std::vector<Secret>& secrets, std::string_view id, std::int64_t timestamp,
                             std::string_view body) {
  std::string out;
  for (const auto& s : secrets) {
    if (!out.empty()) out += ' ';
    out += sign(s.reveal(), id, timestamp, body);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Retries

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

int month_number(const char* name) {
  static constexpr std::array<const char*, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (std::size_t i = 0; i < months.size(); ++i)
    if (std::strcmp(name, months[i]) == 0) return static_cast<int>(i) + 1;
  return 0;
}

// An HTTP-date as Unix seconds (RFC 9110 section 5.6.7: IMF-fixdate, obsolete RFC 850 and asctime).
std::optional<std::int64_t> parse_http_date(std::string_view value) {
  if (value.size() > 64) return std::nullopt;
  const std::string v(value);
  int day = 0, year = 0, hour = 0, minute = 0, second = 0, used = 0;
  char mon[4] = {}, zone[4] = {}, wkday[10] = {};
  const auto comma = v.find(',');
  if (comma != std::string::npos) {
    const std::string rest = v.substr(comma + 1);
    if (rest.find('-') != std::string::npos) {
      // Sunday, 06-Nov-94 08:49:37 GMT
      if (std::sscanf(rest.c_str(), " %2d-%3[A-Za-z]-%2d %2d:%2d:%2d %3[A-Z]%n", &day, mon, &year, &hour, &minute,
                      &second, zone, &used) != 7)
        return std::nullopt;
      year += year < 70 ? 2000 : 1900;
    } else {
      // Sun, 06 Nov 1994 08:49:37 GMT
      if (std::sscanf(rest.c_str(), " %2d %3[A-Za-z] %4d %2d:%2d:%2d %3[A-Z]%n", &day, mon, &year, &hour, &minute,
                      &second, zone, &used) != 7)
        return std::nullopt;
    }
    if (static_cast<std::size_t>(used) != rest.size() || std::strcmp(zone, "GMT") != 0) return std::nullopt;
  } else {
    // Sun Nov  6 08:49:37 1994
    if (std::sscanf(v.c_str(), "%9[A-Za-z] %3[A-Za-z] %2d %2d:%2d:%2d %4d%n", wkday, mon, &day, &hour, &minute, &second,
                    &year, &used) != 7 ||
        static_cast<std::size_t>(used) != v.size())
      return std::nullopt;
  }
  const int month = month_number(mon);
  if (month == 0 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60 || year < 1970) return std::nullopt;
  return days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 + hour * 3600 +
         minute * 60 + second;
}

double jitter_unit() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
}

}  // namespace

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, std::int64_t now_unix) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec == std::errc::result_out_of_range) return kMaxRetryAfter;
    if (ec != std::errc{} || end != value.data() + value.size()) return std::nullopt;
    return std::chrono::seconds(static_cast<std::int64_t>(std::min<std::uint64_t>(n, kMaxRetryAfter.count())));
  }
  auto at = parse_http_date(value);
  if (!at) return std::nullopt;
  return std::chrono::seconds(std::clamp<std::int64_t>(*at - now_unix, 0, kMaxRetryAfter.count()));
}

std::optional<std::chrono::milliseconds> retry_delay(const std::vector<std::chrono::seconds>& schedule, int failures,
                                                     double jitter, std::optional<std::chrono::seconds> retry_after) {
  if (failures < 1 || static_cast<std::size_t>(failures) > schedule.size()) return std::nullopt;
  const double base_ms = static_cast<double>(schedule[static_cast<std::size_t>(failures - 1)].count()) * 1000.0;
  auto wait = std::chrono::milliseconds(static_cast<std::int64_t>(base_ms * (0.8 + 0.4 * std::clamp(jitter, 0.0, 1.0))));
  if (retry_after) wait = std::max<std::chrono::milliseconds>(wait, std::min(*retry_after, kMaxRetryAfter));
  return wait;
}

Verdict classify(const net::OutboundResponse& res) {
  if (res.outcome != net::SendOutcome::response) return Verdict::retry;
  if (res.status >= 200 && res.status < 300) return Verdict::delivered;
  if (res.status == 410) return Verdict::disable;
  return Verdict::retry;
}

// ---------------------------------------------------------------------------------------------
// The dispatcher

struct WebhookDispatcher::Lane {
  const MerchantConfig* merchant;
  asio::strand<asio::any_io_executor> strand;
  asio::steady_timer timer;
  // Strand-only state.
  int in_flight = 0;   // requests under way
  int unrecorded = 0;  // answered, result not yet stored
  bool woken = false;
  bool waiting_for_slots = false;
  bool recording = false;                   // a write of `results` is under way
  std::vector<store::DeliveryResult> results;  // answered, waiting for that write
  std::unordered_set<std::string> sending;  // claimed and not yet recorded (a lease that ran out is not re-sent)
  std::int64_t last_store_warning = 0;

  Lane(const MerchantConfig* m, const asio::any_io_executor& ex)
      : merchant(m), strand(asio::make_strand(ex)), timer(strand) {}
};

struct WebhookDispatcher::Shared {
  const Config& config;
  store::Store& store;
  net::HttpClient& client;
  asio::any_io_executor ex;
  std::map<std::string, std::shared_ptr<Lane>> lanes;  // fixed once start() ran
  std::atomic<int> in_flight{0};                       // all lanes
  std::atomic<bool> stopped{false};

  Shared(const Config& c, store::Store& s, net::HttpClient& h, asio::any_io_executor e)
      : config(c), store(s), client(h), ex(std::move(e)) {}

  // Takes up to `want` of the global slots; returns how many it got.
  int reserve(int want) {
    int cur = in_flight.load();
    for (;;) {
      const int got = std::min(want, config.webhooks.max_in_flight - cur);
      if (got <= 0) return 0;
      if (in_flight.compare_exchange_weak(cur, cur + got)) return got;
    }
  }
  void release(int n) { in_flight.fetch_sub(n); }

  const MerchantConfig* merchant(const std::string& id) const {
    for (const auto& m : config.merchants)
      if (m.id == id) return &m;
    return nullptr;
  }
};

namespace {

using Shared = WebhookDispatcher::Shared;
using Lane = WebhookDispatcher::Lane;

// How long a claimed row stays leased: the attempt's whole time plus room to record its result.
std::int64_t lease_ms(const WebhookEndpoint& ep) {
  return ep.timeout.count() + std::min<std::int64_t>(ep.timeout.count(), 5000) + 10000;
}

void wake_lane(const std::shared_ptr<Lane>& lane) {
  asio::post(lane->strand, [lane] {
    lane->woken = true;
    lane->timer.cancel();
  });
}

std::string attempt_error(const net::OutboundResponse& res) {
  if (res.outcome != net::SendOutcome::response) return res.error.empty() ? "no answer" : res.error;
  if (res.status >= 200 && res.status < 300) return {};
  if (res.status >= 300 && res.status < 400) return "HTTP " + std::to_string(res.status) + " (redirects are not followed)";
  if (res.status == 410) return "HTTP 410 Gone: endpoint disabled";
  return "HTTP " + std::to_string(res.status);
}

void maybe_wake(const std::shared_ptr<Shared>& sh, const std::shared_ptr<Lane>& lane) {
  if (lane->waiting_for_slots && lane->in_flight <= sh->config.webhooks.max_in_flight_per_merchant / 2 &&
      lane->unrecorded <= sh->config.webhooks.max_in_flight_per_merchant) {
    lane->waiting_for_slots = false;
    lane->woken = true;
    lane->timer.cancel();
  }
}

// Stores the lane's answered attempts, many per write (one commit for all of them), until none is
// left. On the lane's strand; one at a time per lane.
asio::awaitable<void> record_results(std::shared_ptr<Shared> sh, std::shared_ptr<Lane> lane) {
  while (!lane->results.empty()) {
    std::vector<store::DeliveryResult> batch;
    batch.swap(lane->results);
    try {
      co_await sh->store.record_deliveries(batch);
    } catch (const std::exception& e) {
      // Not recorded: the leases run out and the rows go out again (at-least-once).
      spdlog::warn("webhooks: {} delivery result(s) of merchant {} not recorded: {}", batch.size(),
                   lane->merchant->id, e.what());
    }
    for (const auto& r : batch) lane->sending.erase(r.attempt.event_id);
    lane->unrecorded -= static_cast<int>(batch.size());
    maybe_wake(sh, lane);
  }
  lane->recording = false;
}

// One attempt of one claimed row, on the lane's strand. Whatever happens, the slot is given back.
asio::awaitable<void> deliver(std::shared_ptr<Shared> sh, std::shared_ptr<Lane> lane, store::ClaimedDelivery c) {
  const auto& ep = lane->merchant->webhook;
  const auto& d = c.delivery;
  try {
    const auto attempted_at = now_ms();
    const auto ts = attempted_at / 1000;
    net::OutboundRequest req;
    req.method = http::bhttp::verb::post;
    req.url = ep.url;
    req.headers = {{"Content-Type", "application/json"},
                   {"webhook-id", d.event_id},
                   {"webhook-timestamp", std::to_string(ts)},
                   {"webhook-signature", signature_header(ep.secrets, d.event_id, ts, c.payload_json)}};
    req.body = std::move(c.payload_json);
    req.timeout = ep.timeout;
    req.connect_timeout = std::min<std::chrono::milliseconds>(ep.timeout, std::chrono::milliseconds(5000));
    if (!ep.allow_private)
      req.allow_address = [](const asio::ip::address& a) { return !net::is_non_public_address(a); };
    auto res = co_await sh->client.send(std::move(req));

    store::DeliveryResult r;
    r.merchant = d.merchant;
    r.generation = d.generation;
    r.attempt.event_id = d.event_id;
    r.attempt.attempted_at = attempted_at;
    r.attempt.http_status = res.outcome == net::SendOutcome::response ? res.status : 0;
    r.attempt.latency_ms = std::chrono::duration_cast<std::chrono::milliseconds>(res.latency).count();
    r.attempt.error = attempt_error(res);
    r.failures = d.failures;
    r.next_attempt_at = d.next_attempt_at;
    switch (classify(res)) {
      case Verdict::delivered:
        r.state = store::DeliveryState::delivered;
        r.attempt.outcome = "delivered";
        spdlog::debug("webhook {} merchant={}: delivered ({}) in {} ms", d.event_id, d.merchant, res.status,
                      r.attempt.latency_ms);
        break;
      case Verdict::disable:
        r.state = store::DeliveryState::disabled;
        r.attempt.outcome = "disabled";
        r.disable_endpoint = true;
        spdlog::warn(
            "webhooks: merchant {}'s endpoint answered 410 Gone to {}: endpoint disabled, events held until "
            "POST /v1/webhook_endpoint/enable or a new webhook.url",
            d.merchant, d.event_id);
        break;
      case Verdict::retry: {
        r.failures = d.failures + 1;
        std::optional<std::chrono::seconds> retry_after;
        if (res.outcome == net::SendOutcome::response) {
          if (auto h = res.header("Retry-After"); !h.empty()) retry_after = parse_retry_after(h, ts);
        }
        if (auto wait = retry_delay(ep.retry_schedule, r.failures, jitter_unit(), retry_after)) {
          r.state = store::DeliveryState::pending;
          r.attempt.outcome = "retry";
          r.next_attempt_at = now_ms() + wait->count();
          spdlog::debug("webhook {} merchant={}: {}; retry {} in {} ms", d.event_id, d.merchant, r.attempt.error,
                        r.failures, wait->count());
        } else {
          r.state = store::DeliveryState::failed;
          r.attempt.outcome = "failed";
          spdlog::warn("webhooks: gave up delivering {} to merchant {} after {} failed attempts (last: {})",
                       d.event_id, d.merchant, r.failures, r.attempt.error);
        }
        break;
      }
    }
    obs::metrics::count_webhook_delivery(r.attempt.outcome);
    ++lane->unrecorded;
    lane->results.push_back(std::move(r));
    if (!lane->recording) {
      lane->recording = true;
      asio::co_spawn(lane->strand, record_results(sh, lane), asio::detached);
    }
  } catch (const std::exception& e) {
    // Not recorded: the lease runs out and the row goes out again (at-least-once).
    spdlog::warn("webhooks: delivery of {} to merchant {} failed: {}", d.event_id, d.merchant, e.what());
    lane->sending.erase(d.event_id);
  }
  // The slot is free once the answer is in: storing it is the recorder's business, so that the
  // commit's fsync does not hold a connection idle.
  --lane->in_flight;
  sh->release(1);
  maybe_wake(sh, lane);
}

// A merchant's sender: claims what is due while it has slots, then sleeps until polled or woken.
asio::awaitable<void> run_lane(std::shared_ptr<Shared> sh, std::shared_ptr<Lane> lane) {
  const auto& w = sh->config.webhooks;
  const auto& ep = lane->merchant->webhook;
  for (;;) {
    if (sh->stopped) co_return;
    lane->woken = false;
    bool more = false;
    // Answers waiting to be stored count too (up to as many again), so that memory stays bounded
    // when the store is slower than the endpoint.
    const int want = std::min({w.max_in_flight_per_merchant - lane->in_flight,
                               2 * w.max_in_flight_per_merchant - lane->in_flight - lane->unrecorded, w.batch});
    if (want > 0) {
      const int slots = sh->reserve(want);
      if (slots > 0) {
        std::vector<store::ClaimedDelivery> rows;
        const auto now = now_ms();
        try {
          rows = co_await sh->store.claim_deliveries(lane->merchant->id, now, slots, now + lease_ms(ep));
        } catch (const std::exception& e) {
          if (now - lane->last_store_warning > 10000) {
            lane->last_store_warning = now;
            spdlog::warn("webhooks: cannot claim deliveries of merchant {}: {}", lane->merchant->id, e.what());
          }
        }
        int started = 0;
        for (auto& row : rows) {
          if (!lane->sending.insert(row.delivery.event_id).second) continue;  // still in flight here
          ++started;
          ++lane->in_flight;
          asio::co_spawn(lane->strand, deliver(sh, lane, std::move(row)), asio::detached);
        }
        sh->release(slots - started);
        more = static_cast<int>(rows.size()) == slots;
      }
    }
    if (sh->stopped) co_return;
    if ((more && lane->in_flight < w.max_in_flight_per_merchant) || lane->woken) continue;
    lane->waiting_for_slots = lane->in_flight > w.max_in_flight_per_merchant / 2 ||
                              lane->unrecorded > w.max_in_flight_per_merchant;
    lane->timer.expires_after(w.poll);
    co_await lane->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    lane->waiting_for_slots = false;
  }
}

bj::object endpoint_json(const MerchantConfig& m, const std::optional<store::WebhookEndpointRecord>& rec) {
  bj::object o;
  o["object"] = "webhook_endpoint";
  o["url"] = m.webhook.url;
  const bool disabled = rec && rec->url == m.webhook.url && rec->disabled_at != 0;
  o["status"] = disabled ? "disabled" : "enabled";
  o["disabled_at"] = disabled ? bj::value(rfc3339(rec->disabled_at)) : bj::value(nullptr);
  o["disabled_reason"] = disabled ? bj::value(rec->disabled_reason) : bj::value(nullptr);
  bj::array schedule;
  for (auto s : m.webhook.retry_schedule) schedule.push_back(s.count());
  o["retry_schedule_seconds"] = std::move(schedule);
  o["timeout_ms"] = m.webhook.timeout.count();
  return o;
}

ApiError no_endpoint() {
  return ApiError{404, ErrorType::invalid_request_error, "resource_missing",
                  "No webhook endpoint is configured for this merchant (merchants[].webhook.url).", {}};
}

}  // namespace

namespace {
net::ClientOptions client_options(const Config& config) {
  net::ClientOptions o;
  o.ca_file = config.tls.ca_file;
  o.allow_plain_http = true;  // a merchant's choice (http:// URLs are accepted by the configuration)
  o.max_idle_per_host = static_cast<std::size_t>(config.webhooks.max_in_flight_per_merchant);
  o.max_response_bytes = 1024 * 1024;
  o.user_agent = "paymux-webhooks/0.1";
  return o;
}
}  // namespace

WebhookDispatcher::WebhookDispatcher(const Config& config, store::Store& store, asio::any_io_executor ex)
    : client_(std::make_unique<net::HttpClient>(ex, client_options(config))),
      shared_(std::make_shared<Shared>(config, store, *client_, std::move(ex))) {
  for (const auto& m : config.merchants)
    if (!m.webhook.url.empty()) shared_->lanes.emplace(m.id, std::make_shared<Lane>(&m, shared_->ex));
}

WebhookDispatcher::~WebhookDispatcher() { shared_->stopped = true; }

asio::awaitable<void> WebhookDispatcher::start() {
  auto sh = shared_;
  std::vector<store::WebhookEndpointRecord> configured;
  const auto now = now_ms();
  for (const auto& [id, lane] : sh->lanes) configured.push_back({id, lane->merchant->webhook.url, 0, {}, now});
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (int attempt = 0;; ++attempt) {
    try {
      auto endpoints = co_await sh->store.sync_webhook_endpoints(configured, now_ms());
      for (const auto& e : endpoints)
        if (e.disabled_at)
          spdlog::warn("webhooks: merchant {}'s endpoint is disabled since {} ({}); POST /v1/webhook_endpoint/enable "
                       "to resume",
                       e.merchant, rfc3339(e.disabled_at), e.disabled_reason);
      break;
    } catch (const std::exception& e) {
      if (attempt % 30 == 0) spdlog::warn("webhooks: cannot write the configured endpoints: {} (retrying)", e.what());
    }
    timer.expires_after(std::chrono::seconds(1));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || sh->stopped) co_return;
  }
  for (const auto& [id, lane] : sh->lanes) asio::co_spawn(lane->strand, run_lane(sh, lane), asio::detached);
  spdlog::info("webhooks: delivering for {} merchant(s), at most {} in flight ({} per merchant)", sh->lanes.size(),
               sh->config.webhooks.max_in_flight, sh->config.webhooks.max_in_flight_per_merchant);
}

void WebhookDispatcher::stop() {
  shared_->stopped = true;
  for (const auto& [id, lane] : shared_->lanes) wake_lane(lane);
}

void WebhookDispatcher::wake(const std::string& merchant) {
  if (auto it = shared_->lanes.find(merchant); it != shared_->lanes.end()) wake_lane(it->second);
}

asio::awaitable<Result> WebhookDispatcher::list_attempts(std::string merchant, std::string event_id) {
  auto sh = shared_;
  const auto missing = http::not_found("No such event: '" + event_id + "'");
  if (!is_valid_id(event_id, kEventPrefix)) co_return missing;
  auto e = co_await sh->store.get_event(event_id);
  if (!e || e->merchant != merchant) co_return missing;
  constexpr int kLimit = 100;
  auto attempts = co_await sh->store.list_delivery_attempts(event_id, kLimit + 1);
  auto delivery = co_await sh->store.get_delivery(event_id);
  bj::object out;
  out["object"] = "list";
  bj::array data;
  for (std::size_t i = 0; i < attempts.size() && i < static_cast<std::size_t>(kLimit); ++i) {
    const auto& a = attempts[i];
    bj::object o;
    o["object"] = "webhook_attempt";
    o["event"] = a.event_id;
    o["at"] = rfc3339(a.attempted_at);
    o["at_ms"] = a.attempted_at;
    o["http_status"] = a.http_status ? bj::value(a.http_status) : bj::value(nullptr);
    o["latency_ms"] = a.latency_ms;
    o["error"] = a.error.empty() ? bj::value(nullptr) : bj::value(a.error);
    o["outcome"] = a.outcome;
    data.push_back(std::move(o));
  }
  out["data"] = std::move(data);
  out["has_more"] = attempts.size() > static_cast<std::size_t>(kLimit);
  if (delivery) {
    bj::object d;
    d["state"] = to_string(delivery->state);
    d["attempts"] = delivery->attempts;
    const bool scheduled = delivery->state == store::DeliveryState::pending;
    d["next_attempt_at"] = scheduled ? bj::value(rfc3339(delivery->next_attempt_at)) : bj::value(nullptr);
    out["delivery"] = std::move(d);
  } else {
    out["delivery"] = nullptr;
  }
  co_return Reply{200, bj::serialize(out), false};
}

asio::awaitable<Result> WebhookDispatcher::redeliver(std::string merchant, std::string event_id) {
  auto sh = shared_;
  const auto missing = http::not_found("No such event: '" + event_id + "'");
  if (!is_valid_id(event_id, kEventPrefix)) co_return missing;
  auto e = co_await sh->store.get_event(event_id);
  if (!e || e->merchant != merchant) co_return missing;
  const auto* m = sh->merchant(merchant);
  if (!m || m->webhook.url.empty())
    co_return http::state_conflict("No webhook endpoint is configured for this merchant: nothing to deliver to.");
  auto endpoint = co_await sh->store.get_webhook_endpoint(merchant);
  if (endpoint && endpoint->disabled_at)
    co_return http::state_conflict(
        "The webhook endpoint is disabled (it answered 410 Gone); enable it first: POST /v1/webhook_endpoint/enable.");
  if (!co_await sh->store.redeliver(event_id, now_ms())) co_return missing;
  wake(merchant);
  co_return Reply{202, e->payload_json, false};
}

asio::awaitable<Result> WebhookDispatcher::get_endpoint(std::string merchant) {
  auto sh = shared_;
  const auto* m = sh->merchant(merchant);
  if (!m || m->webhook.url.empty()) co_return no_endpoint();
  auto rec = co_await sh->store.get_webhook_endpoint(merchant);
  co_return Reply{200, bj::serialize(endpoint_json(*m, rec)), false};
}

asio::awaitable<Result> WebhookDispatcher::enable_endpoint(std::string merchant) {
  auto sh = shared_;
  const auto* m = sh->merchant(merchant);
  if (!m || m->webhook.url.empty()) co_return no_endpoint();
  if (co_await sh->store.enable_webhook_endpoint(merchant, now_ms())) {
    spdlog::info("webhooks: merchant {}'s endpoint enabled through the API", merchant);
    wake(merchant);
  }
  auto rec = co_await sh->store.get_webhook_endpoint(merchant);
  co_return Reply{200, bj::serialize(endpoint_json(*m, rec)), false};
}

}  // namespace paymux::notify
