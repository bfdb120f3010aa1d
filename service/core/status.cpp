#include "service/core/status.hpp"

namespace paymux {

std::string_view to_string(PaymentStatus s) {
  switch (s) {
    case PaymentStatus::created: return "created";
    case PaymentStatus::requires_action: return "requires_action";
    case PaymentStatus::processing: return "processing";
    case PaymentStatus::succeeded: return "succeeded";
    case PaymentStatus::failed: return "failed";
    case PaymentStatus::canceled: return "canceled";
    case PaymentStatus::expired: return "expired";
    case PaymentStatus::partially_refunded: return "partially_refunded";
    case PaymentStatus::refunded: return "refunded";
    case PaymentStatus::disputed: return "disputed";
  }
  return "created";
}

std::string_view to_string(RefundStatus s) {
  switch (s) {
    case RefundStatus::pending: return "pending";
    case RefundStatus::succeeded: return "succeeded";
    case RefundStatus::failed: return "failed";
  }
  return "pending";
}

std::optional<PaymentStatus> payment_status_from(std::string_view s) {
  for (auto v : {PaymentStatus::created, PaymentStatus::requires_action, PaymentStatus::processing,
                 PaymentStatus::succeeded, PaymentStatus::failed, PaymentStatus::canceled,
                 PaymentStatus::expired, PaymentStatus::partially_refunded, PaymentStatus::refunded,
                 PaymentStatus::disputed})
    if (to_string(v) == s) return v;
  return std::nullopt;
}

std::optional<RefundStatus> refund_status_from(std::string_view s) {
  for (auto v : {RefundStatus::pending, RefundStatus::succeeded, RefundStatus::failed})
    if (to_string(v) == s) return v;
  return std::nullopt;
}

bool can_transition(PaymentStatus from, PaymentStatus to) {
  using S = PaymentStatus;
  switch (from) {
    case S::created:
      return to == S::requires_action || to == S::processing || to == S::succeeded || to == S::failed ||
             to == S::canceled || to == S::expired;
    case S::requires_action:
      return to == S::processing || to == S::succeeded || to == S::failed || to == S::canceled ||
             to == S::expired;
    case S::processing:
      return to == S::succeeded || to == S::failed || to == S::canceled || to == S::expired;
    case S::succeeded:
      return to == S::partially_refunded || to == S::refunded || to == S::disputed;
    case S::partially_refunded:
      return to == S::refunded || to == S::disputed;
    case S::disputed:
      return to == S::succeeded || to == S::refunded;
    case S::failed:
    case S::canceled:
    case S::expired:
    case S::refunded:
      return false;
  }
  return false;
}

bool can_transition(RefundStatus from, RefundStatus to) {
  return from == RefundStatus::pending && (to == RefundStatus::succeeded || to == RefundStatus::failed);
}

bool is_final(PaymentStatus s) {
  return s == PaymentStatus::failed || s == PaymentStatus::canceled || s == PaymentStatus::expired ||
         s == PaymentStatus::refunded;
}

bool is_pending(PaymentStatus s) {
  return s == PaymentStatus::created || s == PaymentStatus::requires_action || s == PaymentStatus::processing;
}

bool is_refundable(PaymentStatus s) {
  return s == PaymentStatus::succeeded || s == PaymentStatus::partially_refunded;
}

std::optional<std::string_view> payment_event_type(PaymentStatus s) {
  switch (s) {
    case PaymentStatus::created: return std::nullopt;
    case PaymentStatus::requires_action: return "payment.requires_action";
    case PaymentStatus::processing: return "payment.processing";
    case PaymentStatus::succeeded: return "payment.succeeded";
    case PaymentStatus::failed: return "payment.failed";
    case PaymentStatus::canceled: return "payment.canceled";
    case PaymentStatus::expired: return "payment.expired";
    case PaymentStatus::partially_refunded: return "payment.partially_refunded";
    case PaymentStatus::refunded: return "payment.refunded";
    case PaymentStatus::disputed: return "payment.disputed";
  }
  return std::nullopt;
}

}  // namespace paymux
