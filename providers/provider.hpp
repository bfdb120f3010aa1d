#pragma once
// The provider interface. A provider turns unified payment data into a gateway request value
// (method, path, headers, body) and the gateway's answer back into a unified result; it does no I/O
// itself (the exchange does). A connector is a configured instance of a provider.
#include "service/core/config.hpp"
#include "service/core/status.hpp"
#include "service/http/errors.hpp"
#include "service/http/types.hpp"
#include "service/net/http_client.hpp"
#include "service/store/records.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace paymux::providers {

namespace bhttp = http::bhttp;

// A request to send: path is appended to the connector's base_url.
struct WireRequest {
  bhttp::verb method = bhttp::verb::post;
  std::string path;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

enum class Flow { authorize, sync, refund, refund_sync, cancel, notification, credentials };
std::string_view to_string(Flow f);

struct Capabilities {
  std::vector<Flow> flows;
  std::vector<std::string> payment_methods;  // hosted, card_nonce, barcode, qr
  std::vector<std::string> currencies;       // empty: any ISO 4217 currency
  // True when sync may be called for a payment (the gateway has a query API).
  bool supports(Flow f) const;
  bool accepts_method(std::string_view m) const;
  bool accepts_currency(std::string_view c) const;
};

// What a provider needs to build an authorize request.
struct PaymentInput {
  const store::PaymentRecord& payment;
  const boost::json::object& request;  // description, customer, billing, shipping, items
  std::string order_no;                // the gateway's order number (from the payment id)
  std::string notify_url;              // <public_url>/webhooks/<connector>
  std::string return_url;              // <public_url>/return/<connector>?payment=<id>
  std::string method_secret;           // card nonce or barcode: sent, never stored
  std::string access_token;            // the connector's current OAuth token, for gateways that use one
};

// An OAuth-style access token a gateway hands out (DHpay nonce API).
struct AccessToken {
  std::string token;
  std::chrono::seconds expires_in{0};
};

struct Failure {
  std::string code;
  std::string message;
  std::string provider_status;
  boost::json::value to_json() const;
};

// What a gateway said about a payment. status nullopt: no definite news (pending).
struct PaymentResult {
  bool unknown = false;  // the outcome is not known (5xx, garbage, lost answer): reconciliation
  std::optional<PaymentStatus> status;
  std::string provider_payment_id;
  std::optional<boost::json::object> next_action;
  std::optional<Failure> failure;
  std::optional<boost::json::object> risk;
  std::string provider_status;  // the gateway's own status word, for logs and failure
  std::string error;            // why the outcome is unknown
  std::int64_t expires_at = 0;  // epoch ms when the gateway's order lapses; kept when the payment has none
  // Gateway facts to keep on the payment as the gateway stated them (merged into provider_data).
  std::optional<boost::json::object> provider_data;
  // A gateway answer that needs a person (a payment.review event), e.g. a failure after which the
  // gateway cannot tell whether the payer's money came back. The gateway's own word; empty: none.
  std::string review;
};

// How a pending payment is followed up when the gateway prescribes it (Shouqianba: a barcode
// payment polled every few seconds for about 45 s and then cancelled).
struct FollowUp {
  std::int64_t next_check_at = 0;  // epoch ms: when to ask the gateway next
  bool cancel = false;             // the polling window is over: cancel the payment at the gateway now
};

// Credentials a gateway issues at run time (Shouqianba: a terminal key from activation, replaced by
// a daily check-in). They are kept in the store as a JSON object and handed to the provider, which
// signs with the newest one it was given.
struct IssuedCredentials {
  std::optional<boost::json::object> credentials;
  bool unknown = false;  // no answer: the gateway may have issued them (retry with the old ones)
  std::string error;     // no secrets
};

struct RefundResult {
  bool unknown = false;
  RefundStatus status = RefundStatus::pending;
  std::string provider_refund_id;
  std::optional<Failure> failure;
  std::string error;
};

enum class Verification { verified, bad_signature, malformed };
std::string_view to_string(Verification v);

// An inbound notification (or a browser return), parsed and verified.
struct Notification {
  Verification verification = Verification::malformed;
  std::string reason;                 // why it was not verified (no secrets)
  std::string order_no;               // our order number as the gateway echoes it
  std::string payment_id_hint;        // from our own URL (?payment=...), when present
  std::string provider_payment_id;
  std::optional<std::int64_t> amount;  // the order amount the gateway states, in minor units
  std::string currency;
  // The amount as a decimal in major units when the notification does not name its currency
  // (CashyPay): checked exactly against the payment in the payment's currency.
  std::string amount_decimal;
  // What was actually charged, when stated in the order's currency: must equal the order too.
  std::optional<std::int64_t> charged_amount;
  PaymentResult result;
  bool refund_notice = false;  // about a refund rather than the payment itself
  std::string dedup_key;
  std::string extra_json;  // gateway facts worth keeping (fee, ...), as a JSON object
};

class Provider {
 public:
  virtual ~Provider() = default;
  virtual std::string_view name() const = 0;
  virtual Capabilities capabilities() const = 0;

  // Mandatory fields of this gateway: the first missing or invalid one, before any call.
  virtual std::optional<http::ApiError> validate(const store::PaymentRecord& p,
                                                 const boost::json::object& request) const = 0;

  // A result made without calling the gateway (a hosted form the browser posts itself); nullopt
  // when authorize is a gateway call (build_authorize/parse_authorize).
  virtual std::optional<PaymentResult> prepare_authorize(const PaymentInput& /*in*/) const { return std::nullopt; }
  virtual WireRequest build_authorize(const PaymentInput& in) const = 0;
  virtual PaymentResult parse_authorize(const net::OutboundResponse& res, const PaymentInput& in) const = 0;

  // nullopt: not possible for this payment (no query API, or no gateway id yet).
  virtual std::optional<WireRequest> build_sync(const store::PaymentRecord& /*p*/) const { return std::nullopt; }
  virtual PaymentResult parse_sync(const net::OutboundResponse& /*res*/, const store::PaymentRecord& /*p*/) const {
    return {};
  }

  virtual std::optional<WireRequest> build_refund(const store::PaymentRecord& /*p*/,
                                                  const store::RefundRecord& /*r*/) const {
    return std::nullopt;
  }
  virtual RefundResult parse_refund(const net::OutboundResponse& /*res*/, const store::PaymentRecord& /*p*/,
                                    const store::RefundRecord& /*r*/) const {
    return {};
  }

  // A refund whose outcome is unknown, asked about again (Flow::refund_sync); nullopt: not possible.
  virtual std::optional<WireRequest> build_refund_sync(const store::PaymentRecord& /*p*/,
                                                       const store::RefundRecord& /*r*/) const {
    return std::nullopt;
  }
  virtual RefundResult parse_refund_sync(const net::OutboundResponse& /*res*/, const store::PaymentRecord& /*p*/,
                                         const store::RefundRecord& /*r*/) const {
    RefundResult r;
    r.unknown = true;
    return r;
  }

  virtual std::optional<WireRequest> build_cancel(const store::PaymentRecord& /*p*/) const { return std::nullopt; }
  virtual PaymentResult parse_cancel(const net::OutboundResponse& /*res*/, const store::PaymentRecord& /*p*/) const {
    return {};
  }

  // Gateways whose calls carry an access token: how to fetch one, and how a call says that the
  // token it carried was refused (the exchange then refreshes once and retries).
  virtual std::optional<WireRequest> build_access_token() const { return std::nullopt; }
  virtual std::optional<AccessToken> parse_access_token(const net::OutboundResponse& /*res*/) const {
    return std::nullopt;
  }
  virtual bool token_rejected(const net::OutboundResponse& /*res*/) const { return false; }

  // nullopt: the reconciler's own backoff decides when a pending payment is asked about again.
  virtual std::optional<FollowUp> follow_up(const store::PaymentRecord& /*p*/, std::int64_t /*now*/) const {
    return std::nullopt;
  }

  // Gateways that issue credentials at run time (see IssuedCredentials). use_credentials may be
  // called at any time from any thread; requests built afterwards use them.
  virtual bool issues_credentials() const { return false; }
  virtual void use_credentials(const boost::json::object& /*issued*/) {}
  virtual std::optional<boost::json::object> current_credentials() const { return std::nullopt; }
  virtual std::optional<WireRequest> build_activation(const std::string& /*code*/) const { return std::nullopt; }
  virtual IssuedCredentials parse_activation(const net::OutboundResponse& /*res*/) const { return {}; }
  // The request that replaces `current`; 0 interval: no rotation.
  virtual std::chrono::seconds rotation_interval() const { return std::chrono::seconds(0); }
  virtual std::optional<WireRequest> build_rotation(const boost::json::object& /*current*/) const {
    return std::nullopt;
  }
  virtual IssuedCredentials parse_rotation(const net::OutboundResponse& /*res*/,
                                           const boost::json::object& /*current*/) const {
    return {};
  }

  // Gateway notifications at /webhooks/<connector> and browser returns at /return/<connector>.
  virtual Notification parse_notification(const http::RequestContext& ctx) const = 0;
  virtual Notification parse_return(const http::RequestContext& ctx) const = 0;
  // The answer this gateway counts as "received" (or not).
  virtual http::Response acknowledge(bool received, const http::Request& req) const = 0;
};

struct ProviderEnv {
  std::string public_url;
};

// Builds the provider of a connector; throws ConfigError naming the missing credential.
std::unique_ptr<Provider> make_provider(const ConnectorConfig& connector, const ProviderEnv& env);

// Credential helper for providers: the value or a ConfigError "merchants...connectors[<id>].credentials.<key>".
const Secret& require_credential(const ConnectorConfig& c, const std::string& key);
std::string setting(const ConnectorConfig& c, const std::string& key, const std::string& fallback);

}  // namespace paymux::providers
