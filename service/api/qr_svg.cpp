#include "service/api/qr_svg.hpp"

#include "service/http/html.hpp"

#include <qrencode.h>

#include <memory>

namespace paymux::api {

using http::escape_html;

std::optional<std::string> qr_svg(std::string_view text, std::string_view label) {
  if (text.empty()) return std::nullopt;
  std::unique_ptr<QRcode, decltype(&QRcode_free)> code(
      QRcode_encodeData(static_cast<int>(text.size()), reinterpret_cast<const unsigned char*>(text.data()), 0,
                        QR_ECLEVEL_M),
      &QRcode_free);
  if (!code) return std::nullopt;
  constexpr int quiet = 4;
  const int width = code->width;
  const int side = width + 2 * quiet;
  const auto dark = [&](int x, int y) { return (code->data[y * width + x] & 1) != 0; };
  std::string path;
  path.reserve(static_cast<std::size_t>(width) * width * 4);
  for (int y = 0; y < width; ++y) {
    for (int x = 0; x < width;) {
      if (!dark(x, y)) {
        ++x;
        continue;
      }
      int run = 1;
      while (x + run < width && dark(x + run, y)) ++run;
      // One rectangle per horizontal run of dark modules.
      path += 'M';
      path += std::to_string(x + quiet);
      path += ' ';
      path += std::to_string(y + quiet);
      path += 'h';
      path += std::to_string(run);
      path += "v1h-";
      path += std::to_string(run);
      path += 'z';
      x += run;
    }
  }
  const std::string s = std::to_string(side);
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"qr\" viewBox=\"0 0 " + s + " " + s +
         "\" role=\"img\" aria-label=\"" + escape_html(label) + "\" shape-rendering=\"crispEdges\">"
         "<rect width=\"" + s + "\" height=\"" + s + "\" fill=\"#fff\"/><path fill=\"#000\" d=\"" + path +
         "\"/></svg>";
}

}  // namespace paymux::api
