#include "service/core/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <pthread.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace paymux::crypto {
namespace {

std::string digest_hex(const EVP_MD* md, std::string_view data, bool upper) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1)
    throw std::runtime_error("digest failed");
  static constexpr char lower_digits[] = "0123456789abcdef";
  static constexpr char upper_digits[] = "0123456789ABCDEF";
  const char* digits = upper ? upper_digits : lower_digits;
  std::string hex(len * 2, '0');
  for (unsigned i = 0; i < len; ++i) {
    hex[2 * i] = digits[out[i] >> 4];
    hex[2 * i + 1] = digits[out[i] & 0xF];
  }
  return hex;
}

}  // namespace

std::string sha256_hex(std::string_view data, bool upper) { return digest_hex(EVP_sha256(), data, upper); }
std::string md5_hex(std::string_view data, bool upper) { return digest_hex(EVP_md5(), data, upper); }

std::string hmac_sha256_raw(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len))
    throw std::runtime_error("hmac failed");
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string base64_encode(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

bool base64_decode(std::string_view text, std::string& out) {
  if (text.size() % 4 != 0) return false;
  out.assign(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return false;
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return true;
}

bool equal_ct(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool equal_hex_ct(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]);
    unsigned char y = static_cast<unsigned char>(b[i]);
    // fold A-Z to a-z without branching on the data
    x |= static_cast<unsigned char>(((x - 'A') < 26u) << 5);
    y |= static_cast<unsigned char>(((y - 'A') < 26u) << 5);
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

namespace {

// Bumped in a forked child, so that it never hands out the bytes its parent's pools still hold.
std::atomic<unsigned> fork_generation{0};
const bool fork_hook = [] {
  pthread_atfork(nullptr, nullptr, [] { fork_generation.fetch_add(1, std::memory_order_relaxed); });
  return true;
}();

void rand_or_abort(unsigned char* out, std::size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) std::abort();
}

}  // namespace

void random_bytes(void* out, std::size_t n) {
  // Small requests (an id's 16 bytes, a nonce) come from a pool per thread that one RAND_bytes call
  // fills: each RAND_bytes call costs a getpid() for OpenSSL's fork check, a system call per id.
  // Bytes handed out are wiped from the pool.
  constexpr std::size_t kPool = 4096, kMaxFromPool = 64;
  auto* dst = static_cast<unsigned char*>(out);
  if (n > kMaxFromPool) return rand_or_abort(dst, n);
  thread_local unsigned char pool[kPool];
  thread_local std::size_t left = 0;
  thread_local unsigned generation = 0;
  const unsigned now = fork_generation.load(std::memory_order_relaxed);
  if (left < n || generation != now) {
    rand_or_abort(pool, kPool);
    left = kPool;
    generation = now;
  }
  unsigned char* from = pool + (kPool - left);
  std::memcpy(dst, from, n);
  OPENSSL_cleanse(from, n);
  left -= n;
}

}  // namespace paymux::crypto
