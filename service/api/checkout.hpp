#pragma once
#include "service/app.hpp"

namespace paymux::api {
// GET /checkout/{payment id}: the customer-facing page that performs the payment's next action.
void register_checkout_routes(http::Router& router, App& app);
}  // namespace paymux::api
