#pragma once
// The API's objects (payment, refund, event) rendered from stored rows.
#include "service/store/records.hpp"

#include <boost/json/object.hpp>

#include <string>

namespace paymux {

boost::json::object payment_json(const store::PaymentRecord& p, const std::string& public_url);
boost::json::object refund_json(const store::RefundRecord& r);
// The event object: {"id","object":"event","type","created_at","data":{"object":...}}.
boost::json::object event_json(const std::string& id, const std::string& type, std::int64_t created_at,
                               boost::json::object data_object);

}  // namespace paymux
