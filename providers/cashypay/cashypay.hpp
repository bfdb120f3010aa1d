#pragma once
// CashyPay pay desk - how to talk (provider-docs/004): JSON POSTs with MerchantId and Sign headers
// and a fresh nonceStr in every body; /api/payDesk creates a hosted order answered with payUrl; the
// query path (document: /api/payDeskQuery) is configurable; results arrive as signed JSON POSTs at
// /webhooks/<connector>, answered 200 "SUCCESS" once stored.
#include "providers/provider.hpp"

namespace paymux::providers::cashypay {

class CashypayProvider final : public Provider {
 public:
  CashypayProvider(const ConnectorConfig& c, const ProviderEnv& env);
  std::string_view name() const override { return "cashypay"; }
  Capabilities capabilities() const override;
  std::optional<http::ApiError> validate(const store::PaymentRecord& p,
                                         const boost::json::object& request) const override;
  WireRequest build_authorize(const PaymentInput& in) const override;
  PaymentResult parse_authorize(const net::OutboundResponse& res, const PaymentInput& in) const override;
  std::optional<WireRequest> build_sync(const store::PaymentRecord& p) const override;
  PaymentResult parse_sync(const net::OutboundResponse& res, const store::PaymentRecord& p) const override;
  Notification parse_notification(const http::RequestContext& ctx) const override;
  Notification parse_return(const http::RequestContext& ctx) const override;
  http::Response acknowledge(bool received, const http::Request& req) const override;

 private:
  WireRequest signed_post(std::string path, std::string body) const;
  PaymentResult read_order(std::string_view body, bool from_query) const;

  std::string merchant_id_;
  Secret api_key_;
  std::string query_path_;
  std::vector<std::string> currencies_;
  std::optional<std::int64_t> amount_min_, amount_max_;
  std::int64_t default_expire_seconds_ = 3600;
};

}  // namespace paymux::providers::cashypay
