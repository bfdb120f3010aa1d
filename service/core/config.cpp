#include "service/core/config.hpp"

#include "service/net/address_policy.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <utility>

namespace paymux {

std::string StorageConfig::sqlite_path() const {
  constexpr std::string_view scheme = "sqlite://";
  return is_sqlite() ? url.substr(scheme.size()) : std::string();
}

CheckSchedule ReconcilerConfig::schedule_for(std::string_view status) const {
  if (auto it = schedule.find(status); it != schedule.end()) return it->second;
  return CheckSchedule{first_check, max_interval};
}

const ConnectorConfig* Config::find_connector(std::string_view id) const {
  for (const auto& merchant : merchants)
    for (const auto& connector : merchant.connectors)
      if (connector.id == id) return &connector;
  return nullptr;
}

namespace {

namespace fs = std::filesystem;

constexpr std::array<std::string_view, 5> kProviders = {"glocash", "dhpay", "dhpay_nonce",
                                                        "shouqianba", "cashypay"};
constexpr std::array<std::string_view, 7> kLogLevels = {"trace", "debug", "info", "warn",
                                                        "error", "critical", "off"};

// Longest timeout we accept; also keeps milliseconds arithmetic far from overflow.
constexpr std::uint64_t kMaxMillis = 24ull * 60 * 60 * 1000;

// Every message starts with the key path. Callers pass descriptions, never the offending value:
// a misplaced secret must not end up in a start-up log.
[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw ConfigError((path.empty() ? std::string("config") : path) + ": " + what);
}

std::string key_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

std::string index_path(const std::string& parent, std::size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

const char* kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
  }
  return "something else";
}

bool valid_env_name(std::string_view name) {
  if (name.empty()) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!alpha(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alpha(c) || (c >= '0' && c <= '9'); });
}

// ${VAR}, ${VAR:-default} and $$. A lone `$` not followed by `{` stays as it is.
std::string substitute_env(std::string_view text, const std::string& path) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] != '$' || i + 1 == text.size()) {
      out += text[i++];
      continue;
    }
    if (text[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (text[i + 1] != '{') {
      out += text[i++];
      continue;
    }
    const auto close = text.find('}', i + 2);
    if (close == std::string_view::npos) fail(path, "unterminated ${ (write $$ for a literal $)");
    const std::string_view body = text.substr(i + 2, close - i - 2);
    const auto sep = body.find(":-");
    const std::string_view name = body.substr(0, sep);
    if (!valid_env_name(name))
      fail(path, "malformed variable reference (expected ${NAME} or ${NAME:-default})");
    const std::string name_str(name);
    const char* value = std::getenv(name_str.c_str());
    if (sep != std::string_view::npos) {
      out += (value != nullptr && *value != '\0') ? std::string_view(value) : body.substr(sep + 2);
    } else if (value != nullptr) {
      out += value;
    } else {
      fail(path, "environment variable " + name_str + " is not set");
    }
    i = close + 1;
  }
  return out;
}

// A YAML mapping with its key path. Duplicate keys are an error (yaml-cpp keeps both silently).
class Section {
 public:
  Section(const YAML::Node& node, std::string path) : path_(std::move(path)) {
    if (!node.IsDefined() || node.IsNull()) return;  // `tls:` with nothing under it: empty
    if (!node.IsMap()) fail(path_, std::string("expected a mapping, got ") + kind(node));
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) fail(path_, "keys must be strings");
      std::string key = kv.first.Scalar();
      if (find(key) != nullptr) fail(sub(key), "duplicate key");
      entries_.emplace_back(std::move(key), kv.second);
    }
  }

  const std::string& path() const { return path_; }
  std::string sub(std::string_view key) const { return key_path(path_, key); }
  const std::vector<std::pair<std::string, YAML::Node>>& entries() const { return entries_; }

  void allow_only(std::initializer_list<std::string_view> allowed) const {
    for (const auto& [key, value] : entries_)
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
        fail(sub(key), "unknown key");
  }

  const YAML::Node* find(std::string_view key) const {
    for (const auto& [k, v] : entries_)
      if (k == key) return &v;
    return nullptr;
  }

 private:
  std::string path_;
  std::vector<std::pair<std::string, YAML::Node>> entries_;
};

std::string scalar_text(const YAML::Node& n, const std::string& path, const std::string& expected) {
  if (!n.IsScalar()) fail(path, "expected " + expected);
  return substitute_env(n.Scalar(), path);
}

std::string scalar_string(const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) fail(path, std::string("expected a string, got ") + kind(n));
  return substitute_env(n.Scalar(), path);
}

std::uint64_t parse_uint(const YAML::Node& n, const std::string& path, std::uint64_t min,
                         std::uint64_t max) {
  const std::string expected = min > 0 ? "a positive integer" : "a non-negative integer";
  const std::string text = scalar_text(n, path, expected);
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < min)
    fail(path, "expected " + expected);
  if (value > max) fail(path, "must be at most " + std::to_string(max));
  return value;
}

std::chrono::milliseconds parse_millis(const YAML::Node& n, const std::string& path) {
  return std::chrono::milliseconds(parse_uint(n, path, 1, kMaxMillis));
}

bool parse_bool(const YAML::Node& n, const std::string& path) {
  std::string text = scalar_text(n, path, "true or false");
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (text == "true") return true;
  if (text == "false") return false;
  fail(path, "expected true or false");
}

// A list of strings; absent or `key:` with nothing is an empty list.
std::vector<std::string> string_list(const YAML::Node* n, const std::string& path) {
  std::vector<std::string> out;
  if (n == nullptr || n->IsNull()) return out;
  if (!n->IsSequence()) fail(path, std::string("expected a list, got ") + kind(*n));
  for (std::size_t i = 0; i < n->size(); ++i)
    out.push_back(scalar_string((*n)[i], index_path(path, i)));
  return out;
}

fs::path resolve(const std::string& file, const fs::path& base_dir) {
  fs::path p(file);
  return p.is_relative() ? base_dir / p : p;
}

// The content of a secrets file (Docker secrets and friends end theirs with a newline).
std::string read_value_file(const std::string& path, const std::string& file,
                            const fs::path& base_dir) {
  if (file.empty()) fail(path, "empty file name");
  const fs::path p = resolve(file, base_dir);
  std::error_code ec;
  if (fs::is_directory(p, ec)) fail(path, "cannot read " + p.string() + ": is a directory");
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(path, "cannot read " + p.string());
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(path, "cannot read " + p.string());
  while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) content.pop_back();
  if (content.empty()) fail(path, p.string() + " is empty");
  return content;
}

struct Sourced {
  std::string value;
  std::string path;  // the key it came from, for later validation messages
};

// A list given inline, from a file with one entry per line (blank lines and # comments skipped),
// or both.
std::vector<Sourced> list_or_file(const Section& s, std::string_view key, const fs::path& base_dir) {
  std::vector<Sourced> out;
  const std::string list_path = s.sub(key);
  const auto items = string_list(s.find(key), list_path);
  for (std::size_t i = 0; i < items.size(); ++i)
    out.push_back({items[i], index_path(list_path, i)});

  const std::string file_key = std::string(key) + "_file";
  if (const YAML::Node* file = s.find(file_key)) {
    const std::string file_path = s.sub(file_key);
    std::istringstream lines(read_value_file(file_path, scalar_string(*file, file_path), base_dir));
    std::string line;
    std::size_t line_no = 0;
    std::size_t found = 0;
    while (std::getline(lines, line)) {
      ++line_no;
      const auto first = line.find_first_not_of(" \t\r");
      if (first == std::string::npos || line[first] == '#') continue;
      const auto last = line.find_last_not_of(" \t\r");
      out.push_back({line.substr(first, last - first + 1),
                     file_path + " (line " + std::to_string(line_no) + ")"});
      ++found;
    }
    if (found == 0) fail(file_path, "the file lists no entries");
  }
  return out;
}

// `key: value` or `key_file: path`; nullopt when neither is set.
std::optional<Sourced> string_or_file(const Section& s, std::string_view key,
                                      const fs::path& base_dir) {
  const std::string file_key = std::string(key) + "_file";
  const YAML::Node* direct = s.find(key);
  const YAML::Node* file = s.find(file_key);
  if (direct != nullptr && file != nullptr)
    fail(s.sub(file_key), "set either " + std::string(key) + " or " + file_key + ", not both");
  if (direct != nullptr) return Sourced{scalar_string(*direct, s.sub(key)), s.sub(key)};
  if (file != nullptr) {
    const std::string path = s.sub(file_key);
    return Sourced{read_value_file(path, scalar_string(*file, path), base_dir), path};
  }
  return std::nullopt;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool is_http_url(std::string_view url) {
  std::string_view rest;
  if (starts_with(url, "http://")) rest = url.substr(7);
  else if (starts_with(url, "https://")) rest = url.substr(8);
  else return false;
  if (rest.empty() || rest.front() == '/') return false;
  return std::none_of(url.begin(), url.end(),
                      [](unsigned char c) { return c <= 0x20 || c == 0x7f; });
}

std::string without_trailing_slashes(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

// Reads an http(s) base URL without a trailing slash. The value is not echoed: URLs can carry
// credentials or tokens.
std::string http_base_url(const std::string& value, const std::string& path) {
  if (!is_http_url(value)) fail(path, "expected an http:// or https:// URL");
  return without_trailing_slashes(value);
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

std::string parse_id(const Section& s, const std::string& what) {
  const YAML::Node* n = s.find("id");
  if (n == nullptr) fail(s.sub("id"), "missing");
  std::string id = scalar_string(*n, s.sub("id"));
  if (!valid_id(id)) fail(s.sub("id"), what + " id must be 1-64 characters from A-Z a-z 0-9 _ -");
  return id;
}

bool is_base64(std::string_view s) {
  if (s.empty() || s.size() % 4 != 0) return false;
  std::size_t pad = 0;
  while (pad < 2 && s[s.size() - 1 - pad] == '=') ++pad;
  const auto body = s.substr(0, s.size() - pad);
  return std::all_of(body.begin(), body.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
  });
}

// Standard Webhooks style: "whsec_" then the base64 of the HMAC key.
void check_webhook_secret(const std::string& secret, const std::string& path) {
  constexpr std::string_view prefix = "whsec_";
  if (!starts_with(secret, prefix) || !is_base64(std::string_view(secret).substr(prefix.size())))
    fail(path, "expected whsec_ followed by a base64 key");
}

void parse_listen(const std::string& text, const std::string& path, ServerConfig& out) {
  const std::string expected = "expected host:port (IPv6 as [addr]:port) with a port from 1 to 65535";
  std::string host;
  std::string port;
  if (starts_with(text, "[")) {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      fail(path, expected);
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) fail(path, expected);
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) fail(path, expected);
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (host.empty() || port.empty() || ec != std::errc{} || end != port.data() + port.size() ||
      value < 1 || value > 65535)
    fail(path, expected);
  out.listen_host = host;
  out.listen_port = static_cast<std::uint16_t>(value);
}

ServerConfig parse_server(const Section& s) {
  s.allow_only({"listen", "public_url", "threads", "metrics", "limits"});
  ServerConfig out;
  if (const auto* n = s.find("listen")) parse_listen(scalar_string(*n, s.sub("listen")), s.sub("listen"), out);
  if (const auto* n = s.find("public_url"))
    out.public_url = http_base_url(scalar_string(*n, s.sub("public_url")), s.sub("public_url"));
  if (const auto* n = s.find("threads"))
    out.threads = static_cast<unsigned>(parse_uint(*n, s.sub("threads"), 0, 4096));
  if (const auto* n = s.find("metrics")) out.metrics = parse_bool(*n, s.sub("metrics"));

  if (const auto* n = s.find("limits")) {
    const Section l(*n, s.sub("limits"));
    l.allow_only({"max_body_bytes", "header_timeout_ms", "idle_timeout_ms", "shutdown_grace_ms"});
    if (const auto* v = l.find("max_body_bytes"))
      out.limits.max_body_bytes = static_cast<std::size_t>(
          parse_uint(*v, l.sub("max_body_bytes"), 1, std::numeric_limits<std::size_t>::max()));
    if (const auto* v = l.find("header_timeout_ms"))
      out.limits.header_timeout = parse_millis(*v, l.sub("header_timeout_ms"));
    if (const auto* v = l.find("idle_timeout_ms"))
      out.limits.idle_timeout = parse_millis(*v, l.sub("idle_timeout_ms"));
    if (const auto* v = l.find("shutdown_grace_ms"))
      out.limits.shutdown_grace = parse_millis(*v, l.sub("shutdown_grace_ms"));
  }
  return out;
}

StorageConfig parse_storage(const Section& s) {
  s.allow_only({"url"});
  StorageConfig out;
  if (const auto* n = s.find("url")) {
    // Not echoed: a postgresql:// URL usually carries a password.
    out.url = scalar_string(*n, s.sub("url"));
    if (!starts_with(out.url, "sqlite://") && !starts_with(out.url, "postgresql://") &&
        !starts_with(out.url, "postgres://"))
      fail(s.sub("url"), "expected a sqlite://, postgresql:// or postgres:// URL");
    if (out.is_sqlite() && out.sqlite_path().empty()) fail(s.sub("url"), "sqlite:// URL without a path");
  }
  return out;
}

double parse_rate(const YAML::Node& n, const std::string& path) {
  const std::string text = scalar_text(n, path, "a number of queries per second");
  try {
    std::size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && v >= 0.01 && v <= 100000) return v;
  } catch (const std::exception&) {
  }
  fail(path, "expected a number of queries per second between 0.01 and 100000");
}

// first_check_ms and max_interval_ms of a section (the caller checks for other keys).
CheckSchedule read_check_schedule(const Section& s, CheckSchedule out) {
  if (const auto* n = s.find("first_check_ms")) out.first_check = parse_millis(*n, s.sub("first_check_ms"));
  if (const auto* n = s.find("max_interval_ms")) out.max_interval = parse_millis(*n, s.sub("max_interval_ms"));
  return out;
}

ReconcilerConfig parse_reconciler(const Section& s) {
  s.allow_only({"first_check_ms", "max_interval_ms", "schedule", "expiry_grace_ms", "tick_ms", "batch", "lease_ms",
                "query_rate"});
  ReconcilerConfig out;
  const auto base = read_check_schedule(s, CheckSchedule{});
  out.first_check = base.first_check;
  out.max_interval = base.max_interval;
  if (const auto* n = s.find("schedule"); n != nullptr && !n->IsNull()) {
    Section sched(*n, s.sub("schedule"));
    sched.allow_only({"created", "requires_action", "processing"});
    for (const char* status : {"created", "requires_action", "processing"})
      if (const auto* e = sched.find(status)) {
        Section entry(*e, sched.sub(status));
        entry.allow_only({"first_check_ms", "max_interval_ms"});
        out.schedule[status] = read_check_schedule(entry, base);
      }
  }
  if (const auto* n = s.find("lease_ms")) out.lease = parse_millis(*n, s.sub("lease_ms"));
  if (const auto* n = s.find("query_rate")) out.query_rate = parse_rate(*n, s.sub("query_rate"));
  if (const auto* n = s.find("expiry_grace_ms")) out.expiry_grace = parse_millis(*n, s.sub("expiry_grace_ms"));
  if (const auto* n = s.find("tick_ms")) out.tick = parse_millis(*n, s.sub("tick_ms"));
  if (const auto* n = s.find("batch")) out.batch = static_cast<int>(parse_uint(*n, s.sub("batch"), 1, 10000));
  return out;
}

LogConfig parse_log(const Section& s) {
  s.allow_only({"level", "format"});
  LogConfig out;
  if (const auto* n = s.find("level")) {
    out.level = scalar_string(*n, s.sub("level"));
    if (std::find(kLogLevels.begin(), kLogLevels.end(), out.level) == kLogLevels.end())
      fail(s.sub("level"), "expected one of trace, debug, info, warn, error, critical, off");
  }
  if (const auto* n = s.find("format")) {
    out.format = scalar_string(*n, s.sub("format"));
    if (out.format != "json" && out.format != "text") fail(s.sub("format"), "expected json or text");
  }
  return out;
}

TlsConfig parse_tls(const Section& s, const fs::path& base_dir) {
  s.allow_only({"ca_file"});
  TlsConfig out;
  if (const auto* n = s.find("ca_file")) {
    const std::string file = scalar_string(*n, s.sub("ca_file"));
    if (!file.empty()) {  // empty: the system store, as when absent
      const fs::path p = resolve(file, base_dir);
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) fail(s.sub("ca_file"), "cannot read " + p.string());
      out.ca_file = p.string();
    }
  }
  return out;
}

WebhookEndpoint parse_webhook(const Section& s, const fs::path& base_dir) {
  s.allow_only({"url", "url_file", "secret", "secret_file", "secrets", "allow_private", "timeout_ms",
                "retry_schedule_seconds"});
  WebhookEndpoint out;
  std::string url_path = s.sub("url");
  if (auto url = string_or_file(s, "url", base_dir)) {
    url_path = url->path;
    if (!url->value.empty()) out.url = http_base_url(url->value, url->path);
  }

  std::vector<Sourced> secrets;
  if (auto secret = string_or_file(s, "secret", base_dir)) secrets.push_back(std::move(*secret));
  if (const auto* n = s.find("secrets")) {
    if (!secrets.empty())
      fail(s.sub("secrets"), "set either secret or secrets, not both");
    const auto list = string_list(n, s.sub("secrets"));
    for (std::size_t i = 0; i < list.size(); ++i)
      secrets.push_back({list[i], index_path(s.sub("secrets"), i)});
  }
  for (const auto& secret : secrets) {
    check_webhook_secret(secret.value, secret.path);
    out.secrets.emplace_back(secret.value);
  }
  if (!out.url.empty() && out.secrets.empty())
    fail(s.sub("secret"), "missing (a webhook url needs a signing secret)");

  if (const auto* n = s.find("allow_private")) out.allow_private = parse_bool(*n, s.sub("allow_private"));
  // SSRF guard, configuration half: a literal private address or a localhost name is refused here;
  // names are checked on the addresses they resolve to, at each delivery.
  if (!out.url.empty() && !out.allow_private && net::host_is_non_public(net::url_host(out.url)).value_or(false))
    fail(url_path, "a loopback, private or link-local address is refused (set allow_private: true for a "
                   "test endpoint)");

  if (const auto* n = s.find("timeout_ms")) out.timeout = parse_millis(*n, s.sub("timeout_ms"));
  if (const auto* n = s.find("retry_schedule_seconds")) {
    const std::string path = s.sub("retry_schedule_seconds");
    if (!n->IsSequence()) fail(path, std::string("expected a list, got ") + kind(*n));
    if (n->size() == 0) fail(path, "expected at least one wait");
    if (n->size() > 100) fail(path, "at most 100 waits");
    out.retry_schedule.clear();
    for (std::size_t i = 0; i < n->size(); ++i)
      out.retry_schedule.emplace_back(parse_uint((*n)[i], index_path(path, i), 1, 7 * 24 * 3600));
  }
  return out;
}

WebhookWorkerConfig parse_webhook_worker(const Section& s) {
  s.allow_only({"max_in_flight", "max_in_flight_per_merchant", "batch", "poll_ms"});
  WebhookWorkerConfig out;
  if (const auto* n = s.find("max_in_flight"))
    out.max_in_flight = static_cast<int>(parse_uint(*n, s.sub("max_in_flight"), 1, 100000));
  if (const auto* n = s.find("max_in_flight_per_merchant"))
    out.max_in_flight_per_merchant = static_cast<int>(parse_uint(*n, s.sub("max_in_flight_per_merchant"), 1, 100000));
  if (const auto* n = s.find("batch")) out.batch = static_cast<int>(parse_uint(*n, s.sub("batch"), 1, 10000));
  if (const auto* n = s.find("poll_ms")) out.poll = parse_millis(*n, s.sub("poll_ms"));
  if (out.max_in_flight_per_merchant > out.max_in_flight)
    fail(s.sub("max_in_flight_per_merchant"), "more than max_in_flight");
  return out;
}

std::map<std::string, Secret> parse_credentials(const Section& s, const fs::path& base_dir) {
  constexpr std::string_view suffix = "_file";
  std::map<std::string, Secret> out;
  std::map<std::string, std::string> source;  // credential name -> key it was read from
  for (const auto& [key, value] : s.entries()) {
    const std::string path = s.sub(key);
    std::string name = key;
    std::string content;
    if (key.size() > suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0) {
      name = key.substr(0, key.size() - suffix.size());
      content = read_value_file(path, scalar_string(value, path), base_dir);
    } else {
      content = scalar_string(value, path);
    }
    if (auto it = source.find(name); it != source.end())
      fail(path, "set either " + name + " or " + name + "_file, not both");
    source.emplace(name, key);
    out.emplace(name, Secret(std::move(content)));
  }
  return out;
}

std::map<std::string, std::string> parse_plain_map(const Section& s) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : s.entries()) {
    const std::string path = s.sub(key);
    if (!value.IsScalar()) fail(path, std::string("expected a scalar value, got ") + kind(value));
    out.emplace(key, substitute_env(value.Scalar(), path));
  }
  return out;
}

ConnectorConfig parse_connector(const Section& s, const std::string& merchant_id,
                                const fs::path& base_dir) {
  s.allow_only({"id", "provider", "base_url", "timeout_ms", "connect_timeout_ms", "credentials",
                "settings", "circuit", "query_rate"});
  ConnectorConfig out;
  out.merchant = merchant_id;
  out.id = parse_id(s, "connector");

  const auto* provider = s.find("provider");
  if (provider == nullptr) fail(s.sub("provider"), "missing");
  out.provider = scalar_string(*provider, s.sub("provider"));
  if (std::find(kProviders.begin(), kProviders.end(), out.provider) == kProviders.end())
    fail(s.sub("provider"), "unknown provider '" + out.provider +
                                "' (expected one of glocash, dhpay, dhpay_nonce, shouqianba, cashypay)");

  const auto* base_url = s.find("base_url");
  if (base_url == nullptr) fail(s.sub("base_url"), "missing");
  out.base_url = http_base_url(scalar_string(*base_url, s.sub("base_url")), s.sub("base_url"));

  if (const auto* n = s.find("timeout_ms")) out.timeout = parse_millis(*n, s.sub("timeout_ms"));
  if (const auto* n = s.find("connect_timeout_ms"))
    out.connect_timeout = parse_millis(*n, s.sub("connect_timeout_ms"));
  if (const auto* n = s.find("credentials"))
    out.credentials = parse_credentials(Section(*n, s.sub("credentials")), base_dir);
  if (const auto* n = s.find("settings")) out.settings = parse_plain_map(Section(*n, s.sub("settings")));
  if (const auto* n = s.find("circuit")) {
    Section c(*n, s.sub("circuit"));
    c.allow_only({"failure_threshold", "cool_down_ms"});
    if (const auto* v = c.find("failure_threshold"))
      out.circuit.failure_threshold = static_cast<int>(parse_uint(*v, c.sub("failure_threshold"), 1, 1000));
    if (const auto* v = c.find("cool_down_ms")) out.circuit.cool_down = parse_millis(*v, c.sub("cool_down_ms"));
  }
  if (const auto* n = s.find("query_rate")) out.query_rate = parse_rate(*n, s.sub("query_rate"));
  return out;
}

bool is_currency_code(std::string_view c) {
  return c.size() == 3 && std::all_of(c.begin(), c.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; });
}

RoutingRule parse_routing_rule(const Section& s, const MerchantConfig& merchant) {
  s.allow_only({"when", "connectors"});
  RoutingRule out;
  if (const auto* n = s.find("when")) {
    const Section w(*n, s.sub("when"));
    w.allow_only({"currency", "payment_method", "amount_min", "amount_max", "metadata"});
    out.currencies = string_list(w.find("currency"), w.sub("currency"));
    for (std::size_t i = 0; i < out.currencies.size(); ++i)
      if (!is_currency_code(out.currencies[i]))
        fail(index_path(w.sub("currency"), i), "expected an upper-case ISO 4217 code such as EUR");
    out.payment_methods = string_list(w.find("payment_method"), w.sub("payment_method"));
    for (std::size_t i = 0; i < out.payment_methods.size(); ++i)
      if (out.payment_methods[i].empty()) fail(index_path(w.sub("payment_method"), i), "empty");
    constexpr auto kMaxAmount = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (const auto* v = w.find("amount_min"))
      out.min_amount = static_cast<std::int64_t>(parse_uint(*v, w.sub("amount_min"), 0, kMaxAmount));
    if (const auto* v = w.find("amount_max"))
      out.max_amount = static_cast<std::int64_t>(parse_uint(*v, w.sub("amount_max"), 0, kMaxAmount));
    if (out.min_amount && out.max_amount && *out.min_amount > *out.max_amount)
      fail(w.sub("amount_max"), "less than amount_min");
    if (const auto* v = w.find("metadata")) out.metadata = parse_plain_map(Section(*v, w.sub("metadata")));
  }

  const auto* connectors = s.find("connectors");
  if (connectors == nullptr) fail(s.sub("connectors"), "missing");
  out.connectors = string_list(connectors, s.sub("connectors"));
  if (out.connectors.empty()) fail(s.sub("connectors"), "expected at least one connector");
  for (std::size_t i = 0; i < out.connectors.size(); ++i) {
    const auto& name = out.connectors[i];
    const std::string path = index_path(s.sub("connectors"), i);
    const bool known = std::any_of(merchant.connectors.begin(), merchant.connectors.end(),
                                   [&](const ConnectorConfig& c) { return c.id == name; });
    if (!known) fail(path, "unknown connector '" + name + "' (not one of merchant " + merchant.id + "'s connectors)");
    if (std::find(out.connectors.begin(), out.connectors.begin() + static_cast<std::ptrdiff_t>(i), name) !=
        out.connectors.begin() + static_cast<std::ptrdiff_t>(i))
      fail(path, "connector '" + name + "' listed twice");
  }
  return out;
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

// Uniqueness across the whole config: value -> the path where it was first seen.
struct SeenIds {
  std::map<std::string, std::string> merchants;
  std::map<std::string, std::string> connectors;
  std::map<std::string, std::string> api_keys;
  std::map<std::string, std::string> api_key_hashes;
};

MerchantConfig parse_merchant(const Section& s, const fs::path& base_dir, SeenIds& seen) {
  s.allow_only({"id", "api_keys", "api_keys_file", "api_key_sha256", "api_key_sha256_file", "webhook",
                "routing", "connectors"});
  MerchantConfig out;
  out.id = parse_id(s, "merchant");
  if (auto [it, fresh] = seen.merchants.emplace(out.id, s.sub("id")); !fresh)
    fail(s.sub("id"), "duplicate merchant id '" + out.id + "' (also " + it->second + ")");

  for (auto& key : list_or_file(s, "api_keys", base_dir)) {
    if (key.value.empty()) fail(key.path, "empty API key");
    if (auto [it, fresh] = seen.api_keys.emplace(key.value, key.path); !fresh)
      fail(key.path, "same API key as " + it->second);
    out.api_keys.emplace_back(std::move(key.value));
  }
  for (auto& hash : list_or_file(s, "api_key_sha256", base_dir)) {
    if (hash.value.size() != 64 || !is_hex(hash.value))
      fail(hash.path, "expected 64 hex characters (the SHA-256 of the key)");
    std::transform(hash.value.begin(), hash.value.end(), hash.value.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (auto [it, fresh] = seen.api_key_hashes.emplace(hash.value, hash.path); !fresh)
      fail(hash.path, "same API key hash as " + it->second);
    out.api_key_sha256.push_back(std::move(hash.value));
  }
  if (out.api_keys.empty() && out.api_key_sha256.empty())
    fail(s.sub("api_keys"), "missing (set api_keys, api_keys_file or api_key_sha256)");

  if (const auto* n = s.find("webhook")) out.webhook = parse_webhook(Section(*n, s.sub("webhook")), base_dir);

  // Connectors before routing: rules name connectors that may be written after them.
  if (const auto* n = s.find("connectors"); n != nullptr && !n->IsNull()) {
    const std::string path = s.sub("connectors");
    if (!n->IsSequence()) fail(path, std::string("expected a list, got ") + kind(*n));
    for (std::size_t i = 0; i < n->size(); ++i) {
      const Section c((*n)[i], index_path(path, i));
      auto connector = parse_connector(c, out.id, base_dir);
      if (auto [it, fresh] = seen.connectors.emplace(connector.id, c.sub("id")); !fresh)
        fail(c.sub("id"), "duplicate connector id '" + connector.id + "' (also " + it->second + ")");
      out.connectors.push_back(std::move(connector));
    }
  }
  if (const auto* n = s.find("routing"); n != nullptr && !n->IsNull()) {
    const std::string path = s.sub("routing");
    if (!n->IsSequence()) fail(path, std::string("expected a list, got ") + kind(*n));
    for (std::size_t i = 0; i < n->size(); ++i)
      out.routing.push_back(parse_routing_rule(Section((*n)[i], index_path(path, i)), out));
  }
  return out;
}

Config parse_root(const YAML::Node& root, const fs::path& base_dir) {
  const Section s(root, "");
  s.allow_only({"server", "storage", "log", "tls", "reconciler", "webhooks", "merchants"});
  Config out;
  if (const auto* n = s.find("server")) out.server = parse_server(Section(*n, "server"));
  if (const auto* n = s.find("storage")) out.storage = parse_storage(Section(*n, "storage"));
  if (const auto* n = s.find("log")) out.log = parse_log(Section(*n, "log"));
  if (const auto* n = s.find("reconciler")) out.reconciler = parse_reconciler(Section(*n, "reconciler"));
  if (const auto* n = s.find("webhooks")) out.webhooks = parse_webhook_worker(Section(*n, "webhooks"));
  if (const auto* n = s.find("tls")) out.tls = parse_tls(Section(*n, "tls"), base_dir);
  if (const auto* n = s.find("merchants"); n != nullptr && !n->IsNull()) {
    if (!n->IsSequence()) fail("merchants", std::string("expected a list, got ") + kind(*n));
    SeenIds seen;
    for (std::size_t i = 0; i < n->size(); ++i)
      out.merchants.push_back(parse_merchant(Section((*n)[i], index_path("merchants", i)), base_dir, seen));
  }
  return out;
}

Config load(const std::string& yaml_text, const fs::path& base_dir, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    // yaml-cpp's message names the problem and position, not the document's text.
    const std::string where = e.mark.is_null() ? source
                                                : source + ":" + std::to_string(e.mark.line + 1) + ":" +
                                                      std::to_string(e.mark.column + 1);
    throw ConfigError(where + ": invalid YAML: " + e.msg);
  }
  return parse_root(root, base_dir);
}

}  // namespace

Config load_config_string(const std::string& yaml_text, const std::string& base_dir) {
  return load(yaml_text, base_dir.empty() ? fs::path(".") : fs::path(base_dir), "yaml");
}

Config load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot read config file");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw ConfigError(path + ": cannot read config file");
  fs::path dir = fs::path(path).parent_path();
  return load(text, dir.empty() ? fs::path(".") : dir, path);
}

}  // namespace paymux
