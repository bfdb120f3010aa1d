-- wrk script for POST /v1/payments: every request is a new payment, with its own Idempotency-Key
-- and reference ("<run>-<thread>-<counter>", unique across threads and across runs).
--   wrk -s bench/post_payments.lua http://HOST:PORT -- TOKEN RUN_ID
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local report = require("report")

local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
end

local token, run_id, counter, prefix = "sk_test_demo", "run", 0, ""
function init(args)
  if args[1] and args[1] ~= "" then token = args[1] end
  if args[2] and args[2] ~= "" then run_id = args[2] end
  prefix = "bench-" .. run_id .. "-" .. tostring(thread_id or 0) .. "-"
end

function request()
  counter = counter + 1
  local key = prefix .. counter
  local body = '{"amount":1999,"currency":"USD","reference":"' .. key ..
               '","payment_method":{"type":"hosted"},"customer":{"email":"b@example.com"}}'
  return wrk.format("POST", "/v1/payments", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = key,
  }, body)
end

done = report.done
