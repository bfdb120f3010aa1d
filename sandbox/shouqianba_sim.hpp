#pragma once
// The Shouqianba (收钱吧) upay v2 simulator (document 003, 支付网关2.0; SIGNING.md "Shouqianba"),
// written from the document, not from paymux's client. Mounted under /shouqianba, so a client's
// api_domain is "<public_url>/shouqianba":
//   POST /shouqianba/terminal/activate    activate a terminal with an activation code (vendor-signed)
//   POST /shouqianba/terminal/checkin     a new terminal_key (check-in)
//   POST /shouqianba/upay/v2/pay          barcode payment, B scans C (2.付款)
//   POST /shouqianba/upay/v2/precreate    QR order, C scans B (6.预下单); /Upay/v2/precreate too
//   POST /shouqianba/upay/v2/query        by sn or client_sn (4.查询)
//   POST /shouqianba/upay/v2/cancel       by sn or client_sn (5.撤单)
//   POST /shouqianba/upay/v2/refund       partial, repeated, de-duplicated by refund_request_no (3.退款)
//   GET  /shouqianba/qr/{sn}              the page a precreate's qr_code points to: "Pay" / "Decline"
//   POST /shouqianba/qr/{sn}              action=pay|decline (form); auto=1 answers JSON
//                                         {"sn","client_sn","order_status","notified"} instead of HTML
// The document has no revoke endpoint; none is simulated.
//
// Transport (二.接口通讯): POST, JSON body; header `Authorization: <sn> <sign>` with
// sign = MD5(body bytes + key), lowercase hex (any case accepted). <sn>/key are terminal_sn /
// terminal_key for upay calls and check-in, vendor_sn / vendor_key for activation. Every answer is
// HTTP 200 with JSON: {"result_code":"400","error_code","error_message"} for communication errors
// (appendix 1: ILLEGAL_SIGN missing or wrong signature or unknown vendor; INVALID_TERMINAL unknown
// terminal; INVALID_PARAMS missing, mistyped (every request value is a JSON string), too long or
// malformed parameters, unknown payway, activation code not accepted; INVALID_BARCODE a dynamic_id
// that is not all digits), otherwise {"result_code":"200","biz_response":{"result_code",
// "error_code","error_message","data":{...}}}. Amounts are fen: digits only, no leading zero,
// at most 10 digits, > 0. The body's terminal_sn must be the signing terminal.
//
// Credentials (config section `shouqianba`, defaults in config/sandbox-gateways.yaml):
//   vendor  vendor_sn 91800001, vendor_key sandbox-shouqianba-vendor-key-0001
//   codes   activation_codes "76543210" (comma-separated; any listed code activates; the same
//           device_id again gets its existing terminal back)
//   terminal terminal_sn 100000330006324471, terminal_key sandbox-shouqianba-terminal-key-0001
// Check-in answers a NEW terminal_key; the previous key stays valid until the new one is first
// used (so a client whose check-in answer was lost retries with the old key and gets another new
// key; the last one issued is the pending one).
//
// Barcode outcomes, by the first four digits of dynamic_id (any length; payway 1 for a code
// starting 25-30 (Alipay), otherwise 3 (WeChat), unless the request gives payway):
//   1300 and anything else  PAY_SUCCESS; status SUCCESS, order_status PAID
//   1301  PAY_FAIL, error_code TRADE_FAILED; status FAIL_CANCELED, order_status PAY_CANCELED
//   1302  PAY_IN_PROGRESS (status IN_PROG, order_status CREATED); the 1st query still shows
//         CREATED, the 2nd query (and every later one) PAID
//   1303  PAY_IN_PROGRESS forever; cancel: CANCEL_SUCCESS, order_status CANCELED
//   1304  PAY_FAIL_ERROR; status FAIL_ERROR, order_status PAY_ERROR (queries say PAY_ERROR)
//   1305  the order is created (IN_PROG, CREATED) but the answer never comes: the connection is
//         held lost_answer_hold_ms (30 s) and closed unanswered; the 1st query shows PAID
//   1306  business FAIL, error_code INVALID_BARCODE (条码错误); no order is created
//   1307  PAY_IN_PROGRESS forever; cancel: CANCEL_ERROR, order_status CANCEL_ERROR
//   1308  PAY_IN_PROGRESS forever; cancel: CANCEL_ABORT_SUCCESS, order_status CANCELED
// A client_sn already used: FAIL CLIENT_SN_CONFLICT.
//
// Orders: query of an unknown order: FAIL with order_not_exist_code (default UPAY_ORDER_NOT_EXIST,
// appendix 5; the document's pseudo-code spells UPAY_ORDER_NOT_EXISTS). Cancel of CREATED or
// PAY_ERROR (per scenario), or of PAID without refunds (a reversal; cancel_paid_orders: false
// refuses instead): CANCEL_SUCCESS, CANCELED, net_amount 0; again on CANCELED: CANCEL_SUCCESS
// again; any other state: FAIL UPAY_CANCEL_INVALID_ORDER_STATE. Refund of PAID / PARTIAL_REFUNDED:
// REFUND_SUCCESS, net_amount reduced, PARTIAL_REFUNDED or REFUNDED; other states: FAIL
// UPAY_REFUND_INVALID_ORDER_STATE; more than net_amount: FAIL REFUND_AMT_NOT_EQUAL_TOTAL; a known
// refund_request_no with the same amount: REFUND_SUCCESS again without refunding twice, with
// another amount: FAIL REFUND_REQUEST_CONFLICT. A precreate order unpaid after
// precreate_expire_seconds (240, not scaled) becomes PAY_CANCELED (FAIL_CANCELED).
//
// Notifications (SIGNING.md): when pay/precreate carried notify_url, every move of the order to
// PAID, PAY_CANCELED, PAY_ERROR or CANCELED POSTs the order's data object (the query answer's
// `data`) as JSON, with `Authorization: <terminal_sn> <base64 RSA SHA256withRSA PKCS#1 v1.5 over
// the body>`, re-sent after notify_retry_seconds [1, 5, 30, 600] / time_factor until the answer is
// HTTP 200 with the body `success`. Signing key: notify_private_key_file, default the sandbox test
// key below; its public key is sandbox/keys/shouqianba_sandbox_test_public.pem (TEST KEY PAIR, not
// Shouqianba's).
//
// Control API (JSON) for tests:
//   GET  /_sandbox/shouqianba/orders/{client_sn}        {"client_sn","calls":{"pay","precreate","query",
//                                                       "cancel","refund"},"order":{...}|null}; the
//                                                       order has its refunds[] and notify {...}
//                                                       (counts every authenticated call naming the
//                                                       client_sn, or an sn of its order)
//   GET  /_sandbox/shouqianba/orders?sn=S               the same, found by sn
//   GET  /_sandbox/shouqianba/terminals                 {"terminals":[{terminal_sn,device_id,
//                                                       checkins,pending_key}]} (no keys)
//   POST /_sandbox/shouqianba/orders/{client_sn}/notify {"forge_signature":true,"bare_signature":true,
//                                                       "url","repeat":1} one extra notification now
//                                                       -> {"body","authorization","responses":[...]}
// Fault injection (POST /_sandbox/faults, gateway "shouqianba") applies to the API endpoints; a
// request a fault answered never reached the gateway and is not counted in `calls`.
//
// The wire rules below are inline so that unit tests check them without the sandbox binary.
#include "sandbox/sandbox.hpp"
#include "service/core/crypto.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace paymux::sandbox::shouqianba {

// ---- 2.签名算法: sign = MD5(body + key), lowercase hex ----

inline std::string sign(std::string_view body, std::string_view key) {
  std::string data;
  data.reserve(body.size() + key.size());
  data.append(body);
  data.append(key);
  return crypto::md5_hex(data, false);
}

// Case-insensitive, constant time for a given length.
inline bool sign_matches(std::string_view body, std::string_view key, std::string_view received) {
  if (received.size() != 32) return false;
  return crypto::equal_hex_ct(sign(body, key), received);
}

// "Authorization: <sn> <sign>" -> (sn, sign); nullopt unless exactly two non-empty parts.
inline std::optional<std::pair<std::string_view, std::string_view>> parse_authorization(std::string_view h) {
  auto sp = h.find(' ');
  if (sp == std::string_view::npos || sp == 0) return std::nullopt;
  auto sn = h.substr(0, sp);
  auto sig = h.substr(sp + 1);
  if (sig.empty() || sig.find(' ') != std::string_view::npos) return std::nullopt;
  return std::make_pair(sn, sig);
}

// ---- Amounts: fen, "以分为单位,不超过10位" ----

inline bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// "1" .. "9999999999" -> fen; nullopt for anything else (signs, decimals, leading zeros, zero).
inline std::optional<std::int64_t> parse_fen(std::string_view s) {
  if (!all_digits(s) || s.size() > 10 || s[0] == '0') return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  return v;
}

// ---- Barcode outcomes (see the header comment) ----

enum class Outcome {
  success,             // 1300 and the rest
  declined,            // 1301
  paid_after_queries,  // 1302
  pending_cancelable,  // 1303
  pay_error,           // 1304
  lost_answer,         // 1305
  business_fail,       // 1306
  cancel_error,        // 1307
  cancel_abort,        // 1308
};

inline Outcome barcode_outcome(std::string_view dynamic_id) {
  if (dynamic_id.size() < 4 || dynamic_id.substr(0, 3) != "130") return Outcome::success;
  switch (dynamic_id[3]) {
    case '1': return Outcome::declined;
    case '2': return Outcome::paid_after_queries;
    case '3': return Outcome::pending_cancelable;
    case '4': return Outcome::pay_error;
    case '5': return Outcome::lost_answer;
    case '6': return Outcome::business_fail;
    case '7': return Outcome::cancel_error;
    case '8': return Outcome::cancel_abort;
    default: return Outcome::success;
  }
}

// The query that first reports PAID (1-based), for the outcomes that settle on queries; 0: none.
inline int paid_on_query(Outcome o) {
  switch (o) {
    case Outcome::paid_after_queries: return 2;
    case Outcome::lost_answer: return 1;
    default: return 0;
  }
}

// Appendix 6 payway from the barcode: Alipay codes start 25-30, WeChat 10-15.
inline std::string_view payway_of_barcode(std::string_view dynamic_id) {
  if (dynamic_id.size() >= 2) {
    int two = (dynamic_id[0] - '0') * 10 + (dynamic_id[1] - '0');
    if (two >= 25 && two <= 30) return "1";
  }
  return "3";
}

inline bool known_payway(std::string_view p) { return p == "1" || p == "3" || p == "4" || p == "5"; }

// ---- Notifications: RSA SHA256withRSA (PKCS#1 v1.5) over the raw body, base64 ----

// The sandbox's own TEST key pair (public half: sandbox/keys/shouqianba_sandbox_test_public.pem).
// It signs sandbox notifications only; it is not Shouqianba's key and protects nothing.
inline constexpr std::string_view kTestPrivateKeyPem = R"(-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAuikJGhLuVaFT8/hPCYLDPWnBfOFipF55Mvr+dqGU6O0UwHrS
dMloSEv9GmA4COHHLRrKseXaT2A6LJB7GCJg7WirRsqPHUtQpjN+BYz0GvoR473L
sEmpEGFHVb22UO1HVPsIfEVEW9Ot2Sw0/gP57nfzaF8O50AwTJ7xR5pEOhej3Yoa
7jpLnk4MtZc0O0WT29L14OHQg87o58d5qKQwz0nhENBOlBa4v3zTP12fYiUlmLoJ
aguG/xthiL610bgxR74xLO88KqGeGDgp8/e7bnfGmIhKBrsRCmdzRw9LxX/b0sB9
eDwcRhQ50VccecIVd/WRy8gxWkU/AJwFNyBwfwIDAQABAoIBAC8Q9/GlLqfsuXaZ
5ZXAf09UISzLKS7oidkHV3Wz5Zu8cT4272XClECPIcdc413vg3WWa//tXrQp3pts
zgpsirgLeh5UUTm1VIcoxqhtmjwF1KcRUeHYxctT5P67D9DHJP1J2LveoWlcC/y3
7g/4/mQ55IsTWYfDFVMR7mvNh4luCUDyl5qepJcnwH3jRn3Vx2pXqpirnXDDw6SC
/+7RRMP3qpT0pwj2SXDYC33dnBaDAJOxGiZPuzY2LoJhw/jiN2vlClWGXZmQ4HbL
r6dKlZqlAGAAd/Oy0Fs05HMpRSa3arSYEh1w5CDsId4w+Z+ywesdoZ2yBzymGTXZ
zFlThMUCgYEA3vDLI7VxkfV/k/AwEokPFlqCC/pYif/5iZvwDWCcDm0kS7VuUy/+
jygh8KfqRmCoj12TyswgfzPuEhrG7PIyw3+mkdHLwiAQ6xf0NqVS89J+hjfkLx5I
w56ffOiCbaDz6WfQFthtHpn3xS1BQH4G3j2DwxjQFU2Qxy4fE4SB4asCgYEA1cP/
r24FbtxphsRHUmCrwKBI05XePc2Q2EoMDfQqaLVeo8kTHAkE2fOpZa/WQoA63ltS
R54swy5GgYSJRcTrxewtL+/RvHZSd0K6tUx2JywTKTPMs220/egqcksmOGj3XWLa
uppaxj2F8bo8SVgQEs6EbcyFeJfEESw22BRfwH0CgYBh9rFs6YgUOSpsWXjmTC/D
BNZsaP+K9F40p78eQbuRY0g1tG3cRBS510rCsyZw8nxfMyGEVZpaCvmsHvQWnn7M
BUWugd/lV63XgFkhwhfnaDGMzPaJ9ebHfuZaPtlBTx6fC60WvNeGQOXtUOuBaV+f
PKyviDG3irP5sjyZmPpxrQKBgBT07ycquRuiPjI5Iejgk1YCIMGlirEyawXZVI81
pca4KTwTZW01MSWQ7sWKVI4Wdi8AcvOUfTzxV3YxISgW4yp3OgLeFwjL7M/GWfmW
MmsqtgIvEt1wXvMZhLfJyEh1efLM0zbCFS4kL/J/2JM0L/c4CeGd0GP/NPieBg5v
COgdAoGAVhkfc2w5etC4idaLeVsI07vdBcojP3qqiVLoAio1YEThPB/uxGWQgGd/
kc2Jo8YjC+g+nNSmJU4Y47ylztn748yW3zJYAHjrrYZCDpFGnUGfLxKGouwFwxe6
FSC5f8u/4d9uj7TlLGAO0jnz62gj55ingJjhLaZD+tDYpyLGbU4=
-----END RSA PRIVATE KEY-----
)";

struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// A PEM private key (PKCS#1 or PKCS#8) or public key (SubjectPublicKeyInfo); null when unreadable.
inline Pkey load_pem_key(std::string_view pem, bool is_private) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  if (!bio) return nullptr;
  EVP_PKEY* k = is_private ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
                           : PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  return Pkey(k);
}

// base64(SHA256withRSA(body)); empty on failure.
inline std::string rsa_sign_base64(EVP_PKEY* key, std::string_view body) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1) return {};
  std::size_t len = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(body.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, data, body.size()) != 1) return {};
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, data, body.size()) != 1) return {};
  sig.resize(len);
  return crypto::base64_encode(sig);
}

inline bool rsa_verify_base64(EVP_PKEY* key, std::string_view body, std::string_view signature_b64) {
  std::string sig;
  if (!crypto::base64_decode(signature_b64, sig) || sig.empty()) return false;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(body.data()), body.size()) == 1;
}

// A notification is received when answered HTTP 200 with the body "success" (surrounding white
// space ignored).
inline bool acknowledged(unsigned status, std::string_view body) {
  while (!body.empty() && (body.front() == ' ' || body.front() == '\n' || body.front() == '\r' || body.front() == '\t'))
    body.remove_prefix(1);
  while (!body.empty() && (body.back() == ' ' || body.back() == '\n' || body.back() == '\r' || body.back() == '\t'))
    body.remove_suffix(1);
  return status == 200 && body == "success";
}

// ---- The simulator ----

inline constexpr std::string_view kName = "shouqianba";

// Builds the simulator from its config section (absent: the defaults):
//   vendors: [{vendor_sn, vendor_key}]                 # sign /terminal/activate
//   activation_codes: "76543210"                      # comma-separated
//   terminals: [{terminal_sn, terminal_key}]           # ready without activation
//   store_id: "00293001928483902"
//   cancel_paid_orders: true                           # cancel reverses a paid order without refunds
//   order_not_exist_code: UPAY_ORDER_NOT_EXIST
//   lost_answer_hold_ms: 30000                         # 1305: how long the pay answer is held back
//   precreate_expire_seconds: 240                      # unpaid QR orders close after this (not scaled)
//   notify_retry_seconds: [1, 5, 30, 600]              # waits between sends (gateway time)
//   notify_timeout_ms: 5000
//   notify_private_key_file: ""                        # PEM; empty: the sandbox test key
//   max_orders: 200000                                 # the oldest are forgotten beyond this
std::unique_ptr<Simulator> make_simulator(Sandbox& frame, const ConfigNode& section);

inline SimulatorFactory factory() { return {std::string(kName), make_simulator}; }

}  // namespace paymux::sandbox::shouqianba
