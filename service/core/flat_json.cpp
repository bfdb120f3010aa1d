#include "service/core/flat_json.hpp"

#include <boost/json/basic_parser_impl.hpp>

namespace paymux::json {
namespace {

struct Handler {
  static constexpr std::size_t max_object_size = 10000;
  static constexpr std::size_t max_array_size = 100000;
  static constexpr std::size_t max_key_size = 1000;
  static constexpr std::size_t max_string_size = 100000;

  FlatObject out;
  int depth = 0;
  std::string key, str, num;

  void put(FlatMember::Kind kind, std::string text) {
    if (depth == 1) out[pending_key] = FlatMember{kind, std::move(text)};
  }

  bool on_document_begin(boost::json::error_code&) { return true; }
  bool on_document_end(boost::json::error_code&) { return true; }
  bool on_object_begin(boost::json::error_code&) {
    ++depth;
    return true;
  }
  bool on_object_end(std::size_t, boost::json::error_code&) {
    --depth;
    return true;
  }
  bool on_array_begin(boost::json::error_code&) {
    ++depth;
    return true;
  }
  bool on_array_end(std::size_t, boost::json::error_code&) {
    --depth;
    return true;
  }
  bool on_key_part(boost::json::string_view s, std::size_t, boost::json::error_code&) {
    if (depth == 1) key.append(s.data(), s.size());
    return true;
  }
  bool on_key(boost::json::string_view s, std::size_t, boost::json::error_code&) {
    if (depth == 1) {
      key.append(s.data(), s.size());
      pending_key = std::move(key);
      key.clear();
    }
    return true;
  }
  bool on_string_part(boost::json::string_view s, std::size_t, boost::json::error_code&) {
    str.append(s.data(), s.size());
    return true;
  }
  bool on_string(boost::json::string_view s, std::size_t, boost::json::error_code&) {
    str.append(s.data(), s.size());
    put(FlatMember::Kind::string, std::move(str));
    str.clear();
    return true;
  }
  bool on_number_part(boost::json::string_view s, boost::json::error_code&) {
    num.append(s.data(), s.size());
    return true;
  }
  bool number(boost::json::string_view s) {
    num.append(s.data(), s.size());
    put(FlatMember::Kind::number, std::move(num));
    num.clear();
    return true;
  }
  bool on_int64(std::int64_t, boost::json::string_view s, boost::json::error_code&) { return number(s); }
  bool on_uint64(std::uint64_t, boost::json::string_view s, boost::json::error_code&) { return number(s); }
  bool on_double(double, boost::json::string_view s, boost::json::error_code&) { return number(s); }
  bool on_bool(bool b, boost::json::error_code&) {
    put(FlatMember::Kind::boolean, b ? "true" : "false");
    return true;
  }
  bool on_null(boost::json::error_code&) {
    put(FlatMember::Kind::null, "");
    return true;
  }
  bool on_comment_part(boost::json::string_view, boost::json::error_code&) { return true; }
  bool on_comment(boost::json::string_view, boost::json::error_code&) { return true; }

  std::string pending_key;
};

}  // namespace

std::optional<FlatObject> parse_flat_object(std::string_view text) {
  boost::json::basic_parser<Handler> p{boost::json::parse_options{}};
  boost::json::error_code ec;
  auto n = p.write_some(false, text.data(), text.size(), ec);
  if (ec || n != text.size()) return std::nullopt;
  // The document must be an object: its first significant character is '{'.
  auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || text[first] != '{') return std::nullopt;
  return std::move(p.handler().out);
}

}  // namespace paymux::json
