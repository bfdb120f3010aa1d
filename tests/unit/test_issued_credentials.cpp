// Credentials issued at run time (Shouqianba terminal keys): a check-in whose answer is lost is
// retried with the old key, and the new key is stored and used; activation stores what the gateway
// issued. A scripted gateway on loopback plays the check-in endpoint.
#include "providers/exchange.hpp"
#include "service/core/connectors.hpp"
#include "service/core/crypto.hpp"
#include "service/core/ids.hpp"
#include "service/core/issued_credentials.hpp"
#include "service/http/errors.hpp"
#include "service/http/server.hpp"
#include "service/net/http_client.hpp"
#include "service/store/sqlite/sqlite_store.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include <filesystem>

using namespace paymux;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// Runs one coroutine on ioc until it ends (the scripted server keeps the context busy otherwise).
void run_task(asio::io_context& ioc, asio::awaitable<void> task) {
  std::exception_ptr failure;
  bool done = false;
  asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e) {
    failure = e;
    done = true;
    ioc.stop();
  });
  ioc.run_for(30s);
  ioc.restart();
  if (failure) std::rethrow_exception(failure);
  REQUIRE(done);
}

struct Gateway {
  std::vector<std::string> authorizations;  // of each check-in, in order
  std::vector<std::string> bodies;
  int hold_first = 1;                        // check-ins left unanswered (past the client's timeout)
  bool refuse = false;                       // answer result_code 400 ILLEGAL_SIGN
};

asio::awaitable<void> rotate(CredentialKeeper* keeper, const Connector* k) {
  co_await keeper->load();
  co_await keeper->rotate_if_due(*k);
}

asio::awaitable<void> activate(CredentialKeeper* keeper, std::string* error) {
  *error = co_await keeper->activate("sqb_store1", "76543210");
}

}  // namespace

TEST_CASE("terminal check-in: a lost answer is retried with the old key; the new key is stored and used",
          "[shouqianba][credentials]") {
  asio::io_context ioc;
  Gateway gw;
  http::Router router;
  auto answer = [&gw](http::RequestContext& ctx) -> asio::awaitable<http::Response> {
    gw.authorizations.push_back(std::string(ctx.req["Authorization"]));
    gw.bodies.push_back(ctx.req.body());
    if (gw.hold_first-- > 0) {
      asio::steady_timer t(co_await asio::this_coro::executor);
      t.expires_after(2s);  // the client gives up first: its answer is lost
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (gw.refuse)
      co_return http::json_response(http::bhttp::status::ok,
                                    std::string(R"({"result_code":"400","error_code":"ILLEGAL_SIGN","error_message":"x"})"), ctx.req);
    const std::string path(ctx.req.target());
    const std::string key = path == "/terminal/activate" ? "K-activated" : "K-new-" + std::to_string(gw.bodies.size());
    co_return http::json_response(
        http::bhttp::status::ok,
        R"({"result_code":"200","biz_response":{"terminal_sn":"T1","terminal_key":")" + key + R"("}})", ctx.req);
  };
  router.add(http::bhttp::verb::post, "/terminal/checkin", answer);
  router.add(http::bhttp::verb::post, "/terminal/activate", answer);
  http::ServerOptions so;
  so.access_log = false;
  http::Server server(ioc, so, router);
  server.start();

  Config config;
  MerchantConfig m;
  m.id = "acme";
  ConnectorConfig c;
  c.id = "sqb_store1";
  c.provider = "shouqianba";
  c.merchant = "acme";
  c.base_url = "http://127.0.0.1:" + std::to_string(server.port());
  c.timeout = 300ms;
  c.connect_timeout = 1000ms;
  c.credentials["terminal_sn"] = Secret("T1");
  c.credentials["terminal_key"] = Secret("K-config");
  c.credentials["vendor_sn"] = Secret("V1");
  c.credentials["vendor_key"] = Secret("K-vendor");
  c.settings["app_id"] = "2016";
  c.settings["checkin_interval_seconds"] = "3600";
  m.connectors.push_back(c);
  config.merchants.push_back(m);

  auto dir = std::filesystem::temp_directory_path() / ("paymux-keys-" + new_id(""));
  std::filesystem::create_directories(dir);
  auto store = store::sqlite::open_sqlite_store({(dir / "test.db").string()});
  net::HttpClient client(ioc.get_executor(), {});
  providers::Exchange exchange(client);
  Connectors connectors(config, {"http://127.0.0.1:8080"});
  CredentialKeeper keeper(config, *store, exchange, connectors);
  const auto* k = connectors.find("sqb_store1");
  REQUIRE(k);

  SECTION("check-in") {
    // A key stored a day ago: due now.
    store::ConnectorCredentialsRecord old{"sqb_store1", R"({"terminal_sn":"T1","terminal_key":"K-old"})", 0, 1};
    run_task(ioc, [&]() -> asio::awaitable<void> { co_await store->put_connector_credentials(old, 0); }());
    run_task(ioc, rotate(&keeper, k));

    REQUIRE(gw.authorizations.size() == 2);
    for (std::size_t i = 0; i < 2; ++i)  // both signed with the old key
      CHECK(gw.authorizations[i] == "T1 " + crypto::md5_hex(gw.bodies[i] + "K-old"));
    CHECK(k->provider->current_credentials()->at("terminal_key").as_string() == "K-new-2");
    std::optional<store::ConnectorCredentialsRecord> stored;
    run_task(ioc, [&]() -> asio::awaitable<void> { stored = co_await store->get_connector_credentials("sqb_store1"); }());
    REQUIRE(stored);
    CHECK(stored->version == 3);  // the claim, then the new key
    CHECK(boost::json::parse(stored->data_json).at("terminal_key").as_string() == "K-new-2");

    // Not due again within the interval.
    run_task(ioc, rotate(&keeper, k));
    CHECK(gw.authorizations.size() == 2);
  }

  SECTION("a refused check-in keeps the key and is not tried again at once") {
    gw.hold_first = 0;
    gw.refuse = true;
    store::ConnectorCredentialsRecord old{"sqb_store1", R"({"terminal_sn":"T1","terminal_key":"K-old"})", 0, 1};
    run_task(ioc, [&]() -> asio::awaitable<void> { co_await store->put_connector_credentials(old, 0); }());
    run_task(ioc, rotate(&keeper, k));
    run_task(ioc, rotate(&keeper, k));
    CHECK(gw.authorizations.size() == 1);
    CHECK(k->provider->current_credentials()->at("terminal_key").as_string() == "K-old");
  }

  SECTION("two processes on one store: one checks in, the other loads the key it stored") {
    gw.hold_first = 0;
    store::ConnectorCredentialsRecord old{"sqb_store1", R"({"terminal_sn":"T1","terminal_key":"K-old"})", 0, 1};
    run_task(ioc, [&]() -> asio::awaitable<void> { co_await store->put_connector_credentials(old, 0); }());
    Connectors other_connectors(config, {"http://127.0.0.1:8080"});
    CredentialKeeper other(config, *store, exchange, other_connectors);
    const auto* k2 = other_connectors.find("sqb_store1");
    REQUIRE(k2);
    run_task(ioc, rotate(&keeper, k));
    run_task(ioc, rotate(&other, k2));
    CHECK(gw.authorizations.size() == 1);
    const auto key = [](const Connector* c) {
      return std::string(c->provider->current_credentials()->at("terminal_key").as_string());
    };
    CHECK(key(k) != "K-old");
    CHECK(key(k2) == key(k));
  }

  SECTION("activation") {
    gw.hold_first = 0;
    std::string error = "not run";
    run_task(ioc, activate(&keeper, &error));
    CHECK(error.empty());
    REQUIRE(gw.authorizations.size() == 1);
    CHECK(gw.authorizations[0] == "V1 " + crypto::md5_hex(gw.bodies[0] + "K-vendor"));
    CHECK(k->provider->current_credentials()->at("terminal_key").as_string() == "K-activated");
    // Configured credentials are not rotated before an interval has passed since start-up.
    run_task(ioc, rotate(&keeper, k));
    CHECK(gw.authorizations.size() == 1);
  }
  server.stop_accepting();
}
