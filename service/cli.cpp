#include "service/cli.hpp"

#include "providers/exchange.hpp"
#include "service/core/config.hpp"
#include "service/core/connectors.hpp"
#include "service/core/issued_credentials.hpp"
#include "service/net/http_client.hpp"
#include "service/store/store.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>
#include <iostream>

namespace paymux {

namespace asio = boost::asio;

namespace {

int usage(const char* provider) {
  std::cerr << "usage: paymux " << provider << " activate --connector ID --code CODE [--config FILE]\n"
            << "  --config defaults to $PAYMUX_CONFIG, else config/sandbox.yaml\n";
  return 2;
}

}  // namespace

int run_connector_command(int argc, char** argv) {
  const char* provider = argv[1];
  if (argc < 3 || std::strcmp(argv[2], "activate") != 0) return usage(provider);
  std::string connector_id, code;
  std::string config_path = std::getenv("PAYMUX_CONFIG") ? std::getenv("PAYMUX_CONFIG") : "config/sandbox.yaml";
  for (int i = 3; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--connector") && i + 1 < argc) connector_id = argv[++i];
    else if (!std::strcmp(argv[i], "--code") && i + 1 < argc) code = argv[++i];
    else if (!std::strcmp(argv[i], "--config") && i + 1 < argc) config_path = argv[++i];
    else return usage(provider);
  }
  if (connector_id.empty() || code.empty()) return usage(provider);

  spdlog::set_level(spdlog::level::warn);
  try {
    Config config = load_config_file(config_path);
    const auto* cc = config.find_connector(connector_id);
    if (!cc) {
      std::cerr << "paymux: no connector '" << connector_id << "' in " << config_path << "\n";
      return 1;
    }
    if (cc->provider != provider) {
      std::cerr << "paymux: connector '" << connector_id << "' is a " << cc->provider << " connector, not "
                << provider << "\n";
      return 1;
    }
    asio::io_context ioc(1);
    auto store = store::open_store(config.storage.url, ioc.get_executor());
    std::string error = "not run";
    std::string terminal;
    {
      net::HttpClient client(ioc.get_executor(), net::ClientOptions{config.tls.ca_file});
      providers::Exchange exchange(client);
      Connectors connectors(config, providers::ProviderEnv{config.server.public_url});
      CredentialKeeper keeper(config, *store, exchange, connectors);
      asio::co_spawn(
          ioc,
          [&]() -> asio::awaitable<void> {
            try {
              error = co_await keeper.activate(connector_id, code);
            } catch (const std::exception& e) {
              error = e.what();
            }
          },
          asio::detached);
      ioc.run();
    }
    store.reset();
    if (!error.empty()) {
      std::cerr << "paymux: activation of " << connector_id << " failed: " << error << "\n";
      return 1;
    }
    std::cout << "connector " << connector_id << " activated; its credentials are in the store\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "paymux: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace paymux
