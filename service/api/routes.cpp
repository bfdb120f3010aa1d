// Events, connectors, operations, gateway-facing endpoints, and the route table.
#include "service/api/common.hpp"
#include "service/api/checkout.hpp"
#include "service/core/clock.hpp"
#include "service/core/crypto.hpp"
#include "service/obs/metrics.hpp"

#include <boost/json/serialize.hpp>

namespace paymux::api {
void register_payment_routes(http::Router& router, App& app);
void register_webhook_routes(http::Router& router, App& app);
}

namespace paymux {

using namespace api;
using http::bhttp::verb;
namespace bj = boost::json;

Authenticator::Authenticator(const Config& config) {
  for (const auto& m : config.merchants) {
    for (const auto& k : m.api_keys) digests_.emplace_back(crypto::sha256_hex(k.reveal()), m.id);
    for (const auto& h : m.api_key_sha256) digests_.emplace_back(h, m.id);
  }
}

std::string Authenticator::merchant_for(std::string_view api_key) const {
  const auto digest = crypto::sha256_hex(api_key);
  std::string found;
  for (const auto& [d, merchant] : digests_)  // every entry compared, in constant time
    if (crypto::equal_ct(d, digest)) found = merchant;
  return found;
}

App::App(const Config& cfg, boost::asio::io_context& ioc)
    : config(cfg),
      store(store::open_store(cfg.storage.url, ioc.get_executor())),
      client(ioc.get_executor(), net::ClientOptions{cfg.tls.ca_file}),
      exchange(client),
      connectors(cfg, providers::ProviderEnv{cfg.server.public_url}),
      orchestrator(cfg, *store, exchange, connectors),
      webhooks(cfg, *store, ioc.get_executor()),
      auth(cfg) {
  for (const auto& m : cfg.merchants)
    for (const auto& c : m.connectors) exchange.add_circuit(c);
}

void register_routes(http::Router& router, App& app) {
  register_payment_routes(router, app);
  register_webhook_routes(router, app);

  router.add(verb::get, "/v1/events", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    auto q = http::parse_form(ctx.query);
    for (const auto& [k, v] : q)
      if (k != "type" && k != "starting_after" && k != "limit" && k != "object_id")
        co_return respond(ctx, http::bad_request("parameter_unknown", "Unknown query parameter: " + k + ".", k));
    auto limit = query_int(q, "limit", 1, 100, 10);
    if (auto* e = std::get_if<ApiError>(&limit)) co_return respond(ctx, *e);
    store::EventQuery query;
    query.merchant = std::get<std::string>(who);
    query.type = std::string(http::form_get(q, "type"));
    query.object_id = std::string(http::form_get(q, "object_id"));
    query.starting_after = std::string(http::form_get(q, "starting_after"));
    query.limit = std::get<int>(limit);
    co_return respond(ctx, co_await app.orchestrator.list_events(std::move(query)));
  });

  router.add(verb::get, "/v1/events/{id}", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    co_return respond(ctx, co_await app.orchestrator.get_event(std::get<std::string>(who), std::string(ctx.param("id"))));
  });

  router.add(verb::get, "/v1/connectors", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    auto who = authenticate(app, ctx);
    if (auto* e = std::get_if<ApiError>(&who)) co_return respond(ctx, *e);
    bj::array data;
    for (const auto* c : app.connectors.of_merchant(std::get<std::string>(who))) {
      auto caps = c->provider->capabilities();
      bj::object o;
      o["id"] = c->id();
      o["object"] = "connector";
      o["provider"] = c->provider->name();
      bj::array flows, methods, currencies;
      for (auto f : caps.flows) flows.emplace_back(providers::to_string(f));
      for (const auto& m : caps.payment_methods) methods.emplace_back(m);
      for (const auto& cur : caps.currencies) currencies.emplace_back(cur);
      o["flows"] = std::move(flows);
      o["payment_methods"] = std::move(methods);
      o["currencies"] = caps.currencies.empty() ? bj::value("any") : bj::value(std::move(currencies));
      const auto circuit = app.exchange.circuit(c->id());
      bj::object cb;
      cb["state"] = to_string(circuit.state);
      cb["consecutive_failures"] = circuit.consecutive_failures;
      cb["opened_at"] = circuit.opened_at_ms ? bj::value(rfc3339(circuit.opened_at_ms)) : bj::value(nullptr);
      cb["failure_threshold"] = c->config->circuit.failure_threshold;
      cb["cool_down_ms"] = c->config->circuit.cool_down.count();
      o["circuit"] = std::move(cb);
      data.push_back(std::move(o));
    }
    bj::object out;
    out["object"] = "list";
    out["data"] = std::move(data);
    out["has_more"] = false;
    co_return http::json_response(http::bhttp::status::ok, out, ctx.req);
  });

  // Operations: no API key, no secrets.
  router.add(verb::get, "/healthz", [](RequestContext& ctx) -> asio::awaitable<Response> {
    co_return http::text_response(http::bhttp::status::ok, "ok\n", ctx.req);
  });
  router.add(verb::get, "/readyz", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    bool ok = app.ready.load();
    if (ok) {
      try {
        ok = co_await app.store->ping();
      } catch (const std::exception&) {
        ok = false;
      }
    }
    co_return http::text_response(ok ? http::bhttp::status::ok : http::bhttp::status::service_unavailable,
                                  ok ? "ready\n" : "not ready\n", ctx.req);
  });

  if (app.config.server.metrics)
    router.add(verb::get, "/metrics", [&app](RequestContext& ctx) -> asio::awaitable<Response> {
      // The backlog gauges are read from the store at each scrape; a store that cannot answer
      // leaves their last values (readiness reports it).
      try {
        const auto b = co_await app.store->backlog(now_ms());
        obs::metrics::set_webhook_backlog("pending", b.webhook_pending);
        obs::metrics::set_webhook_backlog("disabled", b.webhook_disabled);
        obs::metrics::set_reconciler_backlog(b.reconcile_due);
      } catch (const std::exception&) {
      }
      for (const auto& c : app.exchange.circuits())
        obs::metrics::set_circuit_state(c.connector, static_cast<int>(c.state));
      auto res = http::text_response(http::bhttp::status::ok, obs::metrics::serialize(), ctx.req);
      res.set(http::bhttp::field::content_type, obs::metrics::kContentType);
      co_return res;
    });

  // Gateway-facing endpoints.
  auto notify = [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    co_return co_await app.orchestrator.handle_notification(std::string(ctx.param("connector")), ctx);
  };
  router.add(verb::post, "/webhooks/{connector}", notify);
  router.add(verb::get, "/webhooks/{connector}", notify);
  auto ret = [&app](RequestContext& ctx) -> asio::awaitable<Response> {
    co_return co_await app.orchestrator.handle_return(std::string(ctx.param("connector")), ctx);
  };
  router.add(verb::get, "/return/{connector}", ret);
  router.add(verb::post, "/return/{connector}", ret);

  register_checkout_routes(router, app);
}

}  // namespace paymux
