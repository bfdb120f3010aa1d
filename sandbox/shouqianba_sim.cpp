#include "sandbox/shouqianba_sim.hpp"

#include "service/core/clock.hpp"
#include "service/core/secret.hpp"
#include "service/http/errors.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

namespace paymux::sandbox::shouqianba {
namespace {

namespace json = boost::json;
using http::bhttp::status;
using http::bhttp::verb;

constexpr std::string_view kQrPath = "/shouqianba/qr/";

std::string random_digits(std::size_t n) { return random_string(n, "0123456789"); }

// ---------------------------------------------------------------------------------------------
// Configuration

struct Vendor {
  std::string sn;
  Secret key;
};

struct ConfiguredTerminal {
  std::string sn;
  Secret key;
};

struct Settings {
  std::vector<Vendor> vendors;
  std::vector<std::string> codes;
  std::vector<ConfiguredTerminal> terminals;
  std::string store_id = "00293001928483902";
  bool cancel_paid_orders = true;
  std::string order_not_exist_code = "UPAY_ORDER_NOT_EXIST";
  std::chrono::milliseconds lost_answer_hold{30000};
  std::int64_t precreate_expire_seconds = 240;
  std::vector<std::int64_t> retry_seconds;
  std::vector<std::chrono::seconds> retry;
  std::chrono::milliseconds notify_timeout{5000};
  std::string private_key_pem;
  std::string private_key_source;  // for describe(): "sandbox test key" or the file
  std::size_t max_orders = 200000;
};

Settings parse_settings(const ConfigNode& c) {
  c.allow_only({"vendors", "activation_codes", "terminals", "store_id", "cancel_paid_orders", "order_not_exist_code",
                "lost_answer_hold_ms", "precreate_expire_seconds", "notify_retry_seconds", "notify_timeout_ms",
                "notify_private_key_file", "max_orders"});
  Settings s;
  if (c.has("vendors")) {
    for (const auto& v : c.list("vendors")) {
      v.allow_only({"vendor_sn", "vendor_key"});
      s.vendors.push_back({v.required_str("vendor_sn"), Secret(v.required_str("vendor_key"))});
    }
  } else {
    s.vendors.push_back({"91800001", Secret("sandbox-shouqianba-vendor-key-0001")});
  }
  {
    // Comma-separated, read as text (codes may start with zeros): "76543210, 12345678".
    const auto text = c.str("activation_codes", "76543210");
    std::size_t start = 0;
    while (start <= text.size()) {
      auto end = text.find(',', start);
      if (end == std::string::npos) end = text.size();
      std::string code = text.substr(start, end - start);
      code.erase(0, code.find_first_not_of(' '));
      code.erase(code.find_last_not_of(' ') + 1);
      if (code.empty() || code.size() > 32) c.fail("activation_codes", "must be codes separated by commas");
      s.codes.push_back(std::move(code));
      start = end + 1;
    }
  }
  if (c.has("terminals")) {
    for (const auto& t : c.list("terminals")) {
      t.allow_only({"terminal_sn", "terminal_key"});
      ConfiguredTerminal term{t.required_str("terminal_sn"), Secret(t.required_str("terminal_key"))};
      if (term.sn.size() > 32 || term.sn.find(' ') != std::string::npos)
        t.fail("terminal_sn", "must be at most 32 characters without spaces");
      for (const auto& other : s.terminals)
        if (other.sn == term.sn) t.fail("terminal_sn", "is configured twice");
      s.terminals.push_back(std::move(term));
    }
  } else {
    s.terminals.push_back({"100000330006324471", Secret("sandbox-shouqianba-terminal-key-0001")});
  }
  s.store_id = c.str("store_id", s.store_id);
  s.cancel_paid_orders = c.boolean("cancel_paid_orders", true);
  s.order_not_exist_code = c.str("order_not_exist_code", s.order_not_exist_code);
  if (s.order_not_exist_code.empty()) c.fail("order_not_exist_code", "must not be empty");
  s.lost_answer_hold = std::chrono::milliseconds(c.integer("lost_answer_hold_ms", 30000, 0, 3'600'000));
  s.precreate_expire_seconds = c.integer("precreate_expire_seconds", 240, 1, 7 * 24 * 3600);
  s.retry_seconds = c.integer_list("notify_retry_seconds", {1, 5, 30, 600}, 0, 7 * 24 * 3600);
  for (auto v : s.retry_seconds) s.retry.emplace_back(v);
  s.notify_timeout = std::chrono::milliseconds(c.integer("notify_timeout_ms", 5000, 100, 600000));
  const auto key_file = c.str("notify_private_key_file", "");
  if (key_file.empty()) {
    s.private_key_pem = std::string(kTestPrivateKeyPem);
    s.private_key_source = "sandbox test key";
  } else {
    std::ifstream in(key_file, std::ios::binary);
    if (!in) c.fail("notify_private_key_file", "cannot read the file");
    std::ostringstream buf;
    buf << in.rdbuf();
    s.private_key_pem = buf.str();
    s.private_key_source = key_file;
  }
  if (!load_pem_key(s.private_key_pem, true)) c.fail("notify_private_key_file", "is not a PEM private key");
  s.max_orders = static_cast<std::size_t>(c.integer("max_orders", 200000, 100, 100'000'000));
  return s;
}

// ---------------------------------------------------------------------------------------------
// State

struct Terminal {
  std::string sn;
  Secret key;
  std::optional<Secret> next_key;  // issued by check-in, valid alongside key until first used
  std::string device_id;           // empty for configured terminals
  int checkins = 0;
};

struct Calls {
  int pay = 0, precreate = 0, query = 0, cancel = 0, refund = 0;
};

struct Refund {
  std::string request_no;
  std::int64_t amount = 0;
  std::string operator_;
  std::int64_t finish_ms = 0;
  int requests = 1;  // how many refund calls named it
};

struct Order {
  // Fixed at creation.
  std::string sn, client_sn, terminal_sn, trade_no, payer_uid, payway, sub_payway, dynamic_id;
  std::string subject, operator_, description, reflect, notify_url, device_id;
  std::int64_t total = 0;
  bool precreate = false;
  Outcome outcome = Outcome::success;
  std::int64_t ctime_ms = 0;
  std::int64_t expire_ms = 0;  // precreate only
  // Changing (mutex held).
  std::string status = "IN_PROG";  // latest flow status (appendix 4; IN_PROG while in progress)
  std::string order_status = "CREATED";
  std::int64_t refunded = 0;
  bool paid = false;  // reached PAID once (the payer is known)
  int queries = 0;
  std::int64_t finish_ms = 0, channel_finish_ms = 0;
  std::vector<Refund> refunds;
  int notifications = 0;
  std::string last_body, last_authorization;
  NotifyLog notify_log;
};

std::string fen_text(std::int64_t fen) { return std::to_string(fen); }

std::string yuan_text(std::int64_t fen) {
  std::string cents = std::to_string(fen % 100);
  if (cents.size() < 2) cents.insert(0, "0");
  return std::to_string(fen / 100) + "." + cents;
}

bool final_pay_state(std::string_view s) {
  return s == "PAID" || s == "PAY_CANCELED" || s == "PAY_ERROR" || s == "CANCELED";
}


// ---------------------------------------------------------------------------------------------
// Answers (3.返回数据): HTTP 200 and JSON whatever happened.

Response comm_error(std::string_view code, std::string_view message, const http::Request& req,
                    std::string_view result_code = "400") {
  return json_reply(status::ok,
                    json::object{{"result_code", result_code}, {"error_code", code}, {"error_message", message}}, req);
}

Response biz_reply(json::object biz, const http::Request& req) {
  return json_reply(status::ok, json::object{{"result_code", "200"}, {"biz_response", std::move(biz)}}, req);
}

Response biz_fail(std::string_view code, std::string_view message, const http::Request& req) {
  return biz_reply(json::object{{"result_code", "FAIL"}, {"error_code", code}, {"error_message", message}}, req);
}

// A request field: absent, null and "" are all absent; present values must be JSON strings.
// Returns the error message (INVALID_PARAMS) when the field is unacceptable.
std::optional<std::string> text_field(const json::object& b, std::string_view key, std::size_t max_chars,
                                      bool required, std::string& out) {
  out.clear();
  const auto* v = b.if_contains(key);
  if (!v || v->is_null() || (v->is_string() && v->as_string().empty())) {
    if (required) return std::string(key) + "不可以为空 (" + std::string(key) + " is required)";
    return std::nullopt;
  }
  if (!v->is_string()) return std::string(key) + " must be a string";
  out = std::string(v->as_string());
  if (utf8_length(out) > max_chars)
    return std::string(key) + " is too long (at most " + std::to_string(max_chars) + ")";
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------

class ShouqianbaSimulator final : public Simulator {
 public:
  ShouqianbaSimulator(Sandbox& frame, Settings settings)
      : frame_(frame), settings_(std::move(settings)), key_(load_pem_key(settings_.private_key_pem, true)) {
    for (const auto& t : settings_.terminals) {
      auto term = std::make_shared<Terminal>();
      term->sn = t.sn;
      term->key = t.key;
      terminals_.emplace(term->sn, term);
    }
    by_sn_.reserve(index_room(settings_.max_orders));
    by_client_sn_.reserve(index_room(settings_.max_orders));
    calls_.reserve(index_room(settings_.max_orders * 2));
  }

  std::string_view name() const override { return kName; }

  boost::json::object describe() const override {
    json::object o;
    json::array vendors;
    for (const auto& v : settings_.vendors) vendors.push_back(json::string(v.sn));
    o["vendors"] = std::move(vendors);
    o["store_id"] = settings_.store_id;
    o["notify_key"] = settings_.private_key_source;
    json::array retry;
    for (auto s : settings_.retry_seconds) retry.push_back(s);
    o["notify_retry_seconds"] = std::move(retry);
    o["cancel_paid_orders"] = settings_.cancel_paid_orders;
    std::lock_guard lock(mutex_);
    o["terminals"] = terminals_.size();
    o["orders"] = by_sn_.size();
    return o;
  }

  void mount(http::Router& r) override {
    auto api = [this, &r](std::string path, asio::awaitable<Response> (ShouqianbaSimulator::*fn)(RequestContext&)) {
      r.add(verb::post, "/shouqianba" + path, frame_.faulty(std::string(kName), [this, fn](RequestContext& c) {
              return (this->*fn)(c);
            }));
    };
    api("/terminal/activate", &ShouqianbaSimulator::activate);
    api("/terminal/checkin", &ShouqianbaSimulator::checkin);
    api("/upay/v2/pay", &ShouqianbaSimulator::pay);
    api("/upay/v2/precreate", &ShouqianbaSimulator::precreate);
    api("/Upay/v2/precreate", &ShouqianbaSimulator::precreate);  // as the document spells it
    api("/upay/v2/query", &ShouqianbaSimulator::query);
    api("/upay/v2/cancel", &ShouqianbaSimulator::cancel);
    api("/upay/v2/refund", &ShouqianbaSimulator::refund);
    r.add(verb::get, "/shouqianba/qr/{sn}", [this](RequestContext& c) { return qr_page(c); });
    r.add(verb::post, "/shouqianba/qr/{sn}", [this](RequestContext& c) { return qr_submit(c); });

    r.add(verb::get, "/_sandbox/shouqianba/orders", [this](RequestContext& c) { return control_find(c); });
    r.add(verb::get, "/_sandbox/shouqianba/orders/{client_sn}", [this](RequestContext& c) { return control_get(c); });
    r.add(verb::post, "/_sandbox/shouqianba/orders/{client_sn}/notify",
          [this](RequestContext& c) { return control_notify(c); });
    r.add(verb::get, "/_sandbox/shouqianba/terminals", [this](RequestContext& c) { return control_terminals(c); });
  }

 private:
  // ---- authentication ----

  struct Authed {
    std::string terminal_sn;
    json::object body;
  };

  // Checks Authorization against a terminal's keys (a pending check-in key, once used, replaces
  // the old one), then parses the body. On failure `error` holds the answer.
  std::optional<Authed> authenticate(RequestContext& ctx, std::optional<Response>& error) {
    const auto auth = parse_authorization(ctx.req[http::bhttp::field::authorization]);
    if (!auth) {
      error = comm_error("ILLEGAL_SIGN", "签名错误 (Authorization must be \"<terminal_sn> <sign>\")", ctx.req);
      return std::nullopt;
    }
    const std::string body(ctx.req.body());
    {
      std::lock_guard lock(mutex_);
      auto it = terminals_.find(std::string(auth->first));
      if (it == terminals_.end()) {
        error = comm_error("INVALID_TERMINAL", "终端错误 (unknown terminal_sn)", ctx.req);
        return std::nullopt;
      }
      Terminal& t = *it->second;
      if (!sign_matches(body, t.key.reveal(), auth->second)) {
        if (t.next_key && sign_matches(body, t.next_key->reveal(), auth->second)) {
          t.key = *t.next_key;
          t.next_key.reset();
          spdlog::info("shouqianba: terminal {} now uses its checked-in key", t.sn);
        } else {
          error = comm_error("ILLEGAL_SIGN", "签名错误", ctx.req);
          return std::nullopt;
        }
      }
    }
    boost::system::error_code ec;
    auto parsed = json::parse(body, ec);
    if (ec || !parsed.is_object()) {
      error = comm_error("INVALID_PARAMS", "参数错误 (the body must be a JSON object)", ctx.req);
      return std::nullopt;
    }
    Authed a;
    a.terminal_sn = std::string(auth->first);
    a.body = std::move(parsed.as_object());
    std::string sn;
    if (auto e = text_field(a.body, "terminal_sn", 32, true, sn)) {
      error = comm_error("INVALID_PARAMS", *e, ctx.req);
      return std::nullopt;
    }
    if (sn != a.terminal_sn) {
      error = comm_error("INVALID_PARAMS", "terminal_sn does not match the Authorization header", ctx.req);
      return std::nullopt;
    }
    return a;
  }

  // ---- orders ----

  Calls& calls_locked(const std::string& client_sn) {
    auto it = calls_.find(client_sn);
    if (it != calls_.end()) return it->second;
    calls_order_.push_back(client_sn);
    while (calls_order_.size() > settings_.max_orders * 2) {
      const auto& oldest = calls_order_.front();
      if (!by_client_sn_.count(oldest)) calls_.erase(oldest);
      calls_order_.pop_front();
    }
    return calls_[client_sn];
  }

  // "优先按照sn查找,如果没有,再按照client_sn查询". mutex held.
  std::shared_ptr<Order> find_locked(const std::string& sn, const std::string& client_sn) const {
    if (!sn.empty()) {
      auto it = by_sn_.find(sn);
      if (it != by_sn_.end()) return it->second;
    }
    if (!client_sn.empty()) {
      auto it = by_client_sn_.find(client_sn);
      if (it != by_client_sn_.end()) return it->second;
    }
    return nullptr;
  }

  std::shared_ptr<Order> find_by_sn(std::string_view sn) const {
    std::lock_guard lock(mutex_);
    auto it = by_sn_.find(std::string(sn));
    return it == by_sn_.end() ? nullptr : it->second;
  }

  void add_locked(const std::shared_ptr<Order>& o) {
    by_sn_.emplace(o->sn, o);
    by_client_sn_.emplace(o->client_sn, o);
    created_.push_back(o);
    while (by_sn_.size() > settings_.max_orders && !created_.empty()) {
      auto old = std::move(created_.front());
      created_.pop_front();
      by_sn_.erase(old->sn);
      by_client_sn_.erase(old->client_sn);
      calls_.erase(old->client_sn);
    }
  }

  std::string new_sn_locked() const {
    std::string sn;
    do {
      sn = "789" + random_digits(13);
    } while (by_sn_.count(sn));
    return sn;
  }

  std::string qr_url(const Order& o) const { return frame_.public_url() + std::string(kQrPath) + o.sn; }

  // mutex held
  void finish_locked(Order& o, std::string order_status, std::string status, std::int64_t now) {
    if (order_status == "PAID") o.paid = true;
    o.order_status = std::move(order_status);
    o.status = std::move(status);
    o.finish_ms = now;
    o.channel_finish_ms = now - 150;
  }

  // A precreate order nobody paid closes after precreate_expire_seconds. mutex held; true when it
  // changed (a notification is due).
  bool expire_locked(Order& o, std::int64_t now) {
    if (!o.precreate || o.order_status != "CREATED" || now < o.expire_ms) return false;
    finish_locked(o, "PAY_CANCELED", "FAIL_CANCELED", o.expire_ms);
    return true;
  }

  std::int64_t net_amount(const Order& o) const { return o.order_status == "CANCELED" ? 0 : o.total - o.refunded; }

  // The order as biz_response.data (3.1, 2.3, 4.3). mutex held.
  json::object data_locked(const Order& o, std::int64_t finish_override = 0) const {
    json::object d;
    d["terminal_sn"] = o.terminal_sn;
    d["sn"] = o.sn;
    d["client_sn"] = o.client_sn;
    d["trade_no"] = o.trade_no;
    d["ctime"] = std::to_string(o.ctime_ms);
    d["status"] = o.status;
    d["order_status"] = o.order_status;
    d["payway"] = o.payway;
    d["sub_payway"] = o.sub_payway;
    if (o.paid) d["payer_uid"] = o.payer_uid;
    d["total_amount"] = fen_text(o.total);
    d["net_amount"] = fen_text(net_amount(o));
    if (o.finish_ms) {
      d["finish_time"] = std::to_string(finish_override ? finish_override : o.finish_ms);
      d["channel_finish_time"] = std::to_string((finish_override ? finish_override : o.finish_ms) - 150);
    }
    d["subject"] = o.subject;
    d["operator"] = o.operator_;
    d["store_id"] = settings_.store_id;
    if (!o.reflect.empty()) d["reflect"] = o.reflect;
    if (o.precreate && o.order_status == "CREATED") d["qr_code"] = qr_url(o);
    return d;
  }

  // ---- the fields pay and precreate share ----

  struct NewOrder {
    std::string client_sn, total_text, payway, subject, operator_, description, longitude, latitude, device_id,
        extended, reflect, notify_url;
    std::int64_t total = 0;
  };

  // INVALID_PARAMS message when a field is unacceptable.
  static std::optional<std::string> read_new_order(const json::object& b, bool payway_required, NewOrder& n) {
    if (auto e = text_field(b, "client_sn", 64, true, n.client_sn)) return e;
    if (auto e = text_field(b, "total_amount", 10, true, n.total_text)) return e;
    auto fen = parse_fen(n.total_text);
    if (!fen) return std::string("total_amount金额为整数,长度不超过10位,以分为单位");
    n.total = *fen;
    if (auto e = text_field(b, "payway", 2, payway_required, n.payway)) return e;
    if (!n.payway.empty() && !known_payway(n.payway)) return std::string("payway must be 1, 3, 4 or 5");
    if (auto e = text_field(b, "subject", 64, true, n.subject)) return e;
    if (auto e = text_field(b, "operator", 32, true, n.operator_)) return e;
    if (auto e = text_field(b, "description", 256, false, n.description)) return e;
    if (auto e = text_field(b, "longitude", 32, false, n.longitude)) return e;
    if (auto e = text_field(b, "latitude", 32, false, n.latitude)) return e;
    if (n.longitude.empty() != n.latitude.empty()) return std::string("经纬度必须同时出现 (longitude and latitude)");
    if (auto e = text_field(b, "device_id", 32, false, n.device_id)) return e;
    if (const auto* x = b.if_contains("extended"); x && x->is_object()) {
      n.extended = json::serialize(*x);
      if (n.extended.size() > 256) return std::string("extended is too long (at most 256)");
    } else if (auto e = text_field(b, "extended", 256, false, n.extended)) {
      return e;
    }
    if (auto e = text_field(b, "reflect", 64, false, n.reflect)) return e;
    if (auto e = text_field(b, "notify_url", 256, false, n.notify_url)) return e;
    if (!n.notify_url.empty() && !valid_http_url(n.notify_url)) return std::string("notify_url must be an http(s) URL");
    return std::nullopt;
  }

  std::shared_ptr<Order> make_order(const Authed& a, const NewOrder& n, std::int64_t now) const {
    auto o = std::make_shared<Order>();
    o->client_sn = n.client_sn;
    o->terminal_sn = a.terminal_sn;
    o->total = n.total;
    o->payway = n.payway;
    o->subject = n.subject;
    o->operator_ = n.operator_;
    o->description = n.description;
    o->reflect = n.reflect;
    o->notify_url = n.notify_url;
    o->device_id = n.device_id;
    o->ctime_ms = now;
    o->payer_uid = "oSbx" + random_string(24, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_");
    return o;
  }

  // ---- POST /upay/v2/pay ----

  asio::awaitable<Response> pay(RequestContext& ctx) {
    std::optional<Response> error;
    auto a = authenticate(ctx, error);
    if (!a) co_return std::move(*error);
    const auto& b = a->body;
    NewOrder n;
    std::string client_sn;
    if (!text_field(b, "client_sn", 64, true, client_sn)) {
      std::lock_guard lock(mutex_);
      ++calls_locked(client_sn).pay;
    }
    if (auto e = read_new_order(b, false, n)) co_return comm_error("INVALID_PARAMS", *e, ctx.req);
    std::string dynamic_id;
    if (auto e = text_field(b, "dynamic_id", 32, true, dynamic_id)) co_return comm_error("INVALID_PARAMS", *e, ctx.req);
    if (dynamic_id.size() > 32) co_return comm_error("INVALID_PARAMS", "dynamic_id不超过32字节", ctx.req);
    if (!all_digits(dynamic_id)) co_return comm_error("INVALID_BARCODE", "支付条码错误", ctx.req);

    const Outcome outcome = barcode_outcome(dynamic_id);
    const auto now = now_ms();
    auto o = make_order(*a, n, now);
    o->dynamic_id = dynamic_id;
    o->outcome = outcome;
    if (o->payway.empty()) o->payway = std::string(payway_of_barcode(dynamic_id));
    o->sub_payway = "1";
    o->trade_no = (o->payway == "1" ? "2026" : "4200") + random_digits(24);
    json::object biz;
    bool notify_now = false;
    {
      std::lock_guard lock(mutex_);
      if (by_client_sn_.count(o->client_sn))
        co_return biz_fail("CLIENT_SN_CONFLICT", "client_sn在系统中已存在", ctx.req);
      if (outcome == Outcome::business_fail) co_return biz_fail("INVALID_BARCODE", "条码错误", ctx.req);
      o->sn = new_sn_locked();
      switch (outcome) {
        case Outcome::success:
          finish_locked(*o, "PAID", "SUCCESS", now);
          biz["result_code"] = "PAY_SUCCESS";
          break;
        case Outcome::declined:
          finish_locked(*o, "PAY_CANCELED", "FAIL_CANCELED", now);
          biz["result_code"] = "PAY_FAIL";
          biz["error_code"] = "TRADE_FAILED";
          biz["error_message"] = "交易失败";
          break;
        case Outcome::pay_error:
          finish_locked(*o, "PAY_ERROR", "FAIL_ERROR", now);
          biz["result_code"] = "PAY_FAIL_ERROR";
          biz["error_code"] = "TRADE_FAILED";
          biz["error_message"] = "交易失败";
          break;
        default:
          biz["result_code"] = "PAY_IN_PROGRESS";
          break;
      }
      add_locked(o);
      notify_now = final_pay_state(o->order_status);
      biz["data"] = data_locked(*o);
    }
    spdlog::info("shouqianba: pay {} client_sn {} {} fen barcode {}...: {}", o->sn, o->client_sn, o->total,
                 dynamic_id.substr(0, 4), o->order_status);
    if (notify_now) notify(o);
    if (outcome == Outcome::lost_answer) {
      spdlog::info("shouqianba: pay {} answer held back {} ms, then dropped", o->sn,
                   settings_.lost_answer_hold.count());
      co_await frame_.sleeper().sleep(settings_.lost_answer_hold);
      throw boost::system::system_error(asio::error::operation_aborted, "sandbox: the pay answer is lost");
    }
    co_return biz_reply(std::move(biz), ctx.req);
  }

  // ---- POST /upay/v2/precreate ----

  asio::awaitable<Response> precreate(RequestContext& ctx) {
    std::optional<Response> error;
    auto a = authenticate(ctx, error);
    if (!a) co_return std::move(*error);
    const auto& b = a->body;
    std::string client_sn;
    if (!text_field(b, "client_sn", 64, true, client_sn)) {
      std::lock_guard lock(mutex_);
      ++calls_locked(client_sn).precreate;
    }
    NewOrder n;
    if (auto e = read_new_order(b, true, n)) co_return comm_error("INVALID_PARAMS", *e, ctx.req);
    const auto now = now_ms();
    auto o = make_order(*a, n, now);
    o->precreate = true;
    o->sub_payway = "2";
    o->expire_ms = now + settings_.precreate_expire_seconds * 1000;
    o->trade_no = (o->payway == "1" ? "2026" : "4200") + random_digits(24);
    json::object biz;
    {
      std::lock_guard lock(mutex_);
      if (by_client_sn_.count(o->client_sn))
        co_return biz_fail("CLIENT_SN_CONFLICT", "client_sn在系统中已存在", ctx.req);
      o->sn = new_sn_locked();
      add_locked(o);
      biz["result_code"] = "PRECREATE_SUCCESS";
      biz["data"] = data_locked(*o);
    }
    spdlog::info("shouqianba: precreate {} client_sn {} {} fen payway {}", o->sn, o->client_sn, o->total, o->payway);
    co_return biz_reply(std::move(biz), ctx.req);
  }

  // ---- sn / client_sn lookups of query, cancel and refund ----

  struct Target {
    std::string sn, client_sn;
  };

  static std::optional<std::string> read_target(const json::object& b, Target& t) {
    if (auto e = text_field(b, "sn", 16, false, t.sn)) return e;
    if (auto e = text_field(b, "client_sn", 64, false, t.client_sn)) return e;
    if (t.sn.empty() && t.client_sn.empty()) return std::string("sn与client_sn不能同时为空 (sn or client_sn is required)");
    return std::nullopt;
  }

  // Counts the call under the order's client_sn (or the client_sn asked for). mutex held.
  std::shared_ptr<Order> lookup_and_count_locked(const Target& t, int Calls::*counter) {
    auto o = find_locked(t.sn, t.client_sn);
    if (o)
      ++(calls_locked(o->client_sn).*counter);
    else if (!t.client_sn.empty())
      ++(calls_locked(t.client_sn).*counter);
    return o;
  }

  Response not_exist(const http::Request& req) const {
    return biz_fail(settings_.order_not_exist_code, "订单不存在", req);
  }

  // Runs `op(order, now, changed)` on the order the body names by sn / client_sn, under the lock,
  // after counting the call and closing an expired QR order; notifies when `changed` is set.
  template <class Op>
  Response with_order(const Authed& a, const http::Request& req, int Calls::*counter, Op&& op) {
    Target t;
    if (auto e = read_target(a.body, t)) return comm_error("INVALID_PARAMS", *e, req);
    std::shared_ptr<Order> o;
    std::optional<Response> res;
    bool changed = false;
    {
      std::lock_guard lock(mutex_);
      o = lookup_and_count_locked(t, counter);
      if (!o) return not_exist(req);
      const auto now = now_ms();
      changed = expire_locked(*o, now);
      res = op(*o, now, changed);
    }
    if (changed) notify(o);
    return std::move(*res);
  }

  // ---- POST /upay/v2/query ----

  asio::awaitable<Response> query(RequestContext& ctx) {
    std::optional<Response> error;
    auto a = authenticate(ctx, error);
    if (!a) co_return std::move(*error);
    co_return with_order(*a, ctx.req, &Calls::query, [&](Order& o, std::int64_t now, bool& changed) {
      ++o.queries;
      if (const int on = paid_on_query(o.outcome); on && o.order_status == "CREATED" && o.queries >= on) {
        finish_locked(o, "PAID", "SUCCESS", now);
        changed = true;
      }
      return biz_reply(json::object{{"result_code", "SUCCESS"}, {"data", data_locked(o)}}, ctx.req);
    });
  }

  // ---- POST /upay/v2/cancel ----

  asio::awaitable<Response> cancel(RequestContext& ctx) {
    std::optional<Response> error;
    auto a = authenticate(ctx, error);
    if (!a) co_return std::move(*error);
    co_return with_order(*a, ctx.req, &Calls::cancel, [&](Order& o, std::int64_t now, bool& changed) {
      const std::string st = o.order_status;
      std::string result;
      if (st == "CREATED" && o.outcome == Outcome::cancel_error) {
        finish_locked(o, "CANCEL_ERROR", "CANCEL_ERROR", now);
        result = "CANCEL_ERROR";
      } else if (st == "CANCEL_ERROR") {
        result = "CANCEL_ERROR";
      } else if (st == "CREATED" || st == "PAY_ERROR" ||
                 (st == "PAID" && o.refunded == 0 && settings_.cancel_paid_orders)) {
        result = st == "CREATED" && o.outcome == Outcome::cancel_abort ? "CANCEL_ABORT_SUCCESS" : "CANCEL_SUCCESS";
        finish_locked(o, "CANCELED", "SUCCESS", now);
        changed = true;
      } else if (st == "CANCELED") {
        result = "CANCEL_SUCCESS";
      } else {
        return biz_fail("UPAY_CANCEL_INVALID_ORDER_STATE", "当前的订单状态是" + st, ctx.req);
      }
      spdlog::info("shouqianba: cancel {} client_sn {}: {} ({})", o.sn, o.client_sn, result, o.order_status);
      return biz_reply(json::object{{"result_code", result}, {"data", data_locked(o)}}, ctx.req);
    });
  }

  // ---- POST /upay/v2/refund ----

  asio::awaitable<Response> refund(RequestContext& ctx) {
    std::optional<Response> error;
    auto a = authenticate(ctx, error);
    if (!a) co_return std::move(*error);
    const auto& b = a->body;
    std::string request_no, operator_, amount_text;
    if (auto e = text_field(b, "refund_request_no", 32, true, request_no)) co_return comm_error("INVALID_PARAMS", *e, ctx.req);
    if (auto e = text_field(b, "operator", 64, true, operator_)) co_return comm_error("INVALID_PARAMS", *e, ctx.req);
    if (auto e = text_field(b, "refund_amount", 10, true, amount_text)) co_return comm_error("INVALID_PARAMS", *e, ctx.req);
    const auto parsed = parse_fen(amount_text);
    if (!parsed) co_return comm_error("INVALID_PARAMS", "refund_amount金额为整数,长度不超过10位,以分为单位", ctx.req);
    const std::int64_t amount = *parsed;
    co_return with_order(*a, ctx.req, &Calls::refund, [&](Order& o, std::int64_t now, bool&) {
      for (auto& r : o.refunds) {
        if (r.request_no != request_no) continue;
        ++r.requests;
        if (r.amount != amount) return biz_fail("REFUND_REQUEST_CONFLICT", "重复的退款请求", ctx.req);
        return biz_reply(json::object{{"result_code", "REFUND_SUCCESS"}, {"data", data_locked(o, r.finish_ms)}}, ctx.req);
      }
      if (o.order_status != "PAID" && o.order_status != "PARTIAL_REFUNDED")
        return biz_fail("UPAY_REFUND_INVALID_ORDER_STATE", "无法对错误的订单状态执行退款操作", ctx.req);
      if (amount > o.total - o.refunded) return biz_fail("REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额无效", ctx.req);
      o.refunded += amount;
      o.refunds.push_back({request_no, amount, operator_, now, 1});
      finish_locked(o, o.refunded == o.total ? "REFUNDED" : "PARTIAL_REFUNDED", "SUCCESS", now);
      spdlog::info("shouqianba: refund {} {} fen of {} ({}), net {}", request_no, amount, o.sn, o.order_status,
                   net_amount(o));
      return biz_reply(json::object{{"result_code", "REFUND_SUCCESS"}, {"data", data_locked(o)}}, ctx.req);
    });
  }

  // ---- POST /terminal/activate (vendor-signed) ----

  asio::awaitable<Response> activate(RequestContext& ctx) {
    const auto auth = parse_authorization(ctx.req[http::bhttp::field::authorization]);
    const Vendor* vendor = nullptr;
    if (auth)
      for (const auto& v : settings_.vendors)
        if (v.sn == auth->first) vendor = &v;
    if (!auth || !vendor || !sign_matches(ctx.req.body(), vendor->key.reveal(), auth->second))
      co_return comm_error("ILLEGAL_SIGN", "签名错误 (activation is signed with vendor_sn / vendor_key)", ctx.req);
    boost::system::error_code ec;
    auto parsed = json::parse(ctx.req.body(), ec);
    if (ec || !parsed.is_object())
      co_return comm_error("INVALID_PARAMS", "参数错误 (the body must be a JSON object)", ctx.req);
    const auto& b = parsed.as_object();
    std::string app_id, code, device_id, ignored;
    if (auto e = text_field(b, "app_id", 64, true, app_id)) co_return comm_error("INVALID_PARAMS", *e, ctx.req);
    if (auto e = text_field(b, "code", 32, true, code)) co_return comm_error("INVALID_PARAMS", *e, ctx.req);
    if (auto e = text_field(b, "device_id", 64, true, device_id)) co_return comm_error("INVALID_PARAMS", *e, ctx.req);
    for (auto key : {"client_sn", "name", "os_info", "sdk_version"})
      if (auto e = text_field(b, key, 128, false, ignored)) co_return comm_error("INVALID_PARAMS", *e, ctx.req);
    if (std::find(settings_.codes.begin(), settings_.codes.end(), code) == settings_.codes.end())
      co_return comm_error("INVALID_PARAMS", "激活码错误 (activation code not accepted)", ctx.req);
    std::string sn, key;
    bool existing = false;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [tsn, t] : terminals_)
        if (!t->device_id.empty() && t->device_id == device_id) {
          sn = t->sn;
          key = t->key.reveal();
          existing = true;
        }
      if (!existing) {
        auto t = std::make_shared<Terminal>();
        do {
          t->sn = "1000003300" + random_digits(8);
        } while (terminals_.count(t->sn));
        t->key = Secret(random_hex(16));
        t->device_id = device_id;
        sn = t->sn;
        key = t->key.reveal();
        terminals_.emplace(t->sn, t);
      }
    }
    spdlog::info("shouqianba: terminal {} {} for device {}", sn, existing ? "re-activated" : "activated", device_id);
    co_return biz_reply(json::object{{"terminal_sn", sn},
                                     {"terminal_key", key},
                                     {"merchant_sn", "18956021"},
                                     {"merchant_name", "Paymux Sandbox Shop"},
                                     {"store_sn", settings_.store_id},
                                     {"store_name", "Paymux Sandbox Store"}},
                        ctx.req);
  }

  // ---- POST /terminal/checkin ----

  asio::awaitable<Response> checkin(RequestContext& ctx) {
    std::optional<Response> error;
    auto a = authenticate(ctx, error);
    if (!a) co_return std::move(*error);
    std::string device_id;
    if (auto e = text_field(a->body, "device_id", 64, true, device_id)) co_return comm_error("INVALID_PARAMS", *e, ctx.req);
    std::string key;
    {
      std::lock_guard lock(mutex_);
      auto& t = *terminals_.at(a->terminal_sn);
      if (!t.device_id.empty() && t.device_id != device_id)
        co_return comm_error("INVALID_PARAMS", "device_id does not match the activated terminal", ctx.req);
      t.next_key = Secret(random_hex(16));
      ++t.checkins;
      key = t.next_key->reveal();
    }
    spdlog::info("shouqianba: terminal {} checked in", a->terminal_sn);
    co_return biz_reply(json::object{{"terminal_sn", a->terminal_sn}, {"terminal_key", key}}, ctx.req);
  }

  // ---- the QR page (precreate's qr_code) ----

  std::string page_markup(const Order& o, std::string_view order_status) const {
    std::string b;
    b.reserve(4096);
    b += "<h1>Shouqianba QR payment</h1>\n";
    b += "<p class=\"sandbox\">Shouqianba sandbox: this page stands for the customer scanning the QR code with "
         "a wallet. No real money moves.</p>\n<dl>\n";
    b += "<dt>Subject</dt><dd>" + html_escape(o.subject) + "</dd>\n";
    b += "<dt>Order</dt><dd>" + html_escape(o.client_sn) + "</dd>\n";
    b += "<dt>Amount</dt><dd>" + yuan_text(o.total) + " CNY</dd>\n";
    b += "<dt>Wallet</dt><dd>" + std::string(o.payway == "1" ? "Alipay" : o.payway == "3" ? "WeChat Pay" : "payway " + o.payway) +
         "</dd>\n</dl>\n";
    if (order_status != "CREATED") {
      b += "<p role=\"status\" id=\"order-status\">This order is " + html_escape(order_status) +
           (order_status == "PAID" ? ": paid." : ".") + "</p>\n<p>You can close this window.</p>\n";
      return html_page("Shouqianba: " + std::string(order_status), b);
    }
    b += "<form method=\"post\" action=\"" + html_escape(qr_url(o)) + "\">\n";
    b += "<button type=\"submit\" name=\"action\" value=\"pay\">Pay " + yuan_text(o.total) + " CNY</button>\n";
    b += "<button type=\"submit\" name=\"action\" value=\"decline\" class=\"secondary\">Decline</button>\n</form>\n";
    b += "<p class=\"hint\">Pay: the order becomes PAID; Decline: PAY_CANCELED.</p>\n";
    return html_page("Shouqianba QR payment", b);
  }

  Response not_found_page(const http::Request& req) const {
    return html_response(status::not_found,
                         html_page("QR code not found", "<h1>QR code not found</h1>\n<p>This QR code is unknown.</p>"),
                         req);
  }

  asio::awaitable<Response> qr_page(RequestContext& ctx) {
    auto o = find_by_sn(ctx.param("sn"));
    if (!o || !o->precreate) co_return not_found_page(ctx.req);
    std::string st;
    bool changed = false;
    {
      std::lock_guard lock(mutex_);
      changed = expire_locked(*o, now_ms());
      st = o->order_status;
    }
    if (changed) notify(o);
    co_return html_response(status::ok, page_markup(*o, st), ctx.req);
  }

  asio::awaitable<Response> qr_submit(RequestContext& ctx) {
    auto o = find_by_sn(ctx.param("sn"));
    const FormFields f = is_form(ctx.req) ? http::parse_form(ctx.req.body()) : FormFields{};
    const bool automation = last_value(f, "auto") == "1";
    if (!o || !o->precreate) {
      if (automation) co_return control_error(status::not_found, "unknown QR order", ctx.req);
      co_return not_found_page(ctx.req);
    }
    const auto action = last_value(f, "action");
    if (action != "pay" && action != "decline") {
      if (automation) co_return control_error(status::bad_request, "action must be pay or decline", ctx.req);
      co_return html_response(status::bad_request,
                              html_page("Shouqianba QR payment", "<h1>Choose Pay or Decline</h1>\n<p><a href=\"" +
                                                                     html_escape(qr_url(*o)) + "\">Back</a></p>"),
                              ctx.req);
    }
    std::string st;
    bool changed = false, expired = false;
    {
      std::lock_guard lock(mutex_);
      const auto now = now_ms();
      expired = expire_locked(*o, now);
      if (o->order_status == "CREATED") {
        if (action == "pay")
          finish_locked(*o, "PAID", "SUCCESS", now);
        else
          finish_locked(*o, "PAY_CANCELED", "FAIL_CANCELED", now);
        changed = true;
      }
      st = o->order_status;
    }
    if (changed || expired) notify(o);
    if (changed) spdlog::info("shouqianba: QR order {} {} by the customer", o->sn, st);
    if (automation) {
      if (!changed)
        co_return json_reply(status::conflict,
                             json::object{{"error", "the order is already " + st}, {"order_status", st}}, ctx.req);
      co_return json_reply(status::ok,
                           json::object{{"sn", o->sn},
                                        {"client_sn", o->client_sn},
                                        {"order_status", st},
                                        {"notified", !o->notify_url.empty()}},
                           ctx.req);
    }
    co_return html_response(status::ok, page_markup(*o, st), ctx.req);
  }

  // ---- notifications ----

  struct Notification {
    std::string body, authorization, order_status;
  };

  Notification build_notification(const Order& o, bool forge, bool bare) const {
    Notification n;
    {
      std::lock_guard lock(mutex_);
      n.body = json::serialize(data_locked(o));
      n.order_status = o.order_status;
    }
    std::string sig = rsa_sign_base64(key_.get(), n.body);
    if (forge && !sig.empty()) sig[sig.size() / 2] = sig[sig.size() / 2] == 'A' ? 'B' : 'A';
    n.authorization = bare ? sig : o.terminal_sn + " " + sig;
    return n;
  }

  net::OutboundRequest notify_request(std::string url, const Notification& n) const {
    net::OutboundRequest req;
    req.method = verb::post;
    req.url = std::move(url);
    req.headers.emplace_back("Content-Type", "application/json");
    req.headers.emplace_back("Authorization", n.authorization);
    req.body = n.body;
    req.connect_timeout = std::min(settings_.notify_timeout, std::chrono::milliseconds(5000));
    req.timeout = settings_.notify_timeout;
    return req;
  }

  void record_attempt(const std::shared_ptr<Order>& o, NotifyLogEntry e) {
    std::lock_guard lock(mutex_);
    o->notify_log.record(std::move(e));
  }

  // Sends the order's current state to its notify_url, re-sent until "success".
  void notify(const std::shared_ptr<Order>& o) {
    if (o->notify_url.empty()) return;
    auto n = build_notification(*o, false, false);
    {
      std::lock_guard lock(mutex_);
      ++o->notifications;
      o->last_body = n.body;
      o->last_authorization = n.authorization;
    }
    NotificationJob job;
    job.gateway = std::string(kName);
    job.subject = o->sn + " " + n.order_status;
    job.request = notify_request(o->notify_url, n);
    job.retry_delays = settings_.retry;
    job.max_attempts = static_cast<int>(settings_.retry.size()) + 1;
    job.acknowledged = [](const net::OutboundResponse& r) {
      return r.outcome == net::SendOutcome::response && acknowledged(r.status, r.body);
    };
    job.on_attempt = [this, o, st = n.order_status](const DeliveryAttempt& d) {
      record_attempt(o, NotifyLogEntry::scheduled(d, st, 256));
    };
    frame_.notifier().start(std::move(job));
  }

  // ---- control API ----

  json::object order_json_locked(const Order& o) const {
    json::object j = data_locked(o);
    j["dynamic_id"] = o.dynamic_id;
    j["precreate"] = o.precreate;
    j["notify_url"] = o.notify_url;
    j["queries"] = o.queries;
    json::array refunds;
    for (const auto& r : o.refunds)
      refunds.push_back(json::object{{"refund_request_no", r.request_no},
                                     {"refund_amount", fen_text(r.amount)},
                                     {"operator", r.operator_},
                                     {"finish_time", std::to_string(r.finish_ms)},
                                     {"requests", r.requests}});
    j["refunds"] = std::move(refunds);
    json::object notify{{"notifications", o.notifications},
                        {"last_body", o.last_body},
                        {"last_authorization", o.last_authorization}};
    o.notify_log.add_to(notify, {"order_status"});
    j["notify"] = std::move(notify);
    return j;
  }

  json::object summary_locked(const std::string& client_sn, const std::shared_ptr<Order>& o) const {
    json::object j;
    j["client_sn"] = client_sn;
    Calls c;
    if (auto it = calls_.find(client_sn); it != calls_.end()) c = it->second;
    j["calls"] = json::object{
        {"pay", c.pay}, {"precreate", c.precreate}, {"query", c.query}, {"cancel", c.cancel}, {"refund", c.refund}};
    if (o)
      j["order"] = order_json_locked(*o);
    else
      j["order"] = nullptr;
    return j;
  }

  asio::awaitable<Response> control_get(RequestContext& ctx) {
    const std::string client_sn(ctx.param("client_sn"));
    std::lock_guard lock(mutex_);
    auto it = by_client_sn_.find(client_sn);
    auto o = it == by_client_sn_.end() ? nullptr : it->second;
    if (!o && !calls_.count(client_sn)) co_return control_error(status::not_found, "unknown client_sn", ctx.req);
    co_return json_reply(status::ok, summary_locked(client_sn, o), ctx.req);
  }

  asio::awaitable<Response> control_find(RequestContext& ctx) {
    const auto q = http::parse_form(ctx.query);
    const std::string sn(last_value(q, "sn"));
    if (sn.empty()) co_return control_error(status::bad_request, "sn is required", ctx.req);
    std::lock_guard lock(mutex_);
    auto it = by_sn_.find(sn);
    if (it == by_sn_.end()) co_return control_error(status::not_found, "unknown sn", ctx.req);
    co_return json_reply(status::ok, summary_locked(it->second->client_sn, it->second), ctx.req);
  }

  asio::awaitable<Response> control_terminals(RequestContext& ctx) {
    json::array out;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [sn, t] : terminals_)
        out.push_back(json::object{{"terminal_sn", t->sn},
                                   {"device_id", t->device_id},
                                   {"checkins", t->checkins},
                                   {"pending_key", t->next_key.has_value()}});
    }
    co_return json_reply(status::ok, json::object{{"terminals", std::move(out)}}, ctx.req);
  }

  asio::awaitable<Response> control_notify(RequestContext& ctx) {
    std::shared_ptr<Order> o;
    {
      std::lock_guard lock(mutex_);
      auto it = by_client_sn_.find(std::string(ctx.param("client_sn")));
      if (it != by_client_sn_.end()) o = it->second;
    }
    if (!o) co_return control_error(status::not_found, "unknown client_sn", ctx.req);
    json::object b;
    if (!ctx.req.body().empty()) {
      boost::system::error_code ec;
      auto v = json::parse(ctx.req.body(), ec);
      if (ec || !v.is_object()) co_return control_error(status::bad_request, "body must be a JSON object", ctx.req);
      b = std::move(v.as_object());
    }
    auto flag = [&](std::string_view k) {
      const auto* v = b.if_contains(k);
      return v && v->is_bool() && v->as_bool();
    };
    std::string url = o->notify_url;
    if (const auto* v = b.if_contains("url"); v && v->is_string()) url = std::string(v->as_string());
    if (!valid_http_url(url)) co_return control_error(status::bad_request, "url must be http(s) (or the order's notify_url)", ctx.req);
    std::int64_t repeat = 1;
    if (const auto* v = b.if_contains("repeat"); v && v->is_int64()) repeat = v->as_int64();
    if (repeat < 1 || repeat > 100) co_return control_error(status::bad_request, "repeat must be 1..100", ctx.req);
    auto n = build_notification(*o, flag("forge_signature"), flag("bare_signature"));
    json::array responses;
    for (std::int64_t i = 1; i <= repeat; ++i) {
      auto res = co_await frame_.notifier().send_once(notify_request(url, n));
      record_attempt(o, NotifyLogEntry::manual_send(
                            static_cast<int>(i), res,
                            res.outcome == net::SendOutcome::response && acknowledged(res.status, res.body),
                            n.order_status, 256));
      json::object r{{"outcome", to_string(res.outcome)}, {"status", res.status}, {"body", res.body.substr(0, 4096)}};
      if (!res.error.empty()) r["error"] = res.error;
      responses.push_back(std::move(r));
    }
    co_return json_reply(status::ok,
                         json::object{{"body", n.body}, {"authorization", n.authorization}, {"responses", std::move(responses)}},
                         ctx.req);
  }

  Sandbox& frame_;
  const Settings settings_;
  Pkey key_;

  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Terminal>> terminals_;
  std::unordered_map<std::string, std::shared_ptr<Order>> by_sn_;
  std::unordered_map<std::string, std::shared_ptr<Order>> by_client_sn_;
  std::deque<std::shared_ptr<Order>> created_;  // oldest first
  std::unordered_map<std::string, Calls> calls_;
  std::deque<std::string> calls_order_;
};

}  // namespace

std::unique_ptr<Simulator> make_simulator(Sandbox& frame, const ConfigNode& section) {
  return std::make_unique<ShouqianbaSimulator>(frame, parse_settings(section));
}

}  // namespace paymux::sandbox::shouqianba
