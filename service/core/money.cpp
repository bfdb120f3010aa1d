#include "service/core/money.hpp"

#include <algorithm>
#include <iterator>
#include <limits>

namespace paymux {
namespace {

// ISO 4217 active codes (list one, 2024) with their minor-unit exponents.
constexpr Currency kCurrencies[] = {
    {"AED", 2}, {"AFN", 2}, {"ALL", 2}, {"AMD", 2}, {"ANG", 2}, {"AOA", 2}, {"ARS", 2}, {"AUD", 2},
    {"AWG", 2}, {"AZN", 2}, {"BAM", 2}, {"BBD", 2}, {"BDT", 2}, {"BGN", 2}, {"BHD", 3}, {"BIF", 0},
    {"BMD", 2}, {"BND", 2}, {"BOB", 2}, {"BRL", 2}, {"BSD", 2}, {"BTN", 2}, {"BWP", 2}, {"BYN", 2},
    {"BZD", 2}, {"CAD", 2}, {"CDF", 2}, {"CHF", 2}, {"CLF", 4}, {"CLP", 0}, {"CNY", 2}, {"COP", 2},
    {"CRC", 2}, {"CUP", 2}, {"CVE", 2}, {"CZK", 2}, {"DJF", 0}, {"DKK", 2}, {"DOP", 2}, {"DZD", 2},
    {"EGP", 2}, {"ERN", 2}, {"ETB", 2}, {"EUR", 2}, {"FJD", 2}, {"FKP", 2}, {"GBP", 2}, {"GEL", 2},
    {"GHS", 2}, {"GIP", 2}, {"GMD", 2}, {"GNF", 0}, {"GTQ", 2}, {"GYD", 2}, {"HKD", 2}, {"HNL", 2},
    {"HTG", 2}, {"HUF", 2}, {"IDR", 2}, {"ILS", 2}, {"INR", 2}, {"IQD", 3}, {"IRR", 2}, {"ISK", 0},
    {"JMD", 2}, {"JOD", 3}, {"JPY", 0}, {"KES", 2}, {"KGS", 2}, {"KHR", 2}, {"KMF", 0}, {"KPW", 2},
    {"KRW", 0}, {"KWD", 3}, {"KYD", 2}, {"KZT", 2}, {"LAK", 2}, {"LBP", 2}, {"LKR", 2}, {"LRD", 2},
    {"LSL", 2}, {"LYD", 3}, {"MAD", 2}, {"MDL", 2}, {"MGA", 2}, {"MKD", 2}, {"MMK", 2}, {"MNT", 2},
    {"MOP", 2}, {"MRU", 2}, {"MUR", 2}, {"MVR", 2}, {"MWK", 2}, {"MXN", 2}, {"MYR", 2}, {"MZN", 2},
    {"NAD", 2}, {"NGN", 2}, {"NIO", 2}, {"NOK", 2}, {"NPR", 2}, {"NZD", 2}, {"OMR", 3}, {"PAB", 2},
    {"PEN", 2}, {"PGK", 2}, {"PHP", 2}, {"PKR", 2}, {"PLN", 2}, {"PYG", 0}, {"QAR", 2}, {"RON", 2},
    {"RSD", 2}, {"RUB", 2}, {"RWF", 0}, {"SAR", 2}, {"SBD", 2}, {"SCR", 2}, {"SDG", 2}, {"SEK", 2},
    {"SGD", 2}, {"SHP", 2}, {"SLE", 2}, {"SOS", 2}, {"SRD", 2}, {"SSP", 2}, {"STN", 2}, {"SVC", 2},
    {"SYP", 2}, {"SZL", 2}, {"THB", 2}, {"TJS", 2}, {"TMT", 2}, {"TND", 3}, {"TOP", 2}, {"TRY", 2},
    {"TTD", 2}, {"TWD", 2}, {"TZS", 2}, {"UAH", 2}, {"UGX", 0}, {"USD", 2}, {"UYI", 0}, {"UYU", 2}, {"UZS", 2},
    {"VES", 2}, {"VND", 0}, {"VUV", 0}, {"WST", 2}, {"XAF", 0}, {"XCD", 2}, {"XOF", 0}, {"XPF", 0},
    {"YER", 2}, {"ZAR", 2}, {"ZMW", 2}, {"ZWL", 2},
};

constexpr bool sorted_by_code() {
  for (std::size_t i = 1; i < std::size(kCurrencies); ++i)
    if (!(kCurrencies[i - 1].code < kCurrencies[i].code)) return false;
  return true;
}
static_assert(sorted_by_code());

}  // namespace

std::optional<Currency> find_currency(std::string_view code) {
  if (code.size() != 3) return std::nullopt;
  auto it = std::lower_bound(std::begin(kCurrencies), std::end(kCurrencies), code,
                             [](const Currency& c, std::string_view k) { return c.code < k; });
  if (it == std::end(kCurrencies) || it->code != code) return std::nullopt;
  return *it;
}

std::string to_decimal(std::int64_t minor, int exponent) {
  const bool negative = minor < 0;
  std::uint64_t v = negative ? 0ULL - static_cast<std::uint64_t>(minor) : static_cast<std::uint64_t>(minor);
  std::string digits = std::to_string(v);
  if (exponent > 0) {
    if (digits.size() <= static_cast<std::size_t>(exponent))
      digits.insert(0, static_cast<std::size_t>(exponent) + 1 - digits.size(), '0');
    digits.insert(digits.size() - static_cast<std::size_t>(exponent), 1, '.');
  }
  if (negative) digits.insert(0, 1, '-');
  return digits;
}

std::string to_decimal_trimmed(std::int64_t minor, int exponent) {
  std::string s = to_decimal(minor, exponent);
  if (exponent > 0) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s;
}

std::optional<std::int64_t> parse_decimal(std::string_view text, int exponent) {
  if (text.empty() || text.size() > 40) return std::nullopt;
  const auto dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view{} : text.substr(dot + 1);
  if (whole.empty()) return std::nullopt;
  if (dot != std::string_view::npos && frac.empty()) return std::nullopt;
  auto all_digits = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!all_digits(whole) || !all_digits(frac)) return std::nullopt;
  // Fraction digits beyond the currency's exponent must be zeros ("358320.00" for CLP).
  if (frac.size() > static_cast<std::size_t>(exponent)) {
    auto extra = frac.substr(static_cast<std::size_t>(exponent));
    if (extra.find_first_not_of('0') != std::string_view::npos) return std::nullopt;
    frac = frac.substr(0, static_cast<std::size_t>(exponent));
  }
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  std::int64_t v = 0;
  auto push = [&](char c) {
    if (v > (kMax - (c - '0')) / 10) return false;
    v = v * 10 + (c - '0');
    return true;
  };
  for (char c : whole)
    if (!push(c)) return std::nullopt;
  for (char c : frac)
    if (!push(c)) return std::nullopt;
  for (int i = static_cast<int>(frac.size()); i < exponent; ++i)
    if (!push('0')) return std::nullopt;
  return v;
}

}  // namespace paymux
