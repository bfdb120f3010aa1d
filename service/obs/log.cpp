#include "service/obs/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <ctime>

namespace paymux::obs {
namespace {

void append_json_string(std::string_view s, spdlog::memory_buf_t& out) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out.append(std::string_view("\\\"")); break;
      case '\\': out.append(std::string_view("\\\\")); break;
      case '\n': out.append(std::string_view("\\n")); break;
      case '\r': out.append(std::string_view("\\r")); break;
      case '\t': out.append(std::string_view("\\t")); break;
      default:
        if (c < 0x20) {
          const char esc[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
          out.append(esc, esc + 6);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

// Context named in a message as `key=value` (request_id=..., merchant=..., payment=...,
// connector=...) is repeated as a field of its own, so that log queries need not parse messages.
constexpr std::array<std::pair<std::string_view, std::string_view>, 8> kContextKeys{{
    {"request_id", "request_id"},
    {"merchant", "merchant"},
    {"payment", "payment_id"},
    {"payment_id", "payment_id"},
    {"refund", "refund_id"},
    {"connector", "connector"},
    {"flow", "flow"},
    {"outcome", "outcome"},
}};

// Only the text before the first quote is read: quoted parts carry outside input (order numbers,
// error texts) that must not pose as context.
void append_context(std::string_view msg, spdlog::memory_buf_t& out) {
  msg = msg.substr(0, msg.find_first_of("'\""));
  std::array<bool, kContextKeys.size()> seen{};
  std::size_t i = 0;
  while (i < msg.size()) {
    const auto end = std::min(msg.find(' ', i), msg.size());
    const auto token = msg.substr(i, end - i);
    i = end + 1;
    const auto eq = token.find('=');
    std::string_view key, value;
    if (eq != std::string_view::npos && eq != 0) {
      key = token.substr(0, eq);
      value = token.substr(eq + 1);
    } else if (token.substr(0, 4) == "pay_") {  // a payment id named in passing: "payment pay_...:"
      key = "payment";
      value = token;
    } else {
      continue;
    }
    while (!value.empty() && (value.back() == ',' || value.back() == ';' || value.back() == ':')) value.remove_suffix(1);
    const bool plain = std::all_of(value.begin(), value.end(), [](unsigned char c) {
      return std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == ':';
    });
    if (value.empty() || !plain) continue;
    for (std::size_t k = 0; k < kContextKeys.size(); ++k) {
      if (kContextKeys[k].first != key) continue;
      const auto field = kContextKeys[k].second;
      bool dup = false;  // "payment" and "payment_id" name one field
      for (std::size_t j = 0; j < kContextKeys.size(); ++j) dup |= seen[j] && kContextKeys[j].second == field;
      if (dup) break;
      seen[k] = true;
      out.push_back(',');
      append_json_string(field, out);
      out.push_back(':');
      append_json_string(value, out);
      break;
    }
  }
}

// {"ts":"...","level":"info","service":"paymux","msg":"...","connector":"..."}
class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string service) : service_(std::move(service)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto t = std::chrono::system_clock::to_time_t(msg.time);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char ts[40];
    auto n = std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(ts + n, sizeof ts - n, ".%03dZ", static_cast<int>(ms));
    dest.append(std::string_view("{\"ts\":\""));
    dest.append(std::string_view(ts));
    dest.append(std::string_view("\",\"level\":\""));
    auto level = spdlog::level::to_string_view(msg.level);
    dest.append(level.data(), level.data() + level.size());
    dest.append(std::string_view("\",\"service\":"));
    append_json_string(service_, dest);
    dest.append(std::string_view(",\"msg\":"));
    append_json_string(std::string_view(msg.payload.data(), msg.payload.size()), dest);
    append_context(std::string_view(msg.payload.data(), msg.payload.size()), dest);
    dest.append(std::string_view("}\n"));
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(service_); }

 private:
  std::string service_;
};

}  // namespace

void init_logging(const LogConfig& config, const std::string& service_name) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(service_name, sink);
  if (config.format == "json")
    logger->set_formatter(std::make_unique<JsonFormatter>(service_name));
  else
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(config.level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace paymux::obs
