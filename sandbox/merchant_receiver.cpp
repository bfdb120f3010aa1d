#include "sandbox/merchant_receiver.hpp"

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <deque>
#include <mutex>
#include <set>

namespace paymux::sandbox::merchant {

namespace json = boost::json;
using http::bhttp::status;
using http::bhttp::verb;

namespace {

struct Received {
  std::string webhook_id;
  std::string type;
  std::int64_t timestamp = 0;
  std::int64_t received_at_ms = 0;
  bool duplicate = false;
  json::value event;
};

class MerchantReceiver final : public Simulator {
 public:
  MerchantReceiver(Sandbox& frame, std::vector<std::string> secrets, std::int64_t tolerance, std::size_t max_events)
      : frame_(frame), secrets_(std::move(secrets)), tolerance_(tolerance), max_events_(max_events) {}

  std::string_view name() const override { return kName; }

  json::object describe() const override {
    std::lock_guard lock(mutex_);
    return json::object{{"received", events_.size()}, {"unique", seen_.size()}, {"rejected", rejected_}};
  }

  void mount(http::Router& r) override {
    r.add(verb::post, "/_sandbox/merchant/webhooks",
          frame_.faulty(std::string(kName), [this](RequestContext& c) { return receive(c); }));
    r.add(verb::get, "/_sandbox/merchant/events", [this](RequestContext& c) { return list(c); });
    r.add(verb::delete_, "/_sandbox/merchant/events", [this](RequestContext& c) { return clear(c); });
  }

 private:
  asio::awaitable<Response> receive(RequestContext& ctx) {
    const auto& req = ctx.req;
    const std::string id(req["webhook-id"]);
    const std::string ts(req["webhook-timestamp"]);
    const std::string sig(req["webhook-signature"]);
    auto reject = [&](std::string why) {
      {
        std::lock_guard lock(mutex_);
        ++rejected_;
      }
      spdlog::info("merchant: webhook {} rejected: {}", id.empty() ? "-" : id, why);
      return control_error(status::bad_request, why, req);
    };
    if (id.empty() || ts.empty() || sig.empty())
      co_return reject("missing webhook-id, webhook-timestamp or webhook-signature");
    std::int64_t t = 0;
    try {
      std::size_t used = 0;
      t = std::stoll(ts, &used);
      if (used != ts.size()) throw std::invalid_argument("ts");
    } catch (const std::exception&) {
      co_return reject("webhook-timestamp is not a number");
    }
    if (std::llabs(unix_seconds() - t) > tolerance_) co_return reject("webhook-timestamp too far from now");
    if (!verify_signature(secrets_, id, ts, req.body(), sig)) co_return reject("no valid signature");
    boost::system::error_code ec;
    auto event = json::parse(req.body(), ec);
    if (ec || !event.is_object()) co_return reject("the body is not a JSON object");
    Received r;
    r.webhook_id = id;
    r.timestamp = t;
    r.received_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    if (const auto* type = event.as_object().if_contains("type"); type && type->is_string())
      r.type = std::string(type->as_string());
    r.event = std::move(event);
    {
      std::lock_guard lock(mutex_);
      r.duplicate = !seen_.insert(id).second;
      events_.push_back(std::move(r));
      while (events_.size() > max_events_) events_.pop_front();
    }
    co_return json_reply(status::ok, json::object{{"received", true}}, req);
  }

  asio::awaitable<Response> list(RequestContext& ctx) {
    json::array out;
    json::object o;
    {
      std::lock_guard lock(mutex_);
      for (const auto& r : events_)
        out.push_back(json::object{{"webhook_id", r.webhook_id},
                                   {"type", r.type},
                                   {"timestamp", r.timestamp},
                                   {"received_at_ms", r.received_at_ms},
                                   {"duplicate", r.duplicate},
                                   {"event", r.event}});
      o["count"] = events_.size();
      o["unique"] = seen_.size();
      o["rejected"] = rejected_;
    }
    o["events"] = std::move(out);
    co_return json_reply(status::ok, o, ctx.req);
  }

  asio::awaitable<Response> clear(RequestContext& ctx) {
    {
      std::lock_guard lock(mutex_);
      events_.clear();
      seen_.clear();
      rejected_ = 0;
    }
    co_return json_reply(status::ok, json::object{{"cleared", true}}, ctx.req);
  }

  Sandbox& frame_;
  const std::vector<std::string> secrets_;
  const std::int64_t tolerance_;
  const std::size_t max_events_;
  mutable std::mutex mutex_;
  std::deque<Received> events_;
  std::set<std::string> seen_;
  std::int64_t rejected_ = 0;
};

}  // namespace

std::unique_ptr<Simulator> make_simulator(Sandbox& frame, const ConfigNode& section) {
  section.allow_only({"webhook_secret", "old_webhook_secret", "tolerance_seconds", "max_events"});
  std::vector<std::string> secrets;
  for (const char* key : {"webhook_secret", "old_webhook_secret"}) {
    auto s = section.str(key, std::string(key) == "webhook_secret" ? std::string(kDemoSecret) : std::string());
    if (s.empty()) continue;
    std::string raw;
    if (s.rfind("whsec_", 0) != 0 || !b64_decode(std::string_view(s).substr(6), raw))
      section.fail(key, "expected whsec_ followed by a base64 key");
    secrets.push_back(std::move(s));
  }
  const auto tolerance = section.integer("tolerance_seconds", 300, 1, 86400);
  const auto max_events = section.integer("max_events", 10000, 1, 10'000'000);
  return std::make_unique<MerchantReceiver>(frame, std::move(secrets), tolerance, static_cast<std::size_t>(max_events));
}

}  // namespace paymux::sandbox::merchant
