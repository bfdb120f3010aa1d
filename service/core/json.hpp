#pragma once
// JSON helpers: canonical serialization (for idempotency fingerprints) and safe field access.
#include <boost/json.hpp>

#include <string>
#include <string_view>

namespace paymux::json {

namespace bj = boost::json;

// Object keys sorted at every depth, no insignificant white space.
std::string canonical(const bj::value& v);

// Parses text that was written by paymux itself (stored columns); an empty string gives null.
bj::value parse_stored(std::string_view text);

std::string_view str(const bj::object& o, std::string_view key);
const bj::object* obj(const bj::object& o, std::string_view key);

}  // namespace paymux::json
