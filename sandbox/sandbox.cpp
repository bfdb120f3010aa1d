#include "sandbox/sandbox.hpp"

#include "service/core/clock.hpp"
#include "service/core/crypto.hpp"
#include "service/http/errors.hpp"
#include "service/http/html.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <unordered_set>

namespace paymux::sandbox {

namespace json = boost::json;
using http::bhttp::status;

// =============================================================================================
// Configuration

namespace {

bool is_var_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_var_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

std::string substitute_env(std::string_view text, const std::string& path) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c != '$' || i + 1 >= text.size()) {
      out.push_back(c);
      continue;
    }
    if (text[i + 1] == '$') {
      out.push_back('$');
      ++i;
      continue;
    }
    if (text[i + 1] != '{') {
      out.push_back(c);
      continue;
    }
    auto close = text.find('}', i + 2);
    if (close == std::string_view::npos) throw ConfigError(path + ": unterminated ${...}");
    std::string_view inner = text.substr(i + 2, close - i - 2);
    std::string_view name = inner;
    std::optional<std::string_view> fallback;
    if (auto sep = inner.find(":-"); sep != std::string_view::npos) {
      name = inner.substr(0, sep);
      fallback = inner.substr(sep + 2);
    }
    if (name.empty() || !is_var_start(name.front()) || !std::all_of(name.begin(), name.end(), is_var_char))
      throw ConfigError(path + ": malformed variable reference ${" + std::string(name) + "}");
    const char* value = std::getenv(std::string(name).c_str());
    if (value && *value) {
      out += value;
    } else if (fallback) {
      out += *fallback;
    } else if (value) {
      out += value;  // set but empty, no default: empty
    } else {
      throw ConfigError(path + ": environment variable " + std::string(name) + " is not set");
    }
    i = close;
  }
  return out;
}

std::string ConfigNode::key_path(std::string_view key) const {
  if (path_.empty()) return std::string(key);
  return path_ + "." + std::string(key);
}

void ConfigNode::fail(std::string_view key, std::string_view message) const {
  std::string where = key.empty() ? path_ : key_path(key);
  throw ConfigError((where.empty() ? std::string("(root)") : where) + ": " + std::string(message));
}

bool ConfigNode::has(std::string_view key) const {
  if (!node_.IsMap()) return false;
  auto child = node_[std::string(key)];
  return child.IsDefined() && !child.IsNull();
}

ConfigNode ConfigNode::child(std::string_view key) const {
  if (!node_.IsMap()) return ConfigNode(YAML::Node(), key_path(key));
  return ConfigNode(node_[std::string(key)], key_path(key));
}

std::vector<std::string> ConfigNode::keys() const {
  std::vector<std::string> out;
  if (!node_.IsMap()) return out;
  for (const auto& kv : node_) out.push_back(kv.first.as<std::string>());
  return out;
}

void ConfigNode::allow_only(std::initializer_list<std::string_view> allowed) const {
  if (!node_.IsDefined() || node_.IsNull()) return;
  if (!node_.IsMap()) fail({}, "must be a mapping");
  for (const auto& k : keys())
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) fail(k, "unknown key");
}

std::string ConfigNode::scalar(std::string_view key) const {
  auto n = node_[std::string(key)];
  if (!n.IsScalar()) fail(key, "must be a scalar value");
  return substitute_env(n.Scalar(), key_path(key));
}

std::string ConfigNode::str(std::string_view key, std::string default_value) const {
  if (!has(key)) return default_value;
  return scalar(key);
}

std::string ConfigNode::required_str(std::string_view key) const {
  if (!has(key)) fail(key, "is required");
  auto v = scalar(key);
  if (v.empty()) fail(key, "must not be empty");
  return v;
}

std::int64_t ConfigNode::integer(std::string_view key, std::int64_t default_value, std::int64_t min,
                                 std::int64_t max) const {
  if (!has(key)) return default_value;
  auto text = trim(scalar(key));
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || errno != 0 || *end != '\0') fail(key, "must be an integer");
  if (v < min || v > max)
    fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  return v;
}

double ConfigNode::number(std::string_view key, double default_value, double min, double max) const {
  if (!has(key)) return default_value;
  auto text = trim(scalar(key));
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || errno != 0 || *end != '\0' || !std::isfinite(v)) fail(key, "must be a number");
  if (v < min || v > max) fail(key, "is out of range");
  return v;
}

bool ConfigNode::boolean(std::string_view key, bool default_value) const {
  if (!has(key)) return default_value;
  auto v = scalar(key);
  if (v == "true" || v == "yes" || v == "on" || v == "1") return true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return false;
  fail(key, "must be true or false");
}

std::vector<ConfigNode> ConfigNode::list(std::string_view key) const {
  std::vector<ConfigNode> out;
  if (!has(key)) return out;
  auto n = node_[std::string(key)];
  if (!n.IsSequence()) fail(key, "must be a list");
  for (std::size_t i = 0; i < n.size(); ++i)
    out.emplace_back(n[i], key_path(key) + "[" + std::to_string(i) + "]");
  return out;
}

std::vector<std::int64_t> ConfigNode::integer_list(std::string_view key, std::vector<std::int64_t> default_value,
                                                   std::int64_t min, std::int64_t max) const {
  if (!has(key)) return default_value;
  auto n = node_[std::string(key)];
  if (!n.IsSequence()) fail(key, "must be a list of integers");
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < n.size(); ++i) {
    std::string item_path = key_path(key) + "[" + std::to_string(i) + "]";
    if (!n[i].IsScalar()) throw ConfigError(item_path + ": must be an integer");
    auto text = trim(substitute_env(n[i].Scalar(), item_path));
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || errno != 0 || *end != '\0') throw ConfigError(item_path + ": must be an integer");
    if (v < min || v > max)
      throw ConfigError(item_path + ": must be between " + std::to_string(min) + " and " + std::to_string(max));
    out.push_back(v);
  }
  return out;
}

void parse_listen(std::string_view text, std::string& host, std::uint16_t& port, const std::string& what) {
  std::string_view h;
  std::string_view p;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw ConfigError(what + ": must be HOST:PORT");
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) throw ConfigError(what + ": must be HOST:PORT");
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  if (h.empty() || p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), [](char c) {
        return c >= '0' && c <= '9';
      }))
    throw ConfigError(what + ": must be HOST:PORT");
  unsigned long v = std::stoul(std::string(p));
  if (v > 65535) throw ConfigError(what + ": port out of range");
  boost::system::error_code ec;
  asio::ip::make_address(std::string(h), ec);
  if (ec) throw ConfigError(what + ": host must be an IP address");
  host = std::string(h);
  port = static_cast<std::uint16_t>(v);
}

SandboxConfig load_config(const std::string& path, const std::vector<std::string>& simulators) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw ConfigError(path + ": cannot read the file");
  } catch (const YAML::Exception& e) {
    throw ConfigError(path + ": YAML error at line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  SandboxConfig cfg;
  ConfigNode top(root, "");
  if (root.IsDefined() && !root.IsNull() && !root.IsMap()) top.fail({}, "the file must hold a mapping");
  for (const auto& key : top.keys()) {
    static constexpr std::string_view own[] = {"listen", "public_url", "threads", "time_factor", "log_level"};
    if (std::find(std::begin(own), std::end(own), key) != std::end(own)) continue;
    if (std::find(simulators.begin(), simulators.end(), key) != simulators.end()) {
      cfg.sections[key] = root[key];
      continue;
    }
    top.fail(key, "unknown key");
  }
  if (top.has("listen")) parse_listen(top.str("listen", ""), cfg.listen_host, cfg.listen_port, "listen");
  cfg.public_url = top.str("public_url", "");
  while (!cfg.public_url.empty() && cfg.public_url.back() == '/') cfg.public_url.pop_back();
  if (!cfg.public_url.empty() && cfg.public_url.rfind("http://", 0) != 0 && cfg.public_url.rfind("https://", 0) != 0)
    top.fail("public_url", "must start with http:// or https://");
  cfg.threads = static_cast<unsigned>(top.integer("threads", 1, 0, 256));
  cfg.time_factor = top.number("time_factor", 1.0, 0.000001, 1e9);
  cfg.log_level = top.str("log_level", "info");
  if (spdlog::level::from_str(cfg.log_level) == spdlog::level::off && cfg.log_level != "off")
    top.fail("log_level", "must be one of trace, debug, info, warn, error, critical, off");
  return cfg;
}

// =============================================================================================
// Sleeper

struct Sleeper::State {
  std::mutex mutex;
  std::unordered_set<asio::steady_timer*> timers;
  std::atomic<bool> stopped{false};
};

Sleeper::Sleeper() : state_(std::make_shared<State>()) {}
Sleeper::~Sleeper() = default;

asio::awaitable<bool> Sleeper::sleep(std::chrono::milliseconds d) {
  auto state = state_;
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  {
    std::lock_guard lock(state->mutex);
    if (state->stopped) co_return false;
    state->timers.insert(&timer);
  }
  auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  {
    std::lock_guard lock(state->mutex);
    state->timers.erase(&timer);
  }
  co_return !ec && !state->stopped;
}

bool Sleeper::stopped() const { return state_->stopped.load(); }

void Sleeper::stop() {
  auto state = state_;
  std::lock_guard lock(state->mutex);
  state->stopped = true;
  for (auto* t : state->timers) {
    // A timer belongs to its coroutine's executor (a strand): cancel it there, and only if its
    // coroutine has not left the wait meanwhile.
    asio::post(t->get_executor(), [state, t] {
      std::lock_guard inner(state->mutex);
      if (state->timers.count(t)) t->cancel();
    });
  }
}

// =============================================================================================
// Faults

std::optional<FaultMode> parse_fault_mode(std::string_view s) {
  if (s == "status_500") return FaultMode::status_500;
  if (s == "timeout") return FaultMode::timeout;
  if (s == "drop") return FaultMode::drop;
  if (s == "garbage") return FaultMode::garbage;
  if (s == "latency") return FaultMode::latency;
  return std::nullopt;
}

std::string_view to_string(FaultMode m) {
  switch (m) {
    case FaultMode::status_500: return "status_500";
    case FaultMode::timeout: return "timeout";
    case FaultMode::drop: return "drop";
    case FaultMode::garbage: return "garbage";
    case FaultMode::latency: return "latency";
  }
  return "unknown";
}

void FaultInjector::set(const std::string& gateway, FaultSpec spec) {
  std::lock_guard lock(mutex_);
  if (spec.count == 0)
    faults_.erase(gateway);
  else
    faults_[gateway] = spec;
  any_ = !faults_.empty();
}

void FaultInjector::clear() {
  std::lock_guard lock(mutex_);
  faults_.clear();
  any_ = false;
}

void FaultInjector::clear(const std::string& gateway) {
  std::lock_guard lock(mutex_);
  faults_.erase(gateway);
  any_ = !faults_.empty();
}

std::optional<FaultSpec> FaultInjector::take(const std::string& gateway) {
  if (!any_.load(std::memory_order_relaxed)) return std::nullopt;
  std::lock_guard lock(mutex_);
  auto it = faults_.find(gateway);
  if (it == faults_.end()) return std::nullopt;
  FaultSpec spec = it->second;
  if (it->second.count > 0 && --it->second.count == 0) faults_.erase(it);
  any_ = !faults_.empty();
  return spec;
}

json::value FaultInjector::describe() const {
  std::lock_guard lock(mutex_);
  json::array out;
  for (const auto& [gw, f] : faults_) {
    json::object o;
    o["gateway"] = gw;
    o["mode"] = to_string(f.mode);
    o["count"] = f.count;
    o["latency_ms"] = f.latency.count();
    o["hold_ms"] = f.hold.count();
    out.push_back(std::move(o));
  }
  return out;
}

// =============================================================================================
// Request log

void RequestLog::record(const std::string& gateway, std::string path) {
  const auto at = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::lock_guard lock(mutex_);
  if (entries_.size() >= kCapacity) entries_.pop_front();
  entries_.push_back(Entry{gateway, std::move(path), at});
}

json::value RequestLog::describe(std::string_view gateway, std::string_view path, std::int64_t since_ms) const {
  std::lock_guard lock(mutex_);
  json::array out;
  for (const auto& e : entries_) {
    if ((!gateway.empty() && e.gateway != gateway) || (!path.empty() && e.path != path) || e.at_ms < since_ms)
      continue;
    out.push_back(json::object{{"gateway", e.gateway}, {"path", e.path}, {"at_ms", e.at_ms}});
  }
  return out;
}

// =============================================================================================
// Notifier

std::string_view to_string(net::SendOutcome o) {
  switch (o) {
    case net::SendOutcome::response: return "response";
    case net::SendOutcome::not_sent: return "not_sent";
    case net::SendOutcome::unknown: return "unknown";
  }
  return "unknown";
}

NotifyLogEntry NotifyLogEntry::scheduled(const DeliveryAttempt& a, std::string status, std::size_t body_max) {
  NotifyLogEntry e;
  e.at_ms = a.at_ms;
  e.status = std::move(status);
  e.attempt = a.attempt;
  e.acknowledged = a.acknowledged;
  e.final = a.final;
  e.outcome = std::string(to_string(a.outcome));
  e.http_status = a.http_status;
  e.error = a.error;
  e.body = a.body.substr(0, body_max);
  return e;
}

NotifyLogEntry NotifyLogEntry::manual_send(int attempt, const net::OutboundResponse& r, bool acknowledged,
                                           std::string status, std::size_t body_max) {
  NotifyLogEntry e;
  e.at_ms = now_ms();
  e.status = std::move(status);
  e.attempt = attempt;
  e.manual = true;
  e.acknowledged = acknowledged;
  e.final = true;
  e.outcome = std::string(to_string(r.outcome));
  e.http_status = r.status;
  e.error = r.error;
  e.body = r.body.substr(0, body_max);
  return e;
}

void NotifyLog::record(NotifyLogEntry e) {
  if (e.manual) {
    ++manual_sends;
  } else {
    ++attempts;
    if (e.acknowledged) ++deliveries;
  }
  entries.push_back(std::move(e));
  if (entries.size() > kKeep)
    entries.erase(entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(entries.size() - kKeep));
}

void NotifyLog::add_to(json::object& out, const NotifyLogFormat& format) const {
  json::array log;
  for (const auto& e : entries) {
    json::object x;
    x["at_ms"] = e.at_ms;
    x[format.status_key] = e.status;
    if (format.notify_type) x["notify_type"] = e.notify_type;
    x["attempt"] = e.attempt;
    x["manual"] = e.manual;
    x["acknowledged"] = e.acknowledged;
    x["final"] = e.final;
    x["outcome"] = e.outcome;
    x["http_status"] = e.http_status;
    if (format.body) x["body"] = e.body;
    if (!e.error.empty()) x["error"] = e.error;
    log.push_back(std::move(x));
  }
  out["attempts"] = attempts;
  out["deliveries"] = deliveries;
  out["manual_sends"] = manual_sends;
  out["log"] = std::move(log);
}

void Notifier::start(NotificationJob job) {
  if (job.max_attempts < 1) job.max_attempts = 1;
  ++counters_->in_flight;
  asio::co_spawn(asio::make_strand(frame_.io_context()), deliver(&frame_, counters_, std::move(job)),
                 asio::detached);
}

asio::awaitable<net::OutboundResponse> Notifier::send_once(net::OutboundRequest request) {
  auto* frame = &frame_;
  auto counters = counters_;
  ++counters->in_flight;
  struct Done {
    std::shared_ptr<Counters> c;
    ~Done() { --c->in_flight; }
  } done{counters};
  co_return co_await frame->client().send(std::move(request));
}

asio::awaitable<void> Notifier::deliver(Sandbox* frame, std::shared_ptr<Counters> counters, NotificationJob job) {
  struct Done {
    std::shared_ptr<Counters> c;
    ~Done() { --c->in_flight; }
  } done{counters};
  for (int attempt = 1; attempt <= job.max_attempts; ++attempt) {
    if (attempt > 1) {
      std::chrono::seconds delay{60};
      if (!job.retry_delays.empty())
        delay = job.retry_delays[std::min<std::size_t>(attempt - 2, job.retry_delays.size() - 1)];
      if (!co_await frame->sleeper().sleep(frame->scaled(delay))) {
        spdlog::info("{} notification {}: stopped before attempt {}", job.gateway, job.subject, attempt);
        co_return;
      }
    }
    auto res = co_await frame->client().send(job.request);
    DeliveryAttempt a;
    a.attempt = attempt;
    a.outcome = res.outcome;
    a.http_status = res.status;
    a.error = res.error;
    a.body = res.body.substr(0, 512);
    a.latency = res.latency;
    a.at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
    a.acknowledged = job.acknowledged ? job.acknowledged(res)
                                      : (res.outcome == net::SendOutcome::response && res.status == 200);
    a.final = a.acknowledged || attempt == job.max_attempts || frame->stopping();
    if (a.acknowledged)
      spdlog::info("{} notification {} attempt {}/{} to {}: HTTP {} acknowledged", job.gateway, job.subject,
                   attempt, job.max_attempts, job.request.url, res.status);
    else
      spdlog::warn("{} notification {} attempt {}/{} to {}: {} {} {}{}", job.gateway, job.subject, attempt,
                   job.max_attempts, job.request.url, to_string(res.outcome), res.status, res.error,
                   a.final ? " (giving up)" : "");
    if (job.on_attempt) job.on_attempt(a);
    if (a.final) co_return;
  }
}

// =============================================================================================
// Sandbox

Sandbox::Sandbox(asio::io_context& ioc, SandboxConfig config)
    : ioc_(ioc), config_(std::move(config)), public_url_(config_.public_url), notifier_(*this) {
  net::ClientOptions opts;
  opts.allow_plain_http = true;
  opts.user_agent = "paymux-sandbox/0.1";
  client_ = std::make_unique<net::HttpClient>(ioc_.get_executor(), opts);
}

Sandbox::~Sandbox() = default;

void Sandbox::set_public_url(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  public_url_ = std::move(url);
}

std::chrono::milliseconds Sandbox::scaled(std::chrono::milliseconds gateway_time) const {
  double ms = static_cast<double>(gateway_time.count()) / config_.time_factor;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(ms)));
}

void Sandbox::add(std::unique_ptr<Simulator> sim) { simulators_.push_back(std::move(sim)); }

void Sandbox::stop() { sleeper_.stop(); }

http::Handler Sandbox::faulty(std::string gateway, http::Handler inner) {
  auto gw = std::make_shared<const std::string>(std::move(gateway));
  auto h = std::make_shared<const http::Handler>(std::move(inner));
  return [this, gw, h](RequestContext& ctx) { return run_faulty(this, gw, h, ctx); };
}

asio::awaitable<Response> Sandbox::run_faulty(Sandbox* self, std::shared_ptr<const std::string> gateway,
                                              std::shared_ptr<const http::Handler> inner, RequestContext& ctx) {
  self->requests_.record(*gateway, std::string(ctx.path));
  auto fault = self->faults_.take(*gateway);
  if (!fault) co_return co_await (*inner)(ctx);
  spdlog::info("fault {} on {} {}", to_string(fault->mode), *gateway, ctx.path);
  // An exception with operation_aborted ends the connection without an answer (the server's
  // "shutdown" path): that is what a dropped connection or a gateway that never answers looks like.
  const auto abort_connection = [] {
    throw boost::system::system_error(asio::error::operation_aborted, "sandbox fault");
  };
  switch (fault->mode) {
    case FaultMode::status_500: {
      auto res = html_response(status::internal_server_error,
                               "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
                               "<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n"
                               "</body>\r\n</html>\r\n",
                               ctx.req);
      co_return res;
    }
    case FaultMode::garbage:
      // What a PHP gateway prints when its database is away: a warning and half an answer.
      co_return http::text_response(status::ok,
                                    "<br />\n<b>Warning</b>:  mysqli_connect(): (HY000/2002): Connection refused in "
                                    "<b>/var/www/gateway/index.php</b> on line <b>42</b><br />\n{\"TNS_GCID\":\"",
                                    ctx.req, "text/html; charset=UTF-8");
    case FaultMode::drop:
      abort_connection();
      break;
    case FaultMode::timeout:
      co_await self->sleeper_.sleep(fault->hold);
      abort_connection();
      break;
    case FaultMode::latency:
      if (!co_await self->sleeper_.sleep(fault->latency)) abort_connection();
      co_return co_await (*inner)(ctx);
  }
  co_return co_await (*inner)(ctx);
}

void Sandbox::mount(http::Router& router) {
  router.add(http::bhttp::verb::get, "/_sandbox/healthz", [](RequestContext& ctx) -> asio::awaitable<Response> {
    co_return json_reply(status::ok, json::object{{"status", "ok"}}, ctx.req);
  });
  router.add(http::bhttp::verb::get, "/_sandbox", [this](RequestContext& ctx) { return overview(ctx); });
  router.add(http::bhttp::verb::get, "/_sandbox/faults", [this](RequestContext& ctx) { return list_faults(ctx); });
  router.add(http::bhttp::verb::post, "/_sandbox/faults",
             [this](RequestContext& ctx) { return set_fault(ctx); });
  router.add(http::bhttp::verb::delete_, "/_sandbox/faults",
             [this](RequestContext& ctx) { return clear_faults(ctx); });
  router.add(http::bhttp::verb::get, "/_sandbox/requests",
             [this](RequestContext& ctx) { return list_requests(ctx); });
  for (auto& sim : simulators_) sim->mount(router);
}

asio::awaitable<Response> Sandbox::list_requests(RequestContext& ctx) {
  auto fields = http::parse_form(ctx.query);
  std::int64_t since = 0;
  const auto since_text = last_value(fields, "since_ms");
  if (!since_text.empty()) {
    auto [ptr, ec] = std::from_chars(since_text.data(), since_text.data() + since_text.size(), since);
    if (ec != std::errc() || ptr != since_text.data() + since_text.size())
      co_return control_error(status::bad_request, "since_ms must be an integer", ctx.req);
  }
  auto list = requests_.describe(last_value(fields, "gateway"), last_value(fields, "path"), since);
  const auto count = list.as_array().size();
  co_return json_reply(status::ok, json::object{{"requests", std::move(list)}, {"count", count}}, ctx.req);
}

asio::awaitable<Response> Sandbox::overview(RequestContext& ctx) {
  json::object o;
  o["public_url"] = public_url_;
  o["time_factor"] = config_.time_factor;
  json::object sims;
  for (const auto& s : simulators_) {
    auto d = s->describe();
    d["base_url"] = public_url_ + "/" + std::string(s->name());
    sims[s->name()] = std::move(d);
  }
  o["simulators"] = std::move(sims);
  o["faults"] = faults_.describe();
  o["notifications_in_flight"] = notifier_.in_flight();
  co_return json_reply(status::ok, o, ctx.req);
}

asio::awaitable<Response> Sandbox::list_faults(RequestContext& ctx) {
  co_return json_reply(status::ok, json::object{{"faults", faults_.describe()}}, ctx.req);
}

asio::awaitable<Response> Sandbox::set_fault(RequestContext& ctx) {
  boost::system::error_code ec;
  auto body = json::parse(ctx.req.body(), ec);
  if (ec || !body.is_object()) co_return control_error(status::bad_request, "body must be a JSON object", ctx.req);
  const auto& o = body.as_object();
  const auto* gw = o.if_contains("gateway");
  const auto* mode = o.if_contains("mode");
  if (!gw || !gw->is_string()) co_return control_error(status::bad_request, "gateway is required", ctx.req);
  std::string gateway(gw->as_string());
  bool known = std::any_of(simulators_.begin(), simulators_.end(),
                           [&](const auto& s) { return s->name() == gateway; });
  if (!known) co_return control_error(status::bad_request, "unknown gateway: " + gateway, ctx.req);
  if (!mode || !mode->is_string()) co_return control_error(status::bad_request, "mode is required", ctx.req);
  auto m = parse_fault_mode(std::string_view(mode->as_string()));
  if (!m)
    co_return control_error(status::bad_request, "mode must be status_500, timeout, drop, garbage or latency",
                            ctx.req);
  FaultSpec spec;
  spec.mode = *m;
  auto read_int = [&](const char* key, std::int64_t def, std::int64_t min, std::int64_t max,
                      std::int64_t& out) -> bool {
    const auto* v = o.if_contains(key);
    if (!v || v->is_null()) {
      out = def;
      return true;
    }
    if (!v->is_int64() && !v->is_uint64()) return false;
    auto x = v->is_int64() ? v->as_int64() : static_cast<std::int64_t>(v->as_uint64());
    if (x < min || x > max) return false;
    out = x;
    return true;
  };
  std::int64_t count = 0, latency = 0, hold = 0;
  if (!read_int("count", 1, -1, 1'000'000'000, count))
    co_return control_error(status::bad_request, "count must be an integer >= -1", ctx.req);
  if (!read_int("latency_ms", 1000, 0, 3'600'000, latency))
    co_return control_error(status::bad_request, "latency_ms must be 0..3600000", ctx.req);
  if (!read_int("hold_ms", 120000, 0, 3'600'000, hold))
    co_return control_error(status::bad_request, "hold_ms must be 0..3600000", ctx.req);
  spec.count = count;
  spec.latency = std::chrono::milliseconds(latency);
  spec.hold = std::chrono::milliseconds(hold);
  faults_.set(gateway, spec);
  spdlog::info("fault set: {} {} count={} latency_ms={} hold_ms={}", gateway, to_string(spec.mode), spec.count,
               latency, hold);
  co_return json_reply(status::ok, json::object{{"faults", faults_.describe()}}, ctx.req);
}

asio::awaitable<Response> Sandbox::clear_faults(RequestContext& ctx) {
  auto fields = http::parse_form(ctx.query);
  auto gw = last_value(fields, "gateway");
  if (gw.empty())
    faults_.clear();
  else
    faults_.clear(std::string(gw));
  spdlog::info("faults cleared{}{}", gw.empty() ? "" : ": ", gw);
  co_return json_reply(status::ok, json::object{{"faults", faults_.describe()}}, ctx.req);
}

// =============================================================================================
// Helpers

std::string sha256_concat(std::initializer_list<std::string_view> parts) {
  std::size_t n = 0;
  for (auto p : parts) n += p.size();
  std::string data;
  data.reserve(n);
  for (auto p : parts) data.append(p);
  return crypto::sha256_hex(data, false);
}

std::int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_string(std::size_t n, std::string_view alphabet) {
  std::string out(n, '\0');
  unsigned char buf[64];
  std::size_t i = 0;
  // Rejection sampling keeps every character equally likely.
  const unsigned limit = 256 - (256 % alphabet.size());
  while (i < n) {
    crypto::random_bytes(buf, sizeof buf);
    for (unsigned char b : buf) {
      if (b >= limit) continue;
      out[i++] = alphabet[b % alphabet.size()];
      if (i == n) break;
    }
  }
  return out;
}

std::string random_hex(std::size_t bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string raw(bytes, '\0');
  crypto::random_bytes(raw.data(), raw.size());
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char c : raw) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

std::string_view last_value(const FormFields& fields, std::string_view key) {
  for (auto it = fields.rbegin(); it != fields.rend(); ++it)
    if (it->first == key) return it->second;
  return {};
}

bool has_field(const FormFields& fields, std::string_view key) {
  for (const auto& kv : fields)
    if (kv.first == key) return true;
  return false;
}

bool is_form(const http::Request& req) {
  std::string_view ct = req[http::bhttp::field::content_type];
  constexpr std::string_view form = "application/x-www-form-urlencoded";
  if (ct.size() < form.size()) return false;
  for (std::size_t i = 0; i < form.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(ct[i])) != form[i]) return false;
  return ct.size() == form.size() || ct[form.size()] == ';' || ct[form.size()] == ' ';
}

std::size_t utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

std::string html_escape(std::string_view s) { return http::escape_html(s); }

std::string html_page(std::string_view title, std::string_view body_html) {
  std::string out;
  out.reserve(2048 + body_html.size());
  out +=
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<meta name=\"robots\" content=\"noindex\">\n<title>";
  out += html_escape(title);
  out +=
      "</title>\n<style>\n"
      "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f3f4f6;color:#111827;"
      "margin:0;padding:1rem;line-height:1.5}\n"
      "main{max-width:30rem;margin:2rem auto;background:#fff;border-radius:.5rem;padding:1.5rem;"
      "box-shadow:0 1px 3px rgba(0,0,0,.15)}\n"
      "h1{font-size:1.25rem;margin:0 0 1rem}\n"
      ".sandbox{background:#fef3c7;color:#78350f;border-radius:.25rem;padding:.25rem .5rem;font-size:.85rem}\n"
      "dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:1rem 0}\n"
      "dt{color:#4b5563}dd{margin:0;font-weight:600}\n"
      "label{display:block;margin-top:.75rem;font-weight:600}\n"
      "input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem;border:1px solid #6b7280;"
      "border-radius:.25rem}\n"
      "input:focus,button:focus{outline:3px solid #2563eb;outline-offset:1px}\n"
      ".row{display:flex;gap:1rem}.row>div{flex:1}\n"
      "button{margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem;border-radius:.25rem;border:1px solid #1e40af;"
      "background:#1d4ed8;color:#fff;cursor:pointer}\n"
      "button.secondary{background:#fff;color:#1d4ed8}\n"
      ".error{background:#fee2e2;color:#7f1d1d;border-radius:.25rem;padding:.5rem;margin:1rem 0}\n"
      ".hint{font-size:.9rem;color:#374151}\n"
      "code{font-size:.95em}\n"
      "</style>\n</head>\n<body>\n<main>\n";
  out += body_html;
  out += "\n</main>\n</body>\n</html>\n";
  return out;
}

std::string auto_post_page(std::string_view title, std::string_view message, std::string_view action,
                           const FormFields& fields) {
  std::string body;
  body += "<h1>" + html_escape(title) + "</h1>\n<p role=\"status\">" + html_escape(message) + "</p>\n";
  body += "<form id=\"result\" method=\"post\" action=\"" + html_escape(action) + "\">\n";
  for (const auto& [k, v] : fields)
    body += "<input type=\"hidden\" name=\"" + html_escape(k) + "\" value=\"" + html_escape(v) + "\">\n";
  body += "<button type=\"submit\">Return to the merchant</button>\n</form>\n";
  body += "<script>document.getElementById('result').submit();</script>\n";
  return html_page(title, body);
}

Response html_response(status st, std::string body, const http::Request& req) {
  auto res = http::text_response(st, std::move(body), req, "text/html; charset=utf-8");
  res.set("Referrer-Policy", "no-referrer");
  return res;
}

Response json_reply(status st, const json::value& body, const http::Request& req) {
  return http::json_response(st, body, req);
}

Response control_error(status st, std::string_view message, const http::Request& req) {
  return json_reply(st, json::object{{"error", message}}, req);
}

}  // namespace paymux::sandbox
