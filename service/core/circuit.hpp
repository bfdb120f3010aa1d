#pragma once
// Circuit breaker per connector, and the token bucket that paces reconciliation queries.
//
// A breaker counts consecutive transport failures of a connector (connect failures, timeouts, a
// connection lost before the answer). After `failure_threshold` of them it opens: calls are refused
// without touching the network (they count as "nothing was sent", so payment creation fails over
// to the next candidate). After `cool_down` it half-opens and lets exactly one probe through; the
// probe's success closes it, its failure opens it again for another cool-down. Any complete HTTP
// answer, whatever its status, is a success: the gateway is reachable.
//
// Both are thread-safe and take the time as an argument, so that tests drive them with a fake clock.
#include "service/core/config.hpp"

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace paymux {

enum class CircuitState { closed, open, half_open };
std::string_view to_string(CircuitState s);

struct CircuitSnapshot {
  std::string connector;
  CircuitState state = CircuitState::closed;
  int consecutive_failures = 0;
  std::int64_t opened_at_ms = 0;  // wall clock (epoch ms) when it last opened; 0: never
};

class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;

  explicit CircuitBreaker(CircuitConfig config) : config_(config) {}

  // May a call go out now? In half_open, true for exactly one caller (the probe) until its result
  // is recorded; a probe whose result never comes is replaced after another cool-down.
  bool allow(Clock::time_point now);
  // Each returns true when it changed the state (closed it, or opened it).
  bool record_success();
  bool record_failure(Clock::time_point now, std::int64_t wall_ms);

  CircuitSnapshot snapshot(Clock::time_point now) const;
  const CircuitConfig& config() const { return config_; }

 private:
  CircuitState state_at(Clock::time_point now) const;

  CircuitConfig config_;
  mutable std::mutex m_;
  CircuitState state_ = CircuitState::closed;  // open means "open until opened_ + cool_down"
  int failures_ = 0;
  Clock::time_point opened_{};
  std::int64_t opened_wall_ms_ = 0;
  bool probing_ = false;
  Clock::time_point probe_started_{};
};

// Tokens refill continuously at `rate` per second up to `burst`. reserve() takes one token at
// once, going into debt when none is left, and says how long the caller must wait before using
// it: callers that each wait their answer never exceed the rate (plus the burst) together.
class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  TokenBucket(double rate_per_second, double burst);
  std::chrono::nanoseconds reserve(Clock::time_point now);
  double rate() const { return rate_; }

 private:
  std::mutex m_;
  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_{};
  bool started_ = false;
};

}  // namespace paymux
