#pragma once
// The one place that talks to gateways: turns a provider's WireRequest into an HTTP call on the
// connector's base URL with the connector's timeouts, logs the flow's outcome (never bodies) and
// records it in the metrics.
// For gateways whose calls carry an access token it keeps one token per connector, refreshed
// before it expires by a single fetch that concurrent calls share, and refreshed once more when a
// call is refused for its token.
//
// Every call passes the connector's circuit breaker: while it is open the call is not made and the
// result is not_sent with the error kCircuitOpen (callers fail over as for a refused connection).
#include "providers/provider.hpp"
#include "service/core/circuit.hpp"
#include "service/net/http_client.hpp"

#include <functional>
#include <map>
#include <memory>
#include <mutex>

namespace paymux::providers {

// The error of a call refused by an open circuit (nothing was sent).
inline constexpr std::string_view kCircuitOpen = "circuit_open";

class Exchange {
 public:
  explicit Exchange(net::HttpClient& client) : client_(client) {}

  boost::asio::awaitable<net::OutboundResponse> send(const ConnectorConfig& connector, Flow flow, WireRequest w);

  // Builds the request with the connector's access token (empty for gateways without one) and sends
  // it; a response the provider reports as a refused token triggers one refresh and one resend. A
  // token that cannot be fetched is reported as not_sent: the flow's own request never left.
  boost::asio::awaitable<net::OutboundResponse> send_authorized(
      const ConnectorConfig& connector, const Provider& provider, Flow flow,
      std::function<WireRequest(const std::string& token)> build);

  // Creates the connector's breaker ahead of its first call (so that it is listed from the start).
  void add_circuit(const ConnectorConfig& connector);
  // One connector's breaker state (closed when it has made no call yet).
  CircuitSnapshot circuit(const std::string& connector) const;
  // Every breaker's state, by connector id (for GET /v1/connectors and metrics).
  std::vector<CircuitSnapshot> circuits() const;

 private:
  std::shared_ptr<CircuitBreaker> breaker(const ConnectorConfig& connector);
  struct TokenSlot;
  // Sends and records the call under the flow's name ("token" for access token requests).
  boost::asio::awaitable<net::OutboundResponse> call(const ConnectorConfig& connector, std::string_view flow,
                                                     WireRequest w);
  boost::asio::awaitable<std::optional<std::string>> access_token(const ConnectorConfig& connector,
                                                                  const Provider& provider, std::string refused,
                                                                  std::string& error);
  std::shared_ptr<TokenSlot> slot(const std::string& connector);

  net::HttpClient& client_;
  std::mutex slots_mutex_;
  std::map<std::string, std::shared_ptr<TokenSlot>> slots_;
  mutable std::mutex breakers_mutex_;
  std::map<std::string, std::shared_ptr<CircuitBreaker>> breakers_;
};

}  // namespace paymux::providers
