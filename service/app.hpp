#pragma once
// The service's parts, built once from the configuration and wired together.
#include "providers/exchange.hpp"
#include "service/core/config.hpp"
#include "service/core/connectors.hpp"
#include "service/core/orchestrator.hpp"
#include "service/http/router.hpp"
#include "service/net/http_client.hpp"
#include "service/notify/webhooks.hpp"
#include "service/store/store.hpp"

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <memory>

namespace paymux {

// API keys as SHA-256 digests; a presented key is hashed and compared in constant time.
class Authenticator {
 public:
  explicit Authenticator(const Config& config);
  // The merchant id owning the key, or empty.
  std::string merchant_for(std::string_view api_key) const;

 private:
  std::vector<std::pair<std::string, std::string>> digests_;  // (sha256 hex, merchant)
};

struct App {
  App(const Config& config, boost::asio::io_context& ioc);

  const Config& config;
  std::unique_ptr<store::Store> store;
  net::HttpClient client;
  providers::Exchange exchange;
  Connectors connectors;
  Orchestrator orchestrator;
  notify::WebhookDispatcher webhooks;
  Authenticator auth;
  std::atomic<bool> ready{false};  // migrations done and start-up settled
};

// Registers every route of the API contract.
void register_routes(http::Router& router, App& app);

}  // namespace paymux
