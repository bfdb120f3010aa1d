#pragma once
// paymux configuration: YAML with ${VAR} / ${VAR:-default} substitution from the environment and
// *_file keys that read a secret from a file. Unknown or missing keys fail at start-up with the
// key's path (for example "merchants[0].connectors[1].credentials.secret_key").
//
// Substitution applies to every scalar value (not to keys); `$$` is a literal `$`. `${VAR:-d}` uses
// d when VAR is unset or empty; `${VAR}` with VAR unset is an error. `X_file: path` (in
// credentials, in webhook for url/secret, and api_keys_file / api_key_sha256_file with one entry
// per line at merchant level) reads the value from a file, trailing newlines trimmed; a relative
// path resolves against the config file's directory. File contents are taken literally.
// Error messages name keys and variables, never values.
#include "service/core/secret.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace paymux {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;  // message starts with the key path: "a.b[2].c: ..."
};

struct ServerLimits {
  std::size_t max_body_bytes = 1048576;
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds shutdown_grace{10000};
};

struct ServerConfig {
  std::string listen_host = "0.0.0.0";
  std::uint16_t listen_port = 8080;
  std::string public_url = "http://localhost:8080";  // no trailing slash
  unsigned threads = 0;                              // 0: one per core
  bool metrics = true;                               // GET /metrics served (without an API key)
  ServerLimits limits;
};

struct StorageConfig {
  std::string url = "sqlite://./var/paymux.db";  // sqlite://<path> or postgresql://...
  std::string sqlite_path() const;                // the path part of a sqlite:// url
  bool is_sqlite() const { return url.rfind("sqlite://", 0) == 0; }
};

struct LogConfig {
  std::string level = "info";   // trace|debug|info|warn|error|critical|off
  std::string format = "json";  // json|text
};

// Outbound TLS: the system CA store unless ca_file is set (tests point it at their own CA).
struct TlsConfig {
  std::string ca_file;  // a relative path is resolved against the config file's directory
};

// When a pending object is asked about again: first_check after it was created (or last moved),
// then the interval doubles up to max_interval.
struct CheckSchedule {
  std::chrono::milliseconds first_check{30000};
  std::chrono::milliseconds max_interval{3600000};
};

// Reconciliation of payments without a definite outcome (see Orchestrator::reconcile_one).
struct ReconcilerConfig {
  std::chrono::milliseconds first_check{30000};
  std::chrono::milliseconds max_interval{3600000};
  // Per payment status (created, requires_action, processing): overrides the
  // two values above (`schedule:` in the YAML).
  std::map<std::string, CheckSchedule, std::less<>> schedule;
  std::chrono::milliseconds expiry_grace{600000};
  std::chrono::milliseconds tick{1000};
  int batch = 50;
  // A claimed payment is not claimed again before this (an instance that stopped mid-check).
  std::chrono::milliseconds lease{60000};
  // Queries per second to one connector, all reconciliation of it together, unless the connector
  // sets its own query_rate.
  double query_rate = 10;

  CheckSchedule schedule_for(std::string_view status) const;
};

// A connector's circuit breaker (see service/core/circuit.hpp): opens after failure_threshold
// consecutive transport failures, half-opens for one probe after cool_down.
struct CircuitConfig {
  int failure_threshold = 5;
  std::chrono::milliseconds cool_down{30000};
};

// The default waits between delivery attempts of one event (README, "Merchant webhooks"): about
// 4 days from the first attempt to the last, each wait jittered by +-20%.
inline const std::vector<std::chrono::seconds>& default_webhook_retry_schedule() {
  using std::chrono::seconds;
  static const std::vector<seconds> schedule{seconds(5),     seconds(30),    seconds(120),   seconds(600),
                                             seconds(1800),  seconds(3600),  seconds(7200),  seconds(14400),
                                             seconds(28800), seconds(43200), seconds(86400), seconds(86400),
                                             seconds(86400)};
  return schedule;
}

struct WebhookEndpoint {
  std::string url;                 // empty: no deliveries
  std::vector<Secret> secrets;     // whsec_<base64>; all sign (space-separated) during a rotation
  bool allow_private = false;      // loopback/private targets allowed (sandbox and tests)
  std::chrono::milliseconds timeout{15000};  // per attempt, connection included (timeout_ms)
  // Waits after the 1st, 2nd, ... failed attempt (retry_schedule_seconds); past the last one the
  // event is given up (state failed).
  std::vector<std::chrono::seconds> retry_schedule = default_webhook_retry_schedule();
};

// The delivery worker (top-level `webhooks:`): how much it sends at once and how often it looks.
struct WebhookWorkerConfig {
  int max_in_flight = 256;               // deliveries in flight, all merchants together
  int max_in_flight_per_merchant = 64;   // so that one slow endpoint cannot take every slot
  int batch = 64;                        // rows claimed per store round trip
  std::chrono::milliseconds poll{200};   // how often due rows are looked for when idle
};

struct ConnectorConfig {
  std::string id;        // unique in the whole config; also the /webhooks/<id> path
  std::string provider;  // glocash | dhpay | dhpay_nonce | shouqianba | cashypay
  std::string base_url;  // http(s)://host[:port][/prefix], no trailing slash
  std::chrono::milliseconds timeout{15000};
  std::chrono::milliseconds connect_timeout{5000};
  // Provider credentials: values read as secrets (never printed). Keys are validated by the
  // provider's own schema when the connector is built.
  std::map<std::string, Secret> credentials;
  // Provider-specific plain settings (e.g. dhpay sandbox mode, cashypay amount limits).
  std::map<std::string, std::string> settings;
  CircuitConfig circuit;
  double query_rate = 0;  // reconciliation queries per second; 0: reconciler.query_rate
  std::string merchant;  // filled in: the merchant that owns it
};

struct RoutingRule {
  std::vector<std::string> currencies;       // when.currency
  std::vector<std::string> payment_methods;  // when.payment_method
  std::optional<std::int64_t> min_amount;    // when.amount_min (minor units)
  std::optional<std::int64_t> max_amount;    // when.amount_max
  std::map<std::string, std::string> metadata;  // when.metadata: all must equal
  std::vector<std::string> connectors;
};

struct MerchantConfig {
  std::string id;
  std::vector<Secret> api_keys;            // plain keys
  std::vector<std::string> api_key_sha256; // lower-case hex SHA-256 of keys
  WebhookEndpoint webhook;
  std::vector<RoutingRule> routing;
  std::vector<ConnectorConfig> connectors;
};

struct Config {
  ServerConfig server;
  StorageConfig storage;
  LogConfig log;
  TlsConfig tls;
  ReconcilerConfig reconciler;
  WebhookWorkerConfig webhooks;
  std::vector<MerchantConfig> merchants;

  const ConnectorConfig* find_connector(std::string_view id) const;
};

// Loads and validates; throws ConfigError whose message names the key path.
Config load_config_file(const std::string& path);
Config load_config_string(const std::string& yaml_text, const std::string& base_dir = ".");

}  // namespace paymux
