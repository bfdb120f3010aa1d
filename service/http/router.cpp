#include "service/http/router.hpp"
#include "service/http/unavailable.hpp"

#include <spdlog/spdlog.h>

namespace paymux::http {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    auto j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    parts.push_back(path.substr(i, j - i));
    i = j;
  }
  return parts;
}

}  // namespace

void Router::add(bhttp::verb method, std::string pattern, Handler handler) {
  Route r{method, pattern, {}, std::move(handler)};
  for (auto part : split_path(pattern)) r.segments.emplace_back(part);
  routes_.push_back(std::move(r));
}

bool Router::match(const Route& r, const std::vector<std::string_view>& parts, RequestContext* ctx) {
  if (r.segments.size() != parts.size()) return false;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const auto& seg = r.segments[i];
    bool capture = seg.size() > 2 && seg.front() == '{' && seg.back() == '}';
    if (!capture && seg != parts[i]) return false;
    if (capture && parts[i].empty()) return false;
  }
  if (ctx) {
    ctx->params.clear();
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const auto& seg = r.segments[i];
      if (seg.size() > 2 && seg.front() == '{' && seg.back() == '}')
        ctx->params.emplace_back(seg.substr(1, seg.size() - 2), std::string(parts[i]));
    }
  }
  return true;
}

asio::awaitable<Response> Router::dispatch(RequestContext& ctx) const {
  const auto parts = split_path(ctx.path);
  const Route* found = nullptr;
  std::string allow;
  const auto method = ctx.req.method();
  for (const auto& r : routes_) {
    if (!match(r, parts, nullptr)) continue;
    if (r.method == method || (method == bhttp::verb::head && r.method == bhttp::verb::get)) {
      found = &r;
      break;
    }
    if (!allow.empty()) allow += ", ";
    allow += std::string(bhttp::to_string(r.method));
  }
  if (!found) {
    ctx.route = "unmatched";
    if (!allow.empty()) {
      auto res = error_response({405, ErrorType::invalid_request_error, "method_not_allowed",
                                 "Method " + std::string(ctx.req.method_string()) + " is not allowed here.", {}},
                                ctx.request_id, ctx.req.version(), ctx.req.keep_alive());
      res.set(bhttp::field::allow, allow);
      co_return res;
    }
    co_return error_response(not_found("No such route: " + std::string(ctx.path)), ctx.request_id,
                             ctx.req.version(), ctx.req.keep_alive());
  }
  match(*found, parts, &ctx);
  ctx.route = found->pattern;
  std::exception_ptr failure;
  try {
    co_return co_await found->handler(ctx);
  } catch (const boost::system::system_error& e) {
    if (e.code() == asio::error::operation_aborted) throw;  // shutdown: let the session end
    failure = std::current_exception();
    spdlog::error("request {} failed: {}", ctx.request_id, e.what());
  } catch (const Unavailable& e) {
    spdlog::warn("request {}: service unavailable: {}", ctx.request_id, e.what());
    auto res = error_response(service_unavailable(), ctx.request_id, ctx.req.version(), ctx.req.keep_alive());
    res.set(bhttp::field::retry_after, "1");
    co_return res;
  } catch (const std::exception& e) {
    failure = std::current_exception();
    spdlog::error("request {} failed: {}", ctx.request_id, e.what());
  }
  co_return error_response(internal_error(), ctx.request_id, ctx.req.version(), ctx.req.keep_alive());
}

}  // namespace paymux::http
