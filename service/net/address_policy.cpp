#include "service/net/address_policy.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <string>

namespace paymux::net {
namespace {

bool in_v4(std::uint32_t a, std::uint32_t net, int bits) {
  const std::uint32_t mask = bits == 0 ? 0 : ~std::uint32_t(0) << (32 - bits);
  return (a & mask) == (net & mask);
}

constexpr std::uint32_t v4(unsigned a, unsigned b, unsigned c, unsigned d) { return (a << 24) | (b << 16) | (c << 8) | d; }

bool non_public_v4(std::uint32_t a) {
  struct Net {
    std::uint32_t net;
    int bits;
  };
  static constexpr std::array<Net, 15> nets{{
      {v4(0, 0, 0, 0), 8},        // "this network", unspecified
      {v4(10, 0, 0, 0), 8},       // private
      {v4(100, 64, 0, 0), 10},    // carrier-grade NAT
      {v4(127, 0, 0, 0), 8},      // loopback
      {v4(169, 254, 0, 0), 16},   // link-local (cloud metadata services live here)
      {v4(172, 16, 0, 0), 12},    // private
      {v4(192, 0, 0, 0), 24},     // IETF protocol assignments
      {v4(192, 0, 2, 0), 24},     // documentation
      {v4(192, 88, 99, 0), 24},   // 6to4 relay anycast
      {v4(192, 168, 0, 0), 16},   // private
      {v4(198, 18, 0, 0), 15},    // benchmarking
      {v4(198, 51, 100, 0), 24},  // documentation
      {v4(203, 0, 113, 0), 24},   // documentation
      {v4(224, 0, 0, 0), 4},      // multicast
      {v4(240, 0, 0, 0), 4},      // reserved, broadcast
  }};
  for (const auto& n : nets)
    if (in_v4(a, n.net, n.bits)) return true;
  return false;
}

}  // namespace

bool is_non_public_address(const boost::asio::ip::address& a) {
  if (a.is_v4()) return non_public_v4(a.to_v4().to_uint());
  const auto v6 = a.to_v6();
  if (v6.is_v4_mapped()) return non_public_v4(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_uint());
  const auto b = v6.to_bytes();
  auto embedded = [&](std::size_t at) {
    return (std::uint32_t(b[at]) << 24) | (std::uint32_t(b[at + 1]) << 16) | (std::uint32_t(b[at + 2]) << 8) |
           std::uint32_t(b[at + 3]);
  };
  bool zero96 = true;
  for (std::size_t i = 0; i < 12; ++i) zero96 = zero96 && b[i] == 0;
  if (zero96) return true;  // ::, ::1 and the deprecated IPv4-compatible form
  // NAT64 well-known prefix 64:ff9b::/96: judged by the IPv4 address it carries.
  static constexpr std::array<unsigned char, 12> nat64{0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::equal(nat64.begin(), nat64.end(), b.begin())) return non_public_v4(embedded(12));
  if (b[0] == 0x20 && b[1] == 0x02) return non_public_v4(embedded(2));  // 6to4
  if ((b[0] & 0xfe) == 0xfc) return true;                                 // unique local fc00::/7
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return true;                 // link-local fe80::/10
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return true;                 // site-local (deprecated)
  if (b[0] == 0xff) return true;                                          // multicast
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return true;  // documentation
  if (b[0] == 0x01 && b[1] == 0x00 && b[2] == 0 && b[3] == 0 && b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 0)
    return true;  // discard-only 100::/64
  return false;
}

std::optional<bool> host_is_non_public(std::string_view host) {
  std::string h(host);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!h.empty() && h.back() == '.') h.pop_back();  // "localhost." is localhost
  boost::system::error_code ec;
  const auto addr = boost::asio::ip::make_address(h, ec);
  if (!ec) return is_non_public_address(addr);
  constexpr std::string_view local = ".localhost";
  if (h == "localhost" || (h.size() > local.size() && h.compare(h.size() - local.size(), local.size(), local) == 0))
    return true;  // RFC 6761: always loopback
  return std::nullopt;
}

std::string url_host(std::string_view url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed || !parsed->has_authority()) return {};
  return std::string(parsed->host_address());
}

}  // namespace paymux::net
