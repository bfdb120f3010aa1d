#pragma once
// The one outbound HTTP(S) client. Pooled keep-alive connections per (scheme, host, port); TLS with
// SNI, peer verification and host-name verification (system CA store, or a CA file); plain http
// only where the caller allows it (loopback test endpoints). Every call states its timeouts.
//
// The result tells whether the request may have reached the server: that decides between failing
// over to another gateway (not_sent) and leaving the outcome to reconciliation (unknown).
#include "service/http/types.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace paymux::net {

namespace asio = boost::asio;

struct OutboundRequest {
  http::bhttp::verb method = http::bhttp::verb::post;
  std::string url;  // absolute http:// or https:// URL, with query when any
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{15000};  // from the first byte written to the last byte read
  // When set, only resolved addresses it accepts are connected to (and a pooled connection only
  // reused when its peer passes): the SSRF guard of merchant webhooks. None left: not_sent.
  std::function<bool(const asio::ip::address&)> allow_address;
};

enum class SendOutcome {
  response,  // a complete HTTP response was read (any status)
  not_sent,  // nothing reached the server: DNS, connect or TLS handshake failed, bad URL
  unknown,   // the request may have been received: timeout or connection lost after writing
};

struct OutboundResponse {
  SendOutcome outcome = SendOutcome::not_sent;
  unsigned status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string error;  // what went wrong, for logs and payment attempts (no secrets)
  std::chrono::microseconds latency{0};

  std::string_view header(std::string_view name) const;  // case-insensitive; empty when absent
};

struct ClientOptions {
  std::string ca_file;                 // empty: the system CA store
  bool allow_plain_http = true;        // http:// URLs allowed (loopback tests, sandbox)
  std::size_t max_idle_per_host = 64;  // pooled keep-alive connections kept per host
  std::chrono::seconds idle_keepalive{30};
  std::size_t max_response_bytes = 8 * 1024 * 1024;
  std::string user_agent = "paymux/0.1";
};

class HttpClient {
 public:
  HttpClient(asio::any_io_executor ex, ClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Never throws for network errors: they are reported in the result. Safe to call concurrently
  // from coroutines on any thread of the executor's context.
  // A pooled connection that the server turns out to have closed (the write fails, or the
  // connection ends before any response byte) is retried once on a fresh connection; nothing else
  // is retried here. A timeout or a loss after response bytes arrived is `unknown`.
  // The constructor throws when ca_file cannot be loaded. Destroy the client before its io_context.
  asio::awaitable<OutboundResponse> send(OutboundRequest request);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace paymux::net
