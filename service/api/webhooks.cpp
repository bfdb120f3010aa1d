// Merchant webhooks: the attempts of an event, redelivery, and the merchant's endpoint.
#include "service/api/common.hpp"
#include "service/notify/webhooks.hpp"

namespace paymux::api {

using http::bhttp::verb;

void register_webhook_routes(http::Router& router, App& app) {
  router.add(verb::get, "/v1/events/{id}/attempts", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    co_return respond(ctx, co_await app.webhooks.list_attempts(std::get<std::string>(who), std::string(ctx.param("id"))));
  });

  router.add(verb::post, "/v1/events/{id}/redeliver", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    auto body = json_body(ctx, true);
    if (auto* e = std::get_if<ApiError>(&body)) co_return respond(ctx, *e);
    if (const auto& o = std::get<boost::json::object>(body); !o.empty())
      co_return respond(ctx, http::bad_request("parameter_unknown", "Unknown field: " + std::string(o.begin()->key()) + ".",
                                               std::string(o.begin()->key())));
    auto key = idempotency_key(ctx);
    if (auto* e = std::get_if<ApiError>(&key)) co_return respond(ctx, *e);
    const auto merchant = std::get<std::string>(who);
    const std::string id(ctx.param("id"));
    const std::string endpoint = "POST /v1/events/{id}/redeliver";
    const std::string idempotency = std::get<std::string>(key);
    const std::string fp = fingerprint(endpoint, boost::json::value(id));
    // Named, not a temporary of the co_await expression (GCC 12 destroys such temporaries twice).
    std::function<asio::awaitable<Result>()> work = [&app, merchant, id]() { return app.webhooks.redeliver(merchant, id); };
    auto result = co_await with_idempotency(app, merchant, idempotency, endpoint, fp, ctx.request_id, work);
    co_return respond(ctx, result);
  });

  router.add(verb::get, "/v1/webhook_endpoint", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    co_return respond(ctx, co_await app.webhooks.get_endpoint(std::get<std::string>(who)));
  });

  router.add(verb::post, "/v1/webhook_endpoint/enable", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    co_return respond(ctx, co_await app.webhooks.enable_endpoint(std::get<std::string>(who)));
  });
}

}  // namespace paymux::api
