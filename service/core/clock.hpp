#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace paymux {

// Milliseconds since the Unix epoch, wall clock. Stored times use this unit.
inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// RFC 3339 UTC with seconds ("2026-11-22T01:47:50Z").
std::string rfc3339(std::int64_t epoch_ms);

}  // namespace paymux
