#pragma once
// Money is integer minor units plus an ISO 4217 currency, end to end. Conversions to and from a
// gateway's decimal strings live here and nowhere else.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace paymux {

struct Currency {
  std::string_view code;  // ISO 4217 alphabetic code, upper case
  int exponent;           // digits after the decimal point in the minor unit (0, 2 or 3; 4 for CLF)
};

// The ISO 4217 entry for an upper-case alphabetic code, or nullopt.
std::optional<Currency> find_currency(std::string_view code);

struct Money {
  std::int64_t minor = 0;
  std::string currency;
};

// 1999 USD -> "19.99"; 1500 JPY -> "1500"; 1500 KWD -> "1.500". Always every minor digit.
std::string to_decimal(std::int64_t minor, int exponent);

// The shortest exact decimal: 990 -> "9.9", 1500 (exp 2) -> "15". Some gateways sign what they echo
// back in this form, so it is offered alongside the fixed form.
std::string to_decimal_trimmed(std::int64_t minor, int exponent);

// Parses a gateway decimal ("37.86", "15", "9.9", "358320.00") exactly into minor units: no float
// is involved. Extra fraction digits are accepted only when they are zeros. Rejects signs,
// exponents, empty parts and overflow.
std::optional<std::int64_t> parse_decimal(std::string_view text, int exponent);

// Largest amount accepted anywhere: keeps every sum of amounts of one payment far from overflow.
inline constexpr std::int64_t max_amount_minor = 999'999'999'999'99;

}  // namespace paymux
