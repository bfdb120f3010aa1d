#pragma once
// DHpay - how to talk. Two connectors share the DHpay signing and callback code (wire.hpp):
// - `dhpay`, the web cashier (provider-docs/001): the customer's browser POSTs a signed form to
//   <base_url>/merchant/web/cashier; no server call is made at creation. Results come back as GET
//   query parameters on return_url (browser) and notify_url (asynchronous, up to 10 sends until the
//   body is exactly "success").
// - `dhpay_nonce`, the Cashier nonce API (provider-docs/000): OAuth2 client-credentials token, then a
//   server-to-server card payment with a client-side tokenized nonce; 3-D Secure is a form POST to
//   redirect_url, whose result arrives in the web cashier's callback format.
#include "providers/provider.hpp"

namespace paymux::providers::dhpay {

// Reads and verifies the web cashier callback fields (notify and return share the format).
Notification read_callback(const http::FormFields& f, const std::string& merchant_id, const Secret& secret);

// DHpay amounts carry exactly 2 decimals whatever the currency's exponent.
std::optional<std::string> two_decimals(std::int64_t minor, std::string_view currency);

class DhpayProvider final : public Provider {
 public:
  DhpayProvider(const ConnectorConfig& c, const ProviderEnv& env);
  std::string_view name() const override { return "dhpay"; }
  Capabilities capabilities() const override;
  std::optional<http::ApiError> validate(const store::PaymentRecord& p,
                                         const boost::json::object& request) const override;
  std::optional<PaymentResult> prepare_authorize(const PaymentInput& in) const override;
  WireRequest build_authorize(const PaymentInput& in) const override;
  PaymentResult parse_authorize(const net::OutboundResponse& res, const PaymentInput& in) const override;
  Notification parse_notification(const http::RequestContext& ctx) const override;
  Notification parse_return(const http::RequestContext& ctx) const override;
  http::Response acknowledge(bool received, const http::Request& req) const override;

 private:
  std::string cashier_url_;
  std::string merchant_id_;
  Secret secret_;
};

class DhpayNonceProvider final : public Provider {
 public:
  DhpayNonceProvider(const ConnectorConfig& c, const ProviderEnv& env);
  std::string_view name() const override { return "dhpay_nonce"; }
  Capabilities capabilities() const override;
  std::optional<http::ApiError> validate(const store::PaymentRecord& p,
                                         const boost::json::object& request) const override;
  WireRequest build_authorize(const PaymentInput& in) const override;
  PaymentResult parse_authorize(const net::OutboundResponse& res, const PaymentInput& in) const override;

  std::optional<WireRequest> build_access_token() const override;
  std::optional<AccessToken> parse_access_token(const net::OutboundResponse& res) const override;
  bool token_rejected(const net::OutboundResponse& res) const override;

  Notification parse_notification(const http::RequestContext& ctx) const override;
  Notification parse_return(const http::RequestContext& ctx) const override;
  http::Response acknowledge(bool received, const http::Request& req) const override;

 private:
  std::string client_id_;
  Secret secret_;
  std::string merchant_id_;
};

}  // namespace paymux::providers::dhpay
