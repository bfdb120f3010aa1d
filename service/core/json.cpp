#include "service/core/json.hpp"

#include <algorithm>
#include <vector>

namespace paymux::json {
namespace {

void write_canonical(const bj::value& v, std::string& out) {
  if (v.is_object()) {
    const auto& o = v.get_object();
    std::vector<const bj::key_value_pair*> items;
    items.reserve(o.size());
    for (const auto& kv : o) items.push_back(&kv);
    std::sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->key() < b->key(); });
    out.push_back('{');
    bool first = true;
    for (auto* kv : items) {
      if (!first) out.push_back(',');
      first = false;
      out += bj::serialize(bj::value(kv->key()));
      out.push_back(':');
      write_canonical(kv->value(), out);
    }
    out.push_back('}');
  } else if (v.is_array()) {
    out.push_back('[');
    bool first = true;
    for (const auto& e : v.get_array()) {
      if (!first) out.push_back(',');
      first = false;
      write_canonical(e, out);
    }
    out.push_back(']');
  } else {
    out += bj::serialize(v);
  }
}

}  // namespace

std::string canonical(const bj::value& v) {
  std::string out;
  write_canonical(v, out);
  return out;
}

bj::value parse_stored(std::string_view text) {
  if (text.empty()) return nullptr;
  boost::system::error_code ec;
  auto v = bj::parse(text, ec);
  return ec ? bj::value(nullptr) : v;
}

std::string_view str(const bj::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string()) return {};
  return it->value().get_string();
}

const bj::object* obj(const bj::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_object()) return nullptr;
  return &it->value().get_object();
}

}  // namespace paymux::json
