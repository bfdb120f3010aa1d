#pragma once
// The configured connectors (provider instances) and merchants, and the routing that picks the
// candidate connectors for a payment.
#include "providers/provider.hpp"
#include "service/core/config.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paymux {

struct Connector {
  const ConnectorConfig* config;
  std::unique_ptr<providers::Provider> provider;
  const std::string& id() const { return config->id; }
};

struct Skipped {
  std::string connector;
  std::string reason;
};

struct RouteRequest {
  std::string merchant;
  std::string explicit_connector;  // empty: routing rules decide
  std::string currency;
  std::string method;
  std::int64_t amount = 0;
  const boost::json::object* metadata = nullptr;
};

struct Route {
  std::vector<const Connector*> candidates;  // in the order to try
  std::vector<Skipped> skipped;              // considered but unable to take the payment
};

class Connectors {
 public:
  Connectors(const Config& config, const providers::ProviderEnv& env);

  const Connector* find(std::string_view id) const;
  const MerchantConfig* merchant(std::string_view id) const;
  std::vector<const Connector*> of_merchant(std::string_view merchant) const;
  std::vector<const Connector*> all() const;

  Route route(const RouteRequest& r) const;

 private:
  const Config& config_;
  std::map<std::string, Connector, std::less<>> by_id_;
};

}  // namespace paymux
