#pragma once
// The one place that talks to gateways: turns a provider's WireRequest into an HTTP call on the
// connector's base URL with the connector's timeouts, and logs the flow's outcome (never bodies).
#include "providers/provider.hpp"
#include "service/net/http_client.hpp"

namespace paymux::providers {

class Exchange {
 public:
  explicit Exchange(net::HttpClient& client) : client_(client) {}
  boost::asio::awaitable<net::OutboundResponse> send(const ConnectorConfig& connector, Flow flow, WireRequest w);

 private:
  net::HttpClient& client_;
};

}  // namespace paymux::providers
