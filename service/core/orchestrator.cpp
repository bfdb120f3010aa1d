#include "service/core/orchestrator.hpp"

#include "service/core/clock.hpp"
#include "service/core/ids.hpp"
#include "service/core/json.hpp"
#include "service/core/money.hpp"
#include "service/core/views.hpp"
#include "service/obs/metrics.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

namespace paymux {

namespace asio = boost::asio;
using http::ApiError;
using http::ErrorType;
using store::PaymentRecord;

namespace {

Reply reply(unsigned status, std::string body) { return Reply{status, std::move(body), false}; }

std::string ser(const boost::json::value& v) { return boost::json::serialize(v); }

ApiError provider_unreachable(bool timed_out, const std::string& detail) {
  return ApiError{timed_out ? 504u : 502u, ErrorType::provider_error,
                  timed_out ? "provider_timeout" : "provider_unavailable",
                  "No gateway could be reached; nothing was sent. " + detail, {}};
}

void add_attempt(PaymentRecord& p, const std::string& connector, std::string_view outcome, const std::string& error,
                 std::int64_t latency_ms) {
  auto attempts = json::parse_stored(p.attempts_json);
  if (!attempts.is_array()) attempts = boost::json::array();
  boost::json::object a;
  a["connector"] = connector;
  a["outcome"] = outcome;
  a["error"] = error.empty() ? boost::json::value(nullptr) : boost::json::value(error);
  a["latency_ms"] = latency_ms;
  a["at"] = rfc3339(now_ms());
  attempts.get_array().push_back(std::move(a));
  p.attempts_json = ser(attempts);
}

std::string raw_of(const http::RequestContext& ctx) {
  std::string raw;
  if (!ctx.query.empty()) {
    raw += "?";
    raw += ctx.query;
  }
  if (!ctx.req.body().empty()) {
    if (!raw.empty()) raw += "\n";
    raw += ctx.req.body();
  }
  if (raw.size() > 65536) raw.resize(65536);
  return raw;
}

}  // namespace

Result idempotency_verdict(const store::IdempotencyRecord& existing, const std::string& endpoint,
                           const std::string& fingerprint) {
  if (existing.endpoint != endpoint || existing.fingerprint != fingerprint)
    return ApiError{422, ErrorType::idempotency_error, "key_reused",
                    "This Idempotency-Key was used with another request; use a new key for a new request.", {}};
  if (existing.state == store::IdempotencyState::in_progress)
    return ApiError{409, ErrorType::idempotency_error, "request_in_progress",
                    "A request with this Idempotency-Key is still being processed; retry later.", {}};
  return Reply{existing.response_status, existing.response_body, true};
}

Orchestrator::Orchestrator(const Config& config, store::Store& store, providers::Exchange& exchange,
                           const Connectors& connectors)
    : config_(config), store_(store), exchange_(exchange), connectors_(connectors) {
  // One query per 1/rate seconds and no burst: any second sees at most rate (+1) queries.
  for (const auto* k : connectors_.all()) {
    const double rate = k->config->query_rate > 0 ? k->config->query_rate : config.reconciler.query_rate;
    query_buckets_.emplace(k->id(), std::make_unique<TokenBucket>(rate, 1.0));
  }
}

std::string Orchestrator::payment_body(const PaymentRecord& p) const {
  return payment_text(p, config_.server.public_url);
}

namespace {
// An event's row without its payload: a new id, made now.
store::EventRecord event_row(const std::string& merchant, const std::string& type, const std::string& object_id) {
  store::EventRecord e;
  e.id = new_id(kEventPrefix);
  e.merchant = merchant;
  e.type = type;
  e.object_id = object_id;
  e.created_at = now_ms();
  return e;
}
}  // namespace

store::EventRecord Orchestrator::make_event(const std::string& merchant, const std::string& type,
                                            const std::string& object_id, boost::json::object object) const {
  auto e = event_row(merchant, type, object_id);
  e.payload_json = ser(event_json(e.id, type, e.created_at, std::move(object)));
  return e;
}

store::EventRecord Orchestrator::make_payment_event(const PaymentRecord& p, const std::string& type) const {
  auto e = event_row(p.merchant, type, p.id);
  e.payload_json = event_text(e.id, type, e.created_at, payment_body(p));
  return e;
}

bool Orchestrator::absorb(PaymentRecord& p, const providers::PaymentResult& r) {
  bool changed = false;
  if (!r.provider_payment_id.empty() && p.provider_payment_id.empty()) {
    p.provider_payment_id = r.provider_payment_id;
    changed = true;
  }
  if (r.provider_data && !r.provider_data->empty()) {
    auto data = json::parse_stored(p.provider_data_json);
    if (!data.is_object()) data = boost::json::object();
    for (const auto& kv : *r.provider_data) data.get_object()[kv.key()] = kv.value();
    auto text = ser(data);
    if (text != p.provider_data_json) {
      p.provider_data_json = std::move(text);
      changed = true;
    }
  }
  if (r.expires_at && !p.expires_at && is_pending(p.status)) {
    p.expires_at = r.expires_at;
    changed = true;
  }
  if (r.risk) {
    auto risk = ser(*r.risk);
    if (risk != p.risk_json) {
      p.risk_json = std::move(risk);
      changed = true;
    }
  }
  if (!r.status || *r.status == p.status) return changed;
  if (!can_transition(p.status, *r.status)) {
    spdlog::info("payment {}: transition {} -> {} refused (status never moves backwards)", p.id,
                 to_string(p.status), to_string(*r.status));
    return changed;
  }
  p.status = *r.status;
  if (p.status == PaymentStatus::requires_action && r.next_action)
    p.next_action_json = ser(*r.next_action);
  else if (p.status != PaymentStatus::requires_action)
    p.next_action_json.clear();
  if (r.failure && (p.status == PaymentStatus::failed || p.status == PaymentStatus::canceled))
    p.failure_json = ser(r.failure->to_json());
  if (p.status == PaymentStatus::refunded) p.amount_refunded = p.amount;
  return true;
}

namespace {

bool has_provider_flag(const PaymentRecord& p, std::string_view key) {
  auto data = json::parse_stored(p.provider_data_json);
  return data.is_object() && data.get_object().contains(key);
}

void set_provider_flag(PaymentRecord& p, std::string_view key, const std::string& value) {
  auto data = json::parse_stored(p.provider_data_json);
  if (!data.is_object()) data = boost::json::object();
  data.get_object()[key] = value;
  p.provider_data_json = ser(data);
}

}  // namespace

bool Orchestrator::note_review(PaymentRecord& p, Extras& x, const std::string& review) const {
  if (review.empty()) return false;
  auto data = json::parse_stored(p.provider_data_json);
  const bool flagged = data.is_object() && data.get_object().contains("review");
  if (flagged && json::str(data.get_object(), "review") == review) return false;
  set_provider_flag(p, "review", review);
  if (flagged) return true;  // in review already: the newest word is kept, one event is enough
  spdlog::warn("payment {}: gateway answer {} needs review", p.id, review);
  boost::json::object object = payment_json(p, config_.server.public_url);
  boost::json::object detail;
  detail["reason"] = "provider_uncertain";
  detail["provider_status"] = review;
  detail["connector"] = p.connector;
  object["review"] = std::move(detail);
  x.events.emplace_back("payment.review", std::move(object));
  return true;
}

std::optional<providers::FollowUp> Orchestrator::follow_up_of(const PaymentRecord& p, std::int64_t now) const {
  const auto* k = connectors_.find(p.connector);
  if (!k || has_provider_flag(p, "review") || has_provider_flag(p, "auto_cancel")) return std::nullopt;
  return k->provider->follow_up(p, now);
}

asio::awaitable<PaymentRecord> Orchestrator::update_payment(std::string id, Mutator mutate,
                                                            std::optional<PaymentRecord> current) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (!current) {
      current = co_await store_.get_payment(id);
      if (!current) throw std::runtime_error("payment " + id + " vanished");
    }
    PaymentRecord before = *current;
    PaymentRecord after = before;
    Extras extras;
    if (!mutate(after, extras)) co_return before;
    after.updated_at = now_ms();
    store::PaymentChange change;
    change.expected_version = before.version;
    if (after.status != before.status) {
      if (!can_transition(before.status, after.status))
        throw std::logic_error("refused transition reached the store");  // absorb() guards this
      if (auto type = payment_event_type(after.status))
        change.events.push_back(make_payment_event(after, std::string(*type)));
    }
    for (auto& [type, object] : extras.events) {
      // Filed under the object it is about (a refund's events under the refund id).
      const auto* oid = object.if_contains("id");
      std::string object_id = oid && oid->is_string() ? std::string(oid->get_string()) : after.id;
      change.events.push_back(make_event(after.merchant, type, object_id, std::move(object)));
    }
    change.refund = std::move(extras.refund);
    change.notification = std::move(extras.notification);
    if (extras.idempotency) change.idempotency_done = extras.idempotency(after);
    change.payment = after;
    if (co_await store_.apply_payment_change(std::move(change))) {
      after.version = before.version + 1;
      if (after.status != before.status)
        spdlog::info("payment={} merchant={} connector={} status {} -> {}", after.id, after.merchant, after.connector,
                     to_string(before.status), to_string(after.status));
      co_return after;
    }
    current.reset();  // someone else changed it: read again and re-decide
  }
  throw std::runtime_error("payment " + id + " kept changing under concurrent writers");
}

asio::awaitable<std::optional<PaymentRecord>> Orchestrator::load_payment(const std::string& merchant,
                                                                         const std::string& id) {
  if (!is_valid_id(id, kPaymentPrefix)) co_return std::nullopt;
  auto p = co_await store_.get_payment(id);
  if (!p || p->merchant != merchant) co_return std::nullopt;  // another merchant's id is a 404
  co_return p;
}

// ---------------------------------------------------------------------------------------------
// Payments

asio::awaitable<Result> Orchestrator::create_payment(CreatePaymentCommand c) {
  RouteRequest rr{c.merchant, c.connector, c.currency, c.method, c.amount, &c.metadata};
  if (!c.connector.empty()) {
    const auto* k = connectors_.find(c.connector);
    if (!k || k->config->merchant != c.merchant)
      co_return ApiError{404, ErrorType::invalid_request_error, "resource_missing",
                         "No such connector: " + c.connector, "connector"};
  }
  auto route = connectors_.route(rr);

  PaymentRecord p;
  p.id = new_id(kPaymentPrefix);
  p.merchant = c.merchant;
  p.reference = c.reference;
  p.amount = c.amount;
  p.currency = c.currency;
  p.status = PaymentStatus::created;
  boost::json::object method;
  method["type"] = c.method;
  p.payment_method_json = ser(method);
  p.request_json = ser(c.request);
  p.return_url = c.return_url;
  p.metadata_json = ser(c.metadata);
  p.created_at = p.updated_at = now_ms();
  if (c.expires_in > 0) p.expires_at = p.created_at + c.expires_in * 1000;
  // The earliest first check of any pending status; reconcile_one defers it to the schedule of the
  // status the payment has by then.
  {
    auto first = config_.reconciler.first_check;
    for (const auto& [status, sched] : config_.reconciler.schedule) first = std::min(first, sched.first_check);
    p.next_check_at = p.created_at + first.count();
  }

  // Candidates that lack a mandatory field are skipped; when none is left, the first one's
  // complaint is the answer (400 naming the field), before anything is sent.
  std::vector<const Connector*> candidates;
  std::optional<ApiError> first_invalid;
  for (const auto* k : route.candidates) {
    if (auto err = k->provider->validate(p, c.request)) {
      if (!first_invalid) first_invalid = err;
      add_attempt(p, k->id(), "skipped", err->message, 0);
      continue;
    }
    candidates.push_back(k);
  }
  for (const auto& s : route.skipped) add_attempt(p, s.connector, "skipped", s.reason, 0);
  if (candidates.empty()) {
    if (first_invalid) co_return *first_invalid;
    std::string why = route.skipped.empty() ? "no connector is routed for this payment"
                                            : route.skipped.front().connector + ": " + route.skipped.front().reason;
    co_return http::unsupported("No configured connector can take this payment (" + why + ").");
  }
  p.connector = candidates.front()->id();
  p.provider = std::string(candidates.front()->provider->name());

  const std::string endpoint = "POST /v1/payments";
  std::optional<store::IdempotencyRecord> key;
  if (!c.idempotency_key.empty()) {
    store::IdempotencyRecord k;
    k.merchant = c.merchant;
    k.key = c.idempotency_key;
    k.endpoint = endpoint;
    k.fingerprint = c.fingerprint;
    k.resource_id = p.id;
    k.created_at = p.created_at;
    key = std::move(k);
  }
  auto created = co_await store_.create_payment(p, key);
  if (created.outcome == store::CreatePaymentOutcome::idempotency_exists)
    co_return idempotency_verdict(created.existing, endpoint, c.fingerprint);
  if (created.outcome == store::CreatePaymentOutcome::duplicate_reference)
    co_return ApiError{409, ErrorType::invalid_request_error, "duplicate_reference",
                       "A payment with reference '" + c.reference + "' exists already.", "reference"};

  // Try the candidates in order; fail over only when nothing reached the gateway.
  const std::string order_no = order_no_for(p.id);
  const auto& pub = config_.server.public_url;
  providers::PaymentResult result;
  bool sent = false;
  bool timed_out = false;
  std::string last_error;
  for (const auto* k : candidates) {
    p.connector = k->id();
    p.provider = std::string(k->provider->name());
    providers::PaymentInput in{p, c.request, order_no, pub + "/webhooks/" + k->id(),
                               pub + "/return/" + k->id() + "?payment=" + p.id, c.method_secret, {}};
    if (auto local = k->provider->prepare_authorize(in)) {
      // The browser takes it to the gateway (a hosted form): nothing is sent from here.
      sent = true;
      result = std::move(*local);
      add_attempt(p, k->id(), "definite", "", 0);
      break;
    }
    auto res = co_await exchange_.send_authorized(*k->config, *k->provider, providers::Flow::authorize,
                                                  [&in, k](const std::string& token) {
                                                    in.access_token = token;
                                                    return k->provider->build_authorize(in);
                                                  });
    const auto latency_ms = res.latency.count() / 1000;
    if (res.outcome == net::SendOutcome::not_sent && res.error == providers::kCircuitOpen) {
      add_attempt(p, k->id(), "skipped", res.error, 0);
      if (last_error.empty()) last_error = k->id() + ": circuit open";
      continue;
    }
    if (res.outcome == net::SendOutcome::not_sent) {
      add_attempt(p, k->id(), "not_sent", res.error, latency_ms);
      last_error = res.error;
      timed_out = res.error.find("timed out") != std::string::npos || res.error.find("timeout") != std::string::npos;
      continue;
    }
    sent = true;
    if (res.outcome == net::SendOutcome::unknown) {
      result = {};
      result.unknown = true;
      result.error = res.error;
    } else {
      result = k->provider->parse_authorize(res, in);
    }
    add_attempt(p, k->id(), result.unknown ? "unknown" : "definite", result.error, latency_ms);
    break;
  }

  const std::string request_id = c.request_id;
  auto key_done = [key, request_id, this](unsigned status, std::optional<ApiError> err) {
    return [key, status, err, request_id, this](const PaymentRecord& after) -> std::optional<store::IdempotencyRecord> {
      if (!key) return std::nullopt;
      auto k = *key;
      k.state = store::IdempotencyState::completed;
      k.response_status = err ? err->status : status;
      k.response_body = err ? http::error_body(*err, request_id) : payment_body(after);
      return k;
    };
  };

  if (!sent) {
    // Nothing reached any gateway: the payment fails here and the answer is 502/504.
    auto err = provider_unreachable(timed_out, last_error);
    PaymentRecord attempted = p;
    co_await update_payment(
        p.id,
        [&](PaymentRecord& rec, Extras& x) {
          rec.attempts_json = attempted.attempts_json;
          rec.status = PaymentStatus::failed;
          providers::Failure f{err.code, err.message, ""};
          rec.failure_json = ser(f.to_json());
          x.idempotency = key_done(err.status, err);
          return true;
        },
        p);
    co_return err;
  }

  const bool unknown = result.unknown;
  PaymentRecord attempted = p;
  auto after = co_await update_payment(
      p.id,
      [&](PaymentRecord& rec, Extras& x) {
        rec.attempts_json = attempted.attempts_json;
        rec.connector = attempted.connector;
        rec.provider = attempted.provider;
        if (unknown) {
          // The gateway may have the payment: reconciliation settles it.
          providers::PaymentResult r;
          r.status = PaymentStatus::processing;
          r.provider_payment_id = result.provider_payment_id;  // when the gateway named its order
          r.provider_data = result.provider_data;
          absorb(rec, r);
        } else {
          absorb(rec, result);
        }
        note_review(rec, x, result.review);
        x.idempotency = key_done(unknown ? 202 : 201, std::nullopt);
        return true;
      },
      p);
  // The gateway's own poll plan, now that its call is over (never while it is in flight).
  if (auto plan = follow_up_of(after, now_ms())) co_await store_.schedule_check(after.id, plan->next_check_at, 0);
  co_return reply(unknown ? 202 : 201, payment_body(after));
}

asio::awaitable<Result> Orchestrator::get_payment(std::string merchant, std::string id) {
  auto p = co_await load_payment(merchant, id);
  if (!p) co_return http::not_found("No such payment: '" + id + "'");
  co_return reply(200, payment_body(*p));
}

asio::awaitable<Result> Orchestrator::list_payments(store::PaymentQuery q) {
  const int limit = q.limit;
  q.limit = limit + 1;
  auto rows = co_await store_.list_payments(q);
  boost::json::object out;
  out["object"] = "list";
  out["has_more"] = static_cast<int>(rows.size()) > limit;
  boost::json::array data;
  for (int i = 0; i < static_cast<int>(rows.size()) && i < limit; ++i)
    data.push_back(payment_json(rows[i], config_.server.public_url));
  out["data"] = std::move(data);
  co_return reply(200, ser(out));
}

asio::awaitable<Result> Orchestrator::sync_payment(std::string merchant, std::string id) {
  auto p = co_await load_payment(merchant, id);
  if (!p) co_return http::not_found("No such payment: '" + id + "'");
  const auto* k = connectors_.find(p->connector);
  if (!k || !k->provider->capabilities().supports(providers::Flow::sync))
    co_return http::unsupported("Connector '" + p->connector + "' has no query API.");
  auto wire = k->provider->build_sync(*p);
  if (!wire)
    co_return http::state_conflict("The gateway has not assigned this payment an id yet; it cannot be queried.");
  auto res = co_await exchange_.send(*k->config, providers::Flow::sync, std::move(*wire));
  if (res.outcome != net::SendOutcome::response)
    co_return ApiError{502, ErrorType::provider_error, "provider_unavailable", "The gateway query failed: " + res.error, {}};
  auto result = k->provider->parse_sync(res, *p);
  if (result.unknown)
    co_return ApiError{502, ErrorType::provider_error, "provider_error", "The gateway query failed: " + result.error, {}};
  auto after = co_await update_payment(
      p->id, [&](PaymentRecord& rec, Extras&) { return absorb(rec, result); });
  co_return reply(200, payment_body(after));
}

asio::awaitable<Result> Orchestrator::cancel_payment(std::string merchant, std::string id) {
  auto p = co_await load_payment(merchant, id);
  if (!p) co_return http::not_found("No such payment: '" + id + "'");
  if (!is_pending(p->status))
    co_return http::state_conflict("A payment in status " + std::string(to_string(p->status)) +
                                   " cannot be canceled.");
  const auto* k = connectors_.find(p->connector);
  if (!k || !k->provider->capabilities().supports(providers::Flow::cancel))
    co_return http::unsupported("Connector '" + p->connector + "' cannot cancel payments.");
  auto wire = k->provider->build_cancel(*p);
  if (!wire) co_return http::state_conflict("This payment cannot be canceled at the gateway now.");
  auto res = co_await exchange_.send(*k->config, providers::Flow::cancel, std::move(*wire));
  if (res.outcome != net::SendOutcome::response)
    co_return ApiError{502, ErrorType::provider_error, "provider_unavailable", "The gateway cancel failed: " + res.error, {}};
  auto result = k->provider->parse_cancel(res, *p);
  if (result.unknown)
    co_return ApiError{502, ErrorType::provider_error, "provider_error", "The gateway cancel failed: " + result.error, {}};
  if (!result.status && result.review.empty() && result.failure) {
    // Refused: the payment may have moved on at the gateway (paid meanwhile). Learn where it is.
    if (auto learned = co_await query_now(*k, *p))
      co_await update_payment(p->id, [&](PaymentRecord& rec, Extras& x) {
        bool changed = absorb(rec, *learned);
        return note_review(rec, x, learned->review) || changed;
      });
    co_return ApiError{409, ErrorType::invalid_request_error, "state_conflict",
                       "The gateway refused to cancel this payment: " + result.failure->code +
                           (result.failure->message.empty() ? "" : " (" + result.failure->message + ")") + ".",
                       {}};
  }
  auto after = co_await update_payment(p->id, [&](PaymentRecord& rec, Extras& x) {
    bool changed = absorb(rec, result);
    return note_review(rec, x, result.review) || changed;
  });
  co_return reply(200, payment_body(after));
}

// ---------------------------------------------------------------------------------------------
// Refunds

asio::awaitable<Result> Orchestrator::create_refund(CreateRefundCommand c) {
  auto p = co_await load_payment(c.merchant, c.payment_id);
  if (!p) co_return http::not_found("No such payment: '" + c.payment_id + "'");
  if (!is_refundable(p->status))
    co_return http::state_conflict("A payment in status " + std::string(to_string(p->status)) +
                                   " cannot be refunded.");
  const auto* k = connectors_.find(p->connector);
  if (!k || !k->provider->capabilities().supports(providers::Flow::refund))
    co_return http::unsupported("Connector '" + p->connector + "' cannot refund payments.");

  auto existing = co_await store_.list_refunds(p->id);
  std::int64_t reserved = 0;
  for (const auto& r : existing)
    if (r.status != RefundStatus::failed) reserved += r.amount;
  const std::int64_t left = p->amount - reserved;
  const std::int64_t amount = c.amount.value_or(left);
  if (amount <= 0 && !c.amount)
    co_return http::bad_request("amount_too_large", "Nothing is left to refund on this payment.", "amount");
  if (amount > left)
    co_return http::bad_request("amount_too_large",
                                "The refund exceeds what is left to refund (" + std::to_string(left) + ").", "amount");

  store::RefundRecord r;
  r.id = new_id(kRefundPrefix);
  r.payment_id = p->id;
  r.merchant = p->merchant;
  r.amount = amount;
  r.currency = p->currency;
  r.status = RefundStatus::pending;
  r.reason = c.reason;
  r.reference = c.reference;
  r.created_at = r.updated_at = now_ms();
  auto created = co_await store_.create_refund(r, std::nullopt);
  if (created.outcome == store::CreateRefundOutcome::too_large)
    co_return http::bad_request("amount_too_large",
                                "The refund exceeds what is left to refund (" + std::to_string(created.refundable) + ").",
                                "amount");
  if (created.outcome == store::CreateRefundOutcome::not_refundable)
    co_return http::state_conflict("The payment cannot be refunded in its current status.");

  auto wire = k->provider->build_refund(*p, r);
  providers::RefundResult result;
  if (!wire) {
    result.status = RefundStatus::failed;
    result.failure = providers::Failure{"not_refundable", "The gateway has no transaction id for this payment.", ""};
  } else {
    auto res = co_await exchange_.send(*k->config, providers::Flow::refund, std::move(*wire));
    if (res.outcome == net::SendOutcome::not_sent) {
      result.status = RefundStatus::failed;  // nothing reached the gateway: no refund happened
      result.failure = providers::Failure{"provider_unavailable", "The gateway could not be reached: " + res.error, ""};
    } else if (res.outcome == net::SendOutcome::unknown) {
      result.unknown = true;
      result.error = res.error;
    } else {
      result = k->provider->parse_refund(res, *p, r);
    }
  }
  if (result.unknown) {
    spdlog::warn("refund {}: outcome unknown ({}); it stays pending", r.id, result.error);
    co_return reply(201, ser(refund_json(r)));
  }
  auto settled = co_await settle_refund(p->id, r, std::move(result));
  co_return reply(201, ser(refund_json(settled)));
}

asio::awaitable<store::RefundRecord> Orchestrator::settle_refund(std::string payment_id, store::RefundRecord r,
                                                  providers::RefundResult result) {
  r.status = result.status;
  r.provider_refund_id = result.provider_refund_id;
  if (result.failure) r.failure_json = ser(result.failure->to_json());
  r.updated_at = now_ms();
  co_await update_payment(payment_id, [&](PaymentRecord& rec, Extras& x) {
    if (r.status == RefundStatus::succeeded) {
      rec.amount_refunded = std::min(rec.amount, rec.amount_refunded + r.amount);
      auto to = rec.amount_refunded >= rec.amount ? PaymentStatus::refunded : PaymentStatus::partially_refunded;
      if (to != rec.status && can_transition(rec.status, to)) rec.status = to;
      x.events.emplace_back("refund.succeeded", refund_json(r));
    } else {
      x.events.emplace_back("refund.failed", refund_json(r));
    }
    x.refund = r;
    return true;
  });
  co_return r;
}

asio::awaitable<void> Orchestrator::reconcile_refunds() {
  std::vector<std::string> able;  // connectors that can be asked about a refund
  for (const auto& m : config_.merchants)
    for (const auto& c : m.connectors)
      if (const auto* k = connectors_.find(c.id); k && k->provider->capabilities().supports(providers::Flow::refund_sync))
        able.push_back(c.id);
  if (able.empty()) co_return;
  const auto now = now_ms();
  auto pending = co_await store_.pending_refunds(able, now - 1000, config_.reconciler.batch);
  for (auto& r : pending) {
    auto p = co_await store_.get_payment(r.payment_id);
    const auto* k = p ? connectors_.find(p->connector) : nullptr;
    if (!k) continue;
    // Not before the first call can have ended; then backing off (doubling) to max_interval.
    const std::int64_t call_ms = (k->config->connect_timeout + k->config->timeout).count() + 1000;
    auto& [next_at, tries] = refund_retry_[r.id];
    if (next_at == 0) next_at = r.updated_at + call_ms;
    if (now < next_at) continue;
    ++tries;
    next_at = now + std::min<std::int64_t>(call_ms << std::min(tries, 12), config_.reconciler.max_interval.count());
    auto wire = k->provider->build_refund_sync(*p, r);
    if (!wire) continue;
    auto res = co_await exchange_.send(*k->config, providers::Flow::refund_sync, std::move(*wire));
    if (res.outcome != net::SendOutcome::response) {
      spdlog::info("refund {}: asking again failed: {}", r.id, res.error);
      continue;
    }
    auto result = k->provider->parse_refund_sync(res, *p, r);
    if (result.unknown) {
      spdlog::info("refund {}: still unknown: {}", r.id, result.error);
      continue;
    }
    refund_retry_.erase(r.id);
    spdlog::info("refund {}: settled as {} on asking again", r.id, to_string(result.status));
    co_await settle_refund(p->id, r, std::move(result));
  }
}

asio::awaitable<Result> Orchestrator::get_refund(std::string merchant, std::string id) {
  if (!is_valid_id(id, kRefundPrefix)) co_return http::not_found("No such refund: '" + id + "'");
  auto r = co_await store_.get_refund(id);
  if (!r || r->merchant != merchant) co_return http::not_found("No such refund: '" + id + "'");
  co_return reply(200, ser(refund_json(*r)));
}

asio::awaitable<Result> Orchestrator::list_refunds(std::string merchant, std::string payment_id) {
  auto p = co_await load_payment(merchant, payment_id);
  if (!p) co_return http::not_found("No such payment: '" + payment_id + "'");
  auto rows = co_await store_.list_refunds(p->id);
  boost::json::object out;
  out["object"] = "list";
  out["has_more"] = false;
  boost::json::array data;
  for (const auto& r : rows) data.push_back(refund_json(r));
  out["data"] = std::move(data);
  co_return reply(200, ser(out));
}

// ---------------------------------------------------------------------------------------------
// Events

asio::awaitable<Result> Orchestrator::get_event(std::string merchant, std::string id) {
  if (!is_valid_id(id, kEventPrefix)) co_return http::not_found("No such event: '" + id + "'");
  auto e = co_await store_.get_event(id);
  if (!e || e->merchant != merchant) co_return http::not_found("No such event: '" + id + "'");
  co_return reply(200, e->payload_json);
}

asio::awaitable<Result> Orchestrator::list_events(store::EventQuery q) {
  const int limit = q.limit;
  q.limit = limit + 1;
  auto rows = co_await store_.list_events(q);
  std::string body = "{\"object\":\"list\",\"data\":[";
  for (int i = 0; i < static_cast<int>(rows.size()) && i < limit; ++i) {
    if (i) body += ',';
    body += rows[i].payload_json;
  }
  body += "],\"has_more\":";
  body += static_cast<int>(rows.size()) > limit ? "true" : "false";
  body += '}';
  co_return reply(200, std::move(body));
}

// ---------------------------------------------------------------------------------------------
// Notifications and returns

asio::awaitable<http::Response> Orchestrator::handle_notification(std::string connector_id,
                                                                  const http::RequestContext& ctx) {
  const auto* k = connectors_.find(connector_id);
  if (!k)
    co_return http::error_response(http::not_found("No connector '" + connector_id + "'."), ctx.request_id,
                                   ctx.req.version(), ctx.req.keep_alive());
  const auto& provider = *k->provider;
  auto n = provider.parse_notification(ctx);

  store::NotificationRecord rec;
  rec.id = new_id("ntf_");
  rec.connector = connector_id;
  rec.received_at = now_ms();
  rec.method = std::string(ctx.req.method_string());
  rec.raw = raw_of(ctx);
  rec.verification = std::string(providers::to_string(n.verification));
  rec.dedup_key = n.dedup_key;
  obs::metrics::count_notification(connector_id, rec.verification);

  try {
    if (n.verification != providers::Verification::verified) {
      spdlog::warn("notification connector={} rejected: {} ({})", connector_id, rec.verification, n.reason);
      rec.outcome = "rejected";
      co_await store_.record_notification(rec);
      co_return provider.acknowledge(false, ctx.req);
    }
    std::optional<PaymentRecord> p;
    if (auto pid = payment_id_from_order_no(n.order_no)) p = co_await store_.get_payment(*pid);
    if (!p || p->connector != connector_id) {
      spdlog::warn("notification connector={} for unknown order '{}'", connector_id, n.order_no);
      rec.verification = "unknown_order";
      rec.outcome = "rejected";
      co_await store_.record_notification(rec);
      co_return provider.acknowledge(false, ctx.req);
    }
    rec.payment_id = p->id;
    bool mismatch = (n.amount && *n.amount != p->amount) || (!n.currency.empty() && n.currency != p->currency) ||
                    (n.charged_amount && *n.charged_amount != p->amount);
    if (!n.amount_decimal.empty()) {
      const auto cur = find_currency(p->currency);
      const auto stated = cur ? parse_decimal(n.amount_decimal, cur->exponent) : std::nullopt;
      if (!stated || *stated != p->amount) mismatch = true;
    }
    if (mismatch) {
      // Verified, but it disagrees with the order: flag it for review and apply nothing.
      spdlog::warn("notification connector={} payment={} disagrees with the order (amount/currency)", connector_id,
                   p->id);
      rec.outcome = "review";
      co_await update_payment(
          p->id,
          [&](PaymentRecord& cur, Extras& x) {
            boost::json::object review = payment_json(cur, config_.server.public_url);
            boost::json::object detail;
            detail["reason"] = "amount_mismatch";
            detail["notified_amount"] = n.amount ? boost::json::value(*n.amount)
                                        : !n.amount_decimal.empty() ? boost::json::value(n.amount_decimal)
                                                                    : boost::json::value(nullptr);
            detail["notified_currency"] = n.currency;
            detail["connector"] = connector_id;
            review["review"] = std::move(detail);
            x.events.emplace_back("payment.review", std::move(review));
            x.notification = rec;
            return true;
          },
          p);
      co_return provider.acknowledge(true, ctx.req);
    }
    bool applied = false;
    co_await update_payment(
        p->id,
        [&](PaymentRecord& cur, Extras& x) {
          const auto before = cur.status;
          bool changed = absorb(cur, n.result);
          if (!note_review(cur, x, n.result.review) && !changed) return false;
          applied = true;
          rec.outcome = cur.status != before ? "applied" : "updated";
          x.notification = rec;
          return true;
        },
        p);
    if (!applied) {
      rec.outcome = "duplicate";
      co_await store_.record_notification(rec);
    }
    co_return provider.acknowledge(true, ctx.req);
  } catch (const std::exception& e) {
    // Not stored: answer "not received" so that the gateway sends it again.
    spdlog::error("notification connector={} not stored: {}", connector_id, e.what());
    co_return provider.acknowledge(false, ctx.req);
  }
}

asio::awaitable<http::Response> Orchestrator::handle_return(std::string connector_id, const http::RequestContext& ctx) {
  const auto* k = connectors_.find(connector_id);
  if (!k)
    co_return http::error_response(http::not_found("No connector '" + connector_id + "'."), ctx.request_id,
                                   ctx.req.version(), ctx.req.keep_alive());
  auto n = k->provider->parse_return(ctx);
  std::string payment_id;
  if (n.verification == providers::Verification::verified) {
    if (auto pid = payment_id_from_order_no(n.order_no)) payment_id = *pid;
  }
  if (payment_id.empty()) payment_id = n.payment_id_hint;
  std::optional<PaymentRecord> p;
  if (is_valid_id(payment_id, kPaymentPrefix)) p = co_await store_.get_payment(payment_id);
  if (!p || p->connector != connector_id)
    co_return http::error_response(http::not_found("No such payment for this return."), ctx.request_id,
                                   ctx.req.version(), ctx.req.keep_alive());
  // The browser's word is a hint, never the source of truth: recorded, not applied.
  try {
    store::NotificationRecord rec;
    rec.id = new_id("ntf_");
    rec.connector = connector_id;
    rec.received_at = now_ms();
    rec.method = "RETURN " + std::string(ctx.req.method_string());
    rec.raw = raw_of(ctx);
    rec.verification = std::string(providers::to_string(n.verification));
    rec.payment_id = p->id;
    rec.outcome = "hint:" + n.result.provider_status;
    co_await store_.record_notification(std::move(rec));
  } catch (const std::exception& e) {
    spdlog::warn("return hint for {} not recorded: {}", p->id, e.what());
  }
  if (is_pending(p->status)) {
    if (k->provider->capabilities().supports(providers::Flow::sync)) {
      // The customer is back: ask the gateway now rather than wait for its notification.
      if (auto wire = k->provider->build_sync(*p)) {
        auto res = co_await exchange_.send(*k->config, providers::Flow::sync, std::move(*wire));
        providers::PaymentResult learned;
        learned.unknown = true;
        if (res.outcome == net::SendOutcome::response) learned = k->provider->parse_sync(res, *p);
        if (!learned.unknown)
          p = co_await update_payment(p->id, [&](PaymentRecord& rec, Extras&) { return absorb(rec, learned); }, p);
      }
    } else if (n.verification == providers::Verification::verified && n.result.status &&
               !is_pending(*n.result.status)) {
      // No query API, and the gateway signed a final result: its notification is on its way
      // (usually sent just before the browser was redirected). Wait briefly for it.
      asio::steady_timer timer(co_await asio::this_coro::executor);
      for (int i = 0; i < 30 && is_pending(p->status); ++i) {
        timer.expires_after(std::chrono::milliseconds(100));
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        if (auto fresh = co_await store_.get_payment(p->id)) p = std::move(fresh);
      }
    }
  }
  const std::string location = return_location(*p);
  co_return http::redirect_response(http::bhttp::status::see_other,
                                    location.empty() ? config_.server.public_url + "/checkout/" + p->id : location,
                                    ctx.req);
}

asio::awaitable<void> Orchestrator::pace_query(const std::string& connector) {
  auto it = query_buckets_.find(connector);
  if (it == query_buckets_.end()) co_return;
  const auto wait = it->second->reserve(TokenBucket::Clock::now());
  if (wait.count() <= 0) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(wait);
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<std::optional<providers::PaymentResult>> Orchestrator::query_now(const Connector& k,
                                                                                 const PaymentRecord& p) {
  auto wire = k.provider->build_sync(p);
  if (!wire) co_return std::nullopt;
  auto res = co_await exchange_.send(*k.config, providers::Flow::sync, std::move(*wire));
  if (res.outcome != net::SendOutcome::response) co_return std::nullopt;
  auto r = k.provider->parse_sync(res, p);
  if (r.unknown) co_return std::nullopt;
  co_return r;
}

asio::awaitable<PaymentRecord> Orchestrator::cancel_after_window(const Connector& k, PaymentRecord p) {
  // As the gateway's client algorithm says: a definite cancel (or "no such order") settles the
  // payment; any other answer, or none, is for a person. Nothing sent: tried again next time.
  std::optional<providers::PaymentResult> r;
  if (auto wire = k.provider->build_cancel(p)) {
    auto res = co_await exchange_.send(*k.config, providers::Flow::cancel, std::move(*wire));
    if (res.outcome == net::SendOutcome::response) {
      r = k.provider->parse_cancel(res, p);
    } else if (res.outcome == net::SendOutcome::unknown) {
      r.emplace();
      r->unknown = true;
      r->error = res.error;
    }
  }
  if (!r) co_return p;
  auto c = std::move(*r);
  const std::string word = c.unknown                          ? std::string("cancel_no_answer")
                           : !c.status && c.failure            ? c.failure->code
                           : c.provider_status.empty()         ? std::string("cancel_failed")
                                                               : c.provider_status;
  if (c.unknown) c = {};
  if (!c.status && c.review.empty() && c.failure) {
    // Refused: the order may have become final meanwhile (paid, or lapsed at the gateway).
    if (auto learned = co_await query_now(k, p); learned && learned->status && !is_pending(*learned->status))
      c = std::move(*learned);
  }
  if (!c.status && c.review.empty()) c.review = word;  // refused or unanswered
  if (c.status == PaymentStatus::canceled) {
    const bool lapsed = p.expires_at && now_ms() >= p.expires_at;
    if (lapsed) c.status = PaymentStatus::expired;  // its time was over: the gateway's order is closed
    else if (!c.failure)
      c.failure = providers::Failure{"canceled_after_timeout",
                                     "No final answer within the gateway's polling window: cancelled at the gateway.",
                                     word};
  }
  spdlog::info("payment {}: follow-up over, cancelled at the gateway: {}", p.id, word);
  co_return co_await update_payment(p.id, [&](PaymentRecord& rec, Extras& x) {
    absorb(rec, c);
    set_provider_flag(rec, "auto_cancel", word);
    note_review(rec, x, c.review);
    return true;
  });
}

asio::awaitable<void> Orchestrator::reconcile_one(PaymentRecord p) {
  const auto& o = config_.reconciler;
  const auto plan = follow_up_of(p, now_ms());
  if (!plan) {
    // Not due yet on its status's own schedule (creation schedules the earliest of them).
    const auto sched = o.schedule_for(to_string(p.status));
    const auto first_due = p.created_at + sched.first_check.count();
    if (p.check_count == 0 && now_ms() < first_due) {
      co_await store_.schedule_check(p.id, first_due, 0);
      co_return;
    }
  }
  const auto* k = connectors_.find(p.connector);
  std::optional<providers::PaymentResult> learned;
  bool can_query = false;
  if (k && plan && plan->cancel) {
    can_query = true;
    p = co_await cancel_after_window(*k, std::move(p));
  } else if (k && k->provider->capabilities().supports(providers::Flow::sync) && k->provider->build_sync(p)) {
    can_query = true;
    co_await pace_query(k->id());
    // Read again after the wait: a notification may have settled it meanwhile.
    auto fresh = co_await store_.get_payment(p.id);
    if (!fresh || !is_pending(fresh->status)) co_return;
    p = std::move(*fresh);
    if (auto wire = k->provider->build_sync(p)) {
      auto res = co_await exchange_.send(*k->config, providers::Flow::sync, std::move(*wire));
      if (res.outcome == net::SendOutcome::response) {
        auto r = k->provider->parse_sync(res, p);
        if (!r.unknown) learned = std::move(r);
        else spdlog::info("reconcile {}: {}", p.id, r.error);
      } else {
        spdlog::info("reconcile {}: query failed: {}", p.id, res.error);
      }
    }
  }
  const auto now = now_ms();
  const std::int64_t grace = o.expiry_grace.count();
  // Past its time: a final answer from the gateway wins; otherwise it expires. Without a query
  // API, the notification had expires_at plus a grace period to arrive.
  const bool expired_now = p.expires_at && now >= p.expires_at + (can_query ? 0 : grace) && (!can_query || learned);
  if (learned || expired_now) {
    p = co_await update_payment(p.id, [&](PaymentRecord& rec, Extras& x) {
      bool changed = learned ? absorb(rec, *learned) : false;
      if (learned) changed = note_review(rec, x, learned->review) || changed;
      if (expired_now && is_pending(rec.status) && !(learned && learned->status == PaymentStatus::processing)) {
        providers::PaymentResult e;
        e.status = PaymentStatus::expired;
        changed = absorb(rec, e) || changed;
      }
      return changed;
    });
  }
  if (!is_pending(p.status)) co_return;
  const auto sched = o.schedule_for(to_string(p.status));
  const int count = p.check_count + 1;
  std::int64_t next;
  if (auto again = follow_up_of(p, now)) {
    next = std::max(again->next_check_at, now + 100);  // a cancel that could not be sent: soon again
  } else {
    const std::int64_t max_interval = sched.max_interval.count();
    std::int64_t interval = sched.first_check.count();
    for (int i = 0; i < count && interval < max_interval; ++i) interval *= 2;
    interval = std::min(interval, max_interval);
    next = now + interval;
    if (p.expires_at && p.expires_at > now) next = std::min(next, p.expires_at + (can_query ? 1000 : grace));
  }
  co_await store_.schedule_check(p.id, next, count);
}

asio::awaitable<void> Orchestrator::reconcile_connector(const Connector* k) {
  const auto& o = config_.reconciler;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  // The longest one check can take (its wait for the query rate, then one gateway call). A claim
  // lasts at least two of them; a payment of the batch is only started while its lease has time
  // left for it, the rest come back when the lease is over.
  const auto rate = query_buckets_.count(k->id()) ? query_buckets_.at(k->id())->rate() : o.query_rate;
  const std::int64_t item_ms = static_cast<std::int64_t>(1000.0 / rate) + k->config->timeout.count() +
                               k->config->connect_timeout.count() + 1000;
  const std::int64_t lease_ms = std::max<std::int64_t>(o.lease.count(), 2 * item_ms);
  std::int64_t lease_until = 0;
  for (;;) {
    std::vector<PaymentRecord> due;
    try {
      const auto now = now_ms();
      lease_until = now + lease_ms;
      due = co_await store_.claim_due_payments(k->id(), now, o.batch, lease_until);
    } catch (const std::exception& e) {
      spdlog::warn("reconciler {}: store unavailable: {}", k->id(), e.what());
    }
    for (auto& p : due) {
      // A payment not started before its lease could run out is left to be claimed again.
      if (now_ms() + item_ms >= lease_until) break;
      const std::string id = p.id;
      try {
        co_await reconcile_one(std::move(p));
      } catch (const std::exception& e) {
        spdlog::warn("reconciler: {} failed: {}", id, e.what());
      }
    }
    if (due.size() < static_cast<std::size_t>(o.batch)) {
      timer.expires_after(o.tick);
      auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
    }
  }
}

asio::awaitable<void> Orchestrator::reconcile_refunds_loop() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    try {
      co_await reconcile_refunds();
    } catch (const std::exception& e) {
      spdlog::warn("reconciler: refunds: {}", e.what());
    }
    timer.expires_after(config_.reconciler.tick);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
  }
}

asio::awaitable<void> Orchestrator::run_reconciler() {
  auto ex = co_await asio::this_coro::executor;
  for (const auto* k : connectors_.all()) asio::co_spawn(ex, reconcile_connector(k), asio::detached);
  asio::co_spawn(ex, reconcile_refunds_loop(), asio::detached);
}

asio::awaitable<void> Orchestrator::settle_interrupted(std::int64_t created_before, std::int64_t alive_after) {
  auto keys = co_await store_.in_progress_idempotency(created_before, alive_after);
  for (auto& k : keys) {
    if (!is_valid_id(k.resource_id, kPaymentPrefix)) {
      co_await store_.release_idempotency(k.merchant, k.key);
      continue;
    }
    auto p = co_await store_.get_payment(k.resource_id);
    if (!p) {
      co_await store_.release_idempotency(k.merchant, k.key);
      continue;
    }
    auto settled = co_await update_payment(
        p->id,
        [&](PaymentRecord& rec, Extras& x) {
          if (rec.status == PaymentStatus::created) {
            providers::PaymentResult r;
            r.status = PaymentStatus::processing;  // it may have reached the gateway
            absorb(rec, r);
            add_attempt(rec, rec.connector, "unknown", "interrupted by a restart", 0);
          }
          x.idempotency = [k, this](const PaymentRecord& after) -> std::optional<store::IdempotencyRecord> {
            auto done = k;
            done.state = store::IdempotencyState::completed;
            done.response_status = is_pending(after.status) && after.status != PaymentStatus::requires_action ? 202 : 201;
            done.response_body = payment_body(after);
            return done;
          };
          return true;
        },
        p);
    if (auto plan = follow_up_of(settled, now_ms())) co_await store_.schedule_check(settled.id, plan->next_check_at, 0);
    spdlog::info("settled interrupted request for payment {}", p->id);
  }
}

}  // namespace paymux
