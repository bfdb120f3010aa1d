#include "service/core/views.hpp"

#include "service/core/clock.hpp"
#include "service/core/json.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

namespace paymux {

boost::json::object payment_json(const store::PaymentRecord& p, const std::string& public_url) {
  boost::json::object o;
  o["id"] = p.id;
  o["object"] = "payment";
  o["merchant"] = p.merchant;
  o["status"] = to_string(p.status);
  o["amount"] = p.amount;
  o["currency"] = p.currency;
  o["amount_refunded"] = p.amount_refunded;
  o["reference"] = p.reference;
  o["connector"] = p.connector;
  o["provider"] = p.provider;
  o["provider_payment_id"] = p.provider_payment_id.empty() ? boost::json::value(nullptr)
                                                           : boost::json::value(p.provider_payment_id);
  o["payment_method"] = json::parse_stored(p.payment_method_json);
  auto request = json::parse_stored(p.request_json);
  if (request.is_object()) {
    if (auto* d = request.get_object().if_contains("description")) o["description"] = *d;
  }
  auto next_action = json::parse_stored(p.next_action_json);
  o["next_action"] = next_action;
  if (!next_action.is_null()) o["checkout_url"] = public_url + "/checkout/" + p.id;
  o["failure"] = json::parse_stored(p.failure_json);
  o["risk"] = json::parse_stored(p.risk_json);
  o["attempts"] = json::parse_stored(p.attempts_json);
  o["return_url"] = p.return_url.empty() ? boost::json::value(nullptr) : boost::json::value(p.return_url);
  o["metadata"] = json::parse_stored(p.metadata_json);
  auto provider_data = json::parse_stored(p.provider_data_json);
  o["provider_data"] = provider_data.is_object() ? provider_data : boost::json::object();
  o["created_at"] = rfc3339(p.created_at);
  o["updated_at"] = rfc3339(p.updated_at);
  o["expires_at"] = p.expires_at ? boost::json::value(rfc3339(p.expires_at)) : boost::json::value(nullptr);
  return o;
}

namespace {

// Appends the pieces of one object in order, separated by commas, the way boost::json writes them.
class ObjectWriter {
 public:
  explicit ObjectWriter(std::string& out) : out_(out) { out_ += '{'; }
  void string(std::string_view key, std::string_view value) { raw(key, boost::json::serialize(value)); }
  void string_or_null(std::string_view key, std::string_view value) {
    if (value.empty()) raw(key, "null");
    else string(key, value);
  }
  void number(std::string_view key, std::int64_t value) { raw(key, std::to_string(value)); }
  // A stored column: paymux's own serialized JSON (empty: null).
  void stored(std::string_view key, std::string_view text) { raw(key, text.empty() ? std::string_view("null") : text); }
  void raw(std::string_view key, std::string_view json) {
    if (!first_) out_ += ',';
    first_ = false;
    out_ += '"';
    out_ += key;  // keys are identifiers of this file: nothing to escape
    out_ += "\":";
    out_ += json;
  }
  void close() { out_ += '}'; }

 private:
  std::string& out_;
  bool first_ = true;
};

bool stored_null(std::string_view text) { return text.empty() || text == "null"; }

}  // namespace

std::string payment_text(const store::PaymentRecord& p, const std::string& public_url) {
  std::string out;
  out.reserve(1024 + p.attempts_json.size() + p.metadata_json.size());
  ObjectWriter w(out);
  w.string("id", p.id);
  w.raw("object", "\"payment\"");
  w.string("merchant", p.merchant);
  w.string("status", to_string(p.status));
  w.number("amount", p.amount);
  w.string("currency", p.currency);
  w.number("amount_refunded", p.amount_refunded);
  w.string("reference", p.reference);
  w.string("connector", p.connector);
  w.string("provider", p.provider);
  w.string_or_null("provider_payment_id", p.provider_payment_id);
  w.stored("payment_method", p.payment_method_json);
  if (p.request_json.find("\"description\"") != std::string::npos) {
    auto request = json::parse_stored(p.request_json);
    if (request.is_object()) {
      if (auto* d = request.get_object().if_contains("description")) w.raw("description", boost::json::serialize(*d));
    }
  }
  w.stored("next_action", p.next_action_json);
  if (!stored_null(p.next_action_json)) w.string("checkout_url", public_url + "/checkout/" + p.id);
  w.stored("failure", p.failure_json);
  w.stored("risk", p.risk_json);
  w.stored("attempts", p.attempts_json);
  w.string_or_null("return_url", p.return_url);
  w.stored("metadata", p.metadata_json);
  w.raw("provider_data", p.provider_data_json.starts_with('{') ? std::string_view(p.provider_data_json) : "{}");
  w.string("created_at", rfc3339(p.created_at));
  w.string("updated_at", rfc3339(p.updated_at));
  if (p.expires_at) w.string("expires_at", rfc3339(p.expires_at));
  else w.raw("expires_at", "null");
  w.close();
  return out;
}

boost::json::object refund_json(const store::RefundRecord& r) {
  boost::json::object o;
  o["id"] = r.id;
  o["object"] = "refund";
  o["payment"] = r.payment_id;
  o["amount"] = r.amount;
  o["currency"] = r.currency;
  o["status"] = to_string(r.status);
  o["provider_refund_id"] = r.provider_refund_id.empty() ? boost::json::value(nullptr)
                                                         : boost::json::value(r.provider_refund_id);
  o["failure"] = json::parse_stored(r.failure_json);
  o["reason"] = r.reason;
  o["reference"] = r.reference;
  o["created_at"] = rfc3339(r.created_at);
  o["updated_at"] = rfc3339(r.updated_at);
  return o;
}

boost::json::object event_json(const std::string& id, const std::string& type, std::int64_t created_at,
                               boost::json::object data_object) {
  boost::json::object o;
  o["id"] = id;
  o["object"] = "event";
  o["type"] = type;
  o["created_at"] = rfc3339(created_at);
  boost::json::object data;
  data["object"] = std::move(data_object);
  o["data"] = std::move(data);
  return o;
}

std::string event_text(const std::string& id, const std::string& type, std::int64_t created_at,
                       std::string_view data_object_text) {
  std::string out;
  out.reserve(160 + data_object_text.size());
  ObjectWriter w(out);
  w.string("id", id);
  w.raw("object", "\"event\"");
  w.string("type", type);
  w.string("created_at", rfc3339(created_at));
  std::string data;
  data.reserve(12 + data_object_text.size());
  ObjectWriter d(data);
  d.raw("object", data_object_text);
  d.close();
  w.raw("data", data);
  w.close();
  return out;
}

std::string return_location(const store::PaymentRecord& p) {
  if (p.return_url.empty()) return {};
  const std::string status(to_string(p.status));
  auto parsed = boost::urls::parse_uri_reference(p.return_url);
  if (!parsed) {
    // Validated when the payment was created; should it not parse now, append without merging.
    return p.return_url + (p.return_url.find('?') == std::string::npos ? "?" : "&") + "payment_id=" + p.id +
           "&status=" + status;
  }
  boost::urls::url u(*parsed);
  u.params().set("payment_id", p.id);
  u.params().set("status", status);
  return std::string(u.buffer());
}

}  // namespace paymux
