#pragma once
// Which destinations a merchant-configured URL may reach (the SSRF guard of merchant webhooks):
// loopback, private, link-local and other non-public addresses are refused unless the merchant's
// configuration allows them. Literal addresses are judged when the configuration is read; names
// are judged after each resolution, on the addresses actually connected to.
#include <boost/asio/ip/address.hpp>

#include <optional>
#include <string_view>

namespace paymux::net {

// Loopback, RFC 1918 / unique-local, link-local (cloud metadata included), CGNAT, unspecified,
// multicast, broadcast, "this network", benchmarking, reserved; IPv6 forms embedding an IPv4
// address (mapped, compatible, NAT64, 6to4) are judged by that address.
bool is_non_public_address(const boost::asio::ip::address& a);

// For the host of a URL: true/false for an IP literal (with or without brackets) and for
// "localhost" names; nullopt for other names (decided after resolution).
std::optional<bool> host_is_non_public(std::string_view host);

// The host of an absolute http(s) URL (brackets removed), or empty when it has none.
std::string url_host(std::string_view url);

}  // namespace paymux::net
