#include "service/store/pg/pg_store.hpp"

#include "service/core/clock.hpp"
#include "service/core/ids.hpp"
#include "service/obs/metrics.hpp"
#include "service/store/pg/conn.hpp"
#include "service/store/pg/migrations.hpp"
#include "service/store/rows.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <charconv>

namespace paymux::store::pg {
namespace {

// One row of a result, read the way rows.hpp reads records.
struct RowRef {
  const Result& r;
  int row;
  std::string text(int col) const { return r.text(row, col); }
  std::int64_t int64(int col) const { return r.int64(row, col); }
};

template <class T, class Read>
std::vector<T> all_rows(const Result& r, Read read) {
  std::vector<T> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(read(RowRef{r, i}));
  return out;
}

template <class T, class Read>
std::optional<T> first_row(const Result& r, Read read) {
  if (r.rows() == 0) return std::nullopt;
  return read(RowRef{r, 0});
}

constexpr std::int64_t kMigrationLock = 0x7061796d7578;  // "paymux"

const std::string kPendingStatuses = "('created', 'requires_action', 'processing')";

class PgStore final : public Store {
 public:
  PgStore(PgOptions o, asio::any_io_executor ex)
      : pool_(std::make_shared<Pool>(ex, ConnOptions{o.conninfo, o.connect_timeout, o.query_timeout}, o.pool_size,
                                     o.acquire_timeout)) {}

  asio::awaitable<bool> ping() override {
    try {
      auto c = co_await acquire();
      // Readiness includes writes: a standby (read-only) server is not ready.
      auto r = co_await c->query("SELECT pg_is_in_recovery()", {});
      co_return r.rows() == 1 && r.text(0, 0) == "f";
    } catch (const StoreUnavailable&) {
      co_return false;
    }
  }

  asio::awaitable<Backlog> backlog(std::int64_t now) override {
    auto c = co_await acquire();
    Backlog b;
    auto w = co_await c->query(
        "SELECT state, COUNT(*) FROM webhook_deliveries WHERE state IN ('pending', 'disabled') GROUP BY state", {});
    for (int i = 0; i < w.rows(); ++i) (w.text(i, 0) == "pending" ? b.webhook_pending : b.webhook_disabled) = w.int64(i, 1);
    auto r = co_await c->query("SELECT COUNT(*) FROM payments WHERE status IN " + kPendingStatuses +
                                   " AND next_check_at <= $1",
                               Params().add(now));
    if (r.rows()) b.reconcile_due = r.int64(0, 0);
    co_return b;
  }

  // --- payments -----------------------------------------------------------------------------

  asio::awaitable<CreatePaymentResult> create_payment(PaymentRecord p, std::optional<IdempotencyRecord> key) override {
    if (key) key->owner = instance_id_;
    auto c = co_await acquire();
    CreatePaymentResult result;
    if (auto existing = co_await begin_with_key(*c, key)) {
      result.outcome = CreatePaymentOutcome::idempotency_exists;
      result.existing = std::move(*existing);
      co_return result;
    }
    static const std::string sql = std::string("INSERT INTO payments (") + kPaymentColumns +
                                   ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, "
                                   "$16, $17, $18, $19, $20, $21, $22, $23, $24, $25) ON CONFLICT DO NOTHING";
    Params a;
    a.add(p.id).add(p.merchant).add(p.reference).add(p.connector).add(p.provider).add(p.provider_payment_id);
    a.add(p.amount).add(p.currency).add(p.amount_refunded).add(to_string(p.status)).add(p.payment_method_json);
    a.add(p.request_json).add(p.next_action_json).add(p.failure_json).add(p.risk_json).add(p.attempts_json);
    a.add(p.return_url).add(p.metadata_json).add(p.created_at).add(p.updated_at).add(p.expires_at).add(p.version);
    a.add(p.next_check_at).add(p.check_count).add(p.provider_data_json);
    auto r = co_await c->query(sql, a);
    if (r.affected() == 0) {
      co_await c->exec("ROLLBACK");
      result.outcome = CreatePaymentOutcome::duplicate_reference;
      co_return result;
    }
    co_await commit(*c);
    co_return result;
  }

  asio::awaitable<std::optional<PaymentRecord>> get_payment(std::string id) override {
    auto c = co_await acquire();
    static const std::string sql = std::string("SELECT ") + kPaymentColumns + " FROM payments WHERE id = $1";
    co_return first_row<PaymentRecord>(co_await c->query(sql, Params().add(id)), read_payment<RowRef>);
  }

  asio::awaitable<std::vector<PaymentRecord>> list_payments(PaymentQuery q) override {
    auto c = co_await acquire();
    std::int64_t cursor = INT64_MAX;
    if (!q.starting_after.empty()) {
      auto r = co_await c->query("SELECT seq FROM payments WHERE id = $1 AND merchant = $2",
                                 Params().add(q.starting_after).add(q.merchant));
      if (!r.rows()) co_return std::vector<PaymentRecord>{};
      cursor = r.int64(0, 0);
    }
    static const std::string sql = std::string("SELECT ") + kPaymentColumns +
                                   " FROM payments WHERE merchant = $1 AND seq < $2"
                                   " AND ($3 = '' OR reference = $3) AND ($4 = '' OR status = $4)"
                                   " ORDER BY seq DESC LIMIT $5";
    Params a;
    a.add(q.merchant).add(cursor).add(q.reference).add(q.status ? std::string(to_string(*q.status)) : std::string());
    a.add(q.limit);
    co_return all_rows<PaymentRecord>(co_await c->query(sql, a), read_payment<RowRef>);
  }

  asio::awaitable<bool> apply_payment_change(PaymentChange ch) override {
    auto c = co_await acquire();
    const auto& p = ch.payment;
    co_await c->exec("BEGIN");
    Params a;
    a.add(p.id).add(ch.expected_version).add(p.provider_payment_id).add(p.amount_refunded).add(to_string(p.status));
    a.add(p.next_action_json).add(p.failure_json).add(p.risk_json).add(p.attempts_json).add(p.updated_at);
    a.add(p.expires_at).add(p.connector).add(p.provider).add(p.provider_data_json);
    auto u = co_await c->query(
        "UPDATE payments SET provider_payment_id = $3, amount_refunded = $4, status = $5, next_action = $6, "
        "failure = $7, risk = $8, attempts = $9, updated_at = $10, expires_at = $11, connector = $12, "
        "provider = $13, provider_data = $14, version = version + 1 WHERE id = $1 AND version = $2",
        a);
    if (u.affected() == 0) {
      co_await c->exec("ROLLBACK");
      co_return false;
    }
    for (const auto& e : ch.events) co_await insert_event(*c, e, p.id);
    if (ch.refund) co_await upsert_refund(*c, *ch.refund);
    if (ch.idempotency_done) co_await update_idempotency(*c, *ch.idempotency_done);
    if (ch.notification) co_await insert_notification(*c, *ch.notification);
    co_await commit(*c);
    co_return true;
  }

  asio::awaitable<std::vector<PaymentRecord>> pending_payments(std::int64_t updated_before, int limit) override {
    auto c = co_await acquire();
    static const std::string sql = std::string("SELECT ") + kPaymentColumns + " FROM payments WHERE status IN " +
                                   kPendingStatuses + " AND updated_at < $1 ORDER BY updated_at LIMIT $2";
    co_return all_rows<PaymentRecord>(co_await c->query(sql, Params().add(updated_before).add(limit)),
                                      read_payment<RowRef>);
  }

  asio::awaitable<std::vector<PaymentRecord>> claim_due_payments(std::string connector, std::int64_t now, int limit,
                                                                 std::int64_t lease_until) override {
    auto c = co_await acquire();
    // Rows another instance is claiming right now are skipped, not waited for; the lease is the
    // new next_check_at, so they are not claimed again until it ends.
    static const std::string sql =
        std::string("WITH due AS (SELECT id, next_check_at AS due_at FROM payments WHERE status IN ") +
        kPendingStatuses +
        " AND connector = $2 AND next_check_at <= $1 ORDER BY next_check_at LIMIT $3 FOR UPDATE SKIP LOCKED) "
        "UPDATE payments p SET next_check_at = $4 FROM due WHERE p.id = due.id RETURNING " +
        prefixed(kPaymentColumns, "p.") + ", due.due_at";
    auto r = co_await c->query(sql, Params().add(now).add(connector).add(limit).add(lease_until));
    std::vector<std::pair<std::int64_t, PaymentRecord>> rows;
    for (int i = 0; i < r.rows(); ++i) rows.emplace_back(r.int64(i, 25), read_payment(RowRef{r, i}));
    std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<PaymentRecord> out;
    for (auto& [due, p] : rows) out.push_back(std::move(p));
    co_return out;
  }

  asio::awaitable<void> schedule_check(std::string id, std::int64_t next_check_at, int check_count) override {
    auto c = co_await acquire();
    co_await c->query("UPDATE payments SET next_check_at = $2, check_count = $3 WHERE id = $1",
                      Params().add(id).add(next_check_at).add(check_count));
  }

  // --- refunds ------------------------------------------------------------------------------

  asio::awaitable<CreateRefundResult> create_refund(RefundRecord rf, std::optional<IdempotencyRecord> key) override {
    if (key) key->owner = instance_id_;
    auto c = co_await acquire();
    CreateRefundResult result;
    if (auto existing = co_await begin_with_key(*c, key)) {
      result.outcome = CreateRefundOutcome::idempotency_exists;
      result.existing = std::move(*existing);
      co_return result;
    }
    // The payment row is locked first: two refunds of one payment are checked one after the other.
    auto pay = co_await c->query("SELECT amount, status FROM payments WHERE id = $1 FOR UPDATE",
                                 Params().add(rf.payment_id));
    if (!pay.rows()) throw std::runtime_error("refund for a missing payment");
    auto reserved = co_await c->query(
        "SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE payment_id = $1 AND status != 'failed'",
        Params().add(rf.payment_id));
    const auto amount = pay.int64(0, 0);
    const auto status = payment_status_from(pay.text(0, 1)).value_or(PaymentStatus::processing);
    const auto held = reserved.int64(0, 0);
    if (!is_refundable(status) || held + rf.amount > amount) {
      co_await c->exec("ROLLBACK");
      result.outcome = is_refundable(status) ? CreateRefundOutcome::too_large : CreateRefundOutcome::not_refundable;
      if (result.outcome == CreateRefundOutcome::too_large) result.refundable = amount - held;
      co_return result;
    }
    co_await upsert_refund(*c, rf);
    co_await commit(*c);
    co_return result;
  }

  asio::awaitable<std::optional<RefundRecord>> get_refund(std::string id) override {
    auto c = co_await acquire();
    static const std::string sql = std::string("SELECT ") + kRefundColumns + " FROM refunds WHERE id = $1";
    co_return first_row<RefundRecord>(co_await c->query(sql, Params().add(id)), read_refund<RowRef>);
  }

  asio::awaitable<std::vector<RefundRecord>> list_refunds(std::string payment_id) override {
    auto c = co_await acquire();
    static const std::string sql =
        std::string("SELECT ") + kRefundColumns + " FROM refunds WHERE payment_id = $1 ORDER BY seq DESC";
    co_return all_rows<RefundRecord>(co_await c->query(sql, Params().add(payment_id)), read_refund<RowRef>);
  }

  asio::awaitable<std::vector<RefundRecord>> pending_refunds(std::vector<std::string> connectors,
                                                             std::int64_t updated_before, int limit) override {
    auto c = co_await acquire();
    static const std::string sql = std::string("SELECT ") + prefixed(kRefundColumns, "r.") +
                                   " FROM refunds r JOIN payments p ON p.id = r.payment_id "
                                   "WHERE r.status = 'pending' AND r.updated_at < $1 AND p.connector = ANY($2::text[]) "
                                   "ORDER BY r.updated_at LIMIT $3";
    co_return all_rows<RefundRecord>(
        co_await c->query(sql, Params().add(updated_before).add(text_array(connectors)).add(limit)),
        read_refund<RowRef>);
  }

  // --- events -------------------------------------------------------------------------------

  asio::awaitable<std::optional<EventRecord>> get_event(std::string id) override {
    auto c = co_await acquire();
    co_return first_row<EventRecord>(
        co_await c->query("SELECT id, merchant, type, object_id, payload, created_at FROM events WHERE id = $1",
                          Params().add(id)),
        read_event<RowRef>);
  }

  asio::awaitable<std::vector<EventRecord>> list_events(EventQuery q) override {
    auto c = co_await acquire();
    std::int64_t cursor = INT64_MAX;
    if (!q.starting_after.empty()) {
      auto r = co_await c->query("SELECT seq FROM events WHERE id = $1 AND merchant = $2",
                                 Params().add(q.starting_after).add(q.merchant));
      if (!r.rows()) co_return std::vector<EventRecord>{};
      cursor = r.int64(0, 0);
    }
    auto r = co_await c->query(
        "SELECT id, merchant, type, object_id, payload, created_at FROM events WHERE merchant = $1 AND seq < $2 "
        "AND ($3 = '' OR type = $3) AND ($4 = '' OR object_id = $4) ORDER BY seq DESC LIMIT $5",
        Params().add(q.merchant).add(cursor).add(q.type).add(q.object_id).add(q.limit));
    co_return all_rows<EventRecord>(r, read_event<RowRef>);
  }

  // --- idempotency keys ----------------------------------------------------------------------

  asio::awaitable<BeginResult> begin_idempotency(IdempotencyRecord r) override {
    r.owner = instance_id_;
    auto c = co_await acquire();
    BeginResult result;
    if (!co_await insert_idempotency(*c, r)) {
      result.outcome = BeginOutcome::exists;
      result.existing = co_await existing_idempotency(*c, r.merchant, r.key);
    }
    co_return result;
  }

  asio::awaitable<void> complete_idempotency(IdempotencyRecord r) override {
    auto c = co_await acquire();
    co_await update_idempotency(*c, r);
  }

  asio::awaitable<void> release_idempotency(std::string merchant, std::string key) override {
    auto c = co_await acquire();
    co_await c->query("DELETE FROM idempotency_keys WHERE merchant = $1 AND key = $2 AND state = 'in_progress'",
                      Params().add(merchant).add(key));
  }

  asio::awaitable<std::optional<IdempotencyRecord>> get_idempotency(std::string merchant, std::string key) override {
    auto c = co_await acquire();
    co_return co_await select_idempotency(*c, merchant, key);
  }

  asio::awaitable<std::int64_t> prune_idempotency(std::int64_t created_before) override {
    auto c = co_await acquire();
    auto r = co_await c->query("DELETE FROM idempotency_keys WHERE created_at < $1 AND state = 'completed'",
                               Params().add(created_before));
    co_return r.affected();
  }

  asio::awaitable<std::vector<IdempotencyRecord>> in_progress_idempotency(std::int64_t created_before,
                                                                          std::int64_t alive_after) override {
    auto c = co_await acquire();
    static const std::string sql = std::string("SELECT ") + kIdempotencyColumns +
                                   " FROM idempotency_keys k WHERE state = 'in_progress' AND created_at < $1"
                                   " AND owner != $3 AND NOT EXISTS (SELECT 1 FROM instances i"
                                   " WHERE i.id = k.owner AND i.heartbeat_at >= $2)";
    co_return all_rows<IdempotencyRecord>(
        co_await c->query(sql, Params().add(created_before).add(alive_after).add(instance_id_)),
        read_idempotency<RowRef>);
  }

  const std::string& instance_id() const override { return instance_id_; }

  asio::awaitable<void> heartbeat(std::int64_t now) override {
    auto c = co_await acquire();
    co_await c->query(
        "INSERT INTO instances (id, started_at, heartbeat_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        Params().add(instance_id_).add(started_at_).add(now));
    co_await c->query("DELETE FROM instances WHERE heartbeat_at < $1", Params().add(now - 86'400'000));
  }

  // --- merchant webhooks ---------------------------------------------------------------------

  asio::awaitable<std::vector<WebhookEndpointRecord>> sync_webhook_endpoints(std::vector<WebhookEndpointRecord> configured,
                                                                             std::int64_t now) override {
    auto c = co_await acquire();
    co_await c->exec("BEGIN");
    std::vector<std::string> merchants;
    for (const auto& e : configured) {
      merchants.push_back(e.merchant);
      // A new URL is a new endpoint: enabled, and what a 410 held back is queued again.
      co_await c->query(
          "UPDATE webhook_deliveries SET state = 'pending', failures = 0, next_attempt_at = $2, updated_at = $2 "
          "WHERE merchant = $1 AND state = 'disabled' AND EXISTS (SELECT 1 FROM webhook_endpoints "
          "WHERE merchant = $1 AND url != $3)",
          Params().add(e.merchant).add(now).add(e.url));
      co_await c->query(
          "INSERT INTO webhook_endpoints AS w (merchant, url, disabled_at, disabled_reason, updated_at) "
          "VALUES ($1, $2, 0, '', $3) ON CONFLICT (merchant) DO UPDATE SET url = excluded.url, "
          "disabled_at = CASE WHEN w.url = excluded.url THEN w.disabled_at ELSE 0 END, "
          "disabled_reason = CASE WHEN w.url = excluded.url THEN w.disabled_reason ELSE '' END, "
          "updated_at = CASE WHEN w.url = excluded.url THEN w.updated_at ELSE excluded.updated_at END",
          Params().add(e.merchant).add(e.url).add(now));
    }
    const auto list = text_array(merchants);
    co_await c->query(
        "UPDATE webhook_deliveries SET state = 'skipped', lease_until = 0 WHERE state IN ('pending', 'disabled') "
        "AND NOT (merchant = ANY($1::text[]))",
        Params().add(list));
    co_await c->query("DELETE FROM webhook_endpoints WHERE NOT (merchant = ANY($1::text[]))", Params().add(list));
    auto r = co_await c->query(
        "SELECT merchant, url, disabled_at, disabled_reason, updated_at FROM webhook_endpoints ORDER BY merchant", {});
    co_await commit(*c);
    co_return all_rows<WebhookEndpointRecord>(r, read_endpoint<RowRef>);
  }

  asio::awaitable<std::optional<WebhookEndpointRecord>> get_webhook_endpoint(std::string merchant) override {
    auto c = co_await acquire();
    co_return first_row<WebhookEndpointRecord>(
        co_await c->query("SELECT merchant, url, disabled_at, disabled_reason, updated_at FROM webhook_endpoints "
                          "WHERE merchant = $1",
                          Params().add(merchant)),
        read_endpoint<RowRef>);
  }

  asio::awaitable<bool> enable_webhook_endpoint(std::string merchant, std::int64_t now) override {
    auto c = co_await acquire();
    co_await c->exec("BEGIN");
    auto u = co_await c->query(
        "UPDATE webhook_endpoints SET disabled_at = 0, disabled_reason = '', updated_at = $2 WHERE merchant = $1",
        Params().add(merchant).add(now));
    if (u.affected() == 0) {
      co_await c->exec("ROLLBACK");
      co_return false;
    }
    co_await c->query(
        "UPDATE webhook_deliveries SET state = 'pending', failures = 0, next_attempt_at = $2, updated_at = $2 "
        "WHERE merchant = $1 AND state = 'disabled'",
        Params().add(merchant).add(now));
    co_await commit(*c);
    co_return true;
  }

  asio::awaitable<std::vector<ClaimedDelivery>> claim_deliveries(std::string merchant, std::int64_t now, int limit,
                                                                 std::int64_t lease_until) override {
    auto c = co_await acquire();
    std::vector<ClaimedDelivery> out;
    auto e = co_await c->query("SELECT disabled_at FROM webhook_endpoints WHERE merchant = $1", Params().add(merchant));
    if (!e.rows() || e.int64(0, 0) != 0) co_return out;
    // A row being claimed by another instance is skipped; an earlier pending row of the same
    // payment (claimed or not) holds the later ones back, so a payment's events go out in order.
    static const std::string sql =
        "WITH due AS (SELECT d.event_id FROM webhook_deliveries d WHERE d.merchant = $1 AND d.state = 'pending' "
        "AND d.next_attempt_at <= $2 AND d.lease_until <= $2 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p "
        "WHERE p.order_key = d.order_key AND p.state = 'pending' AND p.seq < d.seq) "
        "ORDER BY d.next_attempt_at, d.seq LIMIT $3 FOR UPDATE OF d SKIP LOCKED) "
        "UPDATE webhook_deliveries d SET lease_until = $4 FROM due, events e WHERE d.event_id = due.event_id "
        "AND e.id = d.event_id RETURNING " +
        std::string(kDeliveryColumnsD) + ", e.payload, d.seq";
    auto r = co_await c->query(sql, Params().add(merchant).add(now).add(limit).add(lease_until));
    std::vector<std::tuple<std::int64_t, std::int64_t, ClaimedDelivery>> rows;
    for (int i = 0; i < r.rows(); ++i) {
      ClaimedDelivery d;
      d.delivery = read_delivery(RowRef{r, i});
      d.payload_json = r.text(i, kDeliveryColumnCount);
      rows.emplace_back(d.delivery.next_attempt_at, r.int64(i, kDeliveryColumnCount + 1), std::move(d));
    }
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      return std::tie(std::get<0>(a), std::get<1>(a)) < std::tie(std::get<0>(b), std::get<1>(b));
    });
    for (auto& row : rows) out.push_back(std::move(std::get<2>(row)));
    co_return out;
  }

  asio::awaitable<void> record_deliveries(std::vector<DeliveryResult> results) override {
    auto c = co_await acquire();
    co_await c->exec("BEGIN");
    for (const auto& r : results) {
      const auto& a = r.attempt;
      co_await c->query(
          "INSERT INTO webhook_attempts (event_id, attempted_at, http_status, latency_ms, error, outcome) "
          "VALUES ($1, $2, $3, $4, $5, $6)",
          Params().add(a.event_id).add(a.attempted_at).add(a.http_status).add(a.latency_ms).add(a.error).add(a.outcome));
      auto u = co_await c->query(
          "UPDATE webhook_deliveries SET state = $3, attempts = attempts + 1, failures = $4, next_attempt_at = $5, "
          "lease_until = 0, last_status = $6, last_error = $7, updated_at = $8 "
          "WHERE event_id = $1 AND generation = $2 AND state = 'pending'",
          Params().add(a.event_id).add(r.generation).add(to_string(r.state)).add(r.failures).add(r.next_attempt_at)
              .add(a.http_status).add(a.error).add(a.attempted_at));
      if (u.affected() == 0) {
        // Queued again (redelivery) or settled meanwhile: keep that, count the attempt.
        co_await c->query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, lease_until = 0, last_status = $2, "
            "last_error = $3, updated_at = $4 WHERE event_id = $1",
            Params().add(a.event_id).add(a.http_status).add(a.error).add(a.attempted_at));
      }
      if (r.disable_endpoint)
        co_await c->query(
            "UPDATE webhook_endpoints SET disabled_at = $2, disabled_reason = $3, updated_at = $2 "
            "WHERE merchant = $1 AND disabled_at = 0",
            Params().add(r.merchant).add(a.attempted_at).add("410 Gone from the endpoint (event " + a.event_id + ")"));
    }
    co_await commit(*c);
  }

  asio::awaitable<std::optional<DeliveryRecord>> get_delivery(std::string event_id) override {
    auto c = co_await acquire();
    static const std::string sql =
        std::string("SELECT ") + kDeliveryColumnsD + " FROM webhook_deliveries d WHERE d.event_id = $1";
    co_return first_row<DeliveryRecord>(co_await c->query(sql, Params().add(event_id)), read_delivery<RowRef>);
  }

  asio::awaitable<std::vector<DeliveryAttemptRecord>> list_delivery_attempts(std::string event_id, int limit) override {
    auto c = co_await acquire();
    auto r = co_await c->query(
        "SELECT event_id, attempted_at, http_status, latency_ms, error, outcome FROM webhook_attempts "
        "WHERE event_id = $1 ORDER BY seq LIMIT $2",
        Params().add(event_id).add(limit));
    std::vector<DeliveryAttemptRecord> out;
    for (int i = 0; i < r.rows(); ++i) {
      DeliveryAttemptRecord a;
      a.event_id = r.text(i, 0);
      a.attempted_at = r.int64(i, 1);
      a.http_status = static_cast<unsigned>(r.int64(i, 2));
      a.latency_ms = r.int64(i, 3);
      a.error = r.text(i, 4);
      a.outcome = r.text(i, 5);
      out.push_back(std::move(a));
    }
    co_return out;
  }

  asio::awaitable<bool> redeliver(std::string event_id, std::int64_t now) override {
    auto c = co_await acquire();
    // An event without a row (written while its merchant had no URL) gets one.
    auto r = co_await c->query(
        "INSERT INTO webhook_deliveries AS w (event_id, merchant, order_key, state, next_attempt_at, created_at, "
        "updated_at) SELECT id, merchant, object_id, 'pending', $2::bigint, $2::bigint, $2::bigint FROM events "
        "WHERE id = $1 ON CONFLICT (event_id) DO UPDATE SET state = 'pending', failures = 0, "
        "generation = w.generation + 1, next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at",
        Params().add(event_id).add(now));
    co_return r.affected() > 0;
  }

  // --- issued credentials, notifications ---------------------------------------------------

  asio::awaitable<std::optional<ConnectorCredentialsRecord>> get_connector_credentials(std::string connector) override {
    auto c = co_await acquire();
    auto r = co_await c->query(
        "SELECT connector, data, version, updated_at FROM connector_credentials WHERE connector = $1",
        Params().add(connector));
    if (!r.rows()) co_return std::nullopt;
    co_return ConnectorCredentialsRecord{r.text(0, 0), r.text(0, 1), r.int64(0, 2), r.int64(0, 3)};
  }

  asio::awaitable<bool> put_connector_credentials(ConnectorCredentialsRecord r, std::int64_t expected_version) override {
    auto c = co_await acquire();
    Result u;
    if (expected_version == 0)
      u = co_await c->query(
          "INSERT INTO connector_credentials (connector, data, version, updated_at) VALUES ($1, $2, 1, $3) "
          "ON CONFLICT DO NOTHING",
          Params().add(r.connector).add(r.data_json).add(r.updated_at));
    else
      u = co_await c->query(
          "UPDATE connector_credentials SET data = $2, version = version + 1, updated_at = $3 "
          "WHERE connector = $1 AND version = $4",
          Params().add(r.connector).add(r.data_json).add(r.updated_at).add(expected_version));
    co_return u.affected() == 1;
  }

  asio::awaitable<void> record_notification(NotificationRecord n) override {
    auto c = co_await acquire();
    co_await insert_notification(*c, n);
  }

 private:
  static std::string prefixed(const std::string& columns, const std::string& prefix) {
    std::string out;
    std::size_t start = 0;
    while (start <= columns.size()) {
      auto end = columns.find(',', start);
      if (end == std::string::npos) end = columns.size();
      auto name = columns.substr(start, end - start);
      name.erase(0, name.find_first_not_of(' '));
      if (!out.empty()) out += ", ";
      out += prefix + name;
      start = end + 1;
    }
    return out;
  }

  // A text[] literal: {"a","b"} with quotes and backslashes escaped.
  static std::string text_array(const std::vector<std::string>& items) {
    std::string out = "{";
    for (const auto& s : items) {
      if (out.size() > 1) out += ',';
      out += '"';
      for (char ch : s) {
        if (ch == '"' || ch == '\\') out += '\\';
        out += ch;
      }
      out += '"';
    }
    return out + "}";
  }

  asio::awaitable<void> commit(Conn& c) {
    const auto started = std::chrono::steady_clock::now();
    co_await c.exec("COMMIT");
    obs::metrics::observe_store_commit(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), 1);
  }

  // The event and its webhook delivery row, in the caller's transaction.
  static asio::awaitable<void> insert_event(Conn& c, const EventRecord& e, const std::string& order_key) {
    co_await c.query(
        "INSERT INTO events (id, merchant, type, object_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        Params().add(e.id).add(e.merchant).add(e.type).add(e.object_id).add(e.payload_json).add(e.created_at));
    co_await c.query(
        "INSERT INTO webhook_deliveries (event_id, merchant, order_key, state, next_attempt_at, created_at, "
        "updated_at) SELECT $1, $2, $3, CASE WHEN EXISTS (SELECT 1 FROM webhook_endpoints WHERE merchant = $2) "
        "THEN 'pending' ELSE 'skipped' END, $4::bigint, $4::bigint, $4::bigint",
        Params().add(e.id).add(e.merchant).add(order_key.empty() ? e.object_id : order_key).add(e.created_at));
  }

  static asio::awaitable<void> upsert_refund(Conn& c, const RefundRecord& r) {
    co_await c.query(
        "INSERT INTO refunds (id, payment_id, merchant, amount, currency, status, provider_refund_id, failure, "
        "reason, reference, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, provider_refund_id = excluded.provider_refund_id, "
        "failure = excluded.failure, updated_at = excluded.updated_at",
        Params().add(r.id).add(r.payment_id).add(r.merchant).add(r.amount).add(r.currency).add(to_string(r.status))
            .add(r.provider_refund_id).add(r.failure_json).add(r.reason).add(r.reference).add(r.created_at)
            .add(r.updated_at));
  }

  // false when the key exists already (a concurrent insert of the same key waits for the other
  // transaction, then finds it).
  static asio::awaitable<bool> insert_idempotency(Conn& c, const IdempotencyRecord& r) {
    auto res = co_await c.query(
        "INSERT INTO idempotency_keys (merchant, key, endpoint, fingerprint, state, response_status, response_body, "
        "resource_id, created_at, owner) VALUES ($1, $2, $3, $4, 'in_progress', 0, '', $5, $6, $7) "
        "ON CONFLICT (merchant, key) DO NOTHING",
        Params().add(r.merchant).add(r.key).add(r.endpoint).add(r.fingerprint).add(r.resource_id).add(r.created_at)
            .add(r.owner));
    co_return res.affected() == 1;
  }

  static asio::awaitable<void> update_idempotency(Conn& c, const IdempotencyRecord& r) {
    co_await c.query(
        "UPDATE idempotency_keys SET state = 'completed', response_status = $3, response_body = $4, "
        "resource_id = $5 WHERE merchant = $1 AND key = $2",
        Params().add(r.merchant).add(r.key).add(r.response_status).add(r.response_body).add(r.resource_id));
  }

  static asio::awaitable<std::optional<IdempotencyRecord>> select_idempotency(Conn& c, const std::string& merchant,
                                                                             const std::string& key) {
    static const std::string sql =
        std::string("SELECT ") + kIdempotencyColumns + " FROM idempotency_keys WHERE merchant = $1 AND key = $2";
    co_return first_row<IdempotencyRecord>(co_await c.query(sql, Params().add(merchant).add(key)),
                                           read_idempotency<RowRef>);
  }

  // Opens a transaction that takes the key (when there is one). When the key exists already the
  // transaction is rolled back and the existing key returned.
  static asio::awaitable<std::optional<IdempotencyRecord>> begin_with_key(Conn& c,
                                                                          const std::optional<IdempotencyRecord>& key) {
    co_await c.exec("BEGIN");
    std::optional<IdempotencyRecord> existing;
    if (key) {
      const bool taken = co_await insert_idempotency(c, *key);
      if (!taken) {
        co_await c.exec("ROLLBACK");
        existing = co_await existing_idempotency(c, key->merchant, key->key);
      }
    }
    co_return existing;
  }

  // The key another request holds; it can be gone again (released) by the time it is read.
  static asio::awaitable<IdempotencyRecord> existing_idempotency(Conn& c, const std::string& merchant,
                                                                 const std::string& key) {
    auto r = co_await select_idempotency(c, merchant, key);
    if (!r) throw StoreUnavailable("idempotency key released while being read; try again");
    co_return *r;
  }

  static asio::awaitable<void> insert_notification(Conn& c, const NotificationRecord& n) {
    co_await c.query(
        "INSERT INTO notifications (id, connector, received_at, method, raw, verification, payment_id, outcome, "
        "dedup_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        Params().add(n.id).add(n.connector).add(n.received_at).add(n.method).add(n.raw).add(n.verification)
            .add(n.payment_id).add(n.outcome).add(n.dedup_key));
  }

  // A pooled connection, with the schema in place.
  asio::awaitable<Pool::Lease> acquire() {
    auto lease = co_await pool_->acquire();
    if (!migrated_.load()) co_await migrate(*lease);
    co_return lease;
  }

  // Instances starting together queue on the advisory lock; each applies what is still missing.
  asio::awaitable<void> migrate(Conn& c) {
    co_await c.exec("SELECT pg_advisory_lock(" + std::to_string(kMigrationLock) + ")");
    std::exception_ptr failure;
    try {
      co_await c.exec(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
      auto r = co_await c.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {});
      const auto current = r.int64(0, 0);
      for (const auto& m : kMigrations) {
        if (m.version <= current) continue;
        co_await c.exec(std::string("BEGIN;\n") + m.sql +
                        "\nINSERT INTO schema_migrations (version, applied_at) VALUES (" + std::to_string(m.version) +
                        ", EXTRACT(EPOCH FROM now())::bigint);\nCOMMIT;");
        spdlog::info("store migrated to version {}", m.version);
      }
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure && c.in_transaction()) co_await c.exec("ROLLBACK");
    co_await c.exec("SELECT pg_advisory_unlock(" + std::to_string(kMigrationLock) + ")");
    if (failure) std::rethrow_exception(failure);
    migrated_ = true;
  }

  std::shared_ptr<Pool> pool_;
  std::atomic<bool> migrated_{false};
  const std::string instance_id_ = new_id("ins_");
  const std::int64_t started_at_ = now_ms();
};

std::int64_t parse_ms(const std::string& name, std::string_view v) {
  std::int64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || out <= 0)
    throw std::invalid_argument("storage.url: " + name + " must be a positive integer");
  return out;
}

}  // namespace

PgOptions pg_options_from_url(const std::string& url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) throw std::invalid_argument("storage.url: not a valid postgresql:// URL");
  boost::urls::url u = *parsed;
  PgOptions o;
  for (const char* name : {"pool_size", "connect_timeout_ms", "query_timeout_ms"}) {
    auto it = u.params().find(name);
    if (it == u.params().end()) continue;
    const auto v = parse_ms(name, (*it).value);
    if (std::string_view(name) == "pool_size") o.pool_size = static_cast<std::size_t>(v);
    if (std::string_view(name) == "connect_timeout_ms") o.connect_timeout = std::chrono::milliseconds(v);
    if (std::string_view(name) == "query_timeout_ms") o.query_timeout = std::chrono::milliseconds(v);
    u.params().erase(it);
  }
  if (u.params().empty()) u.remove_query();
  o.conninfo = std::string(u.buffer());
  return o;
}

std::unique_ptr<Store> open_pg_store(PgOptions options, asio::any_io_executor ex) {
  return std::make_unique<PgStore>(std::move(options), std::move(ex));
}

}  // namespace paymux::store::pg
