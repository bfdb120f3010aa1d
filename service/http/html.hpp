#pragma once
// Text and attribute values in HTML (paymux's checkout pages, the sandbox's gateway pages).
#include <string>
#include <string_view>

namespace paymux::http {

inline std::string escape_html(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

}  // namespace paymux::http
