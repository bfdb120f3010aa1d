// The metrics registry's text output: families, labels, histogram buckets.
#include "service/obs/metrics.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace paymux;

namespace {

// The value of one sample line, or -1 when absent.
double sample(const std::string& text, const std::string& series) {
  auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

}  // namespace

TEST_CASE("metrics are written in the Prometheus text format with their labels", "[ops]") {
  obs::metrics::observe_http("/v1/payments/{id}", "GET", 200, 0.003);
  obs::metrics::observe_http("/v1/payments/{id}", "GET", 200, 0.2);
  obs::metrics::observe_gateway_call("unit_gw", "sync", "unknown", 15.0);
  obs::metrics::count_notification("unit_gw", "bad_signature");
  obs::metrics::count_webhook_delivery("delivered");
  obs::metrics::set_circuit_state("unit_gw", 2);
  obs::metrics::set_reconciler_backlog(7);
  const auto text = obs::metrics::serialize();
  CHECK(text.find("# TYPE paymux_http_requests_total counter") != std::string::npos);
  CHECK(text.find("# TYPE paymux_http_request_duration_seconds histogram") != std::string::npos);
  CHECK(sample(text, R"(paymux_http_requests_total{method="GET",route="/v1/payments/{id}",status="200"})") >= 2);
  CHECK(sample(text, R"(paymux_http_request_duration_seconds_bucket{method="GET",route="/v1/payments/{id}",status="200",le="0.005"})") >= 1);
  CHECK(sample(text, R"(paymux_gateway_requests_total{connector="unit_gw",flow="sync",outcome="unknown"})") == 1);
  CHECK(sample(text, R"(paymux_gateway_request_duration_seconds_bucket{connector="unit_gw",flow="sync",outcome="unknown",le="10"})") == 0);
  CHECK(sample(text, R"(paymux_gateway_request_duration_seconds_bucket{connector="unit_gw",flow="sync",outcome="unknown",le="30"})") == 1);
  CHECK(sample(text, R"(paymux_notifications_received_total{connector="unit_gw",verification="bad_signature"})") == 1);
  CHECK(sample(text, R"(paymux_circuit_state{connector="unit_gw"})") == 2);
  CHECK(sample(text, "paymux_reconciler_backlog_payments") == 7);
}
