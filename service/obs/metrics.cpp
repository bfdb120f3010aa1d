#include "service/obs/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <charconv>
#include <mutex>
#include <sstream>
#include <unordered_map>

namespace paymux::obs::metrics {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

const Histogram::BucketBoundaries kHttpBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25,  0.5,    1,     2.5,  5,     10};
const Histogram::BucketBoundaries kGatewayBuckets{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60};
const Histogram::BucketBoundaries kCommitBuckets{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
const Histogram::BucketBoundaries kBatchBuckets{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

struct Families {
  prometheus::Registry registry;
  Family<Counter>& http_requests = prometheus::BuildCounter()
                                       .Name("paymux_http_requests_total")
                                       .Help("HTTP requests answered, by route pattern, method and status.")
                                       .Register(registry);
  Family<Histogram>& http_duration = prometheus::BuildHistogram()
                                         .Name("paymux_http_request_duration_seconds")
                                         .Help("Time from a request read to its response written, by route "
                                               "pattern, method and status.")
                                         .Register(registry);
  Family<Counter>& gateway_requests = prometheus::BuildCounter()
                                          .Name("paymux_gateway_requests_total")
                                          .Help("Calls to gateways, by connector, flow and outcome "
                                                "(response, not_sent, unknown).")
                                          .Register(registry);
  Family<Histogram>& gateway_duration = prometheus::BuildHistogram()
                                            .Name("paymux_gateway_request_duration_seconds")
                                            .Help("Duration of gateway calls, by connector, flow and outcome.")
                                            .Register(registry);
  Family<Counter>& notifications = prometheus::BuildCounter()
                                       .Name("paymux_notifications_received_total")
                                       .Help("Gateway notifications received, by connector and verification "
                                             "result.")
                                       .Register(registry);
  Family<Counter>& webhook_deliveries = prometheus::BuildCounter()
                                            .Name("paymux_webhook_deliveries_total")
                                            .Help("Merchant webhook attempts, by outcome (delivered, retry, "
                                                  "failed, disabled).")
                                            .Register(registry);
  Family<Gauge>& webhook_backlog = prometheus::BuildGauge()
                                       .Name("paymux_webhook_backlog_deliveries")
                                       .Help("Webhook outbox rows not yet delivered: pending (waiting to be "
                                             "sent) or disabled (held for a disabled endpoint).")
                                       .Register(registry);
  Family<Gauge>& reconciler_backlog = prometheus::BuildGauge()
                                          .Name("paymux_reconciler_backlog_payments")
                                          .Help("Pending payments whose reconciliation check is due.")
                                          .Register(registry);
  Family<Gauge>& circuit_state = prometheus::BuildGauge()
                                     .Name("paymux_circuit_state")
                                     .Help("Circuit breaker state per connector: 0 closed, 1 open, 2 half_open.")
                                     .Register(registry);
  Family<Histogram>& store_commit = prometheus::BuildHistogram()
                                        .Name("paymux_store_commit_duration_seconds")
                                        .Help("Duration of the store writer's group commits (fsync included).")
                                        .Register(registry);
  Family<Histogram>& store_batch = prometheus::BuildHistogram()
                                       .Name("paymux_store_commit_batch_operations")
                                       .Help("Write operations carried by each group commit.")
                                       .Register(registry);
  Histogram& store_commit_all = store_commit.Add({}, kCommitBuckets);
  Histogram& store_batch_all = store_batch.Add({}, kBatchBuckets);
  Gauge& reconciler_due = reconciler_backlog.Add({});
};

Families& families() {
  static Families f;
  return f;
}

// A counter and a histogram sharing one label set, looked up by the joined label values: prometheus-cpp's
// Family::Add builds a new metric object on every call, too costly for every request. Each thread keeps
// the pairs it has used, so a request's lookup takes no lock and builds no label map.
class Pairs {
 public:
  using Pair = std::pair<Counter*, Histogram*>;
  Pair get(Family<Counter>& counters, Family<Histogram>& histograms, const Histogram::BucketBoundaries& buckets,
           std::initializer_list<std::pair<const char*, std::string_view>> labels) {
    thread_local std::string key;
    key.clear();
    for (const auto& [k, v] : labels) (key += v) += '\x1f';
    auto& mine = local();
    if (auto it = mine.find(key); it != mine.end()) return it->second;
    std::lock_guard lock(mutex_);
    auto& slot = pairs_[key];
    if (!slot.first) {
      prometheus::Labels named;
      for (const auto& [k, v] : labels) named.emplace(k, std::string(v));
      slot = {&counters.Add(named), &histograms.Add(named, buckets)};
    }
    mine.emplace(key, slot);
    return slot;
  }

 private:
  // This thread's copies, for this Pairs object (one per metric family pair).
  std::unordered_map<std::string, Pair>& local() {
    thread_local std::unordered_map<const Pairs*, std::unordered_map<std::string, Pair>> all;
    return all[this];
  }
  std::mutex mutex_;
  std::unordered_map<std::string, Pair> pairs_;
};

std::string text(std::string_view v) { return std::string(v); }

// "200", "404"...: a status code as a label value, without a string built for it.
std::string_view status_text(int status) {
  thread_local char buf[12];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, status);
  return {buf, static_cast<std::size_t>(end - buf)};
}

}  // namespace

void observe_http(std::string_view route, std::string_view method, int status, double seconds) {
  auto& f = families();
  static Pairs pairs;
  auto [count, duration] = pairs.get(f.http_requests, f.http_duration, kHttpBuckets,
                                     {{"route", route}, {"method", method}, {"status", status_text(status)}});
  count->Increment();
  duration->Observe(seconds);
}

void observe_gateway_call(std::string_view connector, std::string_view flow, std::string_view outcome,
                          double seconds) {
  auto& f = families();
  static Pairs pairs;
  auto [count, duration] = pairs.get(f.gateway_requests, f.gateway_duration, kGatewayBuckets,
                                     {{"connector", connector}, {"flow", flow}, {"outcome", outcome}});
  count->Increment();
  duration->Observe(seconds);
}

void count_notification(std::string_view connector, std::string_view verification) {
  families().notifications.Add({{"connector", text(connector)}, {"verification", text(verification)}}).Increment();
}

void count_webhook_delivery(std::string_view outcome) {
  families().webhook_deliveries.Add({{"outcome", text(outcome)}}).Increment();
}

void set_webhook_backlog(std::string_view state, std::int64_t rows) {
  families().webhook_backlog.Add({{"state", text(state)}}).Set(static_cast<double>(rows));
}

void set_reconciler_backlog(std::int64_t payments) { families().reconciler_due.Set(static_cast<double>(payments)); }

void set_circuit_state(std::string_view connector, int state) {
  families().circuit_state.Add({{"connector", text(connector)}}).Set(state);
}

void observe_store_commit(double seconds, std::size_t operations) {
  auto& f = families();
  f.store_commit_all.Observe(seconds);
  f.store_batch_all.Observe(static_cast<double>(operations));
}

std::string serialize() {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families().registry.Collect());
  return out.str();
}

}  // namespace paymux::obs::metrics
