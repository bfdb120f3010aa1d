// trivial-server: the baseline of the benchmark (bench/run.sh). A minimal Beast HTTP/1.1 server
// with keep-alive, one C++20 coroutine per connection (as_tuple(use_awaitable), no exceptions on
// the hot path), answering every request with a fixed JSON body about the size of a paymux payment
// object (~850 bytes). It does no routing, no authentication and no storage: whatever paymux does
// beyond this is what the ratio "paymux / trivial" measures.
//
//   trivial-server [--port N] [--threads N] [--host ADDR]
//
// Prints "trivial-server listening on http://HOST:PORT" once it accepts (port 0: any free port).
// SIGINT or SIGTERM stop it.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

// Shaped like paymux's GET /v1/payments/{id} answer, of about the same size (~850 bytes).
const std::string kBody =
    R"({"id":"pay_7U1idlBUposjM5m1kfXabB","object":"payment","merchant":"demo",)"
    R"("status":"requires_action","amount":1999,"currency":"USD","amount_refunded":0,)"
    R"("reference":"ORDER-1700000000-1001","description":"Smart Phone P238 x1",)"
    R"("connector":"glocash_sandbox","provider":"glocash","provider_payment_id":"CC766YY4F0JNTEGV",)"
    R"("payment_method":{"type":"hosted"},"next_action":{"type":"redirect",)"
    R"("url":"http://127.0.0.1:9090/glocash/gateway/payment/index/token/8692bcd54198151bf6bb0a7877937ca3"},)"
    R"("checkout_url":"http://127.0.0.1:8080/checkout/pay_7U1idlBUposjM5m1kfXabB","failure":null,)"
    R"("risk":null,"attempts":[{"connector":"glocash_sandbox","outcome":"definite","error":null,)"
    R"("latency_ms":1,"at":"2024-05-17T12:34:56Z"}],)"
    R"("return_url":"https://shop.example/orders/1001","metadata":{},)"
    R"("created_at":"2024-05-17T12:34:56Z","updated_at":"2024-05-17T12:34:56Z","expires_at":null})";

asio::awaitable<void> session(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> req;
    stream.expires_after(std::chrono::seconds(60));
    auto [rec, rn] = co_await http::async_read(stream, buffer, req, use_nothrow);
    if (rec) break;  // end of stream, reset, timeout or a malformed request: close

    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "trivial-server");
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    res.set("X-Request-Id", "req_0fGA7egwci1YvRTzi0zila");  // paymux sends one; a constant here
    res.keep_alive(req.keep_alive());
    if (req.method() != http::verb::head) res.body() = kBody;
    res.prepare_payload();
    if (req.method() == http::verb::head) res.body().clear();

    stream.expires_after(std::chrono::seconds(30));
    auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
    if (wec || !res.keep_alive()) break;
  }
  boost::system::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

asio::awaitable<void> accept_loop(asio::io_context& ioc, tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(ioc), use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      continue;  // e.g. EMFILE: keep accepting
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto ex = socket.get_executor();
    asio::co_spawn(ex, session(std::move(socket)), asio::detached);
  }
}

void usage(std::FILE* out) {
  std::fprintf(out, "usage: trivial-server [--port N] [--threads N] [--host ADDR]\n"
                    "  --port N     port to listen on (default 0: any free port)\n"
                    "  --threads N  io_context threads (default 1; 0: one per core)\n"
                    "  --host ADDR  address to bind (default 127.0.0.1)\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  unsigned long port = 0, threads = 1;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "trivial-server: %s needs a value\n", a);
        std::exit(2);
      }
      return argv[++i];
    };
    if (!std::strcmp(a, "-h") || !std::strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!std::strcmp(a, "--port")) {
      port = std::strtoul(value(), nullptr, 10);
    } else if (!std::strcmp(a, "--threads")) {
      threads = std::strtoul(value(), nullptr, 10);
    } else if (!std::strcmp(a, "--host")) {
      host = value();
    } else {
      std::fprintf(stderr, "trivial-server: unknown argument %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (port > 65535 || threads > 4096) {
    usage(stderr);
    return 2;
  }
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());

  asio::io_context ioc(static_cast<int>(threads));
  tcp::acceptor acceptor(ioc);
  try {
    tcp::endpoint ep{asio::ip::make_address(host), static_cast<unsigned short>(port)};
    acceptor.open(ep.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trivial-server: cannot listen on %s:%lu: %s\n", host.c_str(), port, e.what());
    return 1;
  }
  asio::co_spawn(ioc, accept_loop(ioc, acceptor), asio::detached);

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (!ec) ioc.stop();
  });

  std::printf("trivial-server listening on http://%s:%u (%lu thread(s))\n", host.c_str(),
              static_cast<unsigned>(acceptor.local_endpoint().port()), threads);
  std::fflush(stdout);

  std::vector<std::thread> pool;
  for (unsigned long i = 1; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  return 0;
}
