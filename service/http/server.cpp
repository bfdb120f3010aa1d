#include "service/http/server.hpp"

#include "service/core/ids.hpp"
#include "service/obs/metrics.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <spdlog/spdlog.h>

#include <mutex>
#include <unordered_set>

namespace paymux::http {

using tcp = asio::ip::tcp;
namespace {
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':'))
      return false;
  return true;
}
}  // namespace

struct Server::State {
  ServerOptions options;
  const Router& router;
  tcp::acceptor acceptor;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> connections{0};

  // Connections waiting for a next request, closed at once when draining.
  std::mutex idle_mutex;
  std::unordered_set<beast::tcp_stream*> idle;

  State(asio::io_context& ioc, ServerOptions o, const Router& r)
      : options(std::move(o)), router(r), acceptor(ioc) {}

  void set_idle(beast::tcp_stream* s, bool is_idle) {
    std::lock_guard lock(idle_mutex);
    if (is_idle)
      idle.insert(s);
    else
      idle.erase(s);
  }
};

Server::Server(asio::io_context& ioc, ServerOptions options, const Router& router)
    : ioc_(ioc), state_(std::make_shared<State>(ioc, std::move(options), router)) {}

Server::~Server() = default;

void Server::start() {
  auto& o = state_->options;
  tcp::endpoint ep{asio::ip::make_address(o.host), o.port};
  auto& acc = state_->acceptor;
  acc.open(ep.protocol());
  acc.set_option(asio::socket_base::reuse_address(true));
  acc.bind(ep);
  acc.listen(asio::socket_base::max_listen_connections);
  port_ = acc.local_endpoint().port();
  asio::co_spawn(acc.get_executor(), accept_loop(), asio::detached);
}

void Server::stop_accepting() {
  auto state = state_;
  state->stopping = true;
  asio::post(state->acceptor.get_executor(), [state] {
    boost::system::error_code ec;
    state->acceptor.close(ec);
  });
  std::lock_guard lock(state->idle_mutex);
  for (auto* stream : state->idle) {
    // Each idle stream belongs to its connection's strand: cancel there.
    asio::post(stream->get_executor(), [state, stream] {
      std::lock_guard inner(state->idle_mutex);
      if (state->idle.count(stream)) stream->socket().cancel();
    });
  }
}

std::size_t Server::active_connections() const { return state_->connections.load(); }

asio::awaitable<void> Server::accept_loop() {
  auto state = state_;
  while (!state->stopping) {
    auto [ec, socket] = co_await state->acceptor.async_accept(asio::make_strand(ioc_), use_nothrow);
    if (ec) {
      if (state->stopping || ec == asio::error::operation_aborted) break;
      spdlog::warn("accept failed: {}", ec.message());
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto ex = socket.get_executor();
    asio::co_spawn(ex, session(state, std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> Server::session(std::shared_ptr<State> state, tcp::socket socket) {
  const auto& o = state->options;
  ++state->connections;
  struct Count {
    State& s;
    ~Count() { --s.connections; }
  } count{*state};

  std::string remote;
  {
    boost::system::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    if (!ec) remote = ep.address().to_string();
  }
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  struct IdleGuard {
    State& s;
    beast::tcp_stream* st;
    ~IdleGuard() { s.set_idle(st, false); }
  } idle_guard{*state, &stream};

  for (;;) {
    // Idle phase: wait for the first byte of the next request.
    if (buffer.size() == 0) {
      if (state->stopping) break;
      state->set_idle(&stream, true);
      stream.expires_after(o.idle_timeout);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_nothrow);
      state->set_idle(&stream, false);
      if (ec) break;  // closed, timed out, or cancelled by a drain: all a normal end
      buffer.commit(n);
    }

    bhttp::request_parser<bhttp::string_body> parser;
    parser.body_limit(o.max_body_bytes);
    parser.header_limit(static_cast<std::uint32_t>(o.max_header_bytes));
    stream.expires_after(o.header_timeout);
    auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, parser, use_nothrow);
    std::optional<ApiError> early;
    if (hec) {
      if (hec == bhttp::error::body_limit)  // Content-Length over the limit, seen with the header
        early = ApiError{413, ErrorType::invalid_request_error, "body_too_large",
                         "Request body exceeds " + std::to_string(o.max_body_bytes) + " bytes.", {}};
      else if (hec == bhttp::error::header_limit)
        early = ApiError{431, ErrorType::invalid_request_error, "headers_too_large", "Request headers are too large.", {}};
      else if (hec == bhttp::error::end_of_stream || hec == beast::error::timeout ||
               hec == asio::error::operation_aborted || hec == asio::error::connection_reset)
        break;
      else
        early = bad_request("malformed_request", "The HTTP request could not be parsed.");
    } else {
      auto len = parser.content_length();
      if (len && *len > o.max_body_bytes) {
        early = ApiError{413, ErrorType::invalid_request_error, "body_too_large",
                         "Request body exceeds " + std::to_string(o.max_body_bytes) + " bytes.", {}};
      } else {
        auto [bec, bn] = co_await bhttp::async_read(stream, buffer, parser, use_nothrow);
        if (bec == bhttp::error::body_limit)
          early = ApiError{413, ErrorType::invalid_request_error, "body_too_large",
                           "Request body exceeds " + std::to_string(o.max_body_bytes) + " bytes.", {}};
        else if (bec == beast::error::timeout || bec == bhttp::error::end_of_stream ||
                 bec == asio::error::operation_aborted || bec == asio::error::connection_reset)
          break;
        else if (bec)
          early = bad_request("malformed_request", "The HTTP request could not be parsed.");
      }
    }

    RequestContext ctx;
    const auto started = std::chrono::steady_clock::now();
    Response res;
    if (early) {
      std::string rid;
      if (!hec) {
        auto h = parser.get()["X-Request-Id"];
        if (valid_request_id(h)) rid = std::string(h);
      }
      if (rid.empty()) rid = new_request_id();
      res = error_response(*early, rid, 11, false);
      res.set("X-Request-Id", rid);
    } else {
      ctx.req = parser.release();
      ctx.remote_addr = remote;
      auto h = ctx.req["X-Request-Id"];
      ctx.request_id = valid_request_id(h) ? std::string(h) : new_request_id();
      std::string_view target = ctx.req.target();
      auto q = target.find('?');
      ctx.path = target.substr(0, q);
      if (q != std::string_view::npos) ctx.query = target.substr(q + 1);
      res = co_await state->router.dispatch(ctx);
      res.set("X-Request-Id", ctx.request_id);
      if (state->stopping) res.keep_alive(false);
      if (ctx.req.method() == bhttp::verb::head) {
        res.body().clear();
      }
    }
    res.set(bhttp::field::server, o.server_name);
    if (o.access_log && spdlog::should_log(spdlog::level::debug)) {
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
      spdlog::debug("http {} {} {} {}us request_id={}", early ? "-" : std::string(ctx.req.method_string()),
                    early ? "-" : std::string(ctx.path), res.result_int(), us.count(),
                    early ? std::string(res["X-Request-Id"]) : ctx.request_id);
    }
    const bool keep = res.keep_alive();
    stream.expires_after(o.write_timeout);
    auto [wec, wn] = co_await bhttp::async_write(stream, res, use_nothrow);
    obs::metrics::observe_http(early ? std::string_view("unparsed") : ctx.route,
                               early ? std::string_view("unknown")
                               : ctx.req.method() == bhttp::verb::unknown ? std::string_view("other")
                                                                           : std::string_view(ctx.req.method_string()),
                               res.result_int(),
                               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (wec || !keep) break;
  }
  boost::system::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.close();
}

}  // namespace paymux::http
