#!/usr/bin/env bash
# Starts paymux and paymux-sandbox (the five gateways' simulators) on loopback with
# config/sandbox.yaml. Installs what is missing, builds release, and prints how to take a payment.
set -euo pipefail
cd "$(dirname "$0")"
bash tools/deps.sh build
cmake --preset release -DBUILD_TESTING=OFF >/dev/null
cmake --build --preset release --target paymux paymux-sandbox
mkdir -p var

PAYMUX_PORT=${PAYMUX_PORT:-8080}
SANDBOX_PORT=${SANDBOX_PORT:-9090}
export PAYMUX_LISTEN="127.0.0.1:${PAYMUX_PORT}"
export PAYMUX_PUBLIC_URL="${PAYMUX_PUBLIC_URL:-http://127.0.0.1:${PAYMUX_PORT}}"
export PAYMUX_SANDBOX_URL="http://127.0.0.1:${SANDBOX_PORT}"
export SANDBOX_LISTEN="127.0.0.1:${SANDBOX_PORT}"

build/release/paymux-sandbox --config config/sandbox-gateways.yaml --listen "$SANDBOX_LISTEN" &
sandbox_pid=$!
build/release/paymux --config config/sandbox.yaml &
paymux_pid=$!
trap 'kill -TERM $paymux_pid $sandbox_pid 2>/dev/null; wait' INT TERM EXIT

for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:${PAYMUX_PORT}/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

cat <<MSG

paymux is up at http://127.0.0.1:${PAYMUX_PORT} (sandbox gateways at http://127.0.0.1:${SANDBOX_PORT}).
Create a Glocash payment:

  curl -s http://127.0.0.1:${PAYMUX_PORT}/v1/payments \\
    -H 'Authorization: Bearer sk_test_demo' -H 'Content-Type: application/json' \\
    -H "Idempotency-Key: \$(date +%s%N)" \\
    -d '{"amount": 1999, "currency": "USD", "reference": "ORDER-'\$(date +%s)'",
         "payment_method": {"type": "hosted"}, "description": "Smart Phone P238 x1",
         "customer": {"email": "buyer@example.com"}, "return_url": "https://shop.example/orders/1001"}'

Open next_action.url (or checkout_url) in a browser and pay with the test card 4000000000000002.
Press Ctrl-C to stop.
MSG
wait
