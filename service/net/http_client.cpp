#include "service/net/http_client.hpp"

#include "service/http/read_message.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>

namespace paymux::net {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t kResponseHeaderLimit = 64 * 1024;

// Where a request goes, from its URL.
struct Endpoint {
  bool tls = false;
  std::string host;         // for DNS, SNI and certificate checks: no brackets, decoded
  std::string port;         // numeric
  std::string host_header;  // Host: value (brackets for IPv6, port when not the default)
  std::string target;       // path and query
  std::string pool_key;     // scheme://host:port
  std::string log_path;     // path only: a query string may carry signatures
};

std::optional<Endpoint> parse_endpoint(std::string_view url, bool allow_plain_http, std::string& error) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    error = "invalid URL: not an absolute URL";
    return std::nullopt;
  }
  const auto& u = *parsed;
  Endpoint ep;
  switch (u.scheme_id()) {
    case boost::urls::scheme::https:
      ep.tls = true;
      break;
    case boost::urls::scheme::http:
      if (!allow_plain_http) {
        error = "plain http:// URLs are not allowed";
        return std::nullopt;
      }
      break;
    default:
      error = "unsupported URL scheme \"" + std::string(u.scheme()) + "\" (http or https only)";
      return std::nullopt;
  }
  if (!u.has_authority() || u.encoded_host().empty()) {
    error = "invalid URL: no host";
    return std::nullopt;
  }
  if (u.has_userinfo()) {
    error = "invalid URL: credentials in the URL are not supported";
    return std::nullopt;
  }
  const auto ht = u.host_type();
  if (ht != boost::urls::host_type::name && ht != boost::urls::host_type::ipv4 &&
      ht != boost::urls::host_type::ipv6) {
    error = "invalid URL: unsupported host";
    return std::nullopt;
  }
  const std::uint16_t default_port = ep.tls ? 443 : 80;
  std::uint16_t port = default_port;
  if (u.has_port() && !u.port().empty()) {
    // Parsed here: Boost.URL 1.81's port_number() wraps values above 65535 around.
    const auto text = u.port();
    unsigned long value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value == 0 || value > 65535) {
      error = "invalid URL: bad port \"" + std::string(text) + "\"";
      return std::nullopt;
    }
    port = static_cast<std::uint16_t>(value);
  }
  // Boost.URL 1.81 accepts "http://h:8o/" as port "8" and path "o/"; RFC 3986 wants "/" first.
  if (!u.encoded_path().empty() && u.encoded_path().front() != '/') {
    error = "invalid URL: bad port or path";
    return std::nullopt;
  }
  ep.host = u.host_address();
  for (auto& c : ep.host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (char c : ep.host) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      error = "invalid URL: bad host";
      return std::nullopt;
    }
  }
  ep.port = std::to_string(port);
  std::string host_in_header(u.encoded_host());
  for (auto& c : host_in_header) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  ep.host_header = port == default_port ? host_in_header : host_in_header + ":" + ep.port;
  ep.log_path = u.encoded_path().empty() ? std::string("/") : std::string(u.encoded_path());
  ep.target = ep.log_path;
  if (u.has_query()) ep.target += "?" + std::string(u.encoded_query());
  ep.pool_key = std::string(ep.tls ? "https://" : "http://") + host_in_header + ":" + ep.port;
  return ep;
}

bool is_token_char(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool valid_header(std::string_view name, std::string_view value) {
  if (name.empty()) return false;
  for (char c : name)
    if (!is_token_char(c)) return false;
  for (char c : value)
    if (c == '\r' || c == '\n' || c == '\0') return false;
  return true;
}

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// What a server that closed an idle keep-alive connection looks like to the next request on it.
bool is_stale_close(const error_code& ec) {
  return ec == asio::error::eof || ec == bhttp::error::end_of_stream || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::connection_aborted ||
         ec == ssl::error::stream_truncated;
}

std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

std::string_view to_string(SendOutcome o) {
  switch (o) {
    case SendOutcome::response: return "response";
    case SendOutcome::not_sent: return "not_sent";
    case SendOutcome::unknown: return "unknown";
  }
  return "?";
}

// One TCP (or TLS over TCP) connection. All its I/O runs on its own strand, one request at a time:
// a connection is either in the pool or owned by exactly one exchange.
struct Connection {
  asio::strand<asio::any_io_executor> strand;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;

  explicit Connection(const asio::any_io_executor& ex) : strand(asio::make_strand(ex)) {}

  beast::tcp_stream& tcp() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

  // A pooled connection whose peer has closed it (FIN or RST already received), or that has
  // unexpected bytes waiting, is not reused. Called while no operation is pending on it.
  bool looks_reusable() {
    auto& sock = tcp().socket();
    if (!sock.is_open()) return false;
    char c;
    const auto n = ::recv(sock.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  void close() {
    if (!plain && !tls) return;
    error_code ec;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
    tcp().close();
  }
};

// What one attempt on one connection produced.
struct Attempt {
  OutboundResponse res;
  bool reusable = false;     // the connection can go back to the pool
  bool retry_fresh = false;  // a reused connection was dead before the request reached anyone
};

struct ExchangeLimits {
  std::chrono::milliseconds connect_timeout;
  std::chrono::milliseconds timeout;
  std::size_t max_response_bytes;
  std::function<bool(const asio::ip::address&)> allow_address;  // empty: any
};

asio::awaitable<std::tuple<error_code, tcp::resolver::results_type>> resolve(std::string host, std::string port,
                                                                              Clock::time_point deadline) {
  // async_resolve cannot be cut short (getaddrinfo runs to its end on asio's resolver thread), so
  // race it against a timer and leave a late answer to the shared state.
  struct State {
    tcp::resolver resolver;
    asio::steady_timer timer;
    bool done = false;
    error_code ec;
    tcp::resolver::results_type results;
    explicit State(const asio::any_io_executor& ex) : resolver(ex), timer(ex) {}
  };
  auto ex = co_await asio::this_coro::executor;  // the connection's strand: no data race on State
  auto st = std::make_shared<State>(ex);
  st->timer.expires_at(deadline);
  st->resolver.async_resolve(host, port, tcp::resolver::numeric_service,
                             [st](error_code ec, tcp::resolver::results_type results) {
                               st->done = true;
                               st->ec = ec;
                               st->results = std::move(results);
                               st->timer.cancel();
                             });
  co_await st->timer.async_wait(use_nothrow);
  if (!st->done) {
    st->resolver.cancel();
    co_return std::make_tuple(error_code(asio::error::timed_out), tcp::resolver::results_type{});
  }
  co_return std::make_tuple(st->ec, std::move(st->results));
}

// Write the request and read one response, on a connected (and, for TLS, handshaken) stream.
template <class Stream>
asio::awaitable<Attempt> write_and_read(Stream& stream, beast::tcp_stream& tcp_layer,
                                        std::shared_ptr<const http::Request> req, bool reused,
                                        ExchangeLimits limits) {
  Attempt a;
  auto& res = a.res;
  res.outcome = SendOutcome::unknown;
  const auto deadline = Clock::now() + limits.timeout;

  tcp_layer.expires_at(deadline);
  auto [wec, wn] = co_await bhttp::async_write(stream, *req, use_nothrow);
  if (wec) {
    if (wec == beast::error::timeout) {
      res.error = "timed out writing the request after " + ms(limits.timeout);
    } else if (reused) {
      // The server had closed the idle connection: nothing of this request can have been read.
      a.retry_fresh = true;
      res.error = "pooled connection closed by the server: " + wec.message();
    } else {
      res.error = "writing the request failed: " + wec.message();
    }
    co_return a;
  }

  // The first bytes are read on their own so that a connection that dies before any answer (an
  // idle connection the server closed as the request went out) is told from one that dies midway.
  beast::flat_buffer buffer;
  tcp_layer.expires_at(deadline);
  auto [fec, fn] = co_await stream.async_read_some(buffer.prepare(16 * 1024), use_nothrow);
  buffer.commit(fn);
  if (fec && fn == 0) {
    if (fec == beast::error::timeout) {
      res.error = "no response within " + ms(limits.timeout);
    } else if (reused && is_stale_close(fec) && (req->method() == bhttp::verb::get || req->method() == bhttp::verb::head)) {
      // Only a request that is safe to repeat is sent again here: a POST the server may have read
      // (a payment, a refund) stays unknown, because sending it twice could charge twice.
      a.retry_fresh = true;
      res.error = "pooled connection closed by the server: " + fec.message();
    } else if (is_stale_close(fec)) {
      res.error = "connection closed before a response: " + fec.message();
    } else {
      res.error = "reading the response failed: " + fec.message();
    }
    co_return a;
  }

  for (;;) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(limits.max_response_bytes);
    parser.header_limit(kResponseHeaderLimit);
    if (req->method() == bhttp::verb::head) parser.skip(true);
    const auto ec = co_await http::read_message(stream, buffer, parser, [&] { tcp_layer.expires_at(deadline); });
    if (ec) {
      if (ec == beast::error::timeout)
        res.error = "response not complete within " + ms(limits.timeout);
      else if (ec == bhttp::error::body_limit)
        res.error = "response body exceeds " + std::to_string(limits.max_response_bytes) + " bytes";
      else if (ec == bhttp::error::header_limit)
        res.error = "response headers exceed " + std::to_string(kResponseHeaderLimit) + " bytes";
      else if (ec == bhttp::error::partial_message || ec == bhttp::error::end_of_stream || is_stale_close(ec))
        res.error = "connection closed before the response was complete";
      else if (ec.category() == error_code(bhttp::error::bad_version).category())
        res.error = "malformed response: " + ec.message();
      else
        res.error = "reading the response failed: " + ec.message();
      co_return a;
    }
    auto& msg = parser.get();
    const auto status = msg.result_int();
    if (status >= 100 && status < 200 && status != 101) continue;  // interim (100 Continue, 103)
    res.outcome = SendOutcome::response;
    res.status = status;
    res.headers.reserve(static_cast<std::size_t>(std::distance(msg.begin(), msg.end())));
    for (const auto& f : msg) res.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    a.reusable = msg.keep_alive() && !parser.need_eof() && buffer.size() == 0 && status != 101;
    res.body = std::move(msg.body());
    co_return a;
  }
}

}  // namespace

std::string_view OutboundResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (beast::iequals(k, name)) return v;
  return {};
}

struct HttpClient::Impl {
  asio::any_io_executor ex;
  ClientOptions options;
  ssl::context tls{ssl::context::tls_client};

  struct Idle {
    std::shared_ptr<Connection> conn;
    Clock::time_point expires;
  };
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<Idle>> idle;  // oldest first

  Impl(asio::any_io_executor e, ClientOptions o) : ex(std::move(e)), options(std::move(o)) {
    SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
    tls.set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    tls.set_verify_mode(ssl::verify_peer);
    error_code ec;
    if (options.ca_file.empty()) {
      tls.set_default_verify_paths(ec);
      if (ec) throw std::runtime_error("net: cannot load the system CA store: " + ec.message());
    } else {
      tls.load_verify_file(options.ca_file, ec);
      if (ec) throw std::runtime_error("net: cannot load CA file " + options.ca_file + ": " + ec.message());
    }
  }

  // Drops expired entries of every host; the caller destroys them after unlocking.
  void prune_locked(Clock::time_point now, std::vector<std::shared_ptr<Connection>>& dropped) {
    for (auto it = idle.begin(); it != idle.end();) {
      auto& v = it->second;
      auto first_live = v.begin();
      while (first_live != v.end() && first_live->expires <= now) dropped.push_back(std::move((first_live++)->conn));
      v.erase(v.begin(), first_live);
      it = v.empty() ? idle.erase(it) : std::next(it);
    }
  }

  std::shared_ptr<Connection> take_idle(const std::string& key) {
    std::vector<std::shared_ptr<Connection>> dropped;
    for (;;) {
      std::shared_ptr<Connection> conn;
      {
        std::lock_guard lock(mutex);
        prune_locked(Clock::now(), dropped);
        auto it = idle.find(key);
        if (it == idle.end()) break;
        conn = std::move(it->second.back().conn);  // most recently used: least likely closed
        it->second.pop_back();
        if (it->second.empty()) idle.erase(it);
      }
      if (conn->looks_reusable()) return conn;
      dropped.push_back(std::move(conn));
    }
    return nullptr;
  }

  void put_idle(const std::string& key, std::shared_ptr<Connection> conn) {
    std::vector<std::shared_ptr<Connection>> dropped;
    if (options.max_idle_per_host == 0 || options.idle_keepalive.count() <= 0) return;
    std::lock_guard lock(mutex);
    const auto now = Clock::now();
    prune_locked(now, dropped);
    auto& v = idle[key];
    while (v.size() >= options.max_idle_per_host) {
      dropped.push_back(std::move(v.front().conn));
      v.erase(v.begin());
    }
    v.push_back({std::move(conn), now + options.idle_keepalive});
  }

  static asio::awaitable<Attempt> exchange(std::shared_ptr<Impl> self, std::shared_ptr<Connection> conn,
                                           std::shared_ptr<const http::Request> req, Endpoint ep, bool reused,
                                           ExchangeLimits limits);
};

// One attempt, run on the connection's strand: connect when the connection is fresh, then write
// the request and read the response. Holds the Impl alive for the TLS context.
asio::awaitable<Attempt> HttpClient::Impl::exchange(std::shared_ptr<Impl> self, std::shared_ptr<Connection> conn,
                                                    std::shared_ptr<const http::Request> req, Endpoint ep,
                                                    bool reused, ExchangeLimits limits) {
  Attempt a;
  auto& res = a.res;
  res.outcome = SendOutcome::not_sent;
  const std::string where = ep.host_header;

  if (!reused) {
    const auto deadline = Clock::now() + limits.connect_timeout;
    auto [rec, endpoints] = co_await resolve(ep.host, ep.port, deadline);
    if (rec) {
      res.error = rec == asio::error::timed_out
                      ? "resolving " + ep.host + " timed out after " + ms(limits.connect_timeout)
                      : "resolving " + ep.host + " failed: " + rec.message();
      co_return a;
    }
    if (ep.tls)
      conn->tls.emplace(conn->strand, self->tls);
    else
      conn->plain.emplace(conn->strand);
    std::vector<tcp::endpoint> allowed;
    for (const auto& e : endpoints)
      if (!limits.allow_address || limits.allow_address(e.endpoint().address())) allowed.push_back(e.endpoint());
    if (allowed.empty()) {
      res.error = "refused: " + ep.host + " resolves only to addresses this request may not reach";
      conn->plain.reset();
      conn->tls.reset();
      co_return a;
    }
    auto& tcp_layer = conn->tcp();
    tcp_layer.expires_at(deadline);
    auto [cec, peer] = co_await tcp_layer.async_connect(allowed, use_nothrow);
    if (cec) {
      res.error = cec == beast::error::timeout
                      ? "connecting to " + where + " timed out after " + ms(limits.connect_timeout)
                      : "connecting to " + where + " failed: " + cec.message();
      conn->close();
      co_return a;
    }
    error_code ignored;
    tcp_layer.socket().set_option(tcp::no_delay(true), ignored);

    if (ep.tls) {
      auto& s = *conn->tls;
      // SNI carries names only (RFC 6066 section 3); certificates for IPs are matched by SAN.
      if (!is_ip_literal(ep.host) && !SSL_set_tlsext_host_name(s.native_handle(), ep.host.c_str())) {
        res.error = "TLS: cannot set SNI for " + ep.host;
        conn->close();
        co_return a;
      }
      // host_name_verification rejects a mismatching leaf without saying why; record the reason
      // so that the handshake error names it.
      const bool ip = is_ip_literal(ep.host);
      s.set_verify_callback([check = ssl::host_name_verification(ep.host), ip](bool preverified,
                                                                                ssl::verify_context& ctx) mutable {
        const bool ok = check(preverified, ctx);
        if (preverified && !ok)
          X509_STORE_CTX_set_error(ctx.native_handle(),
                                   ip ? X509_V_ERR_IP_ADDRESS_MISMATCH : X509_V_ERR_HOSTNAME_MISMATCH);
        return ok;
      });
      tcp_layer.expires_at(deadline);
      auto [hec] = co_await s.async_handshake(ssl::stream_base::client, use_nothrow);
      if (hec) {
        if (hec == beast::error::timeout) {
          res.error = "TLS handshake with " + where + " timed out after " + ms(limits.connect_timeout);
        } else {
          res.error = "TLS handshake with " + where + " failed: " + hec.message();
          const long verify = SSL_get_verify_result(s.native_handle());
          if (verify != X509_V_OK) res.error += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
        }
        conn->close();
        co_return a;
      }
    }
  }

  if (conn->tls)
    a = co_await write_and_read(*conn->tls, conn->tcp(), std::move(req), reused, limits);
  else
    a = co_await write_and_read(*conn->plain, conn->tcp(), std::move(req), reused, limits);
  if (!a.reusable) conn->close();
  co_return a;
}

HttpClient::HttpClient(asio::any_io_executor ex, ClientOptions options)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(options))) {}

HttpClient::~HttpClient() = default;

asio::awaitable<OutboundResponse> HttpClient::send(OutboundRequest request) {
  auto self = impl_;
  const auto started = Clock::now();
  OutboundResponse res;
  std::string error;
  auto ep = parse_endpoint(request.url, self->options.allow_plain_http, error);
  const auto method = request.method;

  auto finish = [&](OutboundResponse r, std::string_view host, std::string_view path) {
    r.latency = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
    if (spdlog::should_log(spdlog::level::debug)) {
      if (r.outcome == SendOutcome::response)
        spdlog::debug("http-out {} {}{} -> {} {}us", bhttp::to_string(method), host, path, r.status,
                      r.latency.count());
      else
        spdlog::debug("http-out {} {}{} -> {}: {} {}us", bhttp::to_string(method), host, path,
                      to_string(r.outcome), r.error, r.latency.count());
    }
    return r;
  };

  if (!ep) {
    res.outcome = SendOutcome::not_sent;
    res.error = std::move(error);
    co_return finish(std::move(res), "-", "");
  }

  auto req = std::make_shared<http::Request>(method, ep->target, 11);
  req->set(bhttp::field::host, ep->host_header);
  req->set(bhttp::field::user_agent, self->options.user_agent);
  for (const auto& [name, value] : request.headers) {
    if (!valid_header(name, value)) {
      res.outcome = SendOutcome::not_sent;
      res.error = "invalid request header \"" + (valid_header(name, "") ? name : std::string("?")) + "\"";
      co_return finish(std::move(res), ep->host_header, ep->log_path);
    }
    // Framing is ours: prepare_payload decides Content-Length, and the pool decides Connection.
    if (beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding") ||
        beast::iequals(name, "connection"))
      continue;
    if (beast::iequals(name, "host") || beast::iequals(name, "user-agent"))
      req->set(name, value);
    else
      req->insert(name, value);
  }
  req->body() = std::move(request.body);
  req->prepare_payload();
  req->keep_alive(true);

  const ExchangeLimits limits{request.connect_timeout, request.timeout, self->options.max_response_bytes,
                              request.allow_address};
  for (int attempt = 0;; ++attempt) {
    std::shared_ptr<Connection> conn = attempt == 0 ? self->take_idle(ep->pool_key) : nullptr;
    if (conn && limits.allow_address) {
      // Pooled by host name: the connection may have been opened for a caller without the guard.
      error_code pec;
      const auto peer = conn->tcp().socket().remote_endpoint(pec);
      if (pec || !limits.allow_address(peer.address())) conn.reset();
    }
    const bool reused = conn != nullptr;
    if (!conn) conn = std::make_shared<Connection>(self->ex);
    auto [failure, a] = co_await asio::co_spawn(conn->strand, Impl::exchange(self, conn, req, *ep, reused, limits),
                                                use_nothrow);
    if (failure) {
      // A bug or an allocation failure somewhere in the exchange: the request may have gone out.
      res.outcome = SendOutcome::unknown;
      try {
        std::rethrow_exception(failure);
      } catch (const std::exception& e) {
        res.error = std::string("internal error: ") + e.what();
      } catch (...) {
        res.error = "internal error";
      }
      break;
    }
    if (a.retry_fresh && attempt == 0) {
      spdlog::debug("http-out {} {}{}: {}; retrying on a fresh connection", bhttp::to_string(method),
                    ep->host_header, ep->log_path, a.res.error);
      continue;
    }
    if (a.retry_fresh) {
      // The fresh connection is never "reused", so this cannot happen; be conservative anyway.
      a.res.outcome = SendOutcome::unknown;
    }
    if (a.reusable) self->put_idle(ep->pool_key, std::move(conn));
    res = std::move(a.res);
    break;
  }
  co_return finish(std::move(res), ep->host_header, ep->log_path);
}

}  // namespace paymux::net
