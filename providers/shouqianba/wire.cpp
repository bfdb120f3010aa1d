#include "providers/shouqianba/wire.hpp"

#include "service/core/crypto.hpp"

#include <boost/json/parse.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>

namespace paymux::providers::shouqianba {

namespace bj = boost::json;

std::string sign(std::string_view body, std::string_view key) {
  std::string data(body);
  data.append(key);
  return crypto::md5_hex(data, /*upper=*/false);
}

std::string authorization(std::string_view sn, std::string_view body, std::string_view key) {
  return std::string(sn) + " " + sign(body, key);
}

std::optional<std::string> fen(std::int64_t minor_units) {
  if (minor_units <= 0) return std::nullopt;
  auto s = std::to_string(minor_units);
  if (s.size() > 10) return std::nullopt;
  return s;
}

namespace {

// Every value in the answers is a string (section 3 "约定"); numbers are taken as their text too.
std::string text_of(const bj::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v) return {};
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_int64()) return std::to_string(v->get_int64());
  if (v->is_uint64()) return std::to_string(v->get_uint64());
  return {};
}

}  // namespace

std::string Answer::data_field(std::string_view key) const { return text_of(data, key); }

Answer read_answer(std::string_view body) {
  Answer a;
  boost::system::error_code ec;
  auto v = bj::parse(body, ec);
  if (ec || !v.is_object()) return a;
  const auto& o = v.get_object();
  a.result_code = text_of(o, "result_code");
  a.error_code = text_of(o, "error_code");
  a.error_message = text_of(o, "error_message");
  if (a.result_code == "400") {
    a.level = Answer::Level::client_error;
    return a;
  }
  if (a.result_code != "200") {
    // 500 and anything unexpected: the gateway did not say what happened.
    a.level = a.result_code.empty() ? Answer::Level::malformed : Answer::Level::server_error;
    return a;
  }
  auto* biz = o.if_contains("biz_response");
  if (!biz || !biz->is_object()) return a;  // malformed
  const auto& b = biz->get_object();
  a.biz_result_code = text_of(b, "result_code");
  a.biz_error_code = text_of(b, "error_code");
  a.biz_error_message = text_of(b, "error_message");
  if (auto* d = b.if_contains("data"); d && d->is_object())
    a.data = d->get_object();
  else
    a.data = b;  // the field list of section 3.1 puts the order fields in biz_response itself
  if (a.biz_result_code.empty()) return a;  // malformed
  a.level = Answer::Level::ok;
  return a;
}

OrderMapping map_order_status(std::string_view s) {
  if (s == "CREATED") return {std::nullopt};
  if (s == "PAID" || s == "PARTIAL_REFUNDED" || s == "REFUNDED" || s == "REFUND_ERROR")
    return {PaymentStatus::succeeded};
  if (s == "PAY_CANCELED") return {PaymentStatus::failed};
  if (s == "CANCELED") return {PaymentStatus::canceled};
  if (s == "PAY_ERROR" || s == "CANCEL_ERROR") return {std::nullopt, true};
  return {std::nullopt, false, false};
}

PayOutcome map_pay_result(std::string_view c) {
  if (c == "PAY_SUCCESS") return PayOutcome::succeeded;
  if (c == "PAY_FAIL" || c == "FAIL") return PayOutcome::failed;
  if (c == "PAY_FAIL_ERROR") return PayOutcome::review;
  return PayOutcome::in_progress;  // PAY_IN_PROGRESS and anything the document does not name
}

bool is_order_not_exists(std::string_view e) { return e == "UPAY_ORDER_NOT_EXISTS" || e == "UPAY_ORDER_NOT_EXIST"; }

CancelOutcome map_cancel_result(std::string_view c, std::string_view e) {
  if (c == "CANCEL_SUCCESS" || c == "CANCEL_ABORT_SUCCESS") return CancelOutcome::canceled;
  if (c == "FAIL" && is_order_not_exists(e)) return CancelOutcome::no_order;
  if (c == "FAIL") return CancelOutcome::refused;
  return CancelOutcome::review;  // CANCEL_ERROR, CANCEL_ABORT_ERROR, anything else
}

RefundOutcome map_refund_result(std::string_view c) {
  if (c == "REFUND_SUCCESS") return RefundOutcome::succeeded;
  if (c == "FAIL") return RefundOutcome::failed;
  return RefundOutcome::unknown;  // REFUND_ERROR: the channel's refund state is not known
}

namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

// PEM "BEGIN PUBLIC KEY" (X.509 SubjectPublicKeyInfo), or the bare base64 of it as the Java demos
// hand it out.
std::unique_ptr<EVP_PKEY, PkeyFree> load_public_key(std::string_view text) {
  std::string pem(text);
  if (pem.find("-----BEGIN") == std::string::npos) {
    std::string body;
    for (char c : pem)
      if (c != ' ' && c != '\n' && c != '\r' && c != '\t') body.push_back(c);
    pem = "-----BEGIN PUBLIC KEY-----\n";
    for (std::size_t i = 0; i < body.size(); i += 64) pem += body.substr(i, 64) + "\n";
    pem += "-----END PUBLIC KEY-----\n";
  }
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  std::unique_ptr<EVP_PKEY, PkeyFree> out(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (out && EVP_PKEY_base_id(out.get()) != EVP_PKEY_RSA) out.reset();
  return out;
}

}  // namespace

bool is_usable_public_key(std::string_view pem) { return load_public_key(pem) != nullptr; }

NotifyCheck verify_notification(std::string_view body, std::string_view auth, std::string_view pem) {
  auto key = load_public_key(pem);
  if (!key) return NotifyCheck::bad_key;
  // "<terminal_sn> <signature>" or the signature alone.
  auto sig_text = auth;
  if (auto sp = auth.rfind(' '); sp != std::string_view::npos) sig_text = auth.substr(sp + 1);
  std::string sig;
  if (sig_text.empty() || !crypto::base64_decode(sig_text, sig)) return NotifyCheck::bad_signature;
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1)
    return NotifyCheck::bad_key;
  const int ok = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                  reinterpret_cast<const unsigned char*>(body.data()), body.size());
  return ok == 1 ? NotifyCheck::valid : NotifyCheck::bad_signature;
}

}  // namespace paymux::providers::shouqianba
