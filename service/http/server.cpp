#include "service/http/server.hpp"

#include "service/core/ids.hpp"
#include "service/http/read_message.hpp"
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
// Writes `res`: at once as far as the socket takes it (a response usually fits its send buffer, and
// then nothing is queued to complete later), the rest asynchronously within `timeout`. The socket
// is non-blocking for this (see session); if it could not be made so, all of it is asynchronous.
asio::awaitable<boost::system::error_code> write_response(beast::tcp_stream& stream, Response& res,
                                                          std::chrono::milliseconds timeout) {
  bhttp::response_serializer<bhttp::string_body> sr{res};
  boost::system::error_code ec;
  if (stream.socket().non_blocking()) {
    while (!sr.is_done()) {
      bhttp::write_some(stream.socket(), sr, ec);
      if (ec) break;
    }
    if (ec != asio::error::would_block) co_return ec;
  }
  stream.expires_after(timeout);
  auto [wec, wn] = co_await bhttp::async_write(stream, sr, use_nothrow);
  co_return wec;
}
}  // namespace

// A connection as a drain sees it. `idle` and `stream` are read and written only on the
// connection's strand (its session's executor).
struct Connection {
  asio::any_io_executor executor;
  beast::tcp_stream* stream = nullptr;  // null once the session has ended
  bool idle = false;                    // waiting for the first byte of a next request
};

struct Server::State {
  ServerOptions options;
  const Router& router;
  tcp::acceptor acceptor;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> connections{0};

  // Every open connection, so that a drain can close the idle ones at once. A connection is added
  // and removed once in its life; whether it is idle is kept on its own strand, not here.
  std::mutex connections_mutex;
  std::unordered_set<std::shared_ptr<Connection>> open;

  State(asio::io_context& ioc, ServerOptions o, const Router& r)
      : options(std::move(o)), router(r), acceptor(ioc) {}
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
  std::lock_guard lock(state->connections_mutex);
  for (const auto& conn : state->open) {
    // On the connection's strand: the session is either idle there (cancel its read) or will see
    // `stopping` before it next waits.
    asio::post(conn->executor, [conn] {
      if (conn->stream && conn->idle) conn->stream->socket().cancel();
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
  // Synchronous writes return would_block rather than wait (write_response); asynchronous
  // operations are unaffected.
  {
    boost::system::error_code ec;
    socket.non_blocking(true, ec);
  }
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  auto conn = std::make_shared<Connection>();
  conn->executor = stream.get_executor();
  conn->stream = &stream;
  {
    std::lock_guard lock(state->connections_mutex);
    state->open.insert(conn);
  }
  struct Unlist {
    State& s;
    std::shared_ptr<Connection> c;
    ~Unlist() {
      c->stream = nullptr;  // on the strand: a drain's cancel that runs later finds nothing to do
      std::lock_guard lock(s.connections_mutex);
      s.open.erase(c);
    }
  } unlist{*state, conn};

  for (;;) {
    // Idle phase: wait for the first byte of the next request.
    if (buffer.size() == 0) {
      if (state->stopping) break;
      conn->idle = true;
      stream.expires_after(o.idle_timeout);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_nothrow);
      conn->idle = false;
      if (ec) break;  // closed, timed out, or cancelled by a drain: all a normal end
      buffer.commit(n);
    }

    bhttp::request_parser<bhttp::string_body> parser;
    parser.body_limit(o.max_body_bytes);
    parser.header_limit(static_cast<std::uint32_t>(o.max_header_bytes));
    // Once the first bytes are in, the whole request must arrive within header_timeout.
    const auto rec = co_await read_message(stream, buffer, parser, [&] { stream.expires_after(o.header_timeout); });
    std::optional<ApiError> early;
    if (rec) {
      if (rec == bhttp::error::body_limit)  // a Content-Length over the limit, or a longer chunked body
        early = ApiError{413, ErrorType::invalid_request_error, "body_too_large",
                         "Request body exceeds " + std::to_string(o.max_body_bytes) + " bytes.", {}};
      else if (rec == bhttp::error::header_limit)
        early = ApiError{431, ErrorType::invalid_request_error, "headers_too_large", "Request headers are too large.", {}};
      else if (rec == bhttp::error::end_of_stream || rec == beast::error::timeout ||
               rec == asio::error::operation_aborted || rec == asio::error::connection_reset)
        break;
      else
        early = bad_request("malformed_request", "The HTTP request could not be parsed.");
    }

    RequestContext ctx;
    const auto started = std::chrono::steady_clock::now();
    Response res;
    if (early) {
      std::string rid;
      if (parser.is_header_done()) {
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
    const auto wec = co_await write_response(stream, res, o.write_timeout);
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
