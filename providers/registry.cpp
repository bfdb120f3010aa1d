#include "providers/provider.hpp"

#include "providers/cashypay/cashypay.hpp"
#include "providers/dhpay/dhpay.hpp"
#include "providers/glocash/glocash.hpp"
#include "providers/shouqianba/shouqianba.hpp"

namespace paymux::providers {

std::string_view to_string(Flow f) {
  switch (f) {
    case Flow::authorize: return "authorize";
    case Flow::sync: return "sync";
    case Flow::refund: return "refund";
    case Flow::refund_sync: return "refund_sync";
    case Flow::cancel: return "cancel";
    case Flow::notification: return "notification";
    case Flow::credentials: return "credentials";
  }
  return "authorize";
}

std::string_view to_string(Verification v) {
  switch (v) {
    case Verification::verified: return "verified";
    case Verification::bad_signature: return "bad_signature";
    case Verification::malformed: return "malformed";
  }
  return "malformed";
}

boost::json::value Failure::to_json() const {
  boost::json::object o;
  o["code"] = code;
  o["message"] = message;
  o["provider_status"] = provider_status;
  return o;
}

bool Capabilities::supports(Flow f) const {
  for (auto x : flows)
    if (x == f) return true;
  return false;
}

bool Capabilities::accepts_method(std::string_view m) const {
  for (const auto& x : payment_methods)
    if (x == m) return true;
  return false;
}

bool Capabilities::accepts_currency(std::string_view c) const {
  if (currencies.empty()) return true;
  for (const auto& x : currencies)
    if (x == c) return true;
  return false;
}

const Secret& require_credential(const ConnectorConfig& c, const std::string& key) {
  auto it = c.credentials.find(key);
  if (it == c.credentials.end() || it->second.empty())
    throw ConfigError("connector " + c.id + ": credentials." + key + ": missing");
  return it->second;
}

std::string setting(const ConnectorConfig& c, const std::string& key, const std::string& fallback) {
  auto it = c.settings.find(key);
  return it == c.settings.end() ? fallback : it->second;
}

std::unique_ptr<Provider> make_provider(const ConnectorConfig& connector, const ProviderEnv& env) {
  if (connector.provider == "glocash") return std::make_unique<glocash::GlocashProvider>(connector, env);
  if (connector.provider == "cashypay") return std::make_unique<cashypay::CashypayProvider>(connector, env);
  if (connector.provider == "dhpay") return std::make_unique<dhpay::DhpayProvider>(connector, env);
  if (connector.provider == "dhpay_nonce") return std::make_unique<dhpay::DhpayNonceProvider>(connector, env);
  if (connector.provider == "shouqianba") return std::make_unique<shouqianba::ShouqianbaProvider>(connector, env);
  throw ConfigError("connector " + connector.id + ": provider " + connector.provider +
                    " is not available in this build");
}

}  // namespace paymux::providers
