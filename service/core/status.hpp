#pragma once
// The payment and refund state machines of the API contract. A status only moves forward; every
// other transition is refused by can_transition and never applied.
#include <optional>
#include <string_view>

namespace paymux {

enum class PaymentStatus {
  created,
  requires_action,
  processing,
  succeeded,
  failed,
  canceled,
  expired,
  partially_refunded,
  refunded,
  disputed,
};

enum class RefundStatus { pending, succeeded, failed };

std::string_view to_string(PaymentStatus s);
std::string_view to_string(RefundStatus s);
std::optional<PaymentStatus> payment_status_from(std::string_view s);
std::optional<RefundStatus> refund_status_from(std::string_view s);

bool can_transition(PaymentStatus from, PaymentStatus to);
bool can_transition(RefundStatus from, RefundStatus to);

// failed, canceled, expired, refunded: nothing follows them.
bool is_final(PaymentStatus s);
// The payment has not reached a definite outcome yet (created, requires_action, processing).
bool is_pending(PaymentStatus s);
// Money was captured, so refunds may be taken (succeeded, partially_refunded).
bool is_refundable(PaymentStatus s);

// The event type written when a payment enters a status ("payment.succeeded"); nullopt for created.
std::optional<std::string_view> payment_event_type(PaymentStatus s);

}  // namespace paymux
