#pragma once
// Hashes, MACs, constant-time comparison and randomness, on OpenSSL. Shared by the service core and
// the providers; the sandbox keeps its own signing code on purpose.
#include <cstdint>
#include <string>
#include <string_view>

namespace paymux::crypto {

std::string sha256_hex(std::string_view data, bool upper = false);
std::string md5_hex(std::string_view data, bool upper = false);
std::string hmac_sha256_raw(std::string_view key, std::string_view data);
std::string base64_encode(std::string_view raw);
// nullopt-free: returns false on malformed input
bool base64_decode(std::string_view text, std::string& out);

// Constant-time equality: the time taken depends only on the lengths.
bool equal_ct(std::string_view a, std::string_view b);
// Constant-time, ASCII case-insensitive equality, for hex signatures whose case varies by SDK.
bool equal_hex_ct(std::string_view a, std::string_view b);

// Cryptographically random bytes (OpenSSL RAND_bytes; up to 64 from a pool per thread that one
// call fills); aborts if the generator fails.
void random_bytes(void* out, std::size_t n);

}  // namespace paymux::crypto
