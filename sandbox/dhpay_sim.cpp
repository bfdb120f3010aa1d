#include "sandbox/dhpay_sim.hpp"

#include "service/core/clock.hpp"
#include "service/core/secret.hpp"
#include "service/http/errors.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <variant>

namespace paymux::sandbox::dhpay {
namespace {

namespace json = boost::json;
using http::bhttp::field;
using http::bhttp::status;
using http::bhttp::verb;
using steady = std::chrono::steady_clock;

constexpr std::string_view kPagePath = "/dhpay/merchant/web/pay/";
constexpr std::string_view kAcsPath = "/dhpay/acs/pit1/acsService";
constexpr std::string_view kTermPath = "/dhpay/merchant/bank/notify/mscskCallback";

// Sandbox wording for the failure codes it hands out (the document's dictionary is not in our copy;
// M0092 and M0023 are the codes its examples show).
constexpr std::string_view kDeclineCode = "M0092";
constexpr std::string_view kDeclineText = "Declined by the issuing bank.";
constexpr std::string_view kAvsCode = "M0023";
constexpr std::string_view kAvsText = "Declined due to the billing information does not match bank on file!";
constexpr std::string_view k3dsFailText = "3-D Secure authentication failed.";

// DHpay is in Beijing: its dates and times are UTC+8.
std::tm beijing_tm(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t) + 8 * 3600;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return tm;
}

std::string format_tm(const std::tm& tm, const char* fmt) {
  char buf[32];
  std::strftime(buf, sizeof buf, fmt, &tm);
  return buf;
}

// "20140818161430_152634" as in the document's ref_no examples.
std::string new_ref_no() {
  return format_tm(beijing_tm(std::chrono::system_clock::now()), "%Y%m%d%H%M%S") + "_" +
         random_string(6, "0123456789");
}

std::string append_query(const std::string& url, const std::string& params) {
  if (params.empty()) return url;
  auto hash = url.find('#');
  std::string base = hash == std::string::npos ? url : url.substr(0, hash);
  std::string fragment = hash == std::string::npos ? std::string() : url.substr(hash);
  char sep = base.find('?') == std::string::npos ? '?' : (base.back() == '?' || base.back() == '&' ? '\0' : '&');
  if (sep) base.push_back(sep);
  return base + params + fragment;
}

json::object fields_json(const FormFields& f) {
  json::object o;
  for (const auto& [k, v] : f) o[k] = v;
  return o;
}

std::optional<std::string> json_string(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (!v || !v->is_string()) return std::nullopt;
  return std::string(v->as_string());
}

bool header_equals_ci(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

// ---------------------------------------------------------------------------------------------
// Configuration

struct Merchant {
  std::string id;
  Secret secret;
  std::string name;
};

struct NonceClient {
  std::string client_id;
  Secret secret;
  std::string merchant_id;
};

struct Settings {
  std::vector<Merchant> merchants;
  std::vector<NonceClient> clients;
  std::int64_t token_lifetime_seconds = 28800;
  int notify_max_sends = 10;
  std::vector<std::chrono::seconds> notify_retry;
  std::chrono::milliseconds notify_timeout{5000};
  std::chrono::seconds pending_settle{120};
  std::size_t max_orders = 200000;
};

Settings parse_settings(const ConfigNode& c) {
  c.allow_only({"merchants", "nonce_clients", "token_lifetime_seconds", "notify_max_sends", "notify_retry_seconds",
                "notify_timeout_ms", "pending_settle_seconds", "max_orders"});
  Settings s;
  for (const auto& m : c.list("merchants")) {
    m.allow_only({"merchant_id", "secret_key", "name"});
    Merchant out;
    out.id = m.required_str("merchant_id");
    if (out.id.size() < 6 || out.id.size() > 15 || !alnum_only(out.id))
      m.fail("merchant_id", "must be 6 to 15 digits or letters (document 001)");
    out.secret = Secret(m.required_str("secret_key"));
    out.name = m.str("name", "DHpay merchant " + out.id);
    for (const auto& other : s.merchants)
      if (other.id == out.id) m.fail("merchant_id", "is configured twice");
    s.merchants.push_back(std::move(out));
  }
  for (const auto& n : c.list("nonce_clients")) {
    n.allow_only({"client_id", "secret", "merchant_id"});
    NonceClient out;
    out.client_id = n.required_str("client_id");
    out.secret = Secret(n.required_str("secret"));
    out.merchant_id = n.required_str("merchant_id");
    if (out.merchant_id.size() > 30) n.fail("merchant_id", "must be at most 30 characters (document 000)");
    for (const auto& other : s.clients)
      if (other.client_id == out.client_id) n.fail("client_id", "is configured twice");
    s.clients.push_back(std::move(out));
  }
  s.token_lifetime_seconds = c.integer("token_lifetime_seconds", 28800, 1, 30LL * 86400);
  s.notify_max_sends = static_cast<int>(c.integer("notify_max_sends", 10, 1, 1000));
  for (auto v : c.integer_list("notify_retry_seconds", {15, 30, 60, 120, 300, 600, 1800, 3600, 7200}, 0, 7 * 86400))
    s.notify_retry.emplace_back(v);
  if (s.notify_retry.empty()) c.fail("notify_retry_seconds", "must not be empty");
  s.notify_timeout = std::chrono::milliseconds(c.integer("notify_timeout_ms", 5000, 100, 600000));
  s.pending_settle = std::chrono::seconds(c.integer("pending_settle_seconds", 120, 0, 30LL * 86400));
  s.max_orders = static_cast<std::size_t>(c.integer("max_orders", 200000, 100, 100'000'000));
  return s;
}

// ---------------------------------------------------------------------------------------------
// Orders (both products)

// What the merchant sent: fixed once the order exists.
struct Order {
  std::string ref_no;
  std::string product;  // "cashier" or "nonce"
  std::string merchant_id;
  std::string merchant_name;
  Secret secret;          // signs this order's callbacks
  std::string client_id;  // nonce: the token's client
  std::string invoice_id, order_no, currency, amount;
  std::int64_t hundredths = 0;
  std::string product_name;
  std::string return_url, notify_url;
  std::string env;         // cashier: "dhpaysandbox" or "" (production URL)
  std::string page_token;  // cashier: the payment page
  std::string token_info;  // nonce
  FormFields request;      // every field as received (hash included)
  // 3-D Secure (nonce, outcome three_ds): MD is the ref_no, as in the document's example.
  std::string pa_req, term_url, acs_order_id, acs_transaction_id, session_token;
  std::int64_t created_ms = 0;
};

struct State {
  std::string status;  // "" while the payer has not paid (cashier); then 00, 01, 02
  std::string failure_reason, description, trans_date, trans_time;
  std::string card_last4, card_holder;
  bool awaiting_3ds = false;
  std::string pa_res;      // handed to the browser by the ACS, expected back at TermUrl
  std::string acs_result;  // "Y" or "N" once decided
  std::int64_t updated_ms = 0;
  int notifications = 0;
  NotifyLog notify_log;
};

struct Transaction {
  std::shared_ptr<const Order> order;
  State state;
};

struct StateView {
  std::string status, failure_reason, description, trans_date, trans_time;
};

StateView view_of(const State& s) {
  return {s.status, s.failure_reason, s.description, s.trans_date, s.trans_time};
}

struct Overrides {
  std::optional<std::string> status, failure_reason, description, amount, currency, invoice_id, merchant_id;
  bool forge_hash = false;
};

// Document 001's "Web 回调返回参数", in its order, signed per SIGNING.md.
FormFields callback_fields(const Order& o, const StateView& s, const Overrides& ov = {}) {
  const auto now = beijing_tm(std::chrono::system_clock::now());
  FormFields f;
  f.reserve(12);
  f.emplace_back("merchant_id", ov.merchant_id.value_or(o.merchant_id));
  f.emplace_back("invoice_id", ov.invoice_id.value_or(o.invoice_id));
  f.emplace_back("order_no", o.order_no);
  f.emplace_back("currency", ov.currency.value_or(o.currency));
  f.emplace_back("amount", ov.amount.value_or(o.amount));
  f.emplace_back("ref_no", o.ref_no);
  const std::string st = ov.status.value_or(s.status.empty() ? "00" : s.status);
  f.emplace_back("status", st);
  std::string reason = ov.failure_reason.value_or(ov.status ? (st == "02" ? std::string(kDeclineCode) : "")
                                                            : s.failure_reason);
  f.emplace_back("failure_reason", reason);
  f.emplace_back("trans_date", s.trans_date.empty() ? format_tm(now, "%Y%m%d") : s.trans_date);
  f.emplace_back("trans_time", s.trans_time.empty() ? format_tm(now, "%H%M%S") : s.trans_time);
  std::string description = ov.description.value_or(ov.status ? "" : s.description);
  f.emplace_back("description", description);
  const std::string& key = o.secret.reveal();
  f.emplace_back("hash", callback_hash(ov.forge_hash ? key + "-forged" : key, f));
  return f;
}

void apply_outcome(State& st, Outcome outcome) {
  const auto now = beijing_tm(std::chrono::system_clock::now());
  st.trans_date = format_tm(now, "%Y%m%d");
  st.trans_time = format_tm(now, "%H%M%S");
  st.failure_reason.clear();
  switch (outcome) {
    case Outcome::success:
      st.status = "01";
      st.description = "Success";
      break;
    case Outcome::decline:
      st.status = "02";
      st.failure_reason = kDeclineCode;
      st.description = kDeclineText;
      break;
    case Outcome::avs_decline:
      st.status = "02";
      st.failure_reason = kAvsCode;
      st.description = kAvsText;
      break;
    case Outcome::processing:
    case Outcome::three_ds:
      st.status = "00";
      st.description = "Processing";
      break;
  }
  st.updated_ms = now_ms();
}

std::string strip_card_number(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c != ' ' && c != '-') out.push_back(c);
  return out;
}

bool valid_expiry(std::string_view s) {
  std::string t;
  for (char c : s)
    if (c != ' ') t.push_back(c);
  if (t.size() < 5 || t[2] != '/') return false;
  auto mm = std::string_view(t).substr(0, 2);
  auto yy = std::string_view(t).substr(3);
  if (!all_digits(mm) || !all_digits(yy) || (yy.size() != 2 && yy.size() != 4)) return false;
  int m = (mm[0] - '0') * 10 + (mm[1] - '0');
  return m >= 1 && m <= 12;
}

// Document 000's answers: HTTP 200 with a status and, on a refusal, an error code.
Response api_error(std::string_view code, const http::Request& req) {
  return http::json_response(status::ok, json::object{{"status", "02"}, {"error_code", code}}, req);
}

Response page_not_found(const http::Request& req) {
  return html_response(status::not_found,
                       html_page("DHpay - not found", "<h1>Payment not found</h1>\n"
                                                      "<p>This payment link is unknown or expired.</p>"),
                       req);
}

// ---------------------------------------------------------------------------------------------

class DhpaySimulator final : public Simulator {
 public:
  DhpaySimulator(Sandbox& frame, Settings settings)
      : frame_(frame), settings_(std::move(settings)), lifetime_seconds_(settings_.token_lifetime_seconds) {
    for (const auto& m : settings_.merchants) merchants_.emplace(m.id, &m);
    for (const auto& c : settings_.clients) clients_.emplace(c.client_id, &c);
    for (auto* index : {&by_ref_, &by_page_, &by_invoice_}) index->reserve(index_room(settings_.max_orders));
    if (settings_.merchants.empty() && settings_.clients.empty())
      spdlog::warn("dhpay: no merchants and no nonce clients configured: every request will be refused");
  }

  std::string_view name() const override { return kName; }

  json::object describe() const override {
    json::object o;
    json::array merchants, clients;
    for (const auto& m : settings_.merchants) merchants.push_back(json::string(m.id));
    for (const auto& c : settings_.clients)
      clients.push_back(json::object{{"client_id", c.client_id}, {"merchant_id", c.merchant_id}});
    o["merchants"] = std::move(merchants);
    o["nonce_clients"] = std::move(clients);
    o["token_lifetime_seconds"] = lifetime_seconds_.load();
    o["notify_max_sends"] = settings_.notify_max_sends;
    json::array retry;
    for (auto s : settings_.notify_retry) retry.push_back(s.count());
    o["notify_retry_seconds"] = std::move(retry);
    std::lock_guard lock(mutex_);
    o["orders"] = by_ref_.size();
    return o;
  }

  void mount(http::Router& r) override {
    // Web cashier (browser pages).
    r.add(verb::post, "/dhpay/merchant/web/cashier", [this](RequestContext& c) { return cashier(c); });
    r.add(verb::get, "/dhpay/merchant/web/pay/{token}", [this](RequestContext& c) { return page(c); });
    r.add(verb::post, "/dhpay/merchant/web/pay/{token}", [this](RequestContext& c) { return page_submit(c); });
    // Nonce API (server to server).
    r.add(verb::post, "/dhpay/api/oauth2/token", frame_.faulty("dhpay", [this](RequestContext& c) { return token(c); }));
    r.add(verb::post, "/dhpay/api/payments/nonce/v1",
          frame_.faulty("dhpay", [this](RequestContext& c) { return nonce_payment(c); }));
    // 3-D Secure: the issuer's ACS and DHpay's TermUrl.
    r.add(verb::get, std::string(kAcsPath), [this](RequestContext& c) { return acs(c); });
    r.add(verb::post, std::string(kAcsPath), [this](RequestContext& c) { return acs(c); });
    r.add(verb::post, std::string(kTermPath), [this](RequestContext& c) { return term_url(c); });

    r.add(verb::get, "/_sandbox/dhpay/orders", [this](RequestContext& c) { return control_list(c); });
    r.add(verb::get, "/_sandbox/dhpay/orders/{id}", [this](RequestContext& c) { return control_get(c); });
    r.add(verb::post, "/_sandbox/dhpay/orders/{id}/status", [this](RequestContext& c) { return control_status(c); });
    r.add(verb::post, "/_sandbox/dhpay/orders/{id}/notify", [this](RequestContext& c) { return control_notify(c); });
    r.add(verb::get, "/_sandbox/dhpay/tokens", [this](RequestContext& c) { return control_tokens(c); });
    r.add(verb::post, "/_sandbox/dhpay/tokens", [this](RequestContext& c) { return control_tokens_set(c); });
    r.add(verb::delete_, "/_sandbox/dhpay/tokens", [this](RequestContext& c) { return control_tokens_revoke(c); });
  }

 private:
  // ---- lookups ----

  const Merchant* find_merchant(std::string_view id) const {
    auto it = merchants_.find(id);
    return it == merchants_.end() ? nullptr : it->second;
  }

  std::shared_ptr<Transaction> find_ref(std::string_view ref) const {
    std::lock_guard lock(mutex_);
    auto it = by_ref_.find(std::string(ref));
    return it == by_ref_.end() ? nullptr : it->second;
  }

  std::shared_ptr<Transaction> find_page(std::string_view token) const {
    std::lock_guard lock(mutex_);
    auto it = by_page_.find(std::string(token));
    return it == by_page_.end() ? nullptr : it->second;
  }

  // A ref_no, else an invoice_id (the first merchant's that has it).
  std::shared_ptr<Transaction> find_any(std::string_view id) const {
    std::lock_guard lock(mutex_);
    if (auto it = by_ref_.find(std::string(id)); it != by_ref_.end()) return it->second;
    for (const auto& tx : created_)
      if (tx->order->invoice_id == id) return tx;
    return nullptr;
  }

  static std::string invoice_key(std::string_view merchant, std::string_view invoice) {
    std::string k(merchant);
    k.push_back('\x1f');
    k.append(invoice);
    return k;
  }

  // Stores a new order unless its invoice exists: then returns the existing one.
  std::shared_ptr<Transaction> insert_or_existing(std::shared_ptr<Transaction> tx, bool& inserted) {
    auto* o = const_cast<Order*>(tx->order.get());  // still private to this call
    std::lock_guard lock(mutex_);
    auto key = invoice_key(o->merchant_id, o->invoice_id);
    if (auto it = by_invoice_.find(key); it != by_invoice_.end()) {
      inserted = false;
      return it->second;
    }
    while (by_ref_.count(o->ref_no)) o->ref_no = new_ref_no();
    if (!o->page_token.empty())
      while (by_page_.count(o->page_token)) o->page_token = random_hex(16);
    by_ref_.emplace(o->ref_no, tx);
    if (!o->page_token.empty()) by_page_.emplace(o->page_token, tx);
    by_invoice_.emplace(std::move(key), tx);
    created_.push_back(tx);
    while (by_ref_.size() > settings_.max_orders && !created_.empty()) {
      auto old = std::move(created_.front());
      created_.pop_front();
      by_ref_.erase(old->order->ref_no);
      if (!old->order->page_token.empty()) by_page_.erase(old->order->page_token);
      by_invoice_.erase(invoice_key(old->order->merchant_id, old->order->invoice_id));
    }
    inserted = true;
    return tx;
  }

  // =============================================================================================
  // Web cashier (document 001)

  Response cashier_error(std::string_view field_name, std::string_view problem, const http::Request& req) const {
    std::string b;
    b += "<h1>Payment request refused</h1>\n";
    b += "<div class=\"error\" role=\"alert\"><p>The field <code id=\"error-field\">" + html_escape(field_name) +
         "</code> " + html_escape(problem) + ".</p></div>\n";
    b += "<p>The merchant's payment form does not meet the DHpay web cashier's rules, so no payment was "
         "started. Please return to the shop and try again, or contact the merchant.</p>\n";
    return html_response(status::bad_request, html_page("DHpay - payment request refused", b), req);
  }

  asio::awaitable<Response> cashier(RequestContext& ctx) {
    if (!is_form(ctx.req))
      co_return cashier_error("(form)", "must be posted as application/x-www-form-urlencoded", ctx.req);
    FormFields f = http::parse_form(ctx.req.body());
    // The document's sample form spells the billing surname "last_ name"; its table says last_name.
    if (!has_field(f, "last_name") && has_field(f, "last_ name"))
      f.emplace_back("last_name", std::string(last_value(f, "last_ name")));
    const auto query = http::parse_form(ctx.query);
    const auto env = std::string(last_value(query, "env"));

    for (const auto& rule : kCashierFields) {
      auto problem = field_problem(rule, last_value(f, rule.name));
      if (!problem.empty()) {
        spdlog::info("dhpay cashier: request refused: {} {}", rule.name, problem);
        co_return cashier_error(rule.name, problem, ctx.req);
      }
    }
    const auto merchant_id = last_value(f, "merchant_id");
    const Merchant* merchant = find_merchant(merchant_id);
    if (!merchant) co_return cashier_error("merchant_id", "is not a DHpay merchant", ctx.req);
    const auto amount = last_value(f, "amount");
    const auto currency = last_value(f, "currency");
    const auto invoice_id = last_value(f, "invoice_id");
    const auto expected = request_hash(merchant->secret.reveal(), amount, currency, invoice_id, merchant_id);
    if (!crypto::equal_hex_ct(expected, last_value(f, "hash"))) {
      spdlog::info("dhpay cashier: request hash mismatch for invoice {}", invoice_id);
      co_return cashier_error("hash", "does not match the request (signature check failed)", ctx.req);
    }

    auto order = std::make_shared<Order>();
    order->ref_no = new_ref_no();
    order->product = "cashier";
    order->merchant_id = merchant->id;
    order->merchant_name = merchant->name;
    order->secret = merchant->secret;
    order->invoice_id = invoice_id;
    order->order_no = last_value(f, "order_no");
    order->currency = currency;
    order->amount = amount;
    order->hundredths = parse_two_decimals(amount).value_or(0);
    order->product_name = last_value(f, "product_name");
    order->return_url = last_value(f, "return_url");
    order->notify_url = last_value(f, "notify_url");
    order->env = env;
    order->page_token = random_hex(16);
    order->request = f;
    order->created_ms = now_ms();
    auto tx = std::make_shared<Transaction>();
    tx->order = order;
    tx->state.updated_ms = order->created_ms;
    bool inserted = false;
    auto stored = insert_or_existing(tx, inserted);
    if (!inserted) {
      // The same form posted again (back button, double click) shows the same unpaid order.
      bool same = false;
      {
        std::lock_guard lock(mutex_);
        const auto& o = *stored->order;
        same = o.product == "cashier" && stored->state.status.empty() && o.amount == order->amount &&
               o.currency == order->currency;
      }
      if (!same) co_return cashier_error("invoice_id", "was used before: every payment needs a new one", ctx.req);
      tx = stored;
    } else {
      spdlog::info("dhpay cashier: order {} invoice {} {} {}{}", order->ref_no, order->invoice_id, order->amount,
                   order->currency, env.empty() ? "" : " (env " + env + ")");
    }
    co_return http::redirect_response(status::see_other,
                                      frame_.public_url() + std::string(kPagePath) + tx->order->page_token, ctx.req);
  }

  std::string page_markup(const Order& o, std::string_view error, std::string_view holder) const {
    std::string b;
    b.reserve(4096);
    b += "<h1>DHpay checkout</h1>\n<p class=\"sandbox\">DHpay sandbox" +
         std::string(o.env.empty() ? "" : " (env " + html_escape(o.env) + ")") + ": no real money moves.</p>\n<dl>\n";
    b += "<dt>Merchant</dt><dd>" + html_escape(o.merchant_name) + "</dd>\n";
    b += "<dt>Product</dt><dd>" + html_escape(o.product_name) + "</dd>\n";
    b += "<dt>Invoice</dt><dd>" + html_escape(o.invoice_id) + "</dd>\n";
    b += "<dt>Amount</dt><dd>" + html_escape(o.amount) + " " + html_escape(o.currency) + "</dd>\n</dl>\n";
    if (!error.empty()) b += "<div class=\"error\" role=\"alert\" id=\"form-error\">" + html_escape(error) + "</div>\n";
    b += "<form method=\"post\" action=\"" + html_escape(frame_.public_url() + std::string(kPagePath) + o.page_token) +
         "\">\n";
    b += "<label for=\"card_number\">Card number</label>\n"
         "<input id=\"card_number\" name=\"card_number\" inputmode=\"numeric\" autocomplete=\"cc-number\" required "
         "maxlength=\"23\" aria-describedby=\"test-data\"";
    if (!error.empty()) b += " aria-invalid=\"true\"";
    b += ">\n<div class=\"row\"><div>\n<label for=\"card_expiry\">Expiry (MM/YY)</label>\n"
         "<input id=\"card_expiry\" name=\"card_expiry\" autocomplete=\"cc-exp\" required maxlength=\"7\" "
         "placeholder=\"12/30\">\n</div><div>\n<label for=\"card_cvv\">CVV</label>\n"
         "<input id=\"card_cvv\" name=\"card_cvv\" inputmode=\"numeric\" autocomplete=\"cc-csc\" required "
         "maxlength=\"4\">\n</div></div>\n<label for=\"card_holder\">Card holder</label>\n"
         "<input id=\"card_holder\" name=\"card_holder\" autocomplete=\"cc-name\" maxlength=\"64\" value=\"" +
         html_escape(holder) + "\">\n<button type=\"submit\">Pay " + html_escape(o.amount) + " " +
         html_escape(o.currency) + "</button>\n</form>\n";
    if (!o.return_url.empty())
      b += "<p><a href=\"" + html_escape(o.return_url) + "\">Back to the merchant without paying</a></p>\n";
    b += "<div class=\"hint\" id=\"test-data\"><p>Test cards (any well-formed expiry date and CVV):</p><ul>\n"
         "<li><code>4111111111111111</code> success</li>\n"
         "<li><code>4000000000000002</code> declined (M0092)</li>\n"
         "<li><code>4000000000000119</code> declined by the address check (M0023)</li>\n"
         "<li><code>4000000000000259</code> processing, success later</li>\n"
         "<li>any other valid card: by amount - cents <code>02</code> declined, <code>06</code> processing "
         "then success, otherwise success</li>\n</ul></div>\n";
    return html_page("DHpay sandbox checkout", b);
  }

  std::string result_markup(const Order& o, const StateView& s) const {
    const char* word = s.status == "01" ? "succeeded" : s.status == "02" ? "failed" : "is being processed";
    std::string b = "<h1>Payment " + std::string(word) + "</h1>\n<p role=\"status\">Invoice " +
                    html_escape(o.invoice_id) + " (" + html_escape(o.amount) + " " + html_escape(o.currency) +
                    "), reference " + html_escape(o.ref_no) + ".</p>\n";
    if (s.status == "02" && !s.description.empty())
      b += "<p class=\"error\">" + html_escape(s.description) + " (" + html_escape(s.failure_reason) + ")</p>\n";
    if (!o.return_url.empty())
      b += "<p><a href=\"" + html_escape(return_location(o, s)) + "\">Return to the merchant</a></p>\n";
    else
      b += "<p>You can close this window.</p>\n";
    return html_page("DHpay sandbox payment", b);
  }

  // return_url with the signed callback parameters appended.
  std::string return_location(const Order& o, const StateView& s) const {
    if (o.return_url.empty()) return {};
    return append_query(o.return_url, http::encode_form(callback_fields(o, s)));
  }

  asio::awaitable<Response> page(RequestContext& ctx) {
    auto tx = find_page(ctx.param("token"));
    if (!tx) co_return page_not_found(ctx.req);
    StateView s;
    {
      std::lock_guard lock(mutex_);
      s = view_of(tx->state);
    }
    if (!s.status.empty()) co_return html_response(status::ok, result_markup(*tx->order, s), ctx.req);
    co_return html_response(status::ok, page_markup(*tx->order, {}, {}), ctx.req);
  }

  // The browser's way back, or the JSON automation answer.
  Response finished(const std::shared_ptr<Transaction>& tx, const StateView& s, bool automation,
                    const http::Request& req) const {
    const Order& o = *tx->order;
    if (automation) {
      json::object body;
      body["status"] = s.status;
      body["ref_no"] = o.ref_no;
      body["invoice_id"] = o.invoice_id;
      body["failure_reason"] = s.failure_reason;
      body["return_url"] = return_location(o, s);
      body["callback"] = fields_json(callback_fields(o, s));
      return json_reply(status::ok, body, req);
    }
    if (o.return_url.empty()) return html_response(status::ok, result_markup(o, s), req);
    return http::redirect_response(status::see_other, return_location(o, s), req);
  }

  asio::awaitable<Response> page_submit(RequestContext& ctx) {
    auto tx = find_page(ctx.param("token"));
    const FormFields f = is_form(ctx.req) ? http::parse_form(ctx.req.body()) : FormFields{};
    const bool automation = last_value(f, "auto") == "1";
    if (!tx) {
      if (automation) co_return control_error(status::not_found, "unknown payment page", ctx.req);
      co_return page_not_found(ctx.req);
    }
    const Order& o = *tx->order;
    const std::string card = strip_card_number(last_value(f, "card_number"));
    const auto expiry = last_value(f, "card_expiry");
    const auto cvv = last_value(f, "card_cvv");
    const auto holder = last_value(f, "card_holder");
    auto outcome = card_outcome(card, o.hundredths);
    std::string error;
    if (!outcome)
      error = "The card number is not valid: enter 13 to 19 digits.";
    else if ((!automation || !expiry.empty()) && !valid_expiry(expiry))
      error = "The expiry date is not valid: use MM/YY.";
    else if ((!automation || !cvv.empty()) && (!all_digits(cvv) || cvv.size() < 3 || cvv.size() > 4))
      error = "The CVV is not valid: enter 3 or 4 digits.";
    else if (utf8_length(holder) > 64)
      error = "The card holder's name is too long (at most 64 characters).";
    if (!error.empty()) {
      if (automation) co_return control_error(status::bad_request, error, ctx.req);
      co_return html_response(status::ok, page_markup(o, error, holder), ctx.req);
    }

    StateView s;
    bool changed = false;
    {
      std::lock_guard lock(mutex_);
      auto& st = tx->state;
      if (st.status.empty()) {
        apply_outcome(st, *outcome);
        st.card_last4 = card.substr(card.size() - 4);
        st.card_holder = holder;
        changed = true;
      }
      s = view_of(st);
    }
    if (!changed) {
      if (automation)
        co_return json_reply(status::conflict,
                             json::object{{"error", "the payment is already done"}, {"status", s.status}}, ctx.req);
      co_return html_response(status::ok, result_markup(o, s), ctx.req);
    }
    spdlog::info("dhpay cashier: {} invoice {} paid on the page: status {} {}", o.ref_no, o.invoice_id, s.status,
                 s.failure_reason);
    notify(tx, s);
    if (s.status == "00") settle_later(tx);
    co_return finished(tx, s, automation, ctx.req);
  }

  // =============================================================================================
  // Nonce API (document 000)

  struct TokenRecord {
    std::string client_id;
    steady::time_point expires;
    std::int64_t issued_ms = 0;
  };

  struct ClientCounters {
    std::int64_t requests = 0, issued = 0;
  };

  asio::awaitable<Response> token(RequestContext& ctx) {
    const auto accept = trim(ctx.req[field::accept]);
    const auto client_id = trim(ctx.req["Client-Id"]);
    const auto secret = std::string(ctx.req["Secret"]);
    std::string_view refusal;
    const NonceClient* client = nullptr;
    if (accept.empty())
      refusal = "E0014";
    else if (client_id.empty())
      refusal = "E0015";
    else if (secret.empty())
      refusal = "E0016";
    else {
      auto it = clients_.find(client_id);
      if (it == clients_.end() || !crypto::equal_ct(it->second->secret.reveal(), secret))
        refusal = "E0017";
      else
        client = it->second;
    }
    std::string access_token;
    const auto lifetime = lifetime_seconds_.load();
    {
      std::lock_guard lock(mutex_);
      ++token_requests_;
      if (!client_id.empty()) ++by_client_[client_id].requests;
      if (!refusal.empty()) {
        ++token_refused_;
      } else {
        ++token_issued_;
        ++by_client_[client_id].issued;
        do access_token = random_hex(16);
        while (tokens_.count(access_token));
        for (auto& c : access_token) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        tokens_[access_token] = {client_id, steady::now() + std::chrono::seconds(lifetime), now_ms()};
        purge_tokens_locked();
      }
    }
    if (!refusal.empty()) {
      spdlog::info("dhpay token: refused {} (client '{}')", refusal, client_id);
      co_return api_error(refusal, ctx.req);
    }
    spdlog::info("dhpay token: issued to {} for {}s", client_id, lifetime);
    json::object data;
    data["expires_in"] = lifetime;
    data["token_type"] = "Bearer";
    data["access_token"] = access_token;
    co_return http::json_response(status::ok, json::object{{"status", "01"}, {"data", std::move(data)}}, ctx.req);
  }

  void purge_tokens_locked() {
    if (tokens_.size() < 10000) return;
    const auto cutoff = steady::now() - std::chrono::hours(1);
    for (auto it = tokens_.begin(); it != tokens_.end();)
      it = it->second.expires < cutoff ? tokens_.erase(it) : std::next(it);
  }

  // The Bearer token's client, or the document's error code.
  std::variant<const NonceClient*, std::string_view> authorize(const http::Request& req) {
    std::string_view auth = req[field::authorization];
    std::string tok;
    if (auth.size() > 7 && header_equals_ci(auth.substr(0, 7), "bearer ")) tok = trim(auth.substr(7));
    std::lock_guard lock(mutex_);
    ++payment_requests_;
    auto it = tok.empty() ? tokens_.end() : tokens_.find(tok);
    if (it == tokens_.end()) {
      ++stale_e0002_;
      return std::string_view("E0002");
    }
    if (steady::now() >= it->second.expires) {
      ++stale_e0010_;
      return std::string_view("E0010");
    }
    auto c = clients_.find(it->second.client_id);
    if (c == clients_.end()) {
      ++stale_e0002_;
      return std::string_view("E0002");
    }
    return c->second;
  }

  asio::awaitable<Response> nonce_payment(RequestContext& ctx) {
    auto who = authorize(ctx.req);
    if (auto* code = std::get_if<std::string_view>(&who)) {
      spdlog::info("dhpay nonce: refused {} (token)", *code);
      co_return api_error(*code, ctx.req);
    }
    const NonceClient* client = std::get<const NonceClient*>(who);
    auto refuse = [&](std::string_view code, std::string_view why) {
      spdlog::info("dhpay nonce: refused {}: {}", code, why);
      return api_error(code, ctx.req);
    };
    if (trim(ctx.req["version"]) != "v1") co_return refuse("E0004", "header version must be v1");
    std::string_view ct = ctx.req[field::content_type];
    if (ct.size() < 16 || !header_equals_ci(ct.substr(0, 16), "application/json"))
      co_return refuse("E0001", "Content-Type must be application/json");
    boost::system::error_code ec;
    auto body = json::parse(ctx.req.body(), ec);
    if (ec || !body.is_object()) co_return refuse("E0001", "the body is not a JSON object");
    const auto* rp = body.as_object().if_contains("requestParam");
    const auto* cp = body.as_object().if_contains("cardParam");
    if (!rp || !rp->is_object()) co_return refuse("E0001", "requestParam is missing");
    if (!cp || !cp->is_object()) co_return refuse("E0001", "cardParam is missing");
    FormFields f;
    for (const auto& kv : rp->as_object()) {
      if (kv.value().is_null()) continue;
      if (!kv.value().is_string())
        co_return refuse("E0001", "requestParam." + std::string(kv.key()) + " must be a string");
      f.emplace_back(std::string(kv.key()), std::string(kv.value().as_string()));
    }
    if (const auto* ti = cp->as_object().if_contains("tokenInfo"); ti && ti->is_string())
      f.emplace_back("tokenInfo", std::string(ti->as_string()));
    for (const auto& rule : kNonceFields) {
      auto problem = field_problem(rule, last_value(f, rule.name));
      if (!problem.empty()) co_return refuse("E0001", std::string(rule.name) + " " + problem);
    }
    const auto merchant_id = last_value(f, "merchant_id");
    if (merchant_id != client->merchant_id)
      co_return refuse("E0013", "merchant_id is not the merchant of client " + client->client_id);
    const auto amount = last_value(f, "amount");
    const auto currency = last_value(f, "currency");
    const auto invoice_id = last_value(f, "invoice_id");
    const auto expected = request_hash(client->secret.reveal(), amount, currency, invoice_id, merchant_id);
    if (!crypto::equal_hex_ct(expected, last_value(f, "hash"))) co_return refuse("E0017", "hash mismatch");

    auto order = std::make_shared<Order>();
    order->ref_no = new_ref_no();
    order->product = "nonce";
    order->merchant_id = std::string(merchant_id);
    order->merchant_name = "DHpay merchant " + order->merchant_id;
    if (const auto* m = find_merchant(merchant_id)) order->merchant_name = m->name;
    order->secret = client->secret;
    order->client_id = client->client_id;
    order->invoice_id = invoice_id;
    order->order_no = last_value(f, "order_no");
    order->currency = currency;
    order->amount = amount;
    order->hundredths = parse_two_decimals(amount).value_or(0);
    order->product_name = last_value(f, "product_name");
    order->return_url = last_value(f, "return_url");
    order->notify_url = last_value(f, "notify_url");
    order->token_info = last_value(f, "tokenInfo");
    order->request = f;
    order->created_ms = now_ms();
    const auto outcome = nonce_outcome(order->token_info, order->hundredths);
    if (outcome == Outcome::three_ds) {
      order->term_url = frame_.public_url() + std::string(kTermPath);
      order->acs_order_id = random_string(9, "0123456789");
      order->acs_transaction_id = random_string(10, "0123456789");
      const auto h = random_hex(16);
      order->session_token =
          h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
      order->pa_req = crypto::base64_encode("<ThreeDSecure><Message id=\"" + order->acs_transaction_id +
                                            "\"><PAReq><merchant><acqBIN>400000</acqBIN><merID>" + order->merchant_id +
                                            "</merID></merchant><purchase><xid>" + random_hex(10) +
                                            "</xid><amount>" + order->amount + "</amount></purchase></PAReq>"
                                            "</Message></ThreeDSecure>");
    }
    auto tx = std::make_shared<Transaction>();
    tx->order = order;
    apply_outcome(tx->state, outcome);
    tx->state.awaiting_3ds = outcome == Outcome::three_ds;
    bool inserted = false;
    insert_or_existing(tx, inserted);
    if (!inserted) co_return refuse("E0001", "invoice_id " + std::string(invoice_id) + " was used before");

    StateView s;
    {
      std::lock_guard lock(mutex_);
      s = view_of(tx->state);
    }
    spdlog::info("dhpay nonce: {} invoice {} {} {}: status {}{}", order->ref_no, order->invoice_id, order->amount,
                 order->currency, s.status, outcome == Outcome::three_ds ? " (3-D Secure)" : "");
    json::object data;
    if (outcome == Outcome::three_ds) {
      // The 3-D Secure answer, in the document's order.
      data["invoice_id"] = order->invoice_id;
      data["merchant_id"] = order->merchant_id;
      data["order_no"] = order->order_no;
      data["currency"] = order->currency;
      data["amount"] = order->amount;
      data["trans_date"] = s.trans_date;
      data["trans_time"] = s.trans_time;
      data["ref_no"] = order->ref_no;
      data["status"] = s.status;
      data["failure_reason"] = "";
      data["redirect_url"] = frame_.public_url() + std::string(kAcsPath);
      data["paReq"] = order->pa_req;
      data["TermUrl"] = order->term_url;
      data["MD"] = order->ref_no;
      data["orderId"] = order->acs_order_id;
      data["transactionId"] = order->acs_transaction_id;
      data["sessionToken"] = order->session_token;
    } else {
      data["currency"] = order->currency;
      data["amount"] = order->amount;
      data["status"] = s.status;
      data["merchant_id"] = order->merchant_id;
      data["invoice_id"] = order->invoice_id;
      data["order_no"] = order->order_no;
      data["ref_no"] = order->ref_no;
      data["failure_reason"] = s.failure_reason;
      data["trans_date"] = s.trans_date;
      data["trans_time"] = s.trans_time;
    }
    if (outcome == Outcome::processing) settle_later(tx);
    co_return http::json_response(status::ok, json::object{{"status", "01"}, {"data", std::move(data)}}, ctx.req);
  }

  // ---- 3-D Secure ----

  Response acs_error(bool automation, status st, std::string_view field_name, std::string_view problem,
                     const http::Request& req) const {
    if (automation)
      return json_reply(st, json::object{{"error", std::string(field_name) + " " + std::string(problem)},
                                         {"field", field_name}},
                        req);
    std::string b = "<h1>Authentication unavailable</h1>\n<div class=\"error\" role=\"alert\"><p>The field <code "
                    "id=\"error-field\">" +
                    html_escape(field_name) + "</code> " + html_escape(problem) + ".</p></div>\n";
    return html_response(st, html_page("3-D Secure - error", b), req);
  }

  asio::awaitable<Response> acs(RequestContext& ctx) {
    FormFields f;
    if (ctx.req.method() == verb::post && is_form(ctx.req))
      f = http::parse_form(ctx.req.body());
    else
      f = http::parse_form(ctx.query);
    const bool automation = last_value(f, "auto") == "1";
    const auto md = last_value(f, "MD");
    if (md.empty()) co_return acs_error(automation, status::bad_request, "MD", "is missing", ctx.req);
    auto tx = find_ref(md);
    if (!tx || tx->order->pa_req.empty())
      co_return acs_error(automation, status::bad_request, "MD", "names no 3-D Secure authentication", ctx.req);
    const Order& o = *tx->order;
    const std::pair<std::string_view, const std::string*> expected[] = {
        {"paReq", &o.pa_req},           {"TermUrl", &o.term_url},
        {"orderId", &o.acs_order_id},   {"transactionId", &o.acs_transaction_id},
        {"sessionToken", &o.session_token}};
    for (const auto& [name, value] : expected) {
      auto got = last_value(f, name);
      if (got.empty()) co_return acs_error(automation, status::bad_request, name, "is missing", ctx.req);
      if (got != *value)
        co_return acs_error(automation, status::bad_request, name, "does not match the authentication", ctx.req);
    }
    const auto action = last_value(f, "action");
    bool awaiting = false;
    {
      std::lock_guard lock(mutex_);
      awaiting = tx->state.awaiting_3ds && tx->state.acs_result.empty();
    }
    if (!awaiting)
      co_return acs_error(automation, status::conflict, "MD", "was authenticated already", ctx.req);
    if (action.empty()) {
      if (automation)
        co_return acs_error(automation, status::bad_request, "action", "must be authenticate or fail", ctx.req);
      co_return html_response(status::ok, acs_markup(o), ctx.req);
    }
    if (action != "authenticate" && action != "fail")
      co_return acs_error(automation, status::bad_request, "action", "must be authenticate or fail", ctx.req);
    const std::string result = action == "authenticate" ? "Y" : "N";
    std::string pa_res = crypto::base64_encode("<PARes><MD>" + o.ref_no + "</MD><status>" + result +
                                               "</status><nonce>" + random_hex(12) + "</nonce></PARes>");
    {
      std::lock_guard lock(mutex_);
      if (!tx->state.acs_result.empty())
        co_return acs_error(automation, status::conflict, "MD", "was authenticated already", ctx.req);
      tx->state.acs_result = result;
      tx->state.pa_res = pa_res;
    }
    spdlog::info("dhpay acs: {} authentication {}", o.ref_no, result == "Y" ? "succeeded" : "failed");
    if (automation) {
      auto s = complete_3ds(tx);
      co_return finished(tx, s, true, ctx.req);
    }
    co_return html_response(status::ok,
                            auto_post_page("Returning to DHpay", "Authentication done: returning you to DHpay...",
                                           o.term_url, FormFields{{"PaRes", pa_res}, {"MD", o.ref_no}}),
                            ctx.req);
  }

  std::string acs_markup(const Order& o) const {
    std::string b;
    b += "<h1>3-D Secure authentication</h1>\n<p class=\"sandbox\">Sandbox issuer (ACS): no real bank is "
         "involved.</p>\n<dl>\n";
    b += "<dt>Merchant</dt><dd>" + html_escape(o.merchant_name) + "</dd>\n";
    b += "<dt>Amount</dt><dd>" + html_escape(o.amount) + " " + html_escape(o.currency) + "</dd>\n";
    b += "<dt>Reference</dt><dd>" + html_escape(o.ref_no) + "</dd>\n</dl>\n";
    b += "<form method=\"post\" action=\"" + html_escape(frame_.public_url() + std::string(kAcsPath)) + "\">\n";
    const std::pair<std::string_view, std::string_view> hidden[] = {
        {"MD", o.ref_no},           {"paReq", o.pa_req},
        {"TermUrl", o.term_url},    {"orderId", o.acs_order_id},
        {"transactionId", o.acs_transaction_id}, {"sessionToken", o.session_token}};
    for (const auto& [k, v] : hidden)
      b += "<input type=\"hidden\" name=\"" + html_escape(k) + "\" value=\"" + html_escape(v) + "\">\n";
    b += "<p>Confirm this purchase as the card holder would with the bank's one-time code.</p>\n"
         "<button type=\"submit\" name=\"action\" value=\"authenticate\">Authenticate</button>\n"
         "<button type=\"submit\" name=\"action\" value=\"fail\" class=\"secondary\">Fail authentication</button>\n"
         "</form>\n<p class=\"hint\">Sandbox test data: Authenticate completes 3-D Secure and DHpay settles the "
         "payment; Fail authentication declines it.</p>\n";
    return html_page("3-D Secure authentication", b);
  }

  // The ACS result reached DHpay: the payment settles, the callback goes out.
  StateView complete_3ds(const std::shared_ptr<Transaction>& tx) {
    StateView s;
    bool changed = false;
    {
      std::lock_guard lock(mutex_);
      auto& st = tx->state;
      if (st.awaiting_3ds) {
        st.awaiting_3ds = false;
        if (st.status == "00") {
          if (st.acs_result == "Y") {
            apply_outcome(st, Outcome::success);
          } else {
            apply_outcome(st, Outcome::decline);
            st.description = k3dsFailText;
          }
          changed = true;
        }
      }
      s = view_of(st);
    }
    if (changed) {
      spdlog::info("dhpay: {} settled after 3-D Secure: status {}", tx->order->ref_no, s.status);
      notify(tx, s);
    }
    return s;
  }

  asio::awaitable<Response> term_url(RequestContext& ctx) {
    const FormFields f = is_form(ctx.req) ? http::parse_form(ctx.req.body()) : FormFields{};
    const bool automation = last_value(f, "auto") == "1";
    auto tx = find_ref(last_value(f, "MD"));
    if (!tx || tx->order->pa_req.empty())
      co_return acs_error(automation, status::bad_request, "MD", "names no 3-D Secure authentication", ctx.req);
    bool ok = false;
    {
      std::lock_guard lock(mutex_);
      ok = !tx->state.pa_res.empty() && tx->state.pa_res == last_value(f, "PaRes");
    }
    if (!ok) co_return acs_error(automation, status::bad_request, "PaRes", "is not the issuer's answer", ctx.req);
    auto s = complete_3ds(tx);
    co_return finished(tx, s, automation, ctx.req);
  }

  // =============================================================================================
  // Callbacks

  void record_attempt(const std::shared_ptr<Transaction>& tx, NotifyLogEntry e) {
    std::lock_guard lock(mutex_);
    tx->state.notify_log.record(std::move(e));
  }

  net::OutboundRequest callback_request(const std::string& url, const FormFields& fields) const {
    net::OutboundRequest req;
    req.method = verb::get;
    req.url = append_query(url, http::encode_form(fields));
    req.connect_timeout = std::min(settings_.notify_timeout, std::chrono::milliseconds(5000));
    req.timeout = settings_.notify_timeout;
    return req;
  }

  static bool acknowledged(const net::OutboundResponse& r) {
    return r.outcome == net::SendOutcome::response && r.body == "success";
  }

  // Sends the callback for `s` to notify_url now, and again on the schedule until "success".
  void notify(const std::shared_ptr<Transaction>& tx, const StateView& s) {
    const Order& o = *tx->order;
    if (o.notify_url.empty()) return;
    {
      std::lock_guard lock(mutex_);
      ++tx->state.notifications;
    }
    NotificationJob job;
    job.gateway = "dhpay";
    job.subject = o.ref_no + " " + s.status;
    job.request = callback_request(o.notify_url, callback_fields(o, s));
    job.retry_delays = settings_.notify_retry;
    job.max_attempts = settings_.notify_max_sends;
    job.acknowledged = acknowledged;
    job.on_attempt = [this, tx, status = s.status](const DeliveryAttempt& a) {
      record_attempt(tx, NotifyLogEntry::scheduled(a, status, 200));
    };
    frame_.notifier().start(std::move(job));
  }

  // A payment left processing (00) settles as 01 after pending_settle_seconds (scaled).
  void settle_later(const std::shared_ptr<Transaction>& tx) {
    if (settings_.pending_settle.count() == 0) return;
    asio::co_spawn(asio::make_strand(frame_.io_context()), settle_after_delay(tx), asio::detached);
  }

  asio::awaitable<void> settle_after_delay(std::shared_ptr<Transaction> tx) {
    if (!co_await frame_.sleeper().sleep(frame_.scaled(settings_.pending_settle))) co_return;
    StateView s;
    {
      std::lock_guard lock(mutex_);
      auto& st = tx->state;
      if (st.status != "00" || st.awaiting_3ds) co_return;
      apply_outcome(st, Outcome::success);
      s = view_of(st);
    }
    spdlog::info("dhpay: {} settled: status {}", tx->order->ref_no, s.status);
    notify(tx, s);
  }

  // =============================================================================================
  // Control API

  json::object order_json(const Transaction& tx) const {  // mutex held
    const Order& o = *tx.order;
    const State& st = tx.state;
    json::object j;
    j["ref_no"] = o.ref_no;
    j["product"] = o.product;
    j["merchant_id"] = o.merchant_id;
    if (!o.client_id.empty()) j["client_id"] = o.client_id;
    j["invoice_id"] = o.invoice_id;
    j["order_no"] = o.order_no;
    j["amount"] = o.amount;
    j["currency"] = o.currency;
    j["return_url"] = o.return_url;
    j["notify_url"] = o.notify_url;
    if (o.product == "cashier") {
      j["env"] = o.env;
      j["payment_page"] = frame_.public_url() + std::string(kPagePath) + o.page_token;
    } else {
      j["token_info"] = o.token_info;
    }
    json::object request = fields_json(o.request);
    request.erase("hash");
    j["request"] = std::move(request);
    j["created_at_ms"] = o.created_ms;
    j["status"] = st.status;
    j["failure_reason"] = st.failure_reason;
    j["description"] = st.description;
    j["trans_date"] = st.trans_date;
    j["trans_time"] = st.trans_time;
    j["card_last4"] = st.card_last4;
    if (!o.pa_req.empty()) {
      j["three_ds"] = json::object{{"awaiting", st.awaiting_3ds},
                                   {"result", st.acs_result},
                                   {"fields", json::object{{"MD", o.ref_no},
                                                           {"paReq", o.pa_req},
                                                           {"TermUrl", o.term_url},
                                                           {"orderId", o.acs_order_id},
                                                           {"transactionId", o.acs_transaction_id},
                                                           {"sessionToken", o.session_token}}}};
    }
    j["updated_at_ms"] = st.updated_ms;
    json::object notify{{"notifications", st.notifications}};
    st.notify_log.add_to(notify, {"status"});
    j["notify"] = std::move(notify);
    return j;
  }

  asio::awaitable<Response> control_list(RequestContext& ctx) {
    const auto q = http::parse_form(ctx.query);
    const auto invoice = last_value(q, "invoice_id");
    std::size_t limit = 100;
    if (auto l = last_value(q, "limit"); all_digits(l) && l.size() < 7) limit = std::stoul(std::string(l));
    json::array out;
    {
      std::lock_guard lock(mutex_);
      for (auto it = created_.rbegin(); it != created_.rend() && out.size() < limit; ++it)
        if (invoice.empty() || (*it)->order->invoice_id == invoice) out.push_back(order_json(**it));
    }
    co_return json_reply(status::ok, json::object{{"orders", std::move(out)}}, ctx.req);
  }

  asio::awaitable<Response> control_get(RequestContext& ctx) {
    auto tx = find_any(ctx.param("id"));
    if (!tx) co_return control_error(status::not_found, "unknown order", ctx.req);
    json::object j;
    {
      std::lock_guard lock(mutex_);
      j = order_json(*tx);
    }
    co_return json_reply(status::ok, j, ctx.req);
  }

  static bool known_status(std::string_view s) { return s == "00" || s == "01" || s == "02"; }

  static std::optional<json::object> body_object(const RequestContext& ctx) {
    if (ctx.req.body().empty()) return json::object{};
    boost::system::error_code ec;
    auto body = json::parse(ctx.req.body(), ec);
    if (ec || !body.is_object()) return std::nullopt;
    return body.as_object();
  }

  asio::awaitable<Response> control_status(RequestContext& ctx) {
    auto tx = find_any(ctx.param("id"));
    if (!tx) co_return control_error(status::not_found, "unknown order", ctx.req);
    auto b = body_object(ctx);
    if (!b) co_return control_error(status::bad_request, "body must be a JSON object", ctx.req);
    auto st = json_string(*b, "status");
    if (!st || !known_status(*st)) co_return control_error(status::bad_request, "status must be 00, 01 or 02", ctx.req);
    bool notify_now = true;
    if (const auto* n = b->if_contains("notify"); n && n->is_bool()) notify_now = n->as_bool();
    StateView s;
    {
      std::lock_guard lock(mutex_);
      auto& state = tx->state;
      apply_outcome(state, *st == "01" ? Outcome::success : *st == "02" ? Outcome::decline : Outcome::processing);
      if (auto r = json_string(*b, "failure_reason")) state.failure_reason = *r;
      if (auto d = json_string(*b, "description")) state.description = *d;
      state.awaiting_3ds = false;
      s = view_of(state);
    }
    spdlog::info("dhpay: {} forced to {}", tx->order->ref_no, s.status);
    if (notify_now) notify(tx, s);
    json::object j;
    {
      std::lock_guard lock(mutex_);
      j = order_json(*tx);
    }
    j["notified"] = notify_now && !tx->order->notify_url.empty();
    co_return json_reply(status::ok, j, ctx.req);
  }

  asio::awaitable<Response> control_notify(RequestContext& ctx) {
    auto tx = find_any(ctx.param("id"));
    if (!tx) co_return control_error(status::not_found, "unknown order", ctx.req);
    auto b = body_object(ctx);
    if (!b) co_return control_error(status::bad_request, "body must be a JSON object", ctx.req);
    Overrides ov;
    ov.status = json_string(*b, "status");
    if (ov.status && !known_status(*ov.status))
      co_return control_error(status::bad_request, "status must be 00, 01 or 02", ctx.req);
    ov.failure_reason = json_string(*b, "failure_reason");
    ov.description = json_string(*b, "description");
    ov.amount = json_string(*b, "amount");
    ov.currency = json_string(*b, "currency");
    ov.invoice_id = json_string(*b, "invoice_id");
    ov.merchant_id = json_string(*b, "merchant_id");
    if (const auto* v = b->if_contains("forge_hash"); v && v->is_bool()) ov.forge_hash = v->as_bool();
    std::int64_t repeat = 1;
    if (const auto* v = b->if_contains("repeat"); v && v->is_int64()) repeat = v->as_int64();
    if (repeat < 1 || repeat > 100) co_return control_error(status::bad_request, "repeat must be 1..100", ctx.req);
    const std::string url = json_string(*b, "url").value_or(tx->order->notify_url);
    if (url.empty()) co_return control_error(status::bad_request, "the order has no notify_url: pass \"url\"", ctx.req);
    StateView s;
    {
      std::lock_guard lock(mutex_);
      s = view_of(tx->state);
    }
    const auto fields = callback_fields(*tx->order, s, ov);
    const std::string st(last_value(fields, "status"));
    auto request = callback_request(url, fields);
    json::array responses;
    for (std::int64_t i = 1; i <= repeat; ++i) {
      auto res = co_await frame_.notifier().send_once(request);
      const bool received = acknowledged(res);
      record_attempt(tx, NotifyLogEntry::manual_send(static_cast<int>(i), res, received, st, 200));
      spdlog::info("dhpay: manual callback {} {} #{}: {} {} {}", tx->order->ref_no, st, i, to_string(res.outcome),
                   res.status, received ? "acknowledged" : "not acknowledged");
      json::object r;
      r["outcome"] = to_string(res.outcome);
      r["status"] = res.status;
      r["body"] = res.body.substr(0, 4096);
      r["acknowledged"] = received;
      if (!res.error.empty()) r["error"] = res.error;
      responses.push_back(std::move(r));
    }
    co_return json_reply(status::ok,
                         json::object{{"url", request.url}, {"fields", fields_json(fields)}, {"responses", responses}},
                         ctx.req);
  }

  json::object tokens_json() const {
    const auto now = steady::now();
    std::lock_guard lock(mutex_);
    std::int64_t active = 0;
    for (const auto& [t, rec] : tokens_)
      if (rec.expires > now) ++active;
    json::object by_client;
    for (const auto& [id, c] : by_client_) by_client[id] = json::object{{"requests", c.requests}, {"issued", c.issued}};
    json::object j;
    j["lifetime_seconds"] = lifetime_seconds_.load();
    j["requests"] = token_requests_;
    j["issued"] = token_issued_;
    j["refused"] = token_refused_;
    j["active"] = active;
    j["payment_requests"] = payment_requests_;
    j["stale_token_answers"] = json::object{{"E0002", stale_e0002_}, {"E0010", stale_e0010_}};
    j["by_client"] = std::move(by_client);
    return j;
  }

  asio::awaitable<Response> control_tokens(RequestContext& ctx) { co_return json_reply(status::ok, tokens_json(), ctx.req); }

  asio::awaitable<Response> control_tokens_set(RequestContext& ctx) {
    auto b = body_object(ctx);
    if (!b) co_return control_error(status::bad_request, "body must be a JSON object", ctx.req);
    if (const auto* v = b->if_contains("lifetime_seconds")) {
      if (!v->is_int64() || v->as_int64() < 1 || v->as_int64() > 30LL * 86400)
        co_return control_error(status::bad_request, "lifetime_seconds must be 1..2592000", ctx.req);
      lifetime_seconds_ = v->as_int64();
    }
    auto flag = [&](const char* key) {
      const auto* v = b->if_contains(key);
      return v && v->is_bool() && v->as_bool();
    };
    {
      std::lock_guard lock(mutex_);
      if (flag("revoke_all")) tokens_.clear();
      if (flag("expire_all"))
        for (auto& [t, rec] : tokens_) rec.expires = std::min(rec.expires, steady::now());
      if (flag("reset_counters")) {
        token_requests_ = token_issued_ = token_refused_ = payment_requests_ = stale_e0002_ = stale_e0010_ = 0;
        by_client_.clear();
      }
    }
    spdlog::info("dhpay tokens: lifetime {}s{}{}{}", lifetime_seconds_.load(), flag("revoke_all") ? ", revoked" : "",
                 flag("expire_all") ? ", expired" : "", flag("reset_counters") ? ", counters reset" : "");
    co_return json_reply(status::ok, tokens_json(), ctx.req);
  }

  asio::awaitable<Response> control_tokens_revoke(RequestContext& ctx) {
    {
      std::lock_guard lock(mutex_);
      tokens_.clear();
    }
    spdlog::info("dhpay tokens: all revoked");
    co_return json_reply(status::ok, tokens_json(), ctx.req);
  }

  Sandbox& frame_;
  const Settings settings_;
  std::unordered_map<std::string_view, const Merchant*> merchants_;  // views settings_
  std::unordered_map<std::string_view, const NonceClient*> clients_;
  std::atomic<std::int64_t> lifetime_seconds_;

  mutable std::mutex mutex_;
  using Index = std::unordered_map<std::string, std::shared_ptr<Transaction>>;
  Index by_ref_, by_page_, by_invoice_;
  std::deque<std::shared_ptr<Transaction>> created_;  // oldest first
  std::unordered_map<std::string, TokenRecord> tokens_;
  std::map<std::string, ClientCounters> by_client_;
  std::int64_t token_requests_ = 0, token_issued_ = 0, token_refused_ = 0;
  std::int64_t payment_requests_ = 0, stale_e0002_ = 0, stale_e0010_ = 0;
};

}  // namespace

std::unique_ptr<Simulator> make_simulator(Sandbox& frame, const ConfigNode& section) {
  return std::make_unique<DhpaySimulator>(frame, parse_settings(section));
}

}  // namespace paymux::sandbox::dhpay
