#pragma once
// Credentials that gateways issue at run time (see providers::IssuedCredentials): activation with a
// one-time code, the store as their home, and rotation when due (Shouqianba's daily check-in, with
// a lost answer retried on the old key). Values are never logged.
#include "providers/exchange.hpp"
#include "service/core/connectors.hpp"
#include "service/store/store.hpp"

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace paymux {

class CredentialKeeper {
 public:
  CredentialKeeper(const Config& config, store::Store& store, providers::Exchange& exchange,
                   const Connectors& connectors);

  // Hands every connector the credentials stored for it (start-up, and whenever another process
  // such as `paymux <provider> activate` stored new ones).
  boost::asio::awaitable<void> load();
  // Runs until cancelled: load() and rotation of whatever is due, every tick.
  boost::asio::awaitable<void> run(std::chrono::milliseconds tick);
  // Rotates one connector's credentials now if they are due; exposed for start-up and tests.
  boost::asio::awaitable<void> rotate_if_due(const Connector& k);
  // Asks the gateway for new credentials with a one-time code and stores them. Empty on success,
  // else why not (no secrets).
  boost::asio::awaitable<std::string> activate(std::string connector_id, std::string code);

 private:
  struct Loaded {
    std::int64_t version = 0;     // of the stored record; 0: none stored (configured credentials)
    std::int64_t issued_at = 0;   // epoch ms; for configured credentials, when this process began
  };
  Loaded loaded(const std::string& connector);
  void set_loaded(const std::string& connector, Loaded l);

  std::vector<const Connector*> issuing_;  // connectors whose provider issues credentials
  store::Store& store_;
  providers::Exchange& exchange_;
  const Connectors& connectors_;
  std::mutex m_;
  std::map<std::string, Loaded> loaded_;
  std::int64_t started_at_;
};

}  // namespace paymux
