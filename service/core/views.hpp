#pragma once
// The API's objects (payment, refund, event) rendered from stored rows.
#include "service/store/records.hpp"

#include <boost/json/object.hpp>

#include <string>

namespace paymux {

boost::json::object payment_json(const store::PaymentRecord& p, const std::string& public_url);
// serialize(payment_json(p, public_url)), written directly: the stored JSON columns (paymux's own
// serialized text) are copied rather than parsed and serialized again.
std::string payment_text(const store::PaymentRecord& p, const std::string& public_url);
boost::json::object refund_json(const store::RefundRecord& r);
// Where the customer's browser goes back to: the payment's return_url with `payment_id` and
// `status` set in its query (replacing any parameters of those names, keeping the others and the
// fragment). Empty when the payment has no return_url.
std::string return_location(const store::PaymentRecord& p);
// The event object: {"id","object":"event","type","created_at","data":{"object":...}}.
boost::json::object event_json(const std::string& id, const std::string& type, std::int64_t created_at,
                               boost::json::object data_object);
// serialize(event_json(...)) around an object already serialized (payment_text's): written directly.
std::string event_text(const std::string& id, const std::string& type, std::int64_t created_at,
                       std::string_view data_object_text);

}  // namespace paymux
