#pragma once
// Shouqianba upay v2 - how to talk (provider-docs/003, SIGNING.md): JSON POSTs signed in the
// Authorization header with the terminal's key; barcode payments (B scans C) at /upay/v2/pay,
// QR payments (C scans B) at /upay/v2/precreate, then /upay/v2/query, /upay/v2/cancel and
// /upay/v2/refund (several partial refunds, each with its own refund_request_no).
//
// A barcode payment that is not final at once is polled every few seconds for about 45 s and then
// cancelled, as the document's client algorithm (section 2.4) does; the reconciler runs that plan
// (follow_up) from the store, so it survives a restart. A QR payment is polled every 2 s, then 5 s,
// until it is final or its order lapses.
//
// The terminal key is issued at run time: activation (`paymux shouqianba activate`, signed with the
// vendor key) and a daily check-in that replaces it. Until the store holds one, the connector's
// credentials terminal_sn/terminal_key are used.
//
// Connector configuration:
//   credentials: terminal_sn + terminal_key (until activated), vendor_sn + vendor_key (activation),
//                notify_public_key (Shouqianba's RSA public key, PEM; with settings.notify)
//   settings:    app_id (activation), device_id (default: the connector id), operator (default
//                paymux), qr_payway (precreate's payway, default 3), notify (true: send notify_url
//                and accept notifications), pay_poll_interval_ms (4000), pay_poll_window_ms (45000),
//                qr_poll_interval_ms (2000), qr_poll_fast_window_ms (30000), qr_poll_slow_interval_ms
//                (5000), qr_lifetime_seconds (240), checkin_interval_seconds (86400; 0: never)
#include "providers/provider.hpp"

#include <mutex>

namespace paymux::providers::shouqianba {

struct PollPlan {
  std::int64_t pay_interval_ms = 4000;      // section 2.4: every 3-5 s ...
  std::int64_t pay_window_ms = 45000;       // ... for 40-50 s, then cancel
  std::int64_t qr_interval_ms = 2000;       // precreate: every 2 s for the first 30 s ...
  std::int64_t qr_fast_window_ms = 30000;
  std::int64_t qr_slow_interval_ms = 5000;  // ... then every 5 s
  std::int64_t qr_lifetime_ms = 240000;     // the order lapses after about 4 minutes
};

class ShouqianbaProvider final : public Provider {
 public:
  ShouqianbaProvider(const ConnectorConfig& c, const ProviderEnv& env);
  std::string_view name() const override { return "shouqianba"; }
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
  // The refund sent again with its refund_request_no: the gateway answers it without refunding twice.
  std::optional<WireRequest> build_refund_sync(const store::PaymentRecord& p, const store::RefundRecord& r) const override {
    return build_refund(p, r);
  }
  RefundResult parse_refund_sync(const net::OutboundResponse& res, const store::PaymentRecord& p,
                                 const store::RefundRecord& r) const override {
    return parse_refund(res, p, r);
  }
  std::optional<WireRequest> build_cancel(const store::PaymentRecord& p) const override;
  PaymentResult parse_cancel(const net::OutboundResponse& res, const store::PaymentRecord& p) const override;
  std::optional<FollowUp> follow_up(const store::PaymentRecord& p, std::int64_t now) const override;

  bool issues_credentials() const override { return true; }
  void use_credentials(const boost::json::object& issued) override;
  std::optional<boost::json::object> current_credentials() const override;
  std::optional<WireRequest> build_activation(const std::string& code) const override;
  IssuedCredentials parse_activation(const net::OutboundResponse& res) const override;
  std::chrono::seconds rotation_interval() const override { return checkin_interval_; }
  std::optional<WireRequest> build_rotation(const boost::json::object& current) const override;
  IssuedCredentials parse_rotation(const net::OutboundResponse& res, const boost::json::object& current) const override;

  Notification parse_notification(const http::RequestContext& ctx) const override;
  Notification parse_return(const http::RequestContext& ctx) const override;
  http::Response acknowledge(bool received, const http::Request& req) const override;

  const PollPlan& poll_plan() const { return plan_; }

 private:
  struct Terminal {
    std::string sn;
    Secret key;
  };
  Terminal terminal() const;
  WireRequest signed_post(std::string path, std::string body, const std::string& sn, const Secret& key) const;
  boost::json::object order_ref(const store::PaymentRecord& p, const Terminal& t) const;
  PaymentResult read_order(const boost::json::object& data, std::string_view flow) const;
  IssuedCredentials read_terminal(const net::OutboundResponse& res, std::string_view what) const;

  std::string id_;
  std::string operator_;
  std::string device_id_;
  std::string app_id_;
  std::string qr_payway_;
  std::string notify_url_;  // empty: no notify_url is sent
  Secret vendor_sn_, vendor_key_;
  Secret notify_public_key_;
  std::chrono::seconds checkin_interval_{86400};
  PollPlan plan_;

  mutable std::mutex m_;
  Terminal terminal_;
};

}  // namespace paymux::providers::shouqianba
