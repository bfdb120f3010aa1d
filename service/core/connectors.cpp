#include "service/core/connectors.hpp"

#include <algorithm>

namespace paymux {

Connectors::Connectors(const Config& config, const providers::ProviderEnv& env) : config_(config) {
  for (const auto& m : config.merchants)
    for (const auto& c : m.connectors) by_id_.emplace(c.id, Connector{&c, providers::make_provider(c, env)});
}

const Connector* Connectors::find(std::string_view id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

const MerchantConfig* Connectors::merchant(std::string_view id) const {
  for (const auto& m : config_.merchants)
    if (m.id == id) return &m;
  return nullptr;
}

std::vector<const Connector*> Connectors::of_merchant(std::string_view merchant) const {
  std::vector<const Connector*> out;
  if (const auto* m = this->merchant(merchant))
    for (const auto& c : m->connectors)
      if (auto* k = find(c.id)) out.push_back(k);
  return out;
}

std::vector<const Connector*> Connectors::all() const {
  std::vector<const Connector*> out;
  for (const auto& kv : by_id_) out.push_back(&kv.second);
  return out;
}

namespace {

bool rule_matches(const RoutingRule& rule, const RouteRequest& r) {
  auto in = [](const std::vector<std::string>& list, const std::string& v) {
    return list.empty() || std::find(list.begin(), list.end(), v) != list.end();
  };
  if (!in(rule.currencies, r.currency) || !in(rule.payment_methods, r.method)) return false;
  if (rule.min_amount && r.amount < *rule.min_amount) return false;
  if (rule.max_amount && r.amount > *rule.max_amount) return false;
  for (const auto& [k, v] : rule.metadata) {
    if (!r.metadata) return false;
    auto it = r.metadata->find(k);
    if (it == r.metadata->end() || !it->value().is_string() || it->value().get_string() != v) return false;
  }
  return true;
}

}  // namespace

Route Connectors::route(const RouteRequest& r) const {
  Route out;
  std::vector<std::string> ids;
  const auto* m = merchant(r.merchant);
  if (!m) return out;
  if (!r.explicit_connector.empty()) {
    ids.push_back(r.explicit_connector);
  } else {
    const RoutingRule* chosen = nullptr;
    for (const auto& rule : m->routing)
      if (rule_matches(rule, r)) {
        chosen = &rule;
        break;
      }
    if (chosen) {
      ids = chosen->connectors;
    } else if (m->routing.empty()) {
      for (const auto& c : m->connectors) ids.push_back(c.id);  // no rules: every connector, in order
    }
  }
  for (const auto& id : ids) {
    const auto* c = find(id);
    if (!c || c->config->merchant != r.merchant) continue;
    auto caps = c->provider->capabilities();
    if (!caps.accepts_method(r.method)) {
      out.skipped.push_back({id, "payment method " + r.method + " not supported"});
      continue;
    }
    if (!caps.accepts_currency(r.currency)) {
      out.skipped.push_back({id, "currency " + r.currency + " not supported"});
      continue;
    }
    out.candidates.push_back(c);
  }
  return out;
}

}  // namespace paymux
