#pragma once
// QR codes for the checkout page, encoded by libqrencode and drawn as inline SVG (no image
// request, nothing for a Content-Security-Policy to allow).
#include <optional>
#include <string>
#include <string_view>

namespace paymux::api {

// An <svg> of the QR code of `text` (byte mode, error correction level M, a quiet zone of four
// modules): one path of the dark modules on a white square, in a viewBox of one unit per
// module. `label` becomes its accessible name (escaped). nullopt when the text is empty or too
// long for any QR version.
std::optional<std::string> qr_svg(std::string_view text, std::string_view label);

}  // namespace paymux::api
