#pragma once
#include "service/app.hpp"

#include <string>
#include <string_view>

namespace paymux::api {
// The customer-facing pages, keyed by the unguessable payment id only:
//   GET /checkout/{id}         performs the payment's next action (auto-submitting form, 303
//                              redirect, or a QR code with a live status), or says where it stands
//   GET /checkout/{id}/status  {"status": "..."}: nothing else, for the page's live status
//   GET /checkout/{id}/return  303 to the merchant's return_url with payment_id and status (no
//                              return_url: the checkout page)
//   GET /checkout/assets/checkout.js, checkout.css  the pages' script and style (CSP 'self')
void register_checkout_routes(http::Router& router, App& app);

// The CSP source that lets a form post to `url`: its scheme, host and port ("https://pay.example",
// "http://127.0.0.1:9090"); "'none'" when it is not an absolute http(s) URL.
std::string form_action_source(std::string_view url);

// The answer of GET /checkout/{id} for a payment (HTML page or 303), with its security headers.
http::Response checkout_page(const http::RequestContext& ctx, const store::PaymentRecord& p);
}  // namespace paymux::api
