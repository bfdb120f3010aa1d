#include "providers/exchange.hpp"

#include "service/core/clock.hpp"
#include "service/obs/metrics.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <vector>

namespace paymux::providers {

namespace asio = boost::asio;

struct Exchange::TokenSlot {
  std::mutex m;
  std::string token;
  std::chrono::steady_clock::time_point refresh_at{};  // refresh before the gateway's expiry
  bool fetching = false;
  bool last_fetch_failed = false;
};

std::shared_ptr<CircuitBreaker> Exchange::breaker(const ConnectorConfig& connector) {
  std::lock_guard lock(breakers_mutex_);
  auto& b = breakers_[connector.id];
  if (!b) b = std::make_shared<CircuitBreaker>(connector.circuit);
  return b;
}

void Exchange::add_circuit(const ConnectorConfig& connector) { breaker(connector); }

CircuitSnapshot Exchange::circuit(const std::string& connector) const {
  std::shared_ptr<CircuitBreaker> b;
  {
    std::lock_guard lock(breakers_mutex_);
    if (auto it = breakers_.find(connector); it != breakers_.end()) b = it->second;
  }
  CircuitSnapshot s = b ? b->snapshot(CircuitBreaker::Clock::now()) : CircuitSnapshot{};
  s.connector = connector;
  return s;
}

std::vector<CircuitSnapshot> Exchange::circuits() const {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(breakers_mutex_);
    for (const auto& kv : breakers_) ids.push_back(kv.first);
  }
  std::vector<CircuitSnapshot> out;
  for (const auto& id : ids) out.push_back(circuit(id));
  return out;
}

asio::awaitable<net::OutboundResponse> Exchange::send(const ConnectorConfig& connector, Flow flow, WireRequest w) {
  return call(connector, to_string(flow), std::move(w));
}

asio::awaitable<net::OutboundResponse> Exchange::call(const ConnectorConfig& connector, std::string_view flow,
                                                      WireRequest w) {
  auto circuit = breaker(connector);
  if (!circuit->allow(CircuitBreaker::Clock::now())) {
    spdlog::info("gateway call connector={} flow={} outcome=not_sent: circuit open", connector.id, flow);
    net::OutboundResponse refused;
    refused.outcome = net::SendOutcome::not_sent;
    refused.error = std::string(kCircuitOpen);
    co_return refused;
  }
  net::OutboundRequest req;
  req.method = w.method;
  req.url = connector.base_url + w.path;
  req.headers = std::move(w.headers);
  req.body = std::move(w.body);
  req.connect_timeout = connector.connect_timeout;
  req.timeout = connector.timeout;
  auto res = co_await client_.send(std::move(req));
  // Transport trouble (refused, unreachable, timed out, cut off) counts against the circuit; any
  // complete answer shows the gateway is there.
  if (res.outcome == net::SendOutcome::response) {
    if (circuit->record_success()) spdlog::info("connector {}: circuit closed", connector.id);
  } else {
    if (circuit->record_failure(CircuitBreaker::Clock::now(), now_ms()))
      spdlog::warn("connector {}: circuit opened ({} ms cool-down)", connector.id, connector.circuit.cool_down.count());
  }
  const char* outcome = res.outcome == net::SendOutcome::response   ? "response"
                        : res.outcome == net::SendOutcome::not_sent ? "not_sent"
                                                                    : "unknown";
  obs::metrics::observe_gateway_call(connector.id, flow, outcome,
                                     std::chrono::duration<double>(res.latency).count());
  if (res.outcome == net::SendOutcome::response)
    spdlog::debug("gateway call connector={} flow={} outcome={} status={} latency_us={}", connector.id, flow,
                  outcome, res.status, res.latency.count());
  else
    spdlog::warn("gateway call connector={} flow={} outcome={} error=\"{}\" latency_us={}", connector.id, flow,
                 outcome, res.error, res.latency.count());
  co_return res;
}

std::shared_ptr<Exchange::TokenSlot> Exchange::slot(const std::string& connector) {
  std::lock_guard lock(slots_mutex_);
  auto& s = slots_[connector];
  if (!s) s = std::make_shared<TokenSlot>();
  return s;
}

asio::awaitable<std::optional<std::string>> Exchange::access_token(const ConnectorConfig& connector,
                                                                   const Provider& provider, std::string refused,
                                                                   std::string& error) {
  auto s = slot(connector.id);
  asio::steady_timer pause(co_await asio::this_coro::executor);
  const auto give_up = std::chrono::steady_clock::now() + connector.connect_timeout + connector.timeout;
  for (;;) {
    bool fetch = false;
    {
      std::unique_lock lock(s->m);
      const bool fresh = !s->token.empty() && std::chrono::steady_clock::now() < s->refresh_at;
      if (fresh && s->token != refused) co_return s->token;
      if (!s->fetching) {
        s->fetching = true;
        fetch = true;
      }
    }
    if (!fetch) {
      // Another call is fetching: wait for its token rather than fetching a second one. A short
      // poll keeps this free of cross-thread wake-ups; fetches are rare (once per token lifetime).
      if (std::chrono::steady_clock::now() > give_up) {
        error = "timed out waiting for the access token";
        co_return std::nullopt;
      }
      pause.expires_after(std::chrono::milliseconds(5));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      // A token fetched meanwhile is no longer the refused one: take it.
      std::unique_lock lock(s->m);
      if (!s->fetching && !s->token.empty() && s->token != refused) co_return s->token;
      if (!s->fetching && s->last_fetch_failed) {
        error = "access token unavailable";
        co_return std::nullopt;
      }
      continue;
    }

    std::optional<AccessToken> fetched;
    if (auto req = provider.build_access_token()) {
      auto res = co_await call(connector, "token", std::move(*req));
      if (res.outcome == net::SendOutcome::response) {
        fetched = provider.parse_access_token(res);
        if (!fetched) error = "the gateway refused the access token request (HTTP " + std::to_string(res.status) + ")";
      } else {
        error = "access token request failed: " + res.error;
      }
    }
    std::unique_lock lock(s->m);
    s->fetching = false;
    s->last_fetch_failed = !fetched;
    if (!fetched) co_return std::nullopt;
    s->token = fetched->token;
    // Refresh at 90% of the lifetime (at most a minute early).
    auto life = fetched->expires_in.count() > 0 ? fetched->expires_in : std::chrono::seconds(300);
    auto margin = std::max<std::chrono::seconds>(std::chrono::seconds(1),
                                                 std::min<std::chrono::seconds>(std::chrono::seconds(60), life / 10));
    s->refresh_at = std::chrono::steady_clock::now() + life - margin;
    spdlog::info("connector {}: access token refreshed (lifetime {}s)", connector.id, life.count());
    co_return fetched->token;
  }
}

asio::awaitable<net::OutboundResponse> Exchange::send_authorized(
    const ConnectorConfig& connector, const Provider& provider, Flow flow,
    std::function<WireRequest(const std::string& token)> build) {
  if (!provider.build_access_token()) co_return co_await send(connector, flow, build(std::string()));
  std::string refused;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string error;
    auto token = co_await access_token(connector, provider, refused, error);
    if (!token) {
      net::OutboundResponse r;
      r.outcome = net::SendOutcome::not_sent;
      r.error = error;
      co_return r;
    }
    auto res = co_await send(connector, flow, build(*token));
    if (res.outcome != net::SendOutcome::response || !provider.token_rejected(res) || attempt == 1) co_return res;
    spdlog::info("connector {}: access token refused by the gateway; refreshing once", connector.id);
    refused = *token;
  }
  co_return net::OutboundResponse{};
}

}  // namespace paymux::providers
