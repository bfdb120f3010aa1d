#include "sandbox/cashypay_sim.hpp"

#include "service/core/clock.hpp"
#include "service/core/secret.hpp"
#include "service/http/errors.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <deque>
#include <mutex>
#include <unordered_map>

namespace paymux::sandbox::cashypay {
namespace {

namespace json = boost::json;
using http::bhttp::status;
using http::bhttp::verb;

constexpr std::size_t kSentMax = 10;
constexpr std::string_view kPagePath = "/cashypay/paydesk/";

// ---------------------------------------------------------------------------------------------
// Configuration

struct Merchant {
  std::string id;
  Secret api_key;
  std::size_t index = 0;
};

struct Settings {
  std::vector<Merchant> merchants;
  std::int64_t amount_min_cents = 1000 * 100;
  std::int64_t amount_max_cents = 5000000LL * 100;
  std::vector<std::string> currencies{"CLP"};
  std::vector<std::chrono::seconds> retry;  // gateway time
  std::vector<std::int64_t> retry_minutes;
  std::chrono::milliseconds notify_timeout{5000};
  std::int64_t fee_basis_points = 250;
  int utc_offset_minutes = -240;
  std::string expired_status = "EXPIRED";
  std::size_t max_orders = 200000;
};

Settings parse_settings(const ConfigNode& c) {
  c.allow_only({"merchants", "amount_min", "amount_max", "currencies", "notify_retry_minutes", "notify_timeout_ms",
                "fee_basis_points", "utc_offset_minutes", "expired_status", "max_orders"});
  Settings s;
  for (const auto& m : c.list("merchants")) {
    m.allow_only({"merchant_id", "api_key"});
    Merchant merchant;
    merchant.id = m.required_str("merchant_id");
    if (merchant.id.size() > 32) m.fail("merchant_id", "must be at most 32 characters");
    merchant.api_key = Secret(m.required_str("api_key"));
    for (const auto& other : s.merchants)
      if (other.id == merchant.id) m.fail("merchant_id", "is configured twice");
    merchant.index = s.merchants.size();
    s.merchants.push_back(std::move(merchant));
  }
  const std::int64_t max_whole = 1'000'000'000'000LL;  // 10^12 units: cents and fees fit in 64 bits
  const auto min = c.integer("amount_min", 1000, 0, max_whole);
  const auto max = c.integer("amount_max", 5000000, 1, max_whole);
  if (min > max) c.fail("amount_min", "must not exceed amount_max");
  s.amount_min_cents = min * 100;
  s.amount_max_cents = max * 100;
  {
    // A comma-separated list: "CLP" or "CLP, USD".
    const auto text = c.str("currencies", "CLP");
    s.currencies.clear();
    std::size_t start = 0;
    while (start <= text.size()) {
      auto end = text.find(',', start);
      if (end == std::string::npos) end = text.size();
      std::string code = text.substr(start, end - start);
      code.erase(0, code.find_first_not_of(' '));
      code.erase(code.find_last_not_of(' ') + 1);
      if (code.empty() || code.size() > 32) c.fail("currencies", "must be currency codes separated by commas");
      s.currencies.push_back(std::move(code));
      start = end + 1;
    }
  }
  s.retry_minutes = c.integer_list("notify_retry_minutes", {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}, 0, 7 * 24 * 60);
  if (s.retry_minutes.empty()) c.fail("notify_retry_minutes", "must not be empty");
  for (auto m : s.retry_minutes) s.retry.emplace_back(m * 60);
  s.notify_timeout = std::chrono::milliseconds(c.integer("notify_timeout_ms", 5000, 100, 600000));
  s.fee_basis_points = c.integer("fee_basis_points", 250, 0, 10000);
  s.utc_offset_minutes = static_cast<int>(c.integer("utc_offset_minutes", -240, -14 * 60, 14 * 60));
  s.expired_status = c.str("expired_status", "EXPIRED");
  if (s.expired_status.empty() || s.expired_status.size() > 32) c.fail("expired_status", "must be 1 to 32 characters");
  s.max_orders = static_cast<std::size_t>(c.integer("max_orders", 200000, 100, 100'000'000));
  return s;
}

// ---------------------------------------------------------------------------------------------
// Orders

// What /api/payDesk said: fixed once the order exists.
struct Order {
  std::string order_no;
  const Merchant* merchant = nullptr;
  std::string mch_order_no;
  std::string currency;
  std::string amount_text;  // as sent (without quotes when it was a string): echoed in the answer
  std::int64_t amount_cents = 0;
  bool reusable = false;
  std::int64_t expire_seconds = 0;
  std::string notify_url;
  std::string nonce;
  std::string real_name, phone, email, id_type, id_card, remark, return_url;
  std::int64_t created_ms = 0;
  std::string request_ip;
};

struct SentNotification {
  std::int64_t at_ms = 0;
  std::string url;
  std::string body;  // the exact bytes sent
  std::string sign;
  bool manual = false;
};

// What changes; guarded by the simulator's mutex.
struct State {
  std::string status = "PAYING";
  std::int64_t expire_at_ms = 0;
  std::int64_t completion_s = 0;  // 0: none
  std::int64_t fee_units4 = 0;
  std::int64_t updated_ms = 0;
  bool expired_by_control = false;
  int notifications = 0;
  NotifyLog notify_log;
  std::vector<SentNotification> sent;  // the last kSentMax notifications built, oldest first
};

struct Entry {
  std::shared_ptr<const Order> order;
  State state;
};

// The part of State a notification, a query or a page needs, copied under the lock.
struct StateView {
  std::string status;  // the stored status: PAYING, SUCCESS, FAIL
  bool expired = false;  // PAYING and past expire_at
  std::int64_t expire_at_ms = 0;
  std::int64_t completion_s = 0;
  std::int64_t fee_units4 = 0;
};

StateView view_of(const State& s, std::int64_t now) {
  StateView v;
  v.status = s.status;
  v.expired = s.status == "PAYING" && now >= s.expire_at_ms;
  v.expire_at_ms = s.expire_at_ms;
  v.completion_s = s.completion_s;
  v.fee_units4 = s.fee_units4;
  return v;
}

// ---------------------------------------------------------------------------------------------
// Wire helpers

std::string json_str(std::string_view s) { return json::serialize(json::value(json::string(s))); }

// CashyPay's envelope for an error: {"msg":"...","code":N}, HTTP 200.
Response envelope_error(int code, std::string_view msg, const http::Request& req) {
  json::object o;
  o["msg"] = msg;
  o["code"] = code;
  return json_reply(status::ok, o, req);
}

Response envelope_ok(json::object data, const http::Request& req) {
  json::object o;
  o["msg"] = "SUCCESS";
  o["code"] = 200;
  o["data"] = std::move(data);
  return json_reply(status::ok, o, req);
}

bool is_json_content(const http::Request& req) {
  std::string_view ct = req[http::bhttp::field::content_type];
  constexpr std::string_view want = "application/json";
  if (ct.size() < want.size()) return false;
  for (std::size_t i = 0; i < want.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(ct[i])) != want[i]) return false;
  return ct.size() == want.size() || ct[want.size()] == ';' || ct[want.size()] == ' ';
}

// Strips the quotes of a raw JSON string value without escapes; returns the text unchanged otherwise.
std::string_view unquote_plain(std::string_view raw) {
  if (raw.size() >= 2 && raw.front() == '"' && raw.back() == '"') return raw.substr(1, raw.size() - 2);
  return raw;
}

std::string random_digits(std::size_t n) { return random_string(n, "0123456789"); }

// Overrides for hand-made notifications (control API).
struct NotifyOverrides {
  std::optional<std::string> status, amount, fee;
  bool forge_signature = false;
  bool lower_case = false;
  std::vector<std::pair<std::string, std::string>> extra;  // key, serialized value
};

struct Notification {
  std::string body;
  std::string sign;
  std::string status;
};

// ---------------------------------------------------------------------------------------------

class CashyPaySimulator final : public Simulator {
 public:
  CashyPaySimulator(Sandbox& frame, Settings settings) : frame_(frame), settings_(std::move(settings)) {
    for (const auto& m : settings_.merchants) merchants_.emplace(m.id, &m);
    by_mch_order_.resize(settings_.merchants.size());
    by_order_no_.reserve(index_room(settings_.max_orders));
    for (auto& index : by_mch_order_) index.reserve(index_room(settings_.max_orders, settings_.merchants.size()));
    if (settings_.merchants.empty()) spdlog::warn("cashypay: no merchants configured: every request will be refused");
  }

  std::string_view name() const override { return kName; }

  boost::json::object describe() const override {
    json::object o;
    json::array merchants;
    for (const auto& m : settings_.merchants) merchants.push_back(json::string(m.id));
    o["merchants"] = std::move(merchants);
    o["amount_min"] = format_cents_short(settings_.amount_min_cents);
    o["amount_max"] = format_cents_short(settings_.amount_max_cents);
    json::array currencies;
    for (const auto& c : settings_.currencies) currencies.push_back(json::string(c));
    o["currencies"] = std::move(currencies);
    json::array retry;
    for (auto m : settings_.retry_minutes) retry.push_back(m);
    o["notify_retry_minutes"] = std::move(retry);
    o["utc_offset_minutes"] = settings_.utc_offset_minutes;
    o["expired_status"] = settings_.expired_status;
    std::lock_guard lock(mutex_);
    o["orders"] = by_order_no_.size();
    o["delay_answers"] = json::object{{"ms", delay_.ms}, {"count", delay_.count}};
    return o;
  }

  void mount(http::Router& r) override {
    r.add(verb::post, "/cashypay/api/payDesk", frame_.faulty("cashypay", [this](RequestContext& c) { return pay_desk(c); }));
    r.add(verb::post, "/cashypay/api/payDeskQuery",
          frame_.faulty("cashypay", [this](RequestContext& c) { return query(c); }));
    r.add(verb::get, "/cashypay/paydesk/{orderNo}", [this](RequestContext& c) { return page(c); });
    r.add(verb::post, "/cashypay/paydesk/{orderNo}", [this](RequestContext& c) { return page_submit(c); });

    r.add(verb::get, "/_sandbox/cashypay/orders", [this](RequestContext& c) { return control_list(c); });
    r.add(verb::get, "/_sandbox/cashypay/orders/{orderNo}", [this](RequestContext& c) { return control_get(c); });
    r.add(verb::post, "/_sandbox/cashypay/orders/{orderNo}/status",
          [this](RequestContext& c) { return control_status(c); });
    r.add(verb::post, "/_sandbox/cashypay/orders/{orderNo}/notify",
          [this](RequestContext& c) { return control_notify(c); });
    r.add(verb::post, "/_sandbox/cashypay/orders/{orderNo}/expire",
          [this](RequestContext& c) { return control_expire(c); });
    r.add(verb::get, "/_sandbox/cashypay/delay_answers", [this](RequestContext& c) { return control_delay_get(c); });
    r.add(verb::post, "/_sandbox/cashypay/delay_answers", [this](RequestContext& c) { return control_delay_set(c); });
  }

 private:
  // ---- lookups ----

  const Merchant* find_merchant(std::string_view id) const {
    auto it = merchants_.find(id);
    return it == merchants_.end() ? nullptr : it->second;
  }

  std::shared_ptr<Entry> find_order(std::string_view order_no) const {
    std::lock_guard lock(mutex_);
    auto it = by_order_no_.find(order_no);
    return it == by_order_no_.end() ? nullptr : it->second;
  }

  std::string pay_url(const Order& o) const { return frame_.public_url() + std::string(kPagePath) + o.order_no; }

  std::string local_time(std::int64_t unix_s) const { return format_time(unix_s, settings_.utc_offset_minutes); }

  // ---- the checks every API request passes: content type, MerchantId, Sign, a JSON object ----

  struct Checked {
    const Merchant* merchant = nullptr;
    json::object body;
    std::vector<std::pair<std::string_view, std::string_view>> raw;
  };

  // On failure `error` holds the answer to send.
  std::optional<Checked> check_request(RequestContext& ctx, std::optional<Response>& error) const {
    if (!is_json_content(ctx.req)) {
      error = envelope_error(400, "Content-Type must be application/json", ctx.req);
      return std::nullopt;
    }
    std::string_view merchant_id = ctx.req["MerchantId"];
    if (merchant_id.empty()) {
      error = envelope_error(401, "MerchantId header is required", ctx.req);
      return std::nullopt;
    }
    const Merchant* merchant = find_merchant(merchant_id);
    if (!merchant) {
      error = envelope_error(401, "merchant does not exist", ctx.req);
      return std::nullopt;
    }
    std::string_view received = ctx.req["Sign"];
    if (received.empty()) {
      error = envelope_error(403, "Sign header is required", ctx.req);
      return std::nullopt;
    }
    if (!sign_matches(ctx.req.body(), merchant->api_key.reveal(), received)) {
      error = envelope_error(403, "sign error", ctx.req);
      return std::nullopt;
    }
    boost::system::error_code ec;
    auto parsed = json::parse(ctx.req.body(), ec);
    auto raw = raw_members(ctx.req.body());
    if (ec || !parsed.is_object() || !raw) {
      error = envelope_error(400, "the request body must be a JSON object", ctx.req);
      return std::nullopt;
    }
    for (std::size_t i = 0; i < raw->size(); ++i)
      for (std::size_t j = i + 1; j < raw->size(); ++j)
        if ((*raw)[i].first == (*raw)[j].first) {
          error = envelope_error(400, std::string((*raw)[i].first) + " is given twice", ctx.req);
          return std::nullopt;
        }
    Checked c;
    c.merchant = merchant;
    c.body = std::move(parsed.as_object());
    c.raw = std::move(*raw);
    return c;
  }

  static std::optional<std::string_view> raw_of(const Checked& c, std::string_view key) {
    for (const auto& [k, v] : c.raw)
      if (k == key) return v;
    return std::nullopt;
  }

  // A present, non-null, non-empty member.
  static const json::value* member(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    if (!v || v->is_null()) return nullptr;
    if (v->is_string() && v->as_string().empty()) return nullptr;
    return v;
  }

  // A mandatory (or optional) string of at most max_len characters; the error message when not.
  static std::optional<std::string> string_field(const json::object& o, std::string_view key, std::size_t max_len,
                                                 bool required, std::string& out) {
    const auto* v = member(o, key);
    if (!v) {
      if (required) return std::string(key) + " is required";
      out.clear();
      return std::nullopt;
    }
    if (!v->is_string()) return std::string(key) + " must be a string";
    out = std::string(v->as_string());
    if (utf8_length(out) > max_len)
      return std::string(key) + " is too long (at most " + std::to_string(max_len) + " characters)";
    return std::nullopt;
  }

  // ---- POST /api/payDesk ----

  asio::awaitable<Response> pay_desk(RequestContext& ctx) {
    std::optional<Response> error;
    auto checked = check_request(ctx, error);
    if (!checked) co_return std::move(*error);
    const auto& b = checked->body;
    auto o = std::make_shared<Order>();
    o->merchant = checked->merchant;

    auto bad = [&](std::string msg) { return envelope_error(400, msg, ctx.req); };
    // In the document's table order.
    if (auto e = string_field(b, "currency", 32, true, o->currency)) co_return bad(*e);
    if (std::find(settings_.currencies.begin(), settings_.currencies.end(), o->currency) == settings_.currencies.end())
      co_return bad("currency " + o->currency + " is not supported");

    const auto* amount = member(b, "amount");
    if (!amount) co_return bad("amount is required");
    {
      auto raw = raw_of(*checked, "amount");
      if (!raw || !(amount->is_number() || amount->is_string()))
        co_return bad("amount must be a decimal number");
      std::string_view text = amount->is_string() ? unquote_plain(*raw) : *raw;
      auto cents = parse_amount_cents(text);
      if (!cents || (amount->is_string() && text != std::string_view(amount->as_string())))
        co_return bad("amount must be a decimal with at most two decimals");
      if (*cents < settings_.amount_min_cents || *cents > settings_.amount_max_cents)
        co_return bad("amount must be between " + format_cents_short(settings_.amount_min_cents) + " and " +
                      format_cents_short(settings_.amount_max_cents));
      o->amount_text = std::string(text);
      o->amount_cents = *cents;
    }

    const auto* reusable = b.if_contains("reusableStatus");
    if (!reusable || reusable->is_null()) co_return bad("reusableStatus is required");
    if (!reusable->is_bool()) co_return bad("reusableStatus must be a boolean");
    o->reusable = reusable->as_bool();

    if (auto e = string_field(b, "mchOrderNo", 32, true, o->mch_order_no)) co_return bad(*e);

    const auto* expire = member(b, "expireTime");
    if (!expire) co_return bad("expireTime is required");
    {
      std::int64_t secs = -1;
      if (expire->is_int64())
        secs = expire->as_int64();
      else if (expire->is_uint64())
        secs = expire->as_uint64() > 315'360'000u ? -1 : static_cast<std::int64_t>(expire->as_uint64());
      else if (expire->is_string() && all_digits(expire->as_string()) && expire->as_string().size() <= 10)
        secs = std::stoll(std::string(expire->as_string()));
      if (secs <= 0 || secs > 315'360'000) co_return bad("expireTime must be a positive number of seconds");
      o->expire_seconds = secs;
    }

    if (auto e = string_field(b, "notifyUrl", 250, true, o->notify_url)) co_return bad(*e);
    if (!valid_http_url(o->notify_url)) co_return bad("notifyUrl must be an http(s) URL");
    if (auto e = string_field(b, "nonceStr", 32, true, o->nonce)) co_return bad(*e);
    if (auto e = string_field(b, "realName", 64, true, o->real_name)) co_return bad(*e);
    if (auto e = string_field(b, "phone", 32, true, o->phone)) co_return bad(*e);
    if (auto e = string_field(b, "email", 64, true, o->email)) co_return bad(*e);
    if (o->email.find('@') == std::string::npos) co_return bad("email is not an e-mail address");

    const auto* id_type = member(b, "idType");
    if (!id_type) co_return bad("idType is required");
    if (id_type->is_int64() || id_type->is_uint64())
      o->id_type = json::serialize(*id_type);
    else if (id_type->is_string())
      o->id_type = std::string(id_type->as_string());
    else
      co_return bad("idType must be a string");
    if (utf8_length(o->id_type) > 32) co_return bad("idType is too long (at most 32 characters)");

    if (auto e = string_field(b, "idCard", 32, true, o->id_card)) co_return bad(*e);
    if (!valid_id_card(o->id_card)) co_return bad("idCard format is invalid");
    if (auto e = string_field(b, "remark", 32, true, o->remark)) co_return bad(*e);
    if (!valid_remark(o->remark)) co_return bad("remark must use English or unaccented Spanish characters");
    if (auto e = string_field(b, "returnUrl", 250, false, o->return_url)) co_return bad(*e);
    if (!o->return_url.empty() && !valid_http_url(o->return_url)) co_return bad("returnUrl must be an http(s) URL");

    o->created_ms = now_ms();
    o->request_ip = ctx.remote_addr;
    auto entry = std::make_shared<Entry>();
    entry->state.expire_at_ms = o->created_ms + o->expire_seconds * 1000;
    entry->state.updated_ms = o->created_ms;
    std::chrono::milliseconds hold{0};
    {
      std::lock_guard lock(mutex_);
      auto& mine = by_mch_order_[o->merchant->index];
      if (mine.count(o->mch_order_no)) co_return envelope_error(409, "mchOrderNo already exists", ctx.req);
      do {
        o->order_no = "PAYDESK" + random_digits(23);
      } while (by_order_no_.count(o->order_no));
      entry->order = o;
      by_order_no_.emplace(o->order_no, entry);
      mine.emplace(o->mch_order_no, entry);
      created_.push_back(entry);
      evict_locked();
      if (delay_.count != 0 && delay_.ms > 0) {
        hold = std::chrono::milliseconds(delay_.ms);
        if (delay_.count > 0 && --delay_.count == 0) delay_.ms = 0;
      }
    }
    spdlog::info("cashypay: order {} mchOrderNo {} {} {} (expires in {} s)", o->order_no, o->mch_order_no,
                 o->amount_text, o->currency, o->expire_seconds);

    json::object data;
    data["merchantId"] = o->merchant->id;
    data["mchOrderNo"] = o->mch_order_no;
    data["orderNo"] = o->order_no;
    data["payUrl"] = pay_url(*o);
    data["amount"] = o->amount_text;
    data["expireTime"] = local_time(entry->state.expire_at_ms / 1000);
    if (hold.count() > 0) {
      spdlog::info("cashypay: holding the answer for {} {} ms", o->order_no, hold.count());
      if (!co_await frame_.sleeper().sleep(hold))
        throw boost::system::system_error(asio::error::operation_aborted, "sandbox stopping");
    }
    co_return envelope_ok(std::move(data), ctx.req);
  }

  void evict_locked() {
    while (by_order_no_.size() > settings_.max_orders && !created_.empty()) {
      auto e = std::move(created_.front());  // keeps the keys' strings alive while erasing
      created_.pop_front();
      const auto& o = *e->order;
      by_mch_order_[o.merchant->index].erase(o.mch_order_no);
      by_order_no_.erase(o.order_no);
    }
  }

  // ---- POST /api/payDeskQuery ----

  std::string reported_status(const StateView& s) const { return s.expired ? settings_.expired_status : s.status; }

  asio::awaitable<Response> query(RequestContext& ctx) {
    std::optional<Response> error;
    auto checked = check_request(ctx, error);
    if (!checked) co_return std::move(*error);
    const auto& b = checked->body;
    std::string nonce, order_no, mch_order_no;
    if (auto e = string_field(b, "nonceStr", 32, true, nonce)) co_return envelope_error(400, *e, ctx.req);
    if (auto e = string_field(b, "orderNo", 32, false, order_no)) co_return envelope_error(400, *e, ctx.req);
    if (auto e = string_field(b, "mchOrderNo", 32, false, mch_order_no)) co_return envelope_error(400, *e, ctx.req);
    if (order_no.empty() && mch_order_no.empty())
      co_return envelope_error(400, "orderNo or mchOrderNo is required", ctx.req);

    std::shared_ptr<Entry> entry;
    StateView s;
    {
      std::lock_guard lock(mutex_);
      if (!order_no.empty()) {
        auto it = by_order_no_.find(order_no);
        if (it != by_order_no_.end() && it->second->order->merchant == checked->merchant) entry = it->second;
      } else {
        auto& mine = by_mch_order_[checked->merchant->index];
        auto it = mine.find(mch_order_no);
        if (it != mine.end()) entry = it->second;
      }
      if (entry) s = view_of(entry->state, now_ms());
    }
    if (!entry) co_return envelope_error(404, "order does not exist", ctx.req);
    const Order& o = *entry->order;
    json::object data;
    data["merchantId"] = o.merchant->id;
    data["mchOrderNo"] = o.mch_order_no;
    data["orderNo"] = o.order_no;
    data["payUrl"] = pay_url(o);
    data["amount"] = format_cents_short(o.amount_cents);
    data["fee"] = s.fee_units4 == 0 ? std::string("0") : format_fixed(s.fee_units4, 4, 4);
    data["orderStatus"] = reported_status(s);
    if (s.completion_s)
      data["completionTime"] = local_time(s.completion_s);
    else
      data["completionTime"] = nullptr;
    data["nonceStr"] = nullptr;  // as the document's example answer shows
    co_return envelope_ok(std::move(data), ctx.req);
  }

  // ---- the pay-desk page ----

  std::string page_markup(const Order& o, const StateView& s) const {
    std::string b;
    b.reserve(4096);
    b += "<h1>CashyPay pay desk</h1>\n";
    b += "<p class=\"sandbox\">CashyPay sandbox: no real money moves.</p>\n<dl>\n";
    b += "<dt>Merchant</dt><dd>" + html_escape(o.merchant->id) + "</dd>\n";
    b += "<dt>Order</dt><dd>" + html_escape(o.mch_order_no) + "</dd>\n";
    b += "<dt>Payer</dt><dd>" + html_escape(o.real_name) + "</dd>\n";
    b += "<dt>Amount</dt><dd>" + html_escape(format_cents_short(o.amount_cents)) + " " + html_escape(o.currency) +
         "</dd>\n";
    b += "<dt>Pay before</dt><dd>" + html_escape(local_time(s.expire_at_ms / 1000)) + "</dd>\n</dl>\n";
    if (s.expired) {
      b += "<p role=\"status\" id=\"order-status\">This pay-desk link has expired: the order can no longer be "
           "paid.</p>\n";
      return html_page("CashyPay pay desk: expired", b);
    }
    if (s.status != "PAYING") {
      b += "<p role=\"status\" id=\"order-status\">This order is " + html_escape(s.status) +
           (s.status == "SUCCESS" ? ": paid." : ": the payment failed.") + "</p>\n";
      b += o.return_url.empty() ? "<p>You can close this window.</p>\n"
                                : "<p><a href=\"" + html_escape(o.return_url) + "\">Return to the merchant</a></p>\n";
      return html_page("CashyPay pay desk: " + s.status, b);
    }
    b += "<form method=\"post\" action=\"" + html_escape(pay_url(o)) + "\">\n";
    b += "<button type=\"submit\" name=\"action\" value=\"pay\">Pay " +
         html_escape(format_cents_short(o.amount_cents)) + " " + html_escape(o.currency) + "</button>\n";
    b += "<button type=\"submit\" name=\"action\" value=\"fail\" class=\"secondary\">Fail</button>\n</form>\n";
    b += "<p class=\"hint\">Sandbox test data: Pay makes the order SUCCESS (and returns you to the merchant), "
         "Fail makes it FAIL (declined). Either way the merchant's notifyUrl is notified.</p>\n";
    return html_page("CashyPay pay desk", b);
  }

  Response not_found_page(const http::Request& req) const {
    return html_response(status::not_found,
                         html_page("Pay desk not found", "<h1>Pay desk not found</h1>\n<p>This payment link is "
                                                         "unknown.</p>"),
                         req);
  }

  asio::awaitable<Response> page(RequestContext& ctx) {
    auto entry = find_order(ctx.param("orderNo"));
    if (!entry) co_return not_found_page(ctx.req);
    StateView s;
    {
      std::lock_guard lock(mutex_);
      s = view_of(entry->state, now_ms());
    }
    co_return html_response(status::ok, page_markup(*entry->order, s), ctx.req);
  }

  asio::awaitable<Response> page_submit(RequestContext& ctx) {
    auto entry = find_order(ctx.param("orderNo"));
    const FormFields f = is_form(ctx.req) ? http::parse_form(ctx.req.body()) : FormFields{};
    const bool automation = last_value(f, "auto") == "1";
    if (!entry) {
      if (automation) co_return control_error(status::not_found, "unknown order", ctx.req);
      co_return not_found_page(ctx.req);
    }
    const auto action = last_value(f, "action");
    if (action != "pay" && action != "fail") {
      if (automation) co_return control_error(status::bad_request, "action must be pay or fail", ctx.req);
      co_return html_response(status::bad_request,
                              html_page("CashyPay pay desk", "<h1>Choose Pay or Fail</h1>\n<p><a href=\"" +
                                                                 html_escape(pay_url(*entry->order)) +
                                                                 "\">Back to the pay desk</a></p>"),
                              ctx.req);
    }
    const std::string new_status = action == "pay" ? "SUCCESS" : "FAIL";
    StateView s;
    bool changed = false;
    {
      std::lock_guard lock(mutex_);
      const auto now = now_ms();
      s = view_of(entry->state, now);
      if (s.status == "PAYING" && !s.expired) {
        apply_status_locked(*entry, new_status, now);
        s = view_of(entry->state, now);
        changed = true;
      }
    }
    if (!changed) {
      const std::string reported = reported_status(s);
      if (automation)
        co_return json_reply(s.expired ? status::gone : status::conflict,
                             json::object{{"error", s.expired ? std::string("the order has expired")
                                                              : "the order is already " + s.status},
                                          {"orderStatus", reported}},
                             ctx.req);
      co_return html_response(status::ok, page_markup(*entry->order, s), ctx.req);
    }
    spdlog::info("cashypay: {} {} on the pay desk", entry->order->order_no, s.status);
    notify(entry, s, {}, 0);
    if (automation)
      co_return json_reply(status::ok,
                           json::object{{"orderNo", entry->order->order_no}, {"orderStatus", s.status}, {"notified", true}},
                           ctx.req);
    if (s.status == "SUCCESS" && !entry->order->return_url.empty())
      co_return http::redirect_response(status::see_other, entry->order->return_url, ctx.req);
    co_return html_response(status::ok, page_markup(*entry->order, s), ctx.req);
  }

  // mutex held
  void apply_status_locked(Entry& e, const std::string& st, std::int64_t now) {
    e.state.status = st;
    e.state.updated_ms = now;
    if (st == "PAYING") {
      e.state.completion_s = 0;
      e.state.fee_units4 = 0;
      return;
    }
    e.state.completion_s = now / 1000;
    e.state.fee_units4 = st == "SUCCESS" ? fee_units4(e.order->amount_cents, settings_.fee_basis_points) : 0;
  }

  // ---- notifications ----

  Notification build_notification(const Order& o, const StateView& s, const NotifyOverrides& ov) const {
    Notification n;
    n.status = ov.status.value_or(reported_status(s));
    const std::int64_t completion = s.completion_s ? s.completion_s : unix_seconds();
    std::string b;
    b.reserve(512);
    b += "{\"amount\":";
    b += ov.amount.value_or(format_fixed(o.amount_cents, 2, 2));
    b += ",\"completionTime\":" + json_str(local_time(completion));
    b += ",\"fee\":" + ov.fee.value_or(format_fixed(s.fee_units4, 4, 4));
    b += ",\"mchOrderNo\":" + json_str(o.mch_order_no);
    b += ",\"merchantId\":" + json_str(o.merchant->id);
    b += ",\"nonceStr\":" + json_str(std::to_string(now_ms()) + random_digits(3));
    b += ",\"orderNo\":" + json_str(o.order_no);
    b += ",\"orderStatus\":" + json_str(n.status);
    b += ",\"payUrl\":" + json_str(pay_url(o));
    for (const auto& [k, v] : ov.extra) b += "," + json_str(k) + ":" + v;
    b += "}";
    n.body = std::move(b);
    const std::string& key = o.merchant->api_key.reveal();
    n.sign = sign(n.body, ov.forge_signature ? key + "-forged" : key, !ov.lower_case);
    return n;
  }

  net::OutboundRequest notify_request(const Order& o, std::string url, const Notification& n) const {
    net::OutboundRequest req;
    req.method = verb::post;
    req.url = std::move(url);
    req.headers.emplace_back("Content-Type", "application/json");
    req.headers.emplace_back("MerchantId", o.merchant->id);
    req.headers.emplace_back("Sign", n.sign);
    req.body = n.body;
    req.connect_timeout = std::min(settings_.notify_timeout, std::chrono::milliseconds(5000));
    req.timeout = settings_.notify_timeout;
    return req;
  }

  static void remember_locked(State& st, const std::string& url, const Notification& n, bool manual) {
    st.sent.push_back({now_ms(), url, n.body, n.sign, manual});
    if (st.sent.size() > kSentMax) st.sent.erase(st.sent.begin());
  }

  void record_attempt(const std::shared_ptr<Entry>& e, NotifyLogEntry entry) {
    std::lock_guard lock(mutex_);
    e->state.notify_log.record(std::move(entry));
  }

  // Sends the notification now and re-sends on the schedule until 200, 301 or 302. The first
  // `ignore_answers` answers count as not received, whatever they are.
  Notification notify(const std::shared_ptr<Entry>& e, const StateView& s, const NotifyOverrides& ov,
                      int ignore_answers, std::string url = {}) {
    const Order& o = *e->order;
    auto n = build_notification(o, s, ov);
    if (url.empty()) url = o.notify_url;
    {
      std::lock_guard lock(mutex_);
      ++e->state.notifications;
      remember_locked(e->state, url, n, false);
    }
    NotificationJob job;
    job.gateway = "cashypay";
    job.subject = o.order_no + " " + n.status;
    job.request = notify_request(o, std::move(url), n);
    job.retry_delays = settings_.retry;
    job.max_attempts = static_cast<int>(settings_.retry.size()) + 1;  // "一共重试回调10次": 10 re-sends
    auto ignored = std::make_shared<std::atomic<int>>(ignore_answers);
    job.acknowledged = [ignored](const net::OutboundResponse& r) {
      if (r.outcome != net::SendOutcome::response) return false;
      if (ignored->load() > 0) {
        --*ignored;
        return false;
      }
      return acknowledged_status(r.status);
    };
    job.on_attempt = [this, e, st = n.status](const DeliveryAttempt& a) {
      record_attempt(e, NotifyLogEntry::scheduled(a, st, 256));
    };
    frame_.notifier().start(std::move(job));
    return n;
  }

  // ---- Control API ----

  json::object order_json(const Entry& e) const {  // mutex held
    const Order& o = *e.order;
    const State& st = e.state;
    const auto s = view_of(st, now_ms());
    json::object j;
    j["orderNo"] = o.order_no;
    j["mchOrderNo"] = o.mch_order_no;
    j["merchantId"] = o.merchant->id;
    j["currency"] = o.currency;
    j["amount"] = o.amount_text;
    j["amount_cents"] = o.amount_cents;
    j["reusableStatus"] = o.reusable;
    j["expireTime"] = o.expire_seconds;
    j["expire_at"] = local_time(st.expire_at_ms / 1000);
    j["expire_at_ms"] = st.expire_at_ms;
    j["notifyUrl"] = o.notify_url;
    j["nonceStr"] = o.nonce;
    j["realName"] = o.real_name;
    j["phone"] = o.phone;
    j["email"] = o.email;
    j["idType"] = o.id_type;
    j["idCard"] = o.id_card;
    j["remark"] = o.remark;
    j["returnUrl"] = o.return_url;
    j["payUrl"] = pay_url(o);
    j["created_at_ms"] = o.created_ms;
    j["status"] = st.status;
    j["orderStatus"] = reported_status(s);
    j["expired"] = s.expired;
    j["fee"] = format_fixed(st.fee_units4, 4, 4);
    if (st.completion_s)
      j["completionTime"] = local_time(st.completion_s);
    else
      j["completionTime"] = nullptr;
    j["updated_at_ms"] = st.updated_ms;
    json::array sent;
    for (const auto& x : st.sent)
      sent.push_back(json::object{
          {"at_ms", x.at_ms}, {"url", x.url}, {"body", x.body}, {"sign", x.sign}, {"manual", x.manual}});
    json::object notify{{"notifications", st.notifications}, {"sent", std::move(sent)}};
    st.notify_log.add_to(notify, {"orderStatus"});
    j["notify"] = std::move(notify);
    return j;
  }

  json::object order_json_locked_copy(const std::shared_ptr<Entry>& e) const {
    std::lock_guard lock(mutex_);
    return order_json(*e);
  }

  asio::awaitable<Response> control_get(RequestContext& ctx) {
    auto e = find_order(ctx.param("orderNo"));
    if (!e) co_return control_error(status::not_found, "unknown order", ctx.req);
    co_return json_reply(status::ok, order_json_locked_copy(e), ctx.req);
  }

  asio::awaitable<Response> control_list(RequestContext& ctx) {
    const auto q = http::parse_form(ctx.query);
    const auto mch = last_value(q, "mchOrderNo");
    const auto merchant = last_value(q, "merchantId");
    std::size_t limit = 100;
    if (auto l = last_value(q, "limit"); all_digits(l) && l.size() < 7) limit = std::stoul(std::string(l));
    json::array out;
    {
      std::lock_guard lock(mutex_);
      if (!mch.empty()) {
        for (const auto& m : settings_.merchants) {
          if (!merchant.empty() && m.id != merchant) continue;
          auto it = by_mch_order_[m.index].find(mch);
          if (it != by_mch_order_[m.index].end()) out.push_back(order_json(*it->second));
        }
      } else {
        for (auto it = created_.rbegin(); it != created_.rend() && out.size() < limit; ++it)
          if (merchant.empty() || (*it)->order->merchant->id == merchant) out.push_back(order_json(**it));
      }
    }
    co_return json_reply(status::ok, json::object{{"orders", std::move(out)}}, ctx.req);
  }

  static std::optional<json::object> body_object(RequestContext& ctx) {
    if (ctx.req.body().empty()) return json::object{};
    boost::system::error_code ec;
    auto body = json::parse(ctx.req.body(), ec);
    if (ec || !body.is_object()) return std::nullopt;
    return body.as_object();
  }

  static std::optional<std::string> json_string(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    if (!v || !v->is_string()) return std::nullopt;
    return std::string(v->as_string());
  }

  static std::optional<std::int64_t> json_int(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    if (!v || !v->is_int64()) return std::nullopt;
    return v->as_int64();
  }

  static bool json_bool(const json::object& o, std::string_view key, bool def) {
    const auto* v = o.if_contains(key);
    return v && v->is_bool() ? v->as_bool() : def;
  }

  // A decimal text usable as a JSON number: digits, one optional dot, an optional leading '-'.
  static bool number_text(std::string_view s) {
    if (!s.empty() && s.front() == '-') s.remove_prefix(1);
    auto dot = s.find('.');
    if (!all_digits(s.substr(0, dot))) return false;
    return dot == std::string_view::npos || all_digits(s.substr(dot + 1));
  }

  asio::awaitable<Response> control_status(RequestContext& ctx) {
    auto e = find_order(ctx.param("orderNo"));
    if (!e) co_return control_error(status::not_found, "unknown order", ctx.req);
    auto b = body_object(ctx);
    if (!b) co_return control_error(status::bad_request, "body must be a JSON object", ctx.req);
    auto st = json_string(*b, "status");
    if (!st || !known_status(*st))
      co_return control_error(status::bad_request, "status must be SUCCESS, FAIL or PAYING", ctx.req);
    const bool notify_now = json_bool(*b, "notify", true);
    const auto ignore = json_int(*b, "ignore_answers").value_or(0);
    if (ignore < 0 || ignore > 100) co_return control_error(status::bad_request, "ignore_answers must be 0..100", ctx.req);
    auto url = json_string(*b, "url").value_or("");
    if (!url.empty() && !valid_http_url(url)) co_return control_error(status::bad_request, "url must be http(s)", ctx.req);
    StateView s;
    {
      std::lock_guard lock(mutex_);
      const auto now = now_ms();
      apply_status_locked(*e, *st, now);
      s = view_of(e->state, now);
    }
    spdlog::info("cashypay: {} forced to {}", e->order->order_no, s.status);
    json::object j;
    if (notify_now) {
      auto n = notify(e, s, {}, static_cast<int>(ignore), url);
      j = order_json_locked_copy(e);
      j["notification"] = json::object{{"body", n.body}, {"sign", n.sign}};
    } else {
      j = order_json_locked_copy(e);
    }
    j["notified"] = notify_now;
    co_return json_reply(status::ok, j, ctx.req);
  }

  asio::awaitable<Response> control_notify(RequestContext& ctx) {
    auto e = find_order(ctx.param("orderNo"));
    if (!e) co_return control_error(status::not_found, "unknown order", ctx.req);
    auto b = body_object(ctx);
    if (!b) co_return control_error(status::bad_request, "body must be a JSON object", ctx.req);
    NotifyOverrides ov;
    ov.status = json_string(*b, "status");
    if (ov.status && ov.status->empty()) co_return control_error(status::bad_request, "status must not be empty", ctx.req);
    ov.amount = json_string(*b, "amount");
    if (ov.amount && !number_text(*ov.amount))
      co_return control_error(status::bad_request, "amount must be a decimal text such as \"1.00\"", ctx.req);
    ov.fee = json_string(*b, "fee");
    if (ov.fee && !number_text(*ov.fee))
      co_return control_error(status::bad_request, "fee must be a decimal text such as \"0.0000\"", ctx.req);
    ov.forge_signature = json_bool(*b, "forge_signature", false);
    const auto sign_case = json_string(*b, "sign_case").value_or("upper");
    if (sign_case != "upper" && sign_case != "lower")
      co_return control_error(status::bad_request, "sign_case must be upper or lower", ctx.req);
    ov.lower_case = sign_case == "lower";
    if (const auto* x = b->if_contains("extra")) {
      if (!x->is_object()) co_return control_error(status::bad_request, "extra must be an object", ctx.req);
      for (const auto& kv : x->as_object()) ov.extra.emplace_back(std::string(kv.key()), json::serialize(kv.value()));
    }
    const auto repeat = json_int(*b, "repeat").value_or(1);
    if (repeat < 1 || repeat > 100) co_return control_error(status::bad_request, "repeat must be 1..100", ctx.req);
    const auto ignore = json_int(*b, "ignore_answers").value_or(0);
    if (ignore < 0 || ignore > 100) co_return control_error(status::bad_request, "ignore_answers must be 0..100", ctx.req);
    std::string url = json_string(*b, "url").value_or(e->order->notify_url);
    if (!valid_http_url(url)) co_return control_error(status::bad_request, "url must be http(s)", ctx.req);

    StateView s;
    {
      std::lock_guard lock(mutex_);
      s = view_of(e->state, now_ms());
    }
    if (json_bool(*b, "schedule", false)) {
      auto n = notify(e, s, ov, static_cast<int>(ignore), url);
      co_return json_reply(status::ok, json::object{{"body", n.body}, {"sign", n.sign}, {"scheduled", true}}, ctx.req);
    }
    auto n = build_notification(*e->order, s, ov);
    {
      std::lock_guard lock(mutex_);
      remember_locked(e->state, url, n, true);
    }
    json::array responses;
    for (std::int64_t i = 1; i <= repeat; ++i) {
      auto res = co_await frame_.notifier().send_once(notify_request(*e->order, url, n));
      record_attempt(e, NotifyLogEntry::manual_send(static_cast<int>(i), res,
                                                    res.outcome == net::SendOutcome::response &&
                                                        acknowledged_status(res.status),
                                                    n.status, 256));
      spdlog::info("cashypay: manual notification {} {} #{} to {}: {} {}", e->order->order_no, n.status, i, url,
                   to_string(res.outcome), res.status);
      json::object r;
      r["outcome"] = to_string(res.outcome);
      r["status"] = res.status;
      r["body"] = res.body.substr(0, 4096);
      if (!res.error.empty()) r["error"] = res.error;
      responses.push_back(std::move(r));
    }
    co_return json_reply(status::ok, json::object{{"body", n.body}, {"sign", n.sign}, {"responses", std::move(responses)}},
                         ctx.req);
  }

  asio::awaitable<Response> control_expire(RequestContext& ctx) {
    auto e = find_order(ctx.param("orderNo"));
    if (!e) co_return control_error(status::not_found, "unknown order", ctx.req);
    {
      std::lock_guard lock(mutex_);
      const auto now = now_ms();
      e->state.expire_at_ms = std::min(e->state.expire_at_ms, now);
      e->state.expired_by_control = true;
      e->state.updated_ms = now;
    }
    spdlog::info("cashypay: {} expired by the control API", e->order->order_no);
    co_return json_reply(status::ok, order_json_locked_copy(e), ctx.req);
  }

  json::object delay_json() const {
    std::lock_guard lock(mutex_);
    return json::object{{"ms", delay_.ms}, {"count", delay_.count}};
  }

  asio::awaitable<Response> control_delay_get(RequestContext& ctx) {
    co_return json_reply(status::ok, delay_json(), ctx.req);
  }

  asio::awaitable<Response> control_delay_set(RequestContext& ctx) {
    auto b = body_object(ctx);
    if (!b) co_return control_error(status::bad_request, "body must be a JSON object", ctx.req);
    const auto ms = json_int(*b, "ms");
    if (!ms || *ms < 0 || *ms > 3'600'000) co_return control_error(status::bad_request, "ms must be 0..3600000", ctx.req);
    const auto count = json_int(*b, "count").value_or(1);
    if (count < -1 || count > 1'000'000'000)
      co_return control_error(status::bad_request, "count must be an integer >= -1", ctx.req);
    {
      std::lock_guard lock(mutex_);
      delay_.ms = *ms;
      delay_.count = *ms == 0 ? 0 : count;
      if (delay_.count == 0) delay_.ms = 0;
    }
    co_return json_reply(status::ok, delay_json(), ctx.req);
  }

  Sandbox& frame_;
  const Settings settings_;
  std::unordered_map<std::string_view, const Merchant*> merchants_;  // views settings_.merchants

  mutable std::mutex mutex_;
  using Index = std::unordered_map<std::string_view, std::shared_ptr<Entry>>;
  Index by_order_no_;
  std::vector<Index> by_mch_order_;               // per merchant (Merchant::index)
  std::deque<std::shared_ptr<Entry>> created_;    // oldest first
  struct {
    std::int64_t ms = 0;
    std::int64_t count = 0;
  } delay_;
};

}  // namespace

std::unique_ptr<Simulator> make_simulator(Sandbox& frame, const ConfigNode& section) {
  return std::make_unique<CashyPaySimulator>(frame, parse_settings(section));
}

}  // namespace paymux::sandbox::cashypay
