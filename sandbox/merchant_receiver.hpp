#pragma once
// A demo merchant endpoint for paymux's webhooks (Standard Webhooks 1.0), written from the
// specification with its own HMAC code. Mounted under /_sandbox/merchant:
//   POST   /_sandbox/merchant/webhooks   verifies webhook-id, webhook-timestamp (within
//                                       tolerance_seconds of now) and webhook-signature (any
//                                       v1,<base64 HMAC-SHA256> of any configured secret); 200
//                                       {"received":true} when it verifies, 400 {"error"} otherwise.
//                                       Sandbox faults apply ({"gateway":"merchant",...} on
//                                       POST /_sandbox/faults), to watch paymux retry.
//   GET    /_sandbox/merchant/events     {"events":[{"webhook_id","type","timestamp","received_at_ms",
//                                       "duplicate","event"}],"count","unique","rejected"} oldest first
//   DELETE /_sandbox/merchant/events     forgets them
// Config section `merchant:` (optional):
//   webhook_secret: "whsec_..."        default: the demo secret below (config/sandbox.yaml uses it)
//   old_webhook_secret: "whsec_..."    also accepted (a rotation)
//   tolerance_seconds: 300
//   max_events: 10000                  the oldest are forgotten beyond this
#include "sandbox/sandbox.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>
#include <string_view>
#include <vector>

namespace paymux::sandbox::merchant {

inline constexpr std::string_view kName = "merchant";
// base64("paymux-sandbox-demo-merchant"): a demo value, not a secret.
inline constexpr std::string_view kDemoSecret = "whsec_cGF5bXV4LXNhbmRib3gtZGVtby1tZXJjaGFudA==";

// ---- The Standard Webhooks check (inline: the unit tests use it without the simulator) ----

inline bool b64_decode(std::string_view in, std::string& out) {
  if (in.empty() || in.size() % 4 != 0) return false;
  out.assign(in.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return false;
  std::size_t pad = 0;
  while (pad < 2 && in[in.size() - 1 - pad] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return true;
}

// base64(HMAC-SHA256(base64-decoded secret after whsec_, id.timestamp.body)); empty for a bad secret.
inline std::string expected_signature(std::string_view secret, std::string_view id, std::string_view ts,
                                      std::string_view body) {
  constexpr std::string_view prefix = "whsec_";
  std::string key;
  if (secret.substr(0, prefix.size()) != prefix || !b64_decode(secret.substr(prefix.size()), key)) return {};
  std::string content;
  content.append(id).append(".").append(ts).append(".").append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(content.data()), content.size(), mac, &len))
    return {};
  std::string out(4 * ((len + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), mac, static_cast<int>(len));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// True when one of the header's space-separated v1 signatures is the HMAC of id.timestamp.body
// under one of the secrets (compared in constant time).
inline bool verify_signature(const std::vector<std::string>& secrets, std::string_view id, std::string_view timestamp,
                             std::string_view body, std::string_view signature_header) {
  std::vector<std::string> expected;
  for (const auto& s : secrets)
    if (auto e = expected_signature(s, id, timestamp, body); !e.empty()) expected.push_back(std::move(e));
  std::size_t pos = 0;
  while (pos < signature_header.size()) {
    auto end = signature_header.find(' ', pos);
    if (end == std::string_view::npos) end = signature_header.size();
    const auto entry = signature_header.substr(pos, end - pos);
    pos = end + 1;
    if (entry.substr(0, 3) != "v1,") continue;  // other versions are not ours to check
    const auto given = entry.substr(3);
    for (const auto& e : expected)
      if (e.size() == given.size() && CRYPTO_memcmp(e.data(), given.data(), e.size()) == 0) return true;
  }
  return false;
}

std::unique_ptr<Simulator> make_simulator(Sandbox& frame, const ConfigNode& section);

inline SimulatorFactory factory() { return {std::string(kName), make_simulator}; }

}  // namespace paymux::sandbox::merchant
