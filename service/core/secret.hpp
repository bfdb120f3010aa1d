#pragma once
// A credential. It never prints: streaming or formatting it yields "***", so a log line cannot leak
// one by accident. Read the value only where it is used (signing, a header).
#include <fmt/format.h>

#include <ostream>
#include <string>

namespace paymux {

class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}
  const std::string& reveal() const { return value_; }
  bool empty() const { return value_.empty(); }
  friend std::ostream& operator<<(std::ostream& os, const Secret&) { return os << "***"; }

 private:
  std::string value_;
};

}  // namespace paymux

template <>
struct fmt::formatter<paymux::Secret> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const paymux::Secret&, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format("***", ctx);
  }
};
