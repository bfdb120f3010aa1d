// paymux: the payment orchestration service.
//   paymux --config FILE                  run
//   paymux --check-config --config FILE   validate the configuration and exit
//   paymux backup --config FILE --to OUT  copy the live SQLite store to OUT (online backup)
//   paymux <provider> <command> ...       connector commands (service/cli.hpp)
#include "service/app.hpp"
#include "service/cli.hpp"
#include "service/core/issued_credentials.hpp"
#include "service/core/orchestrator.hpp"
#include "service/http/server.hpp"
#include "service/obs/log.hpp"
#include "service/obs/metrics.hpp"
#include "service/store/sqlite/backup.hpp"
#include "service/core/clock.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <cstring>
#include <iostream>
#include <thread>

namespace asio = boost::asio;
using namespace paymux;

namespace {

void usage() {
  std::cerr << "usage: paymux --config FILE [--check-config]\n"
               "       paymux backup --config FILE --to OUT\n"
               "       paymux <provider> activate --connector ID --code CODE [--config FILE]\n";
}

int backup(const Config& config, const std::string& to) {
  if (!config.storage.is_sqlite()) {
    std::cerr << "paymux backup: only a sqlite:// store can be copied this way\n";
    return 1;
  }
  try {
    auto r = store::sqlite::backup_database(config.storage.sqlite_path(), to);
    std::cout << "backup written to " << to << " (" << r.pages << " pages, " << r.bytes << " bytes)\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "paymux backup: " << e.what() << "\n";
    return 1;
  }
}

// Keys are kept at least 24 h, then pruned hourly.
// Every process writes a heartbeat into the store; one silent for kGoneAfterMs has stopped, and the
// Idempotency-Keys it left in progress are settled by the others (or by its successor).
constexpr std::int64_t kHeartbeatMs = 5'000;
constexpr std::int64_t kGoneAfterMs = 20'000;
constexpr std::int64_t kSettleEveryMs = 15'000;

// Keys left in progress by stopped processes. Alone on its store (SQLite), a starting process
// settles every key it did not take itself; sharing it, only those of processes gone silent.
asio::awaitable<void> settle_interrupted(App& app, bool shared_store) {
  const auto now = now_ms();
  co_await app.orchestrator.settle_interrupted(now, shared_store ? now - kGoneAfterMs : INT64_MAX);
}

// Heartbeats, idempotency key pruning (hourly) and, on a shared database, settlement of the keys
// other instances left in progress when they stopped.
asio::awaitable<void> run_housekeeping(App& app, bool shared_store) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::int64_t next_prune = 0, next_settle = now_ms() + kSettleEveryMs;
  for (;;) {
    try {
      co_await app.store->heartbeat(now_ms());
    } catch (const std::exception& e) {
      spdlog::warn("heartbeat not written: {}", e.what());
    }
    if (now_ms() >= next_prune) {
      try {
        auto n = co_await app.store->prune_idempotency(now_ms() - kIdempotencyRetentionMs);
        if (n) spdlog::info("pruned {} idempotency keys older than 24h", n);
        next_prune = now_ms() + 3600 * 1000;
      } catch (const std::exception& e) {
        spdlog::warn("idempotency pruning failed: {}", e.what());
      }
    }
    if (shared_store && now_ms() >= next_settle) {
      try {
        co_await settle_interrupted(app, true);
        next_settle = now_ms() + kSettleEveryMs;
      } catch (const std::exception& e) {
        spdlog::warn("settling interrupted requests failed: {}", e.what());
      }
    }
    timer.expires_after(std::chrono::milliseconds(kHeartbeatMs));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && argv[1][0] != '-' && std::strcmp(argv[1], "backup") != 0) return run_connector_command(argc, argv);
  std::string config_path;
  std::string backup_to;
  bool check_only = false;
  const bool backup_command = argc > 1 && !std::strcmp(argv[1], "backup");
  for (int i = backup_command ? 2 : 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--config") && i + 1 < argc) config_path = argv[++i];
    else if (!std::strcmp(argv[i], "--check-config") && !backup_command) check_only = true;
    else if (!std::strcmp(argv[i], "--to") && i + 1 < argc && backup_command) backup_to = argv[++i];
    else {
      usage();
      return 2;
    }
  }
  if (config_path.empty() || (backup_command && backup_to.empty())) {
    usage();
    return 2;
  }

  Config config;
  try {
    config = load_config_file(config_path);
  } catch (const std::exception& e) {
    std::cerr << "paymux: configuration error: " << e.what() << "\n";
    return 1;
  }
  if (backup_command) return backup(config, backup_to);
  if (check_only) {
    try {
      // Building the connectors checks every provider's credentials too.
      Connectors connectors(config, providers::ProviderEnv{config.server.public_url});
    } catch (const std::exception& e) {
      std::cerr << "paymux: configuration error: " << e.what() << "\n";
      return 1;
    }
    std::cout << "configuration ok: " << config.merchants.size() << " merchant(s)\n";
    return 0;
  }

  obs::init_logging(config.log, "paymux");
  const unsigned threads = config.server.threads ? config.server.threads : std::max(1u, std::thread::hardware_concurrency());
  asio::io_context ioc(static_cast<int>(threads));

  std::unique_ptr<App> app;
  try {
    app = std::make_unique<App>(config, ioc);
  } catch (const std::exception& e) {
    spdlog::critical("start-up failed: {}", e.what());
    return 1;
  }

  // Every connector's circuit starts closed.
  for (const auto& m : config.merchants)
    for (const auto& c : m.connectors) obs::metrics::set_circuit_state(c.id, 0);

  CredentialKeeper credentials(config, *app->store, app->exchange, app->connectors);
  const bool shared_store = store::store_is_shared(config.storage.url);
  http::Router router;
  register_routes(router, *app);
  http::ServerOptions so;
  so.host = config.server.listen_host;
  so.port = config.server.listen_port;
  so.max_body_bytes = config.server.limits.max_body_bytes;
  so.header_timeout = config.server.limits.header_timeout;
  so.idle_timeout = config.server.limits.idle_timeout;
  http::Server server(ioc, so, router);
  try {
    server.start();
  } catch (const std::exception& e) {
    spdlog::critical("cannot listen on {}:{}: {}", so.host, so.port, e.what());
    return 1;
  }
  spdlog::info("paymux listening on {}:{} ({} threads), public url {}", so.host, server.port(), threads,
               config.server.public_url);

  asio::co_spawn(ioc, [&]() -> asio::awaitable<void> {
    // Retried until it succeeds: a database that is not there yet keeps the service "not ready".
    asio::steady_timer retry(co_await asio::this_coro::executor);
    // Endpoints first (retried inside): an event written from now on finds its merchant's webhook URL.
    co_await app->webhooks.start();
    for (int attempt = 1; !app->ready; ++attempt) {
      try {
        co_await credentials.load();  // gateway-issued credentials before the first gateway call
        co_await app->store->heartbeat(now_ms());
        co_await settle_interrupted(*app, shared_store);
        app->ready = true;
        spdlog::info("paymux ready");
      } catch (const std::exception& e) {
        spdlog::error("start-up settlement failed (attempt {}): {} (not ready; retrying)", attempt, e.what());
      }
      if (app->ready) break;
      retry.expires_after(std::chrono::seconds(1));
      auto [ec] = co_await retry.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
    }
    co_await run_housekeeping(*app, shared_store);
  }, asio::detached);
  asio::co_spawn(ioc, [&]() -> asio::awaitable<void> { co_await app->orchestrator.run_reconciler(); }, asio::detached);
  asio::co_spawn(ioc, [&]() -> asio::awaitable<void> { co_await credentials.run(config.reconciler.tick); },
                 asio::detached);

  // Graceful shutdown: stop accepting, let in-flight requests finish within the grace period.
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  asio::steady_timer drain_timer(ioc);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {} received: draining", sig);
    server.stop_accepting();
    app->webhooks.stop();  // in-flight deliveries cut off by the stop are leased: sent again after a restart
    const auto deadline = std::chrono::steady_clock::now() + config.server.limits.shutdown_grace;
    asio::co_spawn(ioc, [&, deadline]() -> asio::awaitable<void> {
      asio::steady_timer t(co_await asio::this_coro::executor);
      while (server.active_connections() > 0 && std::chrono::steady_clock::now() < deadline) {
        t.expires_after(std::chrono::milliseconds(20));
        co_await t.async_wait(asio::use_awaitable);
      }
      if (server.active_connections() > 0)
        spdlog::warn("grace period over with {} connection(s) open: closing", server.active_connections());
      ioc.stop();
    }, asio::detached);
  });

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  app.reset();  // closes the store: queued writes are committed first
  spdlog::info("paymux stopped");
  return 0;
}
