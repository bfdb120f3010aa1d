#include "providers/exchange.hpp"

#include <spdlog/spdlog.h>

namespace paymux::providers {

boost::asio::awaitable<net::OutboundResponse> Exchange::send(const ConnectorConfig& connector, Flow flow,
                                                             WireRequest w) {
  net::OutboundRequest req;
  req.method = w.method;
  req.url = connector.base_url + w.path;
  req.headers = std::move(w.headers);
  req.body = std::move(w.body);
  req.connect_timeout = connector.connect_timeout;
  req.timeout = connector.timeout;
  auto res = co_await client_.send(std::move(req));
  const char* outcome = res.outcome == net::SendOutcome::response   ? "response"
                        : res.outcome == net::SendOutcome::not_sent ? "not_sent"
                                                                    : "unknown";
  if (res.outcome == net::SendOutcome::response)
    spdlog::debug("gateway call connector={} flow={} outcome={} status={} latency_us={}", connector.id,
                  to_string(flow), outcome, res.status, res.latency.count());
  else
    spdlog::warn("gateway call connector={} flow={} outcome={} error=\"{}\" latency_us={}", connector.id,
                 to_string(flow), outcome, res.error, res.latency.count());
  co_return res;
}

}  // namespace paymux::providers
