#pragma once
// The asynchronous store. Every call is awaited from a coroutine. Writes and scans run off the event
// loop (on the SQLite store's own threads, or as non-blocking queries for a networked database); the
// SQLite store answers point lookups by key on the caller's thread from read-only WAL connections,
// which never wait for the writer (see sqlite_store.hpp). A status change
// and the events it causes are written in one transaction; updates are conditional on the version
// the caller read, so two writers never overwrite each other.
#include "service/http/unavailable.hpp"
#include "service/store/records.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace paymux::store {

namespace asio = boost::asio;

// Thrown when the store cannot do its work (I/O error, database gone). Callers answer "not
// received" to gateways and 503/500 to merchants; nothing is half-applied.
struct StoreUnavailable : http::Unavailable {
  using http::Unavailable::Unavailable;
};

// Work waiting, for the operations metrics.
struct Backlog {
  std::int64_t webhook_pending = 0;   // outbox rows waiting to be sent
  std::int64_t webhook_disabled = 0;  // outbox rows held for a disabled endpoint
  std::int64_t reconcile_due = 0;     // pending payments whose check is due
};

struct IdempotencyBegin {
  IdempotencyRecord record;  // state in_progress
};

enum class BeginOutcome { started, exists };
struct BeginResult {
  BeginOutcome outcome = BeginOutcome::started;
  IdempotencyRecord existing;  // when exists
};

enum class CreatePaymentOutcome { created, idempotency_exists, duplicate_reference };
struct CreatePaymentResult {
  CreatePaymentOutcome outcome = CreatePaymentOutcome::created;
  IdempotencyRecord existing;  // when idempotency_exists
};

// One atomic change: the payment row moves from `expected_version` to `payment` (version + 1),
// with its events, an optional refund row written, an idempotency key completed and the
// notification that caused it recorded. applied=false when the version moved meanwhile.
struct PaymentChange {
  PaymentRecord payment;
  std::int64_t expected_version = 0;
  std::vector<EventRecord> events;
  std::optional<RefundRecord> refund;  // inserted or replaced
  std::optional<IdempotencyRecord> idempotency_done;
  std::optional<NotificationRecord> notification;
};

enum class CreateRefundOutcome { created, too_large, not_refundable, idempotency_exists };
struct CreateRefundResult {
  CreateRefundOutcome outcome = CreateRefundOutcome::created;
  IdempotencyRecord existing;
  std::int64_t refundable = 0;  // what is left to refund, when too_large
};

class Store {
 public:
  virtual ~Store() = default;

  // Readiness: migrations done and the database answers, writes included.
  virtual asio::awaitable<bool> ping() = 0;
  virtual asio::awaitable<Backlog> backlog(std::int64_t now) = 0;

  // Payments
  virtual asio::awaitable<CreatePaymentResult> create_payment(PaymentRecord p,
                                                              std::optional<IdempotencyRecord> key) = 0;
  virtual asio::awaitable<std::optional<PaymentRecord>> get_payment(std::string id) = 0;
  virtual asio::awaitable<std::vector<PaymentRecord>> list_payments(PaymentQuery q) = 0;
  virtual asio::awaitable<bool> apply_payment_change(PaymentChange change) = 0;
  // Payments that have not reached a definite end (created/requires_action/processing).
  virtual asio::awaitable<std::vector<PaymentRecord>> pending_payments(std::int64_t updated_before, int limit) = 0;
  // Claims up to `limit` pending payments of the connector whose next reconciliation check is due,
  // oldest due first: their next check moves to `lease_until`, so that no other claim (another
  // reconciler, another instance) takes them before the claimant schedules the real next check.
  // A claimant that stops meanwhile leaves them to be claimed again once the lease is over.
  virtual asio::awaitable<std::vector<PaymentRecord>> claim_due_payments(std::string connector, std::int64_t now,
                                                                         int limit, std::int64_t lease_until) = 0;
  // Sets when a payment is next checked (not a change of the payment: no version bump, no event).
  virtual asio::awaitable<void> schedule_check(std::string id, std::int64_t next_check_at, int check_count) = 0;

  // Refunds: the refund row is inserted only while amount_refunded + pending + amount <= amount.
  virtual asio::awaitable<CreateRefundResult> create_refund(RefundRecord r, std::optional<IdempotencyRecord> key) = 0;
  virtual asio::awaitable<std::optional<RefundRecord>> get_refund(std::string id) = 0;
  virtual asio::awaitable<std::vector<RefundRecord>> list_refunds(std::string payment_id) = 0;
  // Refunds still pending (outcome unknown) of payments on the given connectors, last changed before
  // `updated_before`, oldest first.
  virtual asio::awaitable<std::vector<RefundRecord>> pending_refunds(std::vector<std::string> connectors,
                                                                     std::int64_t updated_before, int limit) = 0;

  // Events
  virtual asio::awaitable<std::optional<EventRecord>> get_event(std::string id) = 0;
  virtual asio::awaitable<std::vector<EventRecord>> list_events(EventQuery q) = 0;

  // Idempotency keys
  virtual asio::awaitable<BeginResult> begin_idempotency(IdempotencyRecord r) = 0;
  virtual asio::awaitable<void> complete_idempotency(IdempotencyRecord r) = 0;
  virtual asio::awaitable<void> release_idempotency(std::string merchant, std::string key) = 0;
  virtual asio::awaitable<std::optional<IdempotencyRecord>> get_idempotency(std::string merchant,
                                                                            std::string key) = 0;
  // Deletes completed keys created before the cutoff; returns how many.
  virtual asio::awaitable<std::int64_t> prune_idempotency(std::int64_t created_before) = 0;
  // Keys still in progress, taken before `created_before` by another process that has not sent a
  // heartbeat since `alive_after`: left by a process that died. Alone on its store, a process
  // passes alive_after = INT64_MAX at start-up (every other process is gone).
  virtual asio::awaitable<std::vector<IdempotencyRecord>> in_progress_idempotency(std::int64_t created_before,
                                                                                  std::int64_t alive_after) = 0;
  // This process's identity in the store (the owner of the keys it takes), and its sign of life.
  virtual const std::string& instance_id() const = 0;
  virtual asio::awaitable<void> heartbeat(std::int64_t now) = 0;

  // Merchant webhooks (the outbox). At start-up the configured endpoints are written: a merchant
  // whose URL changed is enabled again (its `disabled` rows pending again), a merchant without a
  // URL any more has its pending rows skipped.
  virtual asio::awaitable<std::vector<WebhookEndpointRecord>> sync_webhook_endpoints(
      std::vector<WebhookEndpointRecord> configured, std::int64_t now) = 0;
  virtual asio::awaitable<std::optional<WebhookEndpointRecord>> get_webhook_endpoint(std::string merchant) = 0;
  // Enables a disabled endpoint and queues its `disabled` rows again; false when none is configured.
  virtual asio::awaitable<bool> enable_webhook_endpoint(std::string merchant, std::int64_t now) = 0;
  // Leases up to `limit` due pending rows of the merchant until `lease_until`, oldest due first,
  // skipping rows whose payment has an earlier pending row. Nothing while its endpoint is disabled.
  virtual asio::awaitable<std::vector<ClaimedDelivery>> claim_deliveries(std::string merchant, std::int64_t now,
                                                                          int limit, std::int64_t lease_until) = 0;
  // Records each attempt and applies its result (releasing the lease), all in one write.
  virtual asio::awaitable<void> record_deliveries(std::vector<DeliveryResult> results) = 0;
  virtual asio::awaitable<std::optional<DeliveryRecord>> get_delivery(std::string event_id) = 0;
  // Oldest first, at most `limit`.
  virtual asio::awaitable<std::vector<DeliveryAttemptRecord>> list_delivery_attempts(std::string event_id,
                                                                                      int limit) = 0;
  // Queues the event's delivery again, due now, with a fresh retry schedule (a new generation: a
  // result of an attempt in flight does not undo it). An event without a delivery row gets one.
  // false when there is no such event.
  virtual asio::awaitable<bool> redeliver(std::string event_id, std::int64_t now) = 0;

  // Credentials issued at run time, per connector. put: inserted when expected_version is 0, else
  // replaced only while the stored version is expected_version; false when it was not.
  virtual asio::awaitable<std::optional<ConnectorCredentialsRecord>> get_connector_credentials(std::string connector) = 0;
  virtual asio::awaitable<bool> put_connector_credentials(ConnectorCredentialsRecord r, std::int64_t expected_version) = 0;

  // Inbound notifications (audit and de-duplication)
  virtual asio::awaitable<void> record_notification(NotificationRecord n) = 0;
};

// Opens the store named by a storage URL (sqlite://path or postgresql://...), applying migrations.
// A PostgreSQL store waits for its database on `ex` (the event loop that runs the callers).
std::unique_ptr<Store> open_store(const std::string& url, asio::any_io_executor ex);
// Whether instances may share the store's database (PostgreSQL): work is then claimed, not assumed.
bool store_is_shared(const std::string& url);

}  // namespace paymux::store
