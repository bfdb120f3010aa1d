#pragma once
// The HTTP/1.1 server: a listener that accepts, and one coroutine per connection on its own strand
// that reads a request, hands it to the router and writes the response. Keep-alive, a body limit
// per request (413), a header-read timeout and an idle timeout (a slow or silent client cannot hold
// a connection), X-Request-Id on every response, and a graceful drain on stop.
#include "service/http/router.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

namespace paymux::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: any free port (see Server::port)
  std::size_t max_body_bytes = 1048576;
  std::size_t max_header_bytes = 16384;
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds write_timeout{30000};
  std::string server_name = "paymux";
  bool access_log = true;  // one debug line per request
};

class Server {
 public:
  Server(asio::io_context& ioc, ServerOptions options, const Router& router);
  ~Server();

  // Binds and starts accepting; throws when the address cannot be bound.
  void start();
  std::uint16_t port() const { return port_; }

  // Stops accepting, closes idle keep-alive connections and lets in-flight requests finish; their
  // responses carry "Connection: close".
  void stop_accepting();
  std::size_t active_connections() const;

 private:
  struct State;
  asio::awaitable<void> accept_loop();
  static asio::awaitable<void> session(std::shared_ptr<State> state, asio::ip::tcp::socket socket);

  asio::io_context& ioc_;
  std::shared_ptr<State> state_;
  std::uint16_t port_ = 0;
};

}  // namespace paymux::http
