// paymux-sandbox: simulators of the payment gateways, for local runs and integration tests.
//
//   paymux-sandbox --config FILE [--listen HOST:PORT] [--public-url URL]
//
// Prints "paymux-sandbox listening on http://HOST:PORT" once it accepts connections; SIGINT or
// SIGTERM stop it (exit 0). --listen overrides the file's listen address; the page base URL then
// follows the bound address unless --public-url says otherwise (so tests can use port 0).
#include "sandbox/cashypay_sim.hpp"
#include "sandbox/dhpay_sim.hpp"
#include "sandbox/glocash_sim.hpp"
#include "sandbox/merchant_receiver.hpp"
#include "sandbox/sandbox.hpp"
#include "sandbox/shouqianba_sim.hpp"
#include "service/http/server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

namespace {

namespace asio = boost::asio;
using namespace paymux;

// Every simulator the sandbox knows; each gets the config section of its name.
std::vector<sandbox::SimulatorFactory> simulator_factories() { return {sandbox::glocash::factory(), sandbox::cashypay::factory(), sandbox::dhpay::factory(), sandbox::shouqianba::factory(), sandbox::merchant::factory()}; }

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: paymux-sandbox --config FILE [--listen HOST:PORT] [--public-url URL]\n"
               "  --config FILE      YAML configuration (see config/sandbox-gateways.yaml)\n"
               "  --listen HOST:PORT overrides 'listen'; the page base URL then follows the bound address\n"
               "  --public-url URL   overrides 'public_url' (base of the pages the sandbox serves)\n");
}

std::string url_host(const std::string& host) {
  if (host == "0.0.0.0") return "127.0.0.1";
  if (host == "::") return "[::1]";
  if (host.find(':') != std::string::npos) return "[" + host + "]";
  return host;
}

// After a stop signal: let in-flight requests and notifications end (bounded), then stop the loop.
asio::awaitable<void> drain(http::Server* server, sandbox::Sandbox* frame, asio::io_context* ioc) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline &&
         (server->active_connections() > 0 || frame->notifier().in_flight() > 0)) {
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  ioc->stop();
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path, listen_override, public_url_override;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view name, std::string& out) {
      if (a == name) {
        if (i + 1 >= argc) {
          std::fprintf(stderr, "paymux-sandbox: %s needs a value\n", std::string(name).c_str());
          std::exit(2);
        }
        out = argv[++i];
        return true;
      }
      if (a.size() > name.size() && a.substr(0, name.size()) == name && a[name.size()] == '=') {
        out = std::string(a.substr(name.size() + 1));
        return true;
      }
      return false;
    };
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    }
    if (value("--config", config_path) || value("--listen", listen_override) ||
        value("--public-url", public_url_override))
      continue;
    std::fprintf(stderr, "paymux-sandbox: unknown argument %s\n", argv[i]);
    usage(stderr);
    return 2;
  }
  if (config_path.empty()) {
    usage(stderr);
    return 2;
  }

  auto logger = spdlog::stderr_color_mt("sandbox");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  const auto factories = simulator_factories();
  std::vector<std::string> names;
  for (const auto& f : factories) names.push_back(f.name);

  sandbox::SandboxConfig cfg;
  try {
    cfg = sandbox::load_config(config_path, names);
    if (!listen_override.empty()) sandbox::parse_listen(listen_override, cfg.listen_host, cfg.listen_port, "--listen");
  } catch (const sandbox::ConfigError& e) {
    std::fprintf(stderr, "paymux-sandbox: configuration error: %s\n", e.what());
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  const unsigned threads = cfg.threads ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());

  asio::io_context ioc(static_cast<int>(threads));
  sandbox::Sandbox frame(ioc, cfg);
  try {
    for (const auto& f : factories) {
      auto it = cfg.sections.find(f.name);
      sandbox::ConfigNode section(it == cfg.sections.end() ? YAML::Node() : it->second, f.name);
      frame.add(f.create(frame, section));
    }
  } catch (const sandbox::ConfigError& e) {
    std::fprintf(stderr, "paymux-sandbox: configuration error: %s\n", e.what());
    return 2;
  }

  http::Router router;
  frame.mount(router);
  http::ServerOptions options;
  options.host = cfg.listen_host;
  options.port = cfg.listen_port;
  options.server_name = "paymux-sandbox";
  http::Server server(ioc, options, router);
  try {
    server.start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "paymux-sandbox: cannot listen on %s:%u: %s\n", cfg.listen_host.c_str(),
                 static_cast<unsigned>(cfg.listen_port), e.what());
    return 1;
  }
  const std::string bound = "http://" + url_host(cfg.listen_host) + ":" + std::to_string(server.port());
  if (!public_url_override.empty())
    frame.set_public_url(public_url_override);
  else if (!listen_override.empty() || cfg.public_url.empty())
    frame.set_public_url(bound);
  else
    frame.set_public_url(cfg.public_url);

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: stopping", sig);
    server.stop_accepting();
    frame.stop();
    asio::co_spawn(ioc, drain(&server, &frame, &ioc), asio::detached);
  });

  spdlog::info("pages at {}; time factor {}; {} thread(s)", frame.public_url(), cfg.time_factor, threads);
  std::printf("paymux-sandbox listening on http://%s:%u\n", url_host(cfg.listen_host).c_str(),
              static_cast<unsigned>(server.port()));
  std::fflush(stdout);

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  spdlog::info("stopped");
  return 0;
}
