#include "service/core/circuit.hpp"

#include <algorithm>
#include <cmath>

namespace paymux {

std::string_view to_string(CircuitState s) {
  switch (s) {
    case CircuitState::closed: return "closed";
    case CircuitState::open: return "open";
    case CircuitState::half_open: return "half_open";
  }
  return "closed";
}

CircuitState CircuitBreaker::state_at(Clock::time_point now) const {
  if (state_ == CircuitState::open && now >= opened_ + config_.cool_down) return CircuitState::half_open;
  return state_;
}

bool CircuitBreaker::allow(Clock::time_point now) {
  std::lock_guard lock(m_);
  state_ = state_at(now);
  switch (state_) {
    case CircuitState::closed: return true;
    case CircuitState::open: return false;
    case CircuitState::half_open:
      if (probing_ && now < probe_started_ + config_.cool_down) return false;
      probing_ = true;
      probe_started_ = now;
      return true;
  }
  return true;
}

bool CircuitBreaker::record_success() {
  std::lock_guard lock(m_);
  const bool changed = state_ != CircuitState::closed;
  state_ = CircuitState::closed;
  failures_ = 0;
  probing_ = false;
  return changed;
}

bool CircuitBreaker::record_failure(Clock::time_point now, std::int64_t wall_ms) {
  std::lock_guard lock(m_);
  state_ = state_at(now);
  ++failures_;
  // A failed probe, or the threshold reached while closed, opens it. A failure of a call that
  // went out before it opened changes nothing but the count.
  if ((state_ == CircuitState::half_open && probing_) ||
      (state_ == CircuitState::closed && failures_ >= config_.failure_threshold)) {
    state_ = CircuitState::open;
    opened_ = now;
    opened_wall_ms_ = wall_ms;
    probing_ = false;
    return true;
  }
  return false;
}

CircuitSnapshot CircuitBreaker::snapshot(Clock::time_point now) const {
  std::lock_guard lock(m_);
  CircuitSnapshot s;
  s.state = state_at(now);
  s.consecutive_failures = failures_;
  s.opened_at_ms = opened_wall_ms_;
  return s;
}

TokenBucket::TokenBucket(double rate_per_second, double burst)
    : rate_(rate_per_second > 0 ? rate_per_second : 1.0), burst_(std::max(1.0, burst)), tokens_(burst_) {}

std::chrono::nanoseconds TokenBucket::reserve(Clock::time_point now) {
  std::lock_guard lock(m_);
  if (!started_) {
    started_ = true;
    last_ = now;
  }
  if (now > last_) {
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    last_ = now;
  }
  tokens_ -= 1.0;
  if (tokens_ >= 0) return std::chrono::nanoseconds(0);
  return std::chrono::nanoseconds(std::llround(-tokens_ / rate_ * 1e9));
}

}  // namespace paymux
