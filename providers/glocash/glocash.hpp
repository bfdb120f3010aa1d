#pragma once
// Glocash (GC gateway) - how to talk: the classic-mode payment request (form POST answered with
// JSON TNS_GCID + URL_PAYMENT), the query and refund APIs, the PSN at /webhooks/<connector> and the
// signed browser result POST at /return/<connector>. Document: provider-docs/002.
#include "providers/provider.hpp"

namespace paymux::providers::glocash {

class GlocashProvider final : public Provider {
 public:
  GlocashProvider(const ConnectorConfig& c, const ProviderEnv& env);

  std::string_view name() const override { return "glocash"; }
  Capabilities capabilities() const override;
  std::optional<http::ApiError> validate(const store::PaymentRecord& p,
                                         const boost::json::object& request) const override;

  WireRequest build_authorize(const PaymentInput& in) const override;
  PaymentResult parse_authorize(const net::OutboundResponse& res, const PaymentInput& in) const override;
  std::optional<WireRequest> build_sync(const store::PaymentRecord& p) const override;
  PaymentResult parse_sync(const net::OutboundResponse& res, const store::PaymentRecord& p) const override;
  std::optional<WireRequest> build_refund(const store::PaymentRecord& p, const store::RefundRecord& r) const override;
  RefundResult parse_refund(const net::OutboundResponse& res, const store::PaymentRecord& p,
                            const store::RefundRecord& r) const override;

  Notification parse_notification(const http::RequestContext& ctx) const override;
  Notification parse_return(const http::RequestContext& ctx) const override;
  http::Response acknowledge(bool received, const http::Request& req) const override;

 private:
  // Verifies and reads PSN-shaped fields (PSN, browser result, query answer).
  Notification read_psn_fields(const http::FormFields& f) const;

  std::string email_;
  Secret key_;
  std::string method_;  // BIL_METHOD, sent explicitly (default C01: card)
  std::string cc3ds_;   // BIL_CC3DS when set
  std::string merchant_name_;
};

}  // namespace paymux::providers::glocash
