#pragma once
// The rows paymux keeps. JSON-valued columns hold the parts of an object that the store never
// queries (customer, next_action, failure, ...), already serialized.
#include "service/core/status.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace paymux::store {

struct PaymentRecord {
  std::string id;
  std::string merchant;
  std::string reference;
  std::string connector;
  std::string provider;
  std::string provider_payment_id;
  std::int64_t amount = 0;
  std::string currency;
  std::int64_t amount_refunded = 0;
  PaymentStatus status = PaymentStatus::created;
  std::string payment_method_json = "{}";  // {"type":"hosted"}; secrets (nonce, barcode) are not kept
  std::string request_json = "{}";         // description, customer, billing, shipping, items
  std::string next_action_json;            // empty: none
  std::string failure_json;                // empty: none
  std::string risk_json;                   // empty: none
  std::string attempts_json = "[]";
  std::string return_url;
  std::string metadata_json = "{}";
  std::int64_t created_at = 0;  // epoch ms
  std::int64_t updated_at = 0;
  std::int64_t expires_at = 0;  // 0: none
  std::int64_t version = 0;     // bumped by every update; updates are conditional on it
  std::int64_t next_check_at = 0;  // when reconciliation next asks the gateway (pending payments)
  int check_count = 0;
  std::string provider_data_json = "{}";  // gateway facts kept as the gateway stated them (fee, ...)
};

struct RefundRecord {
  std::string id;
  std::string payment_id;
  std::string merchant;
  std::int64_t amount = 0;
  std::string currency;
  RefundStatus status = RefundStatus::pending;
  std::string provider_refund_id;
  std::string failure_json;
  std::string reason;
  std::string reference;
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
};

struct EventRecord {
  std::string id;
  std::string merchant;
  std::string type;       // payment.succeeded, refund.failed, ...
  std::string object_id;  // the payment or refund
  std::string payload_json;  // the whole event object as served by the API
  std::int64_t created_at = 0;
};

// Merchant webhooks. Every event gets a delivery row in its own transaction: `pending` when its
// merchant has a webhook endpoint, else `skipped`. A pending row is claimed with a lease, sent,
// and its result recorded with the attempt.
enum class DeliveryState { pending, delivered, failed, disabled, skipped };
inline std::string_view to_string(DeliveryState s) {
  switch (s) {
    case DeliveryState::pending: return "pending";
    case DeliveryState::delivered: return "delivered";
    case DeliveryState::failed: return "failed";
    case DeliveryState::disabled: return "disabled";
    case DeliveryState::skipped: return "skipped";
  }
  return "pending";
}
inline std::optional<DeliveryState> delivery_state_from(std::string_view s) {
  for (auto st : {DeliveryState::pending, DeliveryState::delivered, DeliveryState::failed, DeliveryState::disabled,
                  DeliveryState::skipped})
    if (to_string(st) == s) return st;
  return std::nullopt;
}

struct DeliveryRecord {
  std::string event_id;
  std::string merchant;
  std::string order_key;  // the payment whose events keep their order
  DeliveryState state = DeliveryState::pending;
  int attempts = 0;
  int failures = 0;  // since last queued: the position in the retry schedule
  std::int64_t generation = 0;
  std::int64_t next_attempt_at = 0;  // epoch ms
  std::int64_t lease_until = 0;
  unsigned last_status = 0;
  std::string last_error;
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
};

// A claimed delivery: the row (leased) and the event body to send.
struct ClaimedDelivery {
  DeliveryRecord delivery;
  std::string payload_json;
};

struct DeliveryAttemptRecord {
  std::string event_id;
  std::int64_t attempted_at = 0;  // epoch ms
  unsigned http_status = 0;       // 0: no HTTP answer
  std::int64_t latency_ms = 0;
  std::string error;
  std::string outcome;  // delivered | retry | failed | disabled
};

// What one attempt decided. The row changes only when its generation is still the claimed one
// (a redelivery requested meanwhile wins); the attempt is recorded either way.
struct DeliveryResult {
  DeliveryAttemptRecord attempt;
  std::int64_t generation = 0;
  DeliveryState state = DeliveryState::pending;
  int failures = 0;
  std::int64_t next_attempt_at = 0;
  bool disable_endpoint = false;  // 410 Gone
  std::string merchant;
};

struct WebhookEndpointRecord {
  std::string merchant;
  std::string url;
  std::int64_t disabled_at = 0;  // 0: enabled
  std::string disabled_reason;
  std::int64_t updated_at = 0;
};

enum class IdempotencyState { in_progress, completed };

struct IdempotencyRecord {
  std::string merchant;
  std::string key;
  std::string endpoint;     // "POST /v1/payments", "POST /v1/payments/{id}/refunds", ...
  std::string fingerprint;  // SHA-256 of the canonical request (endpoint + canonical JSON)
  IdempotencyState state = IdempotencyState::in_progress;
  unsigned response_status = 0;
  std::string response_body;
  std::string resource_id;  // the payment or refund it created, when any
  std::int64_t created_at = 0;
  std::string owner;        // the process that took it (set by the store: Store::instance_id)
};

struct NotificationRecord {
  std::string id;
  std::string connector;
  std::int64_t received_at = 0;
  std::string method;
  std::string raw;          // query string and/or body, as received
  std::string verification; // "verified", "bad_signature", "unknown_order", "malformed", ...
  std::string payment_id;   // when the order was found
  std::string outcome;      // "applied", "duplicate", "ignored_backwards", "review", ...
  std::string dedup_key;    // connector-specific identity of this notification's content
};

// Credentials a gateway issued at run time for one connector (a JSON object; secrets inside).
struct ConnectorCredentialsRecord {
  std::string connector;
  std::string data_json;
  std::int64_t version = 0;  // 0: not stored yet
  std::int64_t updated_at = 0;
};

struct PaymentQuery {
  std::string merchant;
  std::string reference;  // empty: any
  std::optional<PaymentStatus> status;
  std::string starting_after;  // payment id cursor: list continues after it
  int limit = 10;
};

struct EventQuery {
  std::string merchant;
  std::string type;
  std::string object_id;
  std::string starting_after;
  int limit = 10;
};

}  // namespace paymux::store
