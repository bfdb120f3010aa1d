#pragma once
// paymux-sandbox: the frame shared by every gateway simulator.
//
// A simulator plays one gateway from the gateway's side, as that gateway's document describes it.
// It mounts its gateway routes under "/<name>" (so a connector's base_url is
// "<public_url>/<name>"), its control routes under "/_sandbox/<name>", reads its own config section
// "<name>:", and uses the frame for what every gateway shares:
//   - configuration (YAML, ${VAR} / ${VAR:-default} substitution, key paths in errors),
//   - fault injection on its gateway API endpoints (POST/DELETE /_sandbox/faults),
//   - a notification re-sender (retry schedule compressed by time_factor),
//   - cancellable sleeps (so nothing outlives a shutdown), and small HTML page helpers.
// The simulators keep their own signing code: nothing here knows a gateway's wire format.
//
// Frame routes:
//   GET    /_sandbox/healthz   200 {"status":"ok"}
//   GET    /_sandbox           public_url, time_factor, each simulator's summary and base_url, faults
//   POST   /_sandbox/faults    {"gateway":"glocash","mode":"status_500|timeout|drop|garbage|latency",
//                              "count":N (-1: until cleared), "latency_ms":M, "hold_ms":H}
//   GET    /_sandbox/faults    the faults in force;  DELETE /_sandbox/faults[?gateway=X] clears them
// Fault modes, on the gateway API endpoints only: status_500 answers 500 with an HTML body;
// timeout reads the request and never answers (held on a timer for hold_ms, default 120 s, then
// the connection is closed); drop closes the connection after reading the request; garbage
// answers 200 with a non-JSON body; latency delays the normal answer by latency_ms.
#include "service/http/router.hpp"
#include "service/http/types.hpp"
#include "service/net/http_client.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace paymux::sandbox {

namespace asio = boost::asio;
using paymux::http::FormFields;
using paymux::http::RequestContext;
using paymux::http::Response;

// An absolute http(s) URL with a host and nothing that would break out of a header or a page.
inline bool valid_http_url(std::string_view s) {
  std::string_view rest;
  if (s.rfind("https://", 0) == 0)
    rest = s.substr(8);
  else if (s.rfind("http://", 0) == 0)
    rest = s.substr(7);
  else
    return false;
  if (rest.empty() || rest.front() == '/') return false;
  for (unsigned char c : s)
    if (c <= ' ' || c == 0x7f || c == '"' || c == '<' || c == '>') return false;
  return true;
}

// Room a simulator's indexes make at start for the objects it keeps (its max_transactions or
// max_orders, up to a bound; beyond it they grow as they fill). Growing a hash table moves all it
// holds at once, on the simulator's one thread: with indexes of ~100,000 objects and more, that
// held every request in flight for 50-250 ms.
inline std::size_t index_room(std::size_t kept) { return std::min<std::size_t>(kept, 1'000'000); }
// The same for one of several per-account indexes.
inline std::size_t index_room(std::size_t kept, std::size_t accounts) {
  return accounts <= 1 ? index_room(kept) : index_room(kept) / 4;
}

// ---------------------------------------------------------------------------------------------
// Configuration

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;  // "path.to[0].key: what is wrong"
};

// Expands ${VAR} (unset: error), ${VAR:-default} (unset or empty: default) and $$ (a literal $).
// `path` names the key in error messages; values are never printed.
std::string substitute_env(std::string_view text, const std::string& path);

// A YAML node with the key path that reached it, for error messages. Scalars are env-substituted
// when read. Call allow_only() on every mapping so that a typo fails loudly.
class ConfigNode {
 public:
  ConfigNode(YAML::Node node, std::string path) : node_(std::move(node)), path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  bool is_map() const { return node_.IsMap(); }
  bool has(std::string_view key) const;
  ConfigNode child(std::string_view key) const;  // the node may be undefined: check has()
  void allow_only(std::initializer_list<std::string_view> keys) const;
  std::vector<std::string> keys() const;

  std::string str(std::string_view key, std::string default_value) const;
  std::string required_str(std::string_view key) const;
  std::int64_t integer(std::string_view key, std::int64_t default_value, std::int64_t min, std::int64_t max) const;
  double number(std::string_view key, double default_value, double min, double max) const;
  bool boolean(std::string_view key, bool default_value) const;
  std::vector<ConfigNode> list(std::string_view key) const;  // absent: empty
  std::vector<std::int64_t> integer_list(std::string_view key, std::vector<std::int64_t> default_value,
                                         std::int64_t min, std::int64_t max) const;

  [[noreturn]] void fail(std::string_view key, std::string_view message) const;

 private:
  std::string key_path(std::string_view key) const;
  std::string scalar(std::string_view key) const;  // substituted; requires a scalar node
  YAML::Node node_;
  std::string path_;
};

struct SandboxConfig {
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 9090;
  std::string public_url;  // base of the pages served; empty: derived from the bound address
  unsigned threads = 1;    // 0: one per core
  double time_factor = 1.0;  // divides every retry delay (60: minutes become seconds)
  std::string log_level = "info";
  std::map<std::string, YAML::Node> sections;  // one per simulator, by name (raw, unsubstituted)
};

// Reads the file; `simulators` are the section names accepted besides the frame's own keys.
SandboxConfig load_config(const std::string& path, const std::vector<std::string>& simulators);
// "HOST:PORT" or "[v6]:PORT"; throws ConfigError naming `what`.
void parse_listen(std::string_view text, std::string& host, std::uint16_t& port, const std::string& what);

// ---------------------------------------------------------------------------------------------
// Cancellable sleeps: every timer a simulator waits on (retry delays, latency faults, held
// requests) is registered here so that stop() wakes them all and a shutdown never waits for one.

class Sleeper {
 public:
  Sleeper();
  ~Sleeper();

  // Waits on a timer of the calling coroutine's executor. True when the time elapsed, false when
  // stop() cut it short (or had already been called).
  asio::awaitable<bool> sleep(std::chrono::milliseconds d);
  void stop();
  bool stopped() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// ---------------------------------------------------------------------------------------------
// Fault injection on gateway API endpoints (not pages, not the control API).

enum class FaultMode { status_500, timeout, drop, garbage, latency };
std::optional<FaultMode> parse_fault_mode(std::string_view s);
std::string_view to_string(FaultMode m);

struct FaultSpec {
  FaultMode mode = FaultMode::status_500;
  std::int64_t count = 1;  // requests still to affect; -1: until cleared
  std::chrono::milliseconds latency{0};       // latency mode: added before the normal answer
  std::chrono::milliseconds hold{120000};     // timeout mode: how long a request is held unanswered
};

class FaultInjector {
 public:
  void set(const std::string& gateway, FaultSpec spec);
  void clear();                               // all gateways
  void clear(const std::string& gateway);
  // The fault to apply to one request to `gateway`, consuming one from its count. Cheap when no
  // fault is configured (one atomic load).
  std::optional<FaultSpec> take(const std::string& gateway);
  boost::json::value describe() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, FaultSpec> faults_;
  std::atomic<bool> any_{false};
};

// ---------------------------------------------------------------------------------------------
// Gateway API requests received (every endpoint wrapped by Sandbox::faulty, faulted or not), so
// that tests can count what a client sent, and when: the most recent kCapacity of them.

class RequestLog {
 public:
  static constexpr std::size_t kCapacity = 200000;
  void record(const std::string& gateway, std::string path);
  // Oldest first; an empty gateway or path matches any, since_ms is epoch ms (inclusive).
  boost::json::value describe(std::string_view gateway, std::string_view path, std::int64_t since_ms) const;

 private:
  struct Entry {
    std::string gateway;
    std::string path;
    std::int64_t at_ms = 0;
  };
  mutable std::mutex mutex_;
  std::deque<Entry> entries_;
};

// ---------------------------------------------------------------------------------------------
// Notifications sent to the merchant (paymux), re-sent on the gateway's schedule until the answer
// says "received". Each delivery runs as its own coroutine on its own strand.

struct DeliveryAttempt {
  int attempt = 0;            // 1-based within one notification
  bool acknowledged = false;  // the answer counted as "received"
  bool final = false;         // no further attempt follows (acknowledged, exhausted or stopped)
  net::SendOutcome outcome = net::SendOutcome::not_sent;
  unsigned http_status = 0;
  std::string error;      // transport error when any
  std::string body;       // the answer's body, truncated
  std::int64_t at_ms = 0; // wall clock
  std::chrono::microseconds latency{0};
};

struct NotificationJob {
  std::string gateway;  // for logs
  std::string subject;  // what it is about (a transaction id), for logs
  net::OutboundRequest request;
  std::vector<std::chrono::seconds> retry_delays;  // gateway time; the last one repeats
  int max_attempts = 1;
  // Default: HTTP 200 means received.
  std::function<bool(const net::OutboundResponse&)> acknowledged;
  std::function<void(const DeliveryAttempt&)> on_attempt;  // called after every attempt
};

std::string_view to_string(net::SendOutcome o);

// One attempt at sending a gateway notification, as the simulators' control APIs list it.
struct NotifyLogEntry {
  std::int64_t at_ms = 0;
  std::string status;       // the status notified
  std::string notify_type;  // Glocash's PGW_NOTIFYTYPE; empty for the others
  int attempt = 0;
  bool manual = false;  // sent through the control API, outside the schedule
  bool acknowledged = false;
  bool final = false;
  std::string outcome;
  unsigned http_status = 0;
  std::string error;
  std::string body;  // the answer, truncated

  // An attempt of the schedule, as the Notifier reports it.
  static NotifyLogEntry scheduled(const DeliveryAttempt& a, std::string status, std::size_t body_max);
  // The attempt-th of the control API's manual sends.
  static NotifyLogEntry manual_send(int attempt, const net::OutboundResponse& r, bool acknowledged,
                                    std::string status, std::size_t body_max);
};

// How a simulator shows its notification log: its gateway's name for the status, and which of the
// optional fields it lists.
struct NotifyLogFormat {
  std::string_view status_key;
  bool body = true;
  bool notify_type = false;
};

// A transaction's notification attempts: counters and the last entries. Guarded by the simulator.
struct NotifyLog {
  static constexpr std::size_t kKeep = 50;
  int attempts = 0;      // scheduled attempts
  int deliveries = 0;    // scheduled attempts acknowledged
  int manual_sends = 0;  // control API sends
  std::vector<NotifyLogEntry> entries;  // the last kKeep

  void record(NotifyLogEntry e);
  // Sets "attempts", "deliveries", "manual_sends" and "log" in out.
  void add_to(boost::json::object& out, const NotifyLogFormat& format) const;
};

class Sandbox;

class Notifier {
 public:
  explicit Notifier(Sandbox& frame) : frame_(frame) {}
  // Starts delivering in the background (returns at once).
  void start(NotificationJob job);
  // One send now, outside any schedule (control API: duplicate, forged, out-of-order notices).
  asio::awaitable<net::OutboundResponse> send_once(net::OutboundRequest request);
  std::size_t in_flight() const { return counters_->in_flight.load(); }

 private:
  struct Counters {
    std::atomic<std::size_t> in_flight{0};
  };
  static asio::awaitable<void> deliver(Sandbox* frame, std::shared_ptr<Counters> counters, NotificationJob job);
  Sandbox& frame_;
  std::shared_ptr<Counters> counters_ = std::make_shared<Counters>();
};

// ---------------------------------------------------------------------------------------------
// Simulators

class Simulator {
 public:
  virtual ~Simulator() = default;
  // Path prefix, config section and fault key.
  virtual std::string_view name() const = 0;
  // Gateway routes under "/<name>/...", control routes under "/_sandbox/<name>/...". Wrap the
  // gateway API endpoints with frame.faulty(name, handler) so that fault injection applies.
  virtual void mount(http::Router& router) = 0;
  // Summary for GET /_sandbox (counts, accounts without secrets).
  virtual boost::json::object describe() const { return {}; }
};

// A factory per simulator: builds it from its config section (which may be absent: the
// simulator then runs with its defaults, or refuses with a ConfigError).
struct SimulatorFactory {
  std::string name;
  std::function<std::unique_ptr<Simulator>(Sandbox& frame, const ConfigNode& section)> create;
};

class Sandbox {
 public:
  Sandbox(asio::io_context& ioc, SandboxConfig config);
  ~Sandbox();

  const SandboxConfig& config() const { return config_; }
  asio::io_context& io_context() { return ioc_; }
  // Set once before serving (the bound port may be known only then); read-only afterwards.
  const std::string& public_url() const { return public_url_; }
  void set_public_url(std::string url);

  net::HttpClient& client() { return *client_; }
  FaultInjector& faults() { return faults_; }
  RequestLog& requests() { return requests_; }
  Notifier& notifier() { return notifier_; }
  Sleeper& sleeper() { return sleeper_; }

  // A gateway delay scaled by time_factor.
  std::chrono::milliseconds scaled(std::chrono::milliseconds gateway_time) const;

  void add(std::unique_ptr<Simulator> sim);
  // The frame's own routes (/_sandbox, /_sandbox/healthz, /_sandbox/faults, /_sandbox/requests)
  // and every simulator's.
  void mount(http::Router& router);
  // Wraps a gateway API handler with the fault injection of `gateway`.
  http::Handler faulty(std::string gateway, http::Handler inner);

  // Shutdown: wakes every sleeper (held requests end, retries stop). Idempotent.
  void stop();
  bool stopping() const { return sleeper_.stopped(); }

 private:
  static asio::awaitable<Response> run_faulty(Sandbox* self, std::shared_ptr<const std::string> gateway,
                                              std::shared_ptr<const http::Handler> inner, RequestContext& ctx);
  asio::awaitable<Response> overview(RequestContext& ctx);
  asio::awaitable<Response> list_faults(RequestContext& ctx);
  asio::awaitable<Response> set_fault(RequestContext& ctx);
  asio::awaitable<Response> clear_faults(RequestContext& ctx);
  asio::awaitable<Response> list_requests(RequestContext& ctx);

  asio::io_context& ioc_;
  SandboxConfig config_;
  std::string public_url_;
  std::unique_ptr<net::HttpClient> client_;
  FaultInjector faults_;
  RequestLog requests_;
  Sleeper sleeper_;
  Notifier notifier_;
  std::vector<std::unique_ptr<Simulator>> simulators_;
};

// ---------------------------------------------------------------------------------------------
// Small helpers for handlers and pages

// Lower-case hex SHA-256 of the concatenation of parts (the shape most gateways sign with).
std::string sha256_concat(std::initializer_list<std::string_view> parts);
std::int64_t unix_seconds();
// A random string over `alphabet`.
std::string random_string(std::size_t n, std::string_view alphabet);
std::string random_hex(std::size_t bytes);
// The last occurrence of key (PHP's $_POST semantics); empty when absent.
std::string_view last_value(const FormFields& fields, std::string_view key);
bool has_field(const FormFields& fields, std::string_view key);
// True when the request's Content-Type is application/x-www-form-urlencoded.
bool is_form(const http::Request& req);
// Number of UTF-8 code points (invalid bytes count one each).
std::size_t utf8_length(std::string_view s);

std::string html_escape(std::string_view s);
// A complete, self-contained page (no external resources): title, inline CSS, the body markup.
std::string html_page(std::string_view title, std::string_view body_html);
// A page that POSTs `fields` to `action` at once (script), with a visible button for no-script.
std::string auto_post_page(std::string_view title, std::string_view message, std::string_view action,
                           const FormFields& fields);
Response html_response(http::bhttp::status status, std::string body, const http::Request& req);
Response json_reply(http::bhttp::status status, const boost::json::value& body, const http::Request& req);
// {"error": message} with a status, for the control API.
Response control_error(http::bhttp::status status, std::string_view message, const http::Request& req);

}  // namespace paymux::sandbox
