#pragma once
// The column lists of the stored records and how a result row becomes a record, shared by the
// SQLite and PostgreSQL stores. A Row offers text(col) and int64(col).
#include "service/store/records.hpp"

#include <string>

namespace paymux::store {

inline const char* const kPaymentColumns =
    "id, merchant, reference, connector, provider, provider_payment_id, amount, currency, amount_refunded, "
    "status, payment_method, request, next_action, failure, risk, attempts, return_url, metadata, created_at, "
    "updated_at, expires_at, version, next_check_at, check_count, provider_data";

template <class Row>
PaymentRecord read_payment(const Row& s) {
  PaymentRecord p;
  p.id = s.text(0);
  p.merchant = s.text(1);
  p.reference = s.text(2);
  p.connector = s.text(3);
  p.provider = s.text(4);
  p.provider_payment_id = s.text(5);
  p.amount = s.int64(6);
  p.currency = s.text(7);
  p.amount_refunded = s.int64(8);
  p.status = payment_status_from(s.text(9)).value_or(PaymentStatus::processing);
  p.payment_method_json = s.text(10);
  p.request_json = s.text(11);
  p.next_action_json = s.text(12);
  p.failure_json = s.text(13);
  p.risk_json = s.text(14);
  p.attempts_json = s.text(15);
  p.return_url = s.text(16);
  p.metadata_json = s.text(17);
  p.created_at = s.int64(18);
  p.updated_at = s.int64(19);
  p.expires_at = s.int64(20);
  p.version = s.int64(21);
  p.next_check_at = s.int64(22);
  p.check_count = static_cast<int>(s.int64(23));
  p.provider_data_json = s.text(24);
  return p;
}

inline const char* const kRefundColumns =
    "id, payment_id, merchant, amount, currency, status, provider_refund_id, failure, reason, reference, "
    "created_at, updated_at";

template <class Row>
RefundRecord read_refund(const Row& s) {
  RefundRecord r;
  r.id = s.text(0);
  r.payment_id = s.text(1);
  r.merchant = s.text(2);
  r.amount = s.int64(3);
  r.currency = s.text(4);
  r.status = refund_status_from(s.text(5)).value_or(RefundStatus::pending);
  r.provider_refund_id = s.text(6);
  r.failure_json = s.text(7);
  r.reason = s.text(8);
  r.reference = s.text(9);
  r.created_at = s.int64(10);
  r.updated_at = s.int64(11);
  return r;
}

template <class Row>
EventRecord read_event(const Row& s) {
  return {s.text(0), s.text(1), s.text(2), s.text(3), s.text(4), s.int64(5)};
}

inline const char* const kDeliveryColumnsD =
    "d.event_id, d.merchant, d.order_key, d.state, d.attempts, d.failures, d.generation, d.next_attempt_at, "
    "d.lease_until, d.last_status, d.last_error, d.created_at, d.updated_at";
inline constexpr int kDeliveryColumnCount = 13;

template <class Row>
DeliveryRecord read_delivery(const Row& s) {
  DeliveryRecord d;
  d.event_id = s.text(0);
  d.merchant = s.text(1);
  d.order_key = s.text(2);
  d.state = delivery_state_from(s.text(3)).value_or(DeliveryState::pending);
  d.attempts = static_cast<int>(s.int64(4));
  d.failures = static_cast<int>(s.int64(5));
  d.generation = s.int64(6);
  d.next_attempt_at = s.int64(7);
  d.lease_until = s.int64(8);
  d.last_status = static_cast<unsigned>(s.int64(9));
  d.last_error = s.text(10);
  d.created_at = s.int64(11);
  d.updated_at = s.int64(12);
  return d;
}

template <class Row>
WebhookEndpointRecord read_endpoint(const Row& s) {
  return {s.text(0), s.text(1), s.int64(2), s.text(3), s.int64(4)};
}

template <class Row>
IdempotencyRecord read_idempotency(const Row& s) {
  IdempotencyRecord r;
  r.merchant = s.text(0);
  r.key = s.text(1);
  r.endpoint = s.text(2);
  r.fingerprint = s.text(3);
  r.state = s.text(4) == "completed" ? IdempotencyState::completed : IdempotencyState::in_progress;
  r.response_status = static_cast<unsigned>(s.int64(5));
  r.response_body = s.text(6);
  r.resource_id = s.text(7);
  r.created_at = s.int64(8);
  r.owner = s.text(9);
  return r;
}

inline const char* const kIdempotencyColumns =
    "merchant, key, endpoint, fingerprint, state, response_status, response_body, resource_id, created_at, owner";

}  // namespace paymux::store
