// The outbound client against real servers on loopback: the paymux HTTP server, a scripted raw
// server that misbehaves on purpose, and a TLS server with certificates made by the openssl CLI.
// What matters most is the outcome: not_sent may fail over to another gateway, unknown may not.
#include "service/net/http_client.hpp"

#include "service/http/errors.hpp"
#include "service/http/server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace paymux;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using net::SendOutcome;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

// Runs one test coroutine to its end on ioc (this thread) and returns its value.
template <class T>
T run(asio::io_context& ioc, asio::awaitable<T> task) {
  std::optional<T> out;
  std::exception_ptr failure;
  asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e, T value) {
    failure = e;
    out = std::move(value);
    ioc.stop();
  });
  ioc.run_for(30s);
  if (failure) std::rethrow_exception(failure);
  REQUIRE(out.has_value());
  return std::move(*out);
}

asio::awaitable<void> pause(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(use_nothrow);
}

net::OutboundRequest get(std::string url) {
  net::OutboundRequest r;
  r.method = bhttp::verb::get;
  r.url = std::move(url);
  r.connect_timeout = 2s;
  r.timeout = 5s;
  return r;
}

asio::awaitable<std::vector<net::OutboundResponse>> send_all(net::HttpClient* client,
                                                              std::vector<net::OutboundRequest> requests,
                                                              std::chrono::milliseconds gap) {
  std::vector<net::OutboundResponse> out;
  for (auto& r : requests) {
    if (!out.empty() && gap.count() > 0) co_await pause(gap);
    out.push_back(co_await client->send(std::move(r)));
  }
  co_return out;
}

net::OutboundResponse send_one(asio::io_context& ioc, net::HttpClient& client, net::OutboundRequest r) {
  auto all = run(ioc, send_all(&client, {std::move(r)}, 0ms));
  return std::move(all.at(0));
}

// --- a scripted raw HTTP server: what it does with request n on connection c -------------------

enum class Act {
  respond,             // 200 with "conn=<c> req=<n> body=<request body>", keep-alive
  respond_then_close,  // the same, announcing keep-alive, then closes at once
  close,               // reads the request and closes without a word
  silent,              // reads the request and never answers
  garbage,             // answers bytes that are not HTTP
  truncated,           // a status line and headers promising more body than is sent, then closes
  big_body,            // 200 with a 64 KiB body
  interim,             // 100 Continue, then 200 "interim", in one write
  pieces,              // 200 with a chunked body "hello world", in three writes 20 ms apart
  until_close,         // 200 without a length: the body ends when it closes
};
using Script = std::function<Act(int conn, int req)>;

class RawServer {
 public:
  RawServer(asio::io_context& ioc, Script script) : state_(std::make_shared<State>(ioc, std::move(script))) {
    tcp::endpoint ep{asio::ip::make_address("127.0.0.1"), 0};
    state_->acceptor.open(ep.protocol());
    state_->acceptor.bind(ep);
    state_->acceptor.listen();
    port_ = state_->acceptor.local_endpoint().port();
    asio::co_spawn(ioc, accept_loop(state_), asio::detached);
  }
  ~RawServer() {
    boost::system::error_code ec;
    state_->acceptor.close(ec);
  }
  std::uint16_t port() const { return port_; }
  int accepts() const { return state_->accepts; }
  int requests() const { return state_->requests; }
  std::string url(std::string_view path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
  }

 private:
  struct State {
    tcp::acceptor acceptor;
    Script script;
    std::atomic<int> accepts{0};
    std::atomic<int> requests{0};
    State(asio::io_context& ioc, Script s) : acceptor(ioc), script(std::move(s)) {}
  };

  static asio::awaitable<void> accept_loop(std::shared_ptr<State> st) {
    for (;;) {
      auto [ec, sock] = co_await st->acceptor.async_accept(use_nothrow);
      if (ec) co_return;
      const int index = st->accepts++;
      asio::co_spawn(st->acceptor.get_executor(), session(st, std::move(sock), index), asio::detached);
    }
  }

  static asio::awaitable<void> hold_until_peer_closes(tcp::socket& sock) {
    char buf[256];
    for (;;) {
      auto [ec, n] = co_await sock.async_read_some(asio::buffer(buf), use_nothrow);
      if (ec) co_return;
    }
  }

  static asio::awaitable<void> session(std::shared_ptr<State> st, tcp::socket sock, int conn) {
    beast::flat_buffer buffer;
    for (int n = 0;; ++n) {
      bhttp::request<bhttp::string_body> req;
      auto [ec, bytes] = co_await bhttp::async_read(sock, buffer, req, use_nothrow);
      if (ec) co_return;
      ++st->requests;
      const Act act = st->script(conn, n);
      boost::system::error_code ignored;
      switch (act) {
        case Act::respond:
        case Act::respond_then_close:
        case Act::big_body: {
          bhttp::response<bhttp::string_body> res{bhttp::status::ok, 11};
          res.set(bhttp::field::content_type, "text/plain");
          res.set("X-Conn", std::to_string(conn));
          res.body() = act == Act::big_body ? std::string(64 * 1024, 'x')
                                             : "conn=" + std::to_string(conn) + " req=" + std::to_string(n) +
                                                   " body=" + req.body();
          res.keep_alive(true);
          res.prepare_payload();
          auto [wec, wn] = co_await bhttp::async_write(sock, res, use_nothrow);
          if (wec) co_return;
          if (act == Act::respond_then_close) {
            sock.shutdown(tcp::socket::shutdown_both, ignored);
            sock.close(ignored);
            co_return;
          }
          break;
        }
        case Act::close:
          sock.shutdown(tcp::socket::shutdown_both, ignored);
          sock.close(ignored);
          co_return;
        case Act::silent:
          co_await hold_until_peer_closes(sock);
          co_return;
        case Act::garbage: {
          static const std::string junk = "this is not an HTTP response\r\n\r\n";
          co_await asio::async_write(sock, asio::buffer(junk), use_nothrow);
          co_await hold_until_peer_closes(sock);
          co_return;
        }
        case Act::interim: {
          static const std::string text =
              "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ninterim";
          auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(text), use_nothrow);
          if (wec) co_return;
          break;
        }
        case Act::pieces: {
          static const std::string parts[] = {"HTTP/1.1 200 OK\r\nTransfer-",
                                              "Encoding: chunked\r\n\r\n5\r\nhel",
                                              "lo\r\n6\r\n world\r\n0\r\n\r\n"};
          asio::steady_timer pause(sock.get_executor());
          for (const auto& part : parts) {
            auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(part), use_nothrow);
            if (wec) co_return;
            pause.expires_after(20ms);
            co_await pause.async_wait(use_nothrow);
          }
          break;
        }
        case Act::until_close:
        case Act::truncated: {
          // Bytes, then the close: a body without a length that the close ends, or one cut short.
          static const std::string until_close =
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body ends at the close";
          static const std::string partial = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part";
          const auto& text = act == Act::until_close ? until_close : partial;
          co_await asio::async_write(sock, asio::buffer(text), use_nothrow);
          sock.shutdown(tcp::socket::shutdown_both, ignored);
          sock.close(ignored);
          co_return;
        }
      }
    }
  }

  std::shared_ptr<State> state_;
  std::uint16_t port_ = 0;
};

// --- TLS: a CA and server certificates made with the openssl CLI, and a small TLS server --------

struct TlsFiles {
  fs::path dir;
  std::string ca;                              // CA certificate (PEM)
  std::string localhost_cert, localhost_key;   // SAN DNS:localhost, IP:127.0.0.1
  std::string other_cert, other_key;           // SAN DNS:other.example
  TlsFiles() = default;
  TlsFiles(const TlsFiles&) = delete;
  TlsFiles& operator=(const TlsFiles&) = delete;
  ~TlsFiles() {
    std::error_code ec;
    if (!dir.empty()) fs::remove_all(dir, ec);
  }
};

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream f(p);
  f << text;
  REQUIRE(f.good());
}

void sh(const std::string& command) {
  const int rc = std::system((command + " >/dev/null 2>&1").c_str());
  INFO(command);
  REQUIRE(rc == 0);
}

void make_leaf(const fs::path& dir, const std::string& name, const std::string& san, int serial) {
  write_file(dir / (name + ".cnf"),
             "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = " + name +
                 "\n[leaf]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
                 "extendedKeyUsage = serverAuth\nsubjectAltName = " + san + "\n");
  const auto d = dir.string() + "/";
  sh("openssl req -new -config " + d + name + ".cnf -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " +
     d + name + ".key -out " + d + name + ".csr");
  sh("openssl x509 -req -in " + d + name + ".csr -CA " + d + "ca.pem -CAkey " + d + "ca.key -set_serial " +
     std::to_string(serial) + " -days 2 -extfile " + d + name + ".cnf -extensions leaf -out " + d + name + ".pem");
}

// Made once per test run; the directory goes when the process exits.
const TlsFiles& tls_files() {
  static const std::unique_ptr<TlsFiles> files = [] {
    auto owner = std::make_unique<TlsFiles>();
    auto& f = *owner;
    char tmpl[] = "/tmp/paymux-tls-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    f.dir = tmpl;
    write_file(f.dir / "ca.cnf",
               "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = paymux test CA\n[v3_ca]\n"
               "basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
               "subjectKeyIdentifier = hash\n");
    const auto d = f.dir.string() + "/";
    sh("openssl req -x509 -config " + d + "ca.cnf -extensions v3_ca -newkey ec -pkeyopt "
       "ec_paramgen_curve:prime256v1 -nodes -keyout " + d + "ca.key -out " + d + "ca.pem -days 2");
    make_leaf(f.dir, "localhost", "DNS:localhost,IP:127.0.0.1", 2);
    make_leaf(f.dir, "other.example", "DNS:other.example", 3);
    f.ca = d + "ca.pem";
    f.localhost_cert = d + "localhost.pem";
    f.localhost_key = d + "localhost.key";
    f.other_cert = d + "other.example.pem";
    f.other_key = d + "other.example.key";
    return owner;
  }();
  return *files;
}

class TlsServer {
 public:
  TlsServer(asio::io_context& ioc, const std::string& cert, const std::string& key)
      : state_(std::make_shared<State>(ioc)) {
    state_->ctx.use_certificate_chain_file(cert);
    state_->ctx.use_private_key_file(key, ssl::context::pem);
    tcp::endpoint ep{asio::ip::make_address("127.0.0.1"), 0};
    state_->acceptor.open(ep.protocol());
    state_->acceptor.bind(ep);
    state_->acceptor.listen();
    port_ = state_->acceptor.local_endpoint().port();
    asio::co_spawn(ioc, accept_loop(state_), asio::detached);
  }
  ~TlsServer() {
    boost::system::error_code ec;
    state_->acceptor.close(ec);
  }
  std::uint16_t port() const { return port_; }
  int accepts() const { return state_->accepts; }
  int handshakes() const { return state_->handshakes; }
  int requests() const { return state_->requests; }

 private:
  struct State {
    tcp::acceptor acceptor;
    ssl::context ctx{ssl::context::tls_server};
    int accepts = 0, handshakes = 0, requests = 0;
    explicit State(asio::io_context& ioc) : acceptor(ioc) {}
  };

  static asio::awaitable<void> accept_loop(std::shared_ptr<State> st) {
    for (;;) {
      auto [ec, sock] = co_await st->acceptor.async_accept(use_nothrow);
      if (ec) co_return;
      ++st->accepts;
      asio::co_spawn(st->acceptor.get_executor(), session(st, std::move(sock)), asio::detached);
    }
  }

  static asio::awaitable<void> session(std::shared_ptr<State> st, tcp::socket sock) {
    ssl::stream<tcp::socket> stream(std::move(sock), st->ctx);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, use_nothrow);
    if (hec) co_return;  // the client refused our certificate
    ++st->handshakes;
    beast::flat_buffer buffer;
    for (;;) {
      bhttp::request<bhttp::string_body> req;
      auto [ec, n] = co_await bhttp::async_read(stream, buffer, req, use_nothrow);
      if (ec) co_return;
      ++st->requests;
      bhttp::response<bhttp::string_body> res{bhttp::status::ok, 11};
      res.body() = "secure " + std::string(req[bhttp::field::host]);
      res.keep_alive(true);
      res.prepare_payload();
      auto [wec, wn] = co_await bhttp::async_write(stream, res, use_nothrow);
      if (wec) co_return;
    }
  }

  std::shared_ptr<State> state_;
  std::uint16_t port_ = 0;
};

}  // namespace

TEST_CASE("http client: GET and POST round trip against the paymux server", "[net][http_client]") {
  asio::io_context ioc;
  http::Router router;
  router.add(bhttp::verb::get, "/v1/hello", [](http::RequestContext& ctx) -> asio::awaitable<http::Response> {
    auto res = http::text_response(bhttp::status::ok, "hello " + std::string(ctx.req.target()), ctx.req);
    res.set("X-Test", "yes");
    co_return res;
  });
  router.add(bhttp::verb::post, "/v1/echo", [](http::RequestContext& ctx) -> asio::awaitable<http::Response> {
    auto res = http::text_response(bhttp::status::created, ctx.req.body(), ctx.req, "application/json");
    res.set("X-Seen-Token", std::string(ctx.req["X-Token"]));
    res.set("X-Seen-Agent", std::string(ctx.req[bhttp::field::user_agent]));
    res.set("X-Seen-Host", std::string(ctx.req[bhttp::field::host]));
    co_return res;
  });
  http::ServerOptions so;
  so.access_log = false;
  http::Server server(ioc, so, router);
  server.start();
  const auto base = "http://127.0.0.1:" + std::to_string(server.port());
  net::HttpClient client(ioc.get_executor(), {});

  auto hello = get(base + "/v1/hello?a=1&b=two");
  net::OutboundRequest echo;
  echo.method = bhttp::verb::post;
  echo.url = base + "/v1/echo";
  echo.headers = {{"Content-Type", "application/json"}, {"X-Token", "t-123"}};
  echo.body = R"({"amount":1000})";
  auto missing = get(base + "/v1/nothing-here");

  auto res = run(ioc, send_all(&client, {hello, echo, missing}, 0ms));
  server.stop_accepting();

  REQUIRE(res[0].outcome == SendOutcome::response);
  CHECK(res[0].status == 200);
  CHECK(res[0].body == "hello /v1/hello?a=1&b=two");
  CHECK(res[0].header("x-test") == "yes");  // case-insensitive
  CHECK(res[0].header("X-TEST") == "yes");
  CHECK(res[0].header("content-type") == "text/plain; charset=utf-8");
  CHECK_FALSE(res[0].header("x-request-id").empty());
  CHECK(res[0].header("x-absent").empty());
  CHECK(res[0].error.empty());
  CHECK(res[0].latency.count() > 0);

  REQUIRE(res[1].outcome == SendOutcome::response);
  CHECK(res[1].status == 201);
  CHECK(res[1].body == R"({"amount":1000})");
  CHECK(res[1].header("Content-Type") == "application/json");
  CHECK(res[1].header("X-Seen-Token") == "t-123");
  CHECK(res[1].header("X-Seen-Agent") == "paymux/0.1");
  CHECK(res[1].header("X-Seen-Host") == "127.0.0.1:" + std::to_string(server.port()));

  // Any complete response is a response, whatever its status.
  REQUIRE(res[2].outcome == SendOutcome::response);
  CHECK(res[2].status == 404);
}

TEST_CASE("http client: sequential requests share one keep-alive connection", "[net][http_client]") {
  asio::io_context ioc;
  RawServer server(ioc, [](int, int) { return Act::respond; });
  net::HttpClient client(ioc.get_executor(), {});
  auto post = get(server.url("/pay"));
  post.method = bhttp::verb::post;
  post.body = "abc";
  auto res = run(ioc, send_all(&client, {get(server.url()), post, get(server.url("/x?y=1"))}, 0ms));
  REQUIRE(res.size() == 3);
  for (const auto& r : res) REQUIRE(r.outcome == SendOutcome::response);
  CHECK(res[0].body == "conn=0 req=0 body=");
  CHECK(res[1].body == "conn=0 req=1 body=abc");
  CHECK(res[2].body == "conn=0 req=2 body=");
  CHECK(server.accepts() == 1);
}

TEST_CASE("http client: concurrent requests from several threads all complete", "[net][http_client]") {
  asio::io_context ioc;
  RawServer server(ioc, [](int, int) { return Act::respond; });
  net::ClientOptions opts;
  opts.max_idle_per_host = 4;
  net::HttpClient client(ioc.get_executor(), opts);
  constexpr int kRequests = 24;
  std::atomic<int> ok{0}, done{0};
  for (int i = 0; i < kRequests; ++i) {
    auto r = get(server.url());
    r.method = bhttp::verb::post;
    r.body = "n" + std::to_string(i);
    asio::co_spawn(asio::make_strand(ioc), client.send(std::move(r)),
                   [&, i](std::exception_ptr e, net::OutboundResponse res) {
                     if (!e && res.outcome == SendOutcome::response && res.status == 200 &&
                         res.body.ends_with(" body=n" + std::to_string(i)))
                       ++ok;
                     if (++done == kRequests) ioc.stop();
                   });
  }
  std::thread other([&] { ioc.run_for(30s); });
  ioc.run_for(30s);
  other.join();
  CHECK(done == kRequests);
  CHECK(ok == kRequests);
  CHECK(server.accepts() <= kRequests);
}

TEST_CASE("http client: connection refused is not_sent", "[net][http_client]") {
  asio::io_context ioc;
  std::uint16_t port;
  {
    tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }  // closed: nothing listens there any more
  net::HttpClient client(ioc.get_executor(), {});
  auto res = send_one(ioc, client, get("http://127.0.0.1:" + std::to_string(port) + "/pay"));
  CHECK(res.outcome == SendOutcome::not_sent);
  CHECK_THAT(res.error, Contains("connecting to 127.0.0.1:" + std::to_string(port)));
  CHECK(res.status == 0);
}

TEST_CASE("http client: bad URLs and unresolvable hosts are not_sent", "[net][http_client]") {
  asio::io_context ioc;
  net::HttpClient client(ioc.get_executor(), {});
  for (std::string url : {"ftp://example.com/file", "not a url", "http://", "https://user:pw@example.com/",
                          "http://example.com:99999/", "http://example.com:0/", "http://example.com:8o/",
                          "//example.com/x", "mailto:a@example.com"}) {
    INFO(url);
    auto res = send_one(ioc, client, get(url));
    ioc.restart();
    CHECK(res.outcome == SendOutcome::not_sent);
    CHECK_THAT(res.error, Contains("URL"));  // refused as a URL, before any lookup
  }
  net::ClientOptions tls_only;
  tls_only.allow_plain_http = false;
  net::HttpClient strict(ioc.get_executor(), tls_only);
  auto plain = send_one(ioc, strict, get("http://127.0.0.1:1/"));
  ioc.restart();
  CHECK(plain.outcome == SendOutcome::not_sent);
  CHECK_THAT(plain.error, Contains("plain http"));

  auto header = get("http://127.0.0.1:1/");
  header.headers = {{"X-Evil", "a\r\nInjected: yes"}};
  auto bad_header = send_one(ioc, client, header);
  ioc.restart();
  CHECK(bad_header.outcome == SendOutcome::not_sent);

  auto dns = send_one(ioc, client, get("http://no-such-host.invalid/"));
  CHECK(dns.outcome == SendOutcome::not_sent);
  CHECK_THAT(dns.error, Contains("no-such-host.invalid"));
}

TEST_CASE("http client: a server that never answers gives unknown after the timeout", "[net][http_client]") {
  asio::io_context ioc;
  RawServer server(ioc, [](int, int) { return Act::silent; });
  net::HttpClient client(ioc.get_executor(), {});
  auto r = get(server.url("/pay"));
  r.timeout = 300ms;
  auto res = send_one(ioc, client, r);
  CHECK(res.outcome == SendOutcome::unknown);
  CHECK_THAT(res.error, Contains("300 ms"));
  CHECK(server.requests() == 1);
  CHECK(res.latency >= 300ms);
  CHECK(res.latency < 3s);
}

TEST_CASE("http client: a connection closed after the request is unknown, not retried", "[net][http_client]") {
  asio::io_context ioc;
  RawServer server(ioc, [](int, int) { return Act::close; });
  net::HttpClient client(ioc.get_executor(), {});
  auto r = get(server.url("/pay"));
  r.method = bhttp::verb::post;
  r.body = "charge";
  auto res = send_one(ioc, client, r);
  CHECK(res.outcome == SendOutcome::unknown);
  CHECK_THAT(res.error, Contains("closed"));
  CHECK(server.accepts() == 1);
  CHECK(server.requests() == 1);  // the charge went out once
}

TEST_CASE("http client: malformed or incomplete responses are unknown", "[net][http_client]") {
  asio::io_context ioc;
  SECTION("garbage bytes") {
    RawServer server(ioc, [](int, int) { return Act::garbage; });
    net::HttpClient client(ioc.get_executor(), {});
    auto res = send_one(ioc, client, get(server.url()));
    CHECK(res.outcome == SendOutcome::unknown);
    CHECK_THAT(res.error, Contains("malformed response"));
    CHECK(res.latency < 2s);  // noticed from the bytes, not by waiting for the timeout
  }
  SECTION("a body cut short") {
    RawServer server(ioc, [](int, int) { return Act::truncated; });
    net::HttpClient client(ioc.get_executor(), {});
    auto res = send_one(ioc, client, get(server.url()));
    CHECK(res.outcome == SendOutcome::unknown);
    CHECK_THAT(res.error, Contains("before the response was complete"));
  }
  SECTION("a body over max_response_bytes") {
    RawServer server(ioc, [](int, int) { return Act::big_body; });
    net::ClientOptions opts;
    opts.max_response_bytes = 1024;
    net::HttpClient client(ioc.get_executor(), opts);
    auto res = send_one(ioc, client, get(server.url()));
    CHECK(res.outcome == SendOutcome::unknown);
    CHECK_THAT(res.error, Contains("exceeds 1024 bytes"));
  }
}

TEST_CASE("http client: responses in pieces, after an interim response, or ending at the close", "[net][http_client]") {
  // Each answer twice from one client: a connection whose response was read to its end is used
  // again; one whose body ended at the close is not.
  struct Case {
    const char* what;
    Act act;
    const char* body;
    int connections;
  };
  const Case cases[] = {
      {"a chunked body arriving in several writes", Act::pieces, "hello world", 1},
      {"100 Continue before the response", Act::interim, "interim", 1},
      {"a body without a length, ended by the server's close", Act::until_close, "the body ends at the close", 2},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    asio::io_context ioc;
    RawServer server(ioc, [&c](int, int) { return c.act; });
    net::HttpClient client(ioc.get_executor(), {});
    for (auto& res : run(ioc, send_all(&client, {get(server.url()), get(server.url())}, 0ms))) {
      REQUIRE(res.outcome == SendOutcome::response);
      CHECK(res.status == 200);
      CHECK(res.body == c.body);
    }
    CHECK(server.accepts() == c.connections);
  }
}

TEST_CASE("http client: a dead pooled connection is replaced by a fresh one", "[net][http_client]") {
  asio::io_context ioc;
  SECTION("the server closed the idle connection after its response") {
    RawServer server(ioc, [](int, int) { return Act::respond_then_close; });
    net::HttpClient client(ioc.get_executor(), {});
    auto res = run(ioc, send_all(&client, {get(server.url("/a")), get(server.url("/b"))}, 100ms));
    REQUIRE(res[0].outcome == SendOutcome::response);
    REQUIRE(res[1].outcome == SendOutcome::response);
    CHECK(res[1].body == "conn=1 req=0 body=");
    CHECK(server.accepts() == 2);
  }
  SECTION("the server closes the reused connection as the request arrives: one retry") {
    RawServer server(ioc, [](int conn, int req) { return conn == 0 && req == 1 ? Act::close : Act::respond; });
    net::HttpClient client(ioc.get_executor(), {});
    auto res = run(ioc, send_all(&client, {get(server.url("/a")), get(server.url("/b"))}, 0ms));
    REQUIRE(res[0].outcome == SendOutcome::response);
    REQUIRE(res[1].outcome == SendOutcome::response);
    CHECK(res[1].body == "conn=1 req=0 body=");
    CHECK(server.accepts() == 2);
  }
  SECTION("a POST on a reused connection closed as the request arrives is unknown, never sent twice") {
    RawServer server(ioc, [](int conn, int req) { return conn == 0 && req == 1 ? Act::close : Act::respond; });
    net::HttpClient client(ioc.get_executor(), {});
    auto payment = get(server.url("/b"));
    payment.method = bhttp::verb::post;
    payment.body = "{}";
    auto res = run(ioc, send_all(&client, {get(server.url("/a")), payment}, 0ms));
    REQUIRE(res[0].outcome == SendOutcome::response);
    CHECK(res[1].outcome == SendOutcome::unknown);
    CHECK(server.accepts() == 1);
  }
  SECTION("a reused connection that times out is unknown and not retried") {
    RawServer server(ioc, [](int conn, int req) { return req == 1 ? Act::silent : Act::respond; });
    net::HttpClient client(ioc.get_executor(), {});
    auto second = get(server.url("/b"));
    second.timeout = 300ms;
    auto res = run(ioc, send_all(&client, {get(server.url("/a")), second}, 0ms));
    REQUIRE(res[0].outcome == SendOutcome::response);
    CHECK(res[1].outcome == SendOutcome::unknown);
    CHECK(server.accepts() == 1);
    CHECK(server.requests() == 2);
  }
  SECTION("a reused connection lost midway through the response is unknown and not retried") {
    RawServer server(ioc, [](int conn, int req) { return req == 1 ? Act::truncated : Act::respond; });
    net::HttpClient client(ioc.get_executor(), {});
    auto res = run(ioc, send_all(&client, {get(server.url("/a")), get(server.url("/b"))}, 0ms));
    REQUIRE(res[0].outcome == SendOutcome::response);
    CHECK(res[1].outcome == SendOutcome::unknown);
    CHECK(server.accepts() == 1);
  }
}

TEST_CASE("http client: TLS with peer and host-name verification", "[net][http_client][tls]") {
  const auto& files = tls_files();
  asio::io_context ioc;

  SECTION("a certificate from the configured CA for the URL's host") {
    TlsServer server(ioc, files.localhost_cert, files.localhost_key);
    net::ClientOptions opts;
    opts.ca_file = files.ca;
    opts.allow_plain_http = false;
    net::HttpClient client(ioc.get_executor(), opts);
    const auto port = std::to_string(server.port());
    auto res = run(ioc, send_all(&client,
                                 {get("https://localhost:" + port + "/a"), get("https://localhost:" + port + "/b"),
                                  get("https://127.0.0.1:" + port + "/c")},
                                 0ms));
    REQUIRE(res[0].outcome == SendOutcome::response);
    CHECK(res[0].status == 200);
    CHECK(res[0].body == "secure localhost:" + port);
    REQUIRE(res[1].outcome == SendOutcome::response);
    REQUIRE(res[2].outcome == SendOutcome::response);  // matched by the IP address SAN
    CHECK(res[2].body == "secure 127.0.0.1:" + port);
    CHECK(server.accepts() == 2);  // localhost twice on one connection; 127.0.0.1 is another pool key
  }

  SECTION("the system CA store does not know the test CA") {
    TlsServer server(ioc, files.localhost_cert, files.localhost_key);
    net::HttpClient client(ioc.get_executor(), {});
    auto res = send_one(ioc, client, get("https://localhost:" + std::to_string(server.port()) + "/"));
    CHECK(res.outcome == SendOutcome::not_sent);
    CHECK_THAT(res.error, Contains("certificate verify failed"));
    CHECK(server.requests() == 0);
  }

  SECTION("a valid certificate for another name") {
    TlsServer server(ioc, files.other_cert, files.other_key);
    net::ClientOptions opts;
    opts.ca_file = files.ca;
    net::HttpClient client(ioc.get_executor(), opts);
    auto res = send_one(ioc, client, get("https://localhost:" + std::to_string(server.port()) + "/"));
    CHECK(res.outcome == SendOutcome::not_sent);
    CHECK_THAT(res.error, Contains("hostname mismatch"));
    CHECK(server.handshakes() == 0);
    CHECK(server.requests() == 0);
  }

  SECTION("a plain HTTP server behind an https URL") {
    RawServer server(ioc, [](int, int) { return Act::respond; });
    net::ClientOptions opts;
    opts.ca_file = files.ca;
    net::HttpClient client(ioc.get_executor(), opts);
    auto res = send_one(ioc, client, get("https://127.0.0.1:" + std::to_string(server.port()) + "/"));
    CHECK(res.outcome == SendOutcome::not_sent);
    CHECK_THAT(res.error, Contains("TLS handshake"));
  }

  SECTION("a CA file that does not exist fails at construction") {
    net::ClientOptions opts;
    opts.ca_file = (files.dir / "missing.pem").string();
    CHECK_THROWS_WITH(net::HttpClient(ioc.get_executor(), opts), Contains("missing.pem"));
  }
}
