#pragma once
// Prometheus metrics: one process-wide registry (prometheus-cpp core) with the service's families,
// written in the text exposition format by GET /metrics. Recording is thread-safe and cheap enough
// for every request; label values are bounded sets (route patterns, connector ids, flow and outcome
// names), never raw paths or ids.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace paymux::obs::metrics {

// HTTP: `route` is the matched route pattern ("/v1/payments/{id}"), "unmatched" when none matched,
// "unparsed" when the request could not be read.
void observe_http(std::string_view route, std::string_view method, int status, double seconds);

// One gateway call made by providers::Exchange: flow ("create", "query", "refund", ...) and outcome
// ("response", "not_sent", "unknown").
void observe_gateway_call(std::string_view connector, std::string_view flow, std::string_view outcome,
                          double seconds);

// One notification received from a gateway, by the result of its verification ("verified",
// "bad_signature", "unknown_order", ...).
void count_notification(std::string_view connector, std::string_view verification);

// One merchant webhook attempt by outcome ("delivered", "retry", "failed", "disabled").
void count_webhook_delivery(std::string_view outcome);

// Outbox rows waiting to be sent ("pending") or held for a disabled endpoint ("disabled").
void set_webhook_backlog(std::string_view state, std::int64_t rows);

// Pending payments whose reconciliation check is due now.
void set_reconciler_backlog(std::int64_t payments);

// Circuit breaker state of a connector: 0 closed, 1 open, 2 half_open.
void set_circuit_state(std::string_view connector, int state);

// One group commit of the store's writer: its duration and how many operations it carried.
void observe_store_commit(double seconds, std::size_t operations);

// Every family in the Prometheus text exposition format (version 0.0.4).
std::string serialize();

inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace paymux::obs::metrics
