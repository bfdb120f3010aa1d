#pragma once
// Reads the top-level members of a JSON object keeping every scalar's exact text: numbers are not
// turned into doubles, so a gateway's "358320.00" stays "358320.00" and is parsed exactly into minor
// units later. Nested objects and arrays are skipped.
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace paymux::json {

struct FlatMember {
  enum class Kind { string, number, boolean, null } kind = Kind::null;
  std::string text;  // unescaped string, or the number's literal text, or "true"/"false"
};
using FlatObject = std::map<std::string, FlatMember, std::less<>>;

std::optional<FlatObject> parse_flat_object(std::string_view text);

}  // namespace paymux::json
