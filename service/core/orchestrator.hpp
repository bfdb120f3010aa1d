#pragma once
// The domain: payments, refunds and notifications. Every status change goes through one function
// (update_payment) that only moves a payment forward, writes the events of the change in the same
// transaction, and retries on a concurrent writer. Handlers call these functions with typed
// commands and map the Result to HTTP.
#include "providers/exchange.hpp"
#include "service/core/circuit.hpp"
#include "service/core/config.hpp"
#include "service/core/connectors.hpp"
#include "service/http/errors.hpp"
#include "service/store/store.hpp"

#include <boost/json/object.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>

namespace paymux {

// A successful answer: status and serialized JSON body (replayed when it came from a stored key).
struct Reply {
  unsigned status = 200;
  std::string body;
  bool replayed = false;
};
using Result = std::variant<Reply, http::ApiError>;

struct CreatePaymentCommand {
  std::string merchant;
  std::string idempotency_key;
  std::string fingerprint;
  std::string request_id;
  std::int64_t amount = 0;
  std::string currency;
  std::string reference;
  std::string connector;  // explicit choice, or empty
  std::string method;     // hosted | card_nonce | barcode | qr
  std::string method_secret;  // nonce or barcode: sent to the gateway, never stored
  boost::json::object request;  // description, customer, billing, shipping, items
  std::string return_url;
  std::int64_t expires_in = 0;  // seconds; 0: none
  boost::json::object metadata;
};

struct CreateRefundCommand {
  std::string merchant;
  std::string payment_id;
  std::optional<std::int64_t> amount;
  std::string reason;
  std::string reference;
};

// How long idempotency keys are kept (published in the OpenAPI description).
inline constexpr std::int64_t kIdempotencyRetentionMs = 24LL * 3600 * 1000;

class Orchestrator {
 public:
  Orchestrator(const Config& config, store::Store& store, providers::Exchange& exchange, const Connectors& connectors);

  boost::asio::awaitable<Result> create_payment(CreatePaymentCommand c);
  boost::asio::awaitable<Result> get_payment(std::string merchant, std::string id);
  boost::asio::awaitable<Result> list_payments(store::PaymentQuery q);
  boost::asio::awaitable<Result> sync_payment(std::string merchant, std::string id);
  boost::asio::awaitable<Result> cancel_payment(std::string merchant, std::string id);
  boost::asio::awaitable<Result> create_refund(CreateRefundCommand c);
  boost::asio::awaitable<Result> get_refund(std::string merchant, std::string id);
  boost::asio::awaitable<Result> list_refunds(std::string merchant, std::string payment_id);
  boost::asio::awaitable<Result> get_event(std::string merchant, std::string id);
  boost::asio::awaitable<Result> list_events(store::EventQuery q);

  // Gateway notifications and browser returns: the answer the gateway or browser gets.
  boost::asio::awaitable<http::Response> handle_notification(std::string connector_id, const http::RequestContext& ctx);
  boost::asio::awaitable<http::Response> handle_return(std::string connector_id, const http::RequestContext& ctx);

  // Reconciliation (config `reconciler:`): a pending payment is asked about again on its status's
  // schedule (first_check after creation, then doubling up to max_interval); past expires_at (plus
  // the grace period where the gateway has no query API) a payment the gateway does not report
  // paid becomes expired.
  //
  // Asks the gateway about one claimed pending payment (where it has a query API, at most the
  // connector's query_rate per second), applies what it learns through the same transition code
  // as notifications, expires it when its time is over, and schedules the next check.
  boost::asio::awaitable<void> reconcile_one(store::PaymentRecord p);
  // Starts one reconciliation loop per connector on the current executor (they run until the
  // executor stops): each claims its due payments in the store (a lease) and reconciles them.
  // Refunds left pending (answer lost, gateway unsure) are asked about again where the gateway can
  // answer that without refunding twice (Flow::refund_sync), backing off between tries.
  boost::asio::awaitable<void> reconcile_refunds();
  boost::asio::awaitable<void> run_reconciler();

  // Keys left in progress by a stopped process (see Store::in_progress_idempotency) are settled
  // from their payment's state (a payment still `created` may have reached the gateway: it becomes
  // `processing`).
  boost::asio::awaitable<void> settle_interrupted(std::int64_t created_before, std::int64_t alive_after);

  const std::string& public_url() const { return config_.server.public_url; }

 private:
  struct Extras {
    std::vector<std::pair<std::string, boost::json::object>> events;  // extra events (type, object)
    std::optional<store::RefundRecord> refund;
    std::function<std::optional<store::IdempotencyRecord>(const store::PaymentRecord&)> idempotency;
    std::optional<store::NotificationRecord> notification;
  };
  // Mutator: changes the record; returns false when there is nothing to write.
  using Mutator = std::function<bool(store::PaymentRecord&, Extras&)>;

  // Reads (unless `current` is given), mutates and writes conditionally, retrying on a concurrent
  // change. Status changes are checked against the state machine and produce their event.
  boost::asio::awaitable<store::PaymentRecord> update_payment(std::string id, Mutator mutate,
                                                              std::optional<store::PaymentRecord> current = {});

  boost::asio::awaitable<std::optional<store::PaymentRecord>> load_payment(const std::string& merchant,
                                                                           const std::string& id);
  // Applies what a gateway said to a record (forward moves only). Returns true when it changed.
  static bool absorb(store::PaymentRecord& p, const providers::PaymentResult& r);
  // A gateway answer that needs a person: a payment.review event when the payment enters review
  // (the newest answer kept as provider_data.review). Returns true when it changed the record.
  bool note_review(store::PaymentRecord& p, Extras& x, const std::string& review) const;
  // The gateway's own follow-up plan for a pending payment, unless the payment is in review or was
  // cancelled at the end of that plan already (then the reconciler's backoff applies).
  std::optional<providers::FollowUp> follow_up_of(const store::PaymentRecord& p, std::int64_t now) const;
  // Asks the gateway about a payment now; nullopt when it could not tell.
  boost::asio::awaitable<std::optional<providers::PaymentResult>> query_now(const Connector& k,
                                                                            const store::PaymentRecord& p);
  // Records a refund's definite outcome with the payment's amounts and the refund's event.
  boost::asio::awaitable<store::RefundRecord> settle_refund(std::string payment_id, store::RefundRecord r,
                                                            providers::RefundResult result);
  // The end of a gateway's polling window: cancel there (Shouqianba section 2.4).
  boost::asio::awaitable<store::PaymentRecord> cancel_after_window(const Connector& k, store::PaymentRecord p);

  boost::asio::awaitable<void> reconcile_connector(const Connector* k);
  boost::asio::awaitable<void> reconcile_refunds_loop();
  // Waits until the connector may be queried again (its token bucket).
  boost::asio::awaitable<void> pace_query(const std::string& connector);

  std::string payment_body(const store::PaymentRecord& p) const;
  store::EventRecord make_event(const std::string& merchant, const std::string& type, const std::string& object_id,
                                boost::json::object object) const;
  // The event of a payment's new status, with the payment as its object.
  store::EventRecord make_payment_event(const store::PaymentRecord& p, const std::string& type) const;

  const Config& config_;
  store::Store& store_;
  providers::Exchange& exchange_;
  const Connectors& connectors_;
  std::map<std::string, std::unique_ptr<TokenBucket>, std::less<>> query_buckets_;  // by connector id
  // Pending refunds being asked about again: refund id -> (next try, tries). Reconciler only.
  std::map<std::string, std::pair<std::int64_t, int>> refund_retry_;
};

// The verdict on a request whose Idempotency-Key exists already: replay, 409 or 422.
Result idempotency_verdict(const store::IdempotencyRecord& existing, const std::string& endpoint,
                           const std::string& fingerprint);

}  // namespace paymux
