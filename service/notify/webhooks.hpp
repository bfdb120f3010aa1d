#pragma once
// Merchant webhooks: every event is POSTed to its merchant's URL as Standard Webhooks 1.0.
//
// The outbox: each event gets a delivery row in the transaction that writes it (store). The
// dispatcher runs one sender lane per merchant with a webhook URL, on its own strand: a lane claims
// due rows in batches with a lease (a crash leaves them leased; they go out again once the lease
// ends: at-least-once, `webhook-id` lets the merchant de-duplicate), sends them, and records each
// attempt with its result. A lane has at most `max_in_flight_per_merchant` deliveries in flight and
// all lanes together at most `max_in_flight`, so one slow endpoint cannot hold up another
// merchant's deliveries and memory stays bounded whatever the backlog. Within a merchant, an event
// of a payment is claimed only when no earlier event of that payment is still pending.
//
// Results: 2xx delivered; 410 Gone disables the endpoint (held events wait until it is enabled
// again: POST /v1/webhook_endpoint/enable, or a new webhook.url in the configuration); anything
// else (3xx included, timeouts, refused connections) is retried after the next wait of the
// merchant's retry schedule (jittered +-20%, or Retry-After when that is longer), and given up
// (state failed) once the schedule is over.
#include "service/core/config.hpp"
#include "service/core/orchestrator.hpp"
#include "service/net/http_client.hpp"
#include "service/store/store.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace paymux::notify {

// ---- Standard Webhooks signing ----------------------------------------------------------------

// "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)), the key being the
// base64-decoded part of "whsec_<base64>". Throws std::invalid_argument for a malformed secret.
std::string sign(std::string_view secret, std::string_view id, std::int64_t timestamp, std::string_view body);

// The webhook-signature header: one signature per secret, space-separated (a rotation).
std::string signature_header(const std::vector<Secret>& secrets, std::string_view id, std::int64_t timestamp,
                             std::string_view body);

// ---- Retries ----------------------------------------------------------------------------------

// The longest Retry-After honoured; a larger value is cut to this.
inline constexpr std::chrono::seconds kMaxRetryAfter{24 * 3600};

// Retry-After (RFC 9110 section 10.2.3): delay-seconds or an HTTP-date (IMF-fixdate, RFC 850 or
// asctime), as a wait from `now_unix`; a date in the past is 0. nullopt when malformed.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, std::int64_t now_unix);

// The wait after `failures` failed attempts in a row (1-based): schedule[failures - 1] scaled by a
// jitter factor 0.8 + 0.4 * jitter (jitter in [0, 1)), or Retry-After when longer (at most
// kMaxRetryAfter). nullopt when the schedule is over: the event is given up.
std::optional<std::chrono::milliseconds> retry_delay(const std::vector<std::chrono::seconds>& schedule, int failures,
                                                     double jitter, std::optional<std::chrono::seconds> retry_after);

enum class Verdict { delivered, retry, disable };

// What one answer means: 2xx delivered, 410 disables the endpoint, anything else is retried.
Verdict classify(const net::OutboundResponse& res);

// ---- The dispatcher ---------------------------------------------------------------------------

class WebhookDispatcher {
 public:
  // Webhooks get their own HTTP client: their own connection pools (merchant hosts apart from
  // gateways), and answers cut at 1 MiB (a merchant's reply body is not read beyond that).
  WebhookDispatcher(const Config& config, store::Store& store, boost::asio::any_io_executor ex);
  ~WebhookDispatcher();
  WebhookDispatcher(const WebhookDispatcher&) = delete;
  WebhookDispatcher& operator=(const WebhookDispatcher&) = delete;

  // Writes the configured endpoints to the store (retrying while it is unavailable), then starts
  // the merchants' lanes and returns. The lanes run until stop() or the io_context ends.
  boost::asio::awaitable<void> start();
  void stop();

  // Makes the merchant's lane look for due rows now (after a redelivery or an enable).
  void wake(const std::string& merchant);

  // The merchant API.
  boost::asio::awaitable<Result> list_attempts(std::string merchant, std::string event_id);
  boost::asio::awaitable<Result> redeliver(std::string merchant, std::string event_id);
  boost::asio::awaitable<Result> get_endpoint(std::string merchant);
  boost::asio::awaitable<Result> enable_endpoint(std::string merchant);

  struct Shared;
  struct Lane;

 private:
  std::unique_ptr<net::HttpClient> client_;  // destroyed with the dispatcher, before the io_context
  std::shared_ptr<Shared> shared_;
};

}  // namespace paymux::notify
