// The per-connector circuit breaker and the reconciliation query token bucket.
#include "service/core/circuit.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

using namespace paymux;
using namespace std::chrono_literals;

namespace {
CircuitConfig three_failures() {
  CircuitConfig c;
  c.failure_threshold = 3;
  c.cool_down = 1000ms;
  return c;
}
}  // namespace

TEST_CASE("a breaker opens after the threshold of consecutive failures", "[circuit]") {
  CircuitBreaker b(three_failures());
  const auto t0 = CircuitBreaker::Clock::time_point{} + 1h;
  CHECK(b.allow(t0));
  CHECK_FALSE(b.record_failure(t0, 1000));
  CHECK_FALSE(b.record_failure(t0, 1000));
  CHECK(b.snapshot(t0).state == CircuitState::closed);
  CHECK(b.snapshot(t0).consecutive_failures == 2);
  CHECK(b.allow(t0));
  CHECK(b.record_failure(t0, 4242));  // the third opens it
  const auto s = b.snapshot(t0);
  CHECK(s.state == CircuitState::open);
  CHECK(s.consecutive_failures == 3);
  CHECK(s.opened_at_ms == 4242);
  CHECK_FALSE(b.allow(t0));
  CHECK_FALSE(b.allow(t0 + 999ms));
}

TEST_CASE("a success resets the count of consecutive failures", "[circuit]") {
  CircuitBreaker b(three_failures());
  const auto t0 = CircuitBreaker::Clock::time_point{} + 1h;
  b.record_failure(t0, 1);
  b.record_failure(t0, 1);
  CHECK_FALSE(b.record_success());  // it was closed already
  CHECK(b.snapshot(t0).consecutive_failures == 0);
  b.record_failure(t0, 1);
  b.record_failure(t0, 1);
  CHECK(b.snapshot(t0).state == CircuitState::closed);
}

TEST_CASE("after the cool-down exactly one probe goes; its success closes the breaker", "[circuit]") {
  CircuitBreaker b(three_failures());
  const auto t0 = CircuitBreaker::Clock::time_point{} + 1h;
  for (int i = 0; i < 3; ++i) b.record_failure(t0, 1);
  const auto t1 = t0 + 1000ms;
  CHECK(b.snapshot(t1).state == CircuitState::half_open);
  CHECK(b.allow(t1));         // the probe
  CHECK_FALSE(b.allow(t1));   // nobody else while it runs
  CHECK_FALSE(b.allow(t1 + 10ms));
  CHECK(b.record_success());
  const auto s = b.snapshot(t1);
  CHECK(s.state == CircuitState::closed);
  CHECK(s.consecutive_failures == 0);
  CHECK(b.allow(t1));
  CHECK(b.allow(t1));
}

TEST_CASE("a failed probe opens the breaker for another cool-down", "[circuit]") {
  CircuitBreaker b(three_failures());
  const auto t0 = CircuitBreaker::Clock::time_point{} + 1h;
  for (int i = 0; i < 3; ++i) b.record_failure(t0, 1);
  const auto t1 = t0 + 1500ms;
  REQUIRE(b.allow(t1));
  CHECK(b.record_failure(t1, 77));
  CHECK(b.snapshot(t1).state == CircuitState::open);
  CHECK(b.snapshot(t1).opened_at_ms == 77);
  CHECK_FALSE(b.allow(t1 + 999ms));
  CHECK(b.allow(t1 + 1000ms));  // the next probe
  CHECK_FALSE(b.allow(t1 + 1000ms));
}

TEST_CASE("a probe whose result never comes is replaced after another cool-down", "[circuit]") {
  CircuitBreaker b(three_failures());
  const auto t0 = CircuitBreaker::Clock::time_point{} + 1h;
  for (int i = 0; i < 3; ++i) b.record_failure(t0, 1);
  REQUIRE(b.allow(t0 + 1000ms));
  CHECK_FALSE(b.allow(t0 + 1999ms));
  CHECK(b.allow(t0 + 2000ms));
}

TEST_CASE("a late failure of a call made before the breaker opened does not restart the cool-down",
          "[circuit]") {
  CircuitBreaker b(three_failures());
  const auto t0 = CircuitBreaker::Clock::time_point{} + 1h;
  for (int i = 0; i < 3; ++i) b.record_failure(t0, 1);
  CHECK_FALSE(b.record_failure(t0 + 500ms, 2));
  CHECK(b.snapshot(t0 + 500ms).opened_at_ms == 1);
  CHECK(b.allow(t0 + 1000ms));
}

TEST_CASE("state names", "[circuit]") {
  CHECK(to_string(CircuitState::closed) == "closed");
  CHECK(to_string(CircuitState::open) == "open");
  CHECK(to_string(CircuitState::half_open) == "half_open");
}

TEST_CASE("a token bucket paces reservations at its rate", "[ratelimit]") {
  TokenBucket bucket(10.0, 1.0);  // one every 100 ms, no burst
  const auto t0 = TokenBucket::Clock::time_point{} + 1h;
  CHECK(bucket.reserve(t0) == 0ns);
  // Reserved at the same instant: each waits 100 ms more than the one before.
  std::vector<std::int64_t> waits;
  for (int i = 0; i < 5; ++i)
    waits.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(bucket.reserve(t0)).count());
  CHECK(waits == std::vector<std::int64_t>{100, 200, 300, 400, 500});
  // Once the debt is paid off (600 ms later) a reservation is free again, and no credit builds up
  // beyond the burst.
  CHECK(bucket.reserve(t0 + 600ms) == 0ns);
  CHECK(bucket.reserve(t0 + 5s) == 0ns);
  CHECK(bucket.reserve(t0 + 5s) == 100ms);
}

TEST_CASE("sends that honour the bucket never exceed the rate in any window", "[ratelimit]") {
  TokenBucket bucket(50.0, 1.0);
  const auto t0 = TokenBucket::Clock::time_point{} + 1h;
  // 1,000 callers arrive in irregular clumps; each sends at arrival + its wait.
  std::vector<TokenBucket::Clock::time_point> sends;
  auto now = t0;
  for (int i = 0; i < 1000; ++i) {
    if (i % 37 == 0) now += 3ms * (i % 5);
    sends.push_back(now + bucket.reserve(now));
  }
  std::sort(sends.begin(), sends.end());
  std::size_t worst = 0;
  for (std::size_t i = 0, j = 0; i < sends.size(); ++i) {
    while (sends[i] - sends[j] >= 1s) ++j;
    worst = std::max(worst, i - j + 1);
  }
  CHECK(worst <= 51);  // rate + the one token of burst
  CHECK(sends.back() - sends.front() >= 19s);
}

TEST_CASE("a non-positive rate is taken as one per second", "[ratelimit]") {
  TokenBucket bucket(0.0, 1.0);
  const auto t0 = TokenBucket::Clock::time_point{} + 1h;
  CHECK(bucket.reserve(t0) == 0ns);
  CHECK(bucket.reserve(t0) == 1s);
}
