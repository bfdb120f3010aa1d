-- Shared by the benchmark's wrk scripts: done() prints one machine-readable line that bench/run.sh
-- parses, so that figures come from wrk's own counters rather than from its human-readable output.
--   BENCH requests=N duration_us=N rps=F non2xx=N connect=N read=N write=N timeout=N p50_us=N p90_us=N p99_us=N max_us=N
-- "non2xx" is wrk's status error counter (every response with status >= 400).
local M = {}

function M.done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f non2xx=%d connect=%d read=%d write=%d timeout=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.requests / secs, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

return M
