#include "service/core/issued_credentials.hpp"

#include "service/core/clock.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

namespace paymux {

namespace asio = boost::asio;
namespace bj = boost::json;

CredentialKeeper::CredentialKeeper(const Config& config, store::Store& store, providers::Exchange& exchange,
                                   const Connectors& connectors)
    : store_(store), exchange_(exchange), connectors_(connectors), started_at_(now_ms()) {
  for (const auto& m : config.merchants)
    for (const auto& c : m.connectors)
      if (const auto* k = connectors.find(c.id); k && k->provider->issues_credentials()) issuing_.push_back(k);
}

CredentialKeeper::Loaded CredentialKeeper::loaded(const std::string& connector) {
  std::lock_guard lock(m_);
  auto it = loaded_.find(connector);
  return it == loaded_.end() ? Loaded{0, started_at_} : it->second;
}

void CredentialKeeper::set_loaded(const std::string& connector, Loaded l) {
  std::lock_guard lock(m_);
  loaded_[connector] = l;
}

asio::awaitable<void> CredentialKeeper::load() {
  for (const auto* k : issuing_) {
    auto rec = co_await store_.get_connector_credentials(k->id());
    if (!rec || rec->version == loaded(k->id()).version) continue;
    boost::system::error_code ec;
    auto v = bj::parse(rec->data_json, ec);
    if (ec || !v.is_object()) {
      spdlog::error("connector {}: stored credentials are unreadable; keeping the current ones", k->id());
      continue;
    }
    k->provider->use_credentials(v.get_object());
    set_loaded(k->id(), Loaded{rec->version, rec->updated_at});
    spdlog::info("connector {}: issued credentials loaded (version {})", k->id(), rec->version);
  }
}

asio::awaitable<void> CredentialKeeper::rotate_if_due(const Connector& k) {
  const auto interval = std::chrono::duration_cast<std::chrono::milliseconds>(k.provider->rotation_interval()).count();
  if (interval <= 0) co_return;
  auto state = loaded(k.id());
  if (now_ms() < state.issued_at + interval) co_return;
  auto current = k.provider->current_credentials();
  if (!current) co_return;  // nothing to rotate yet (not activated)

  // Due again a tenth of the interval (at most a minute) from now when this round does not succeed.
  const auto retry_in = std::min<std::int64_t>(interval / 10, 60'000);
  Loaded later{state.version, now_ms() - interval + retry_in};

  // Instances sharing a store rotate once: the one whose claim (the same credentials written back,
  // conditional on the version it read) lands rotates; the others load what it stores. The claim
  // makes the credentials look due again a little later, so that another instance takes over if
  // this one stops midway.
  store::ConnectorCredentialsRecord claim{k.id(), bj::serialize(*current), 0, now_ms() - interval + 2 * retry_in};
  bool claimed = false;
  try {
    claimed = co_await store_.put_connector_credentials(claim, state.version);
  } catch (const std::exception& e) {
    spdlog::warn("connector {}: cannot claim the credential rotation: {}; trying again later", k.id(), e.what());
    set_loaded(k.id(), later);
    co_return;
  }
  if (!claimed) {
    spdlog::info("connector {}: credential rotation taken by another process", k.id());
    co_return;  // loaded on the next tick
  }
  state.version += 1;
  later.version = state.version;
  set_loaded(k.id(), later);
  asio::steady_timer pause(co_await asio::this_coro::executor);
  // A lost answer may mean the gateway issued new credentials that never arrived: ask again with
  // the old ones (SIGNING.md: the gateway answers a repeated check-in on the old key).
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto wire = k.provider->build_rotation(*current);
    if (!wire) co_return;
    auto res = co_await exchange_.send(*k.config, providers::Flow::credentials, std::move(*wire));
    providers::IssuedCredentials issued;
    if (res.outcome == net::SendOutcome::not_sent) {
      spdlog::warn("connector {}: credential rotation not sent ({}); trying again later", k.id(), res.error);
      set_loaded(k.id(), later);
      co_return;
    }
    if (res.outcome == net::SendOutcome::unknown) {
      issued.unknown = true;
      issued.error = res.error;
    } else {
      issued = k.provider->parse_rotation(res, *current);
    }
    if (issued.credentials) {
      store::ConnectorCredentialsRecord rec{k.id(), bj::serialize(*issued.credentials), 0, now_ms()};
      bool stored = false;
      for (int w = 0; w < 5 && !stored; ++w) {
        bool failed = false;
        try {
          stored = co_await store_.put_connector_credentials(rec, state.version);
        } catch (const std::exception& e) {
          spdlog::error("connector {}: storing rotated credentials failed: {}", k.id(), e.what());
          failed = true;
        }
        if (!failed && !stored) break;  // another process stored newer ones: they are loaded next tick
        if (failed) {
          pause.expires_after(std::chrono::milliseconds(200));
          co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        }
      }
      // The gateway has switched to the new ones: use them even if the store refused them.
      k.provider->use_credentials(*issued.credentials);
      if (stored) set_loaded(k.id(), Loaded{state.version + 1, rec.updated_at});
      spdlog::info("connector {}: credentials rotated{}", k.id(), stored ? "" : " (not stored: another writer won)");
      co_return;
    }
    if (!issued.unknown) {
      spdlog::error("connector {}: credential rotation refused: {}", k.id(), issued.error);
      set_loaded(k.id(), later);
      co_return;
    }
    spdlog::warn("connector {}: credential rotation answer lost ({}); retrying with the old credentials", k.id(),
                 issued.error);
    pause.expires_after(std::chrono::milliseconds(500 * (attempt + 1)));
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  set_loaded(k.id(), later);
}

asio::awaitable<void> CredentialKeeper::run(std::chrono::milliseconds tick) {
  if (issuing_.empty()) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    try {
      co_await load();
      for (const auto* k : issuing_) co_await rotate_if_due(*k);
    } catch (const std::exception& e) {
      spdlog::warn("credential keeper: {}", e.what());
    }
    timer.expires_after(tick);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
  }
}

asio::awaitable<std::string> CredentialKeeper::activate(std::string connector_id, std::string code) {
  const auto* k = connectors_.find(connector_id);
  if (!k) co_return "no connector '" + connector_id + "'";
  if (!k->provider->issues_credentials()) co_return "connector '" + connector_id + "' takes no activation";
  auto wire = k->provider->build_activation(code);
  if (!wire) co_return "connector '" + connector_id + "' has no activation credentials (vendor_sn, vendor_key)";
  auto res = co_await exchange_.send(*k->config, providers::Flow::credentials, std::move(*wire));
  if (res.outcome != net::SendOutcome::response) co_return "the gateway did not answer: " + res.error;
  auto issued = k->provider->parse_activation(res);
  if (!issued.credentials) co_return issued.error.empty() ? std::string("activation refused") : issued.error;
  auto existing = co_await store_.get_connector_credentials(connector_id);
  store::ConnectorCredentialsRecord rec{connector_id, bj::serialize(*issued.credentials), 0, now_ms()};
  if (!co_await store_.put_connector_credentials(rec, existing ? existing->version : 0))
    co_return "the credentials changed meanwhile; activate again";
  k->provider->use_credentials(*issued.credentials);
  co_return std::string();
}

}  // namespace paymux
