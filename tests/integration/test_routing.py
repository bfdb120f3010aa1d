"""Routing, failover, circuit breakers and reconciliation against the real binaries:

- a gateway that refuses connections: the payment is taken by the next candidate (201) and its
  attempts list both; after `failure_threshold` refusals the connector's circuit opens (GET
  /v1/connectors), it is skipped with `circuit_open` without a connection being tried, a failed
  probe opens it again, and once the gateway is back the probe closes it;
- a gateway that receives the request and answers after paymux's timeout: 202 `processing`, no
  other connector tried, and the reconciler settles the payment to what the gateway really did;
  timeouts count against the circuit too, and an open circuit fails a payment at once (502) when no
  other candidate is left;
- a payment abandoned on a gateway page without a query API (DHpay web cashier) expires after
  expires_at plus the grace period;
- 1,000 pending payments are reconciled without the gateway ever receiving more than the
  connector's query_rate in any one-second window (the sandbox's request log).

    cd tests/integration && PAYMUX_BIN=... PAYMUX_SANDBOX_BIN=... python3 -m unittest -v test_routing
"""
import concurrent.futures
import http.client
import http.server
import threading
import time
import unittest
import uuid

import harness
import test_cashypay
import test_dhpay
from harness import GLOCASH_EMAIL, GLOCASH_KEY, StackTestCase, free_port, wait_for

ROUTE_API_KEY = "sk_test_itest_route"
QUERY_PATH = "/glocash/gateway/transaction/index"


class ForwardingGateway:
    """A gateway coming back: listens on `port` and forwards every POST to the sandbox."""

    def __init__(self, port, target_port):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=10)
                conn.request("POST", self.path, body=body,
                             headers={"Content-Type": self.headers.get("Content-Type", "")})
                r = conn.getresponse()
                data = r.read()
                conn.close()
                self.send_response(r.status)
                self.send_header("Content-Type", r.getheader("Content-Type") or "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class RoutingStack(test_cashypay.CashyPayStack):
    """acme with CashyPay (first) and Glocash, both tried in order; a merchant `router` whose rules
    try a Glocash connector nobody listens for first, then the sandbox's Glocash; a DHpay web
    cashier connector (no query API) for expiry."""
    reconciler = "{first_check_ms: 300, max_interval_ms: 1000, tick_ms: 100, expiry_grace_ms: 2000}"

    def __init__(self):
        self.refused_port = free_port()  # nothing listens there until a test starts a gateway
        super().__init__(gateway_timeout_ms=1000, extra_merchant_yaml=f"""
  - id: router
    api_keys: ["{ROUTE_API_KEY}"]
    routing:
      - {{when: {{currency: [USD], payment_method: [hosted]}}, connectors: [gc_refused, gc_main]}}
    connectors:
      - id: gc_refused
        provider: glocash
        base_url: "http://127.0.0.1:{self.refused_port}/glocash"
        timeout_ms: 2000
        connect_timeout_ms: 500
        circuit: {{failure_threshold: 3, cool_down_ms: 2500}}
        credentials: {{email: "{GLOCASH_EMAIL}", secret_key: "{GLOCASH_KEY}"}}
      - id: gc_main
        provider: glocash
        base_url: "@SANDBOX_URL@/glocash"
        credentials: {{email: "{GLOCASH_EMAIL}", secret_key: "{GLOCASH_KEY}"}}
      - id: gc_slow
        provider: glocash
        base_url: "@SANDBOX_URL@/glocash"
        timeout_ms: 300
        connect_timeout_ms: 500
        circuit: {{failure_threshold: 2, cool_down_ms: 3000}}
        credentials: {{email: "{GLOCASH_EMAIL}", secret_key: "{GLOCASH_KEY}"}}
      - id: dh_web
        provider: dhpay
        base_url: "@SANDBOX_URL@/dhpay"
        credentials: {{merchant_id: "{test_dhpay.DH_MERCHANT}", secret_key: "{test_dhpay.DH_SECRET}"}}
        settings: {{sandbox: "true"}}
""")


class RoutingTest(StackTestCase):
    stack_class = RoutingStack

    def tearDown(self):
        self.stack.clear_faults()
        self.stack.sandbox_api("POST", "/_sandbox/cashypay/delay_answers", {"ms": 0})
        super().tearDown()

    def route_payment(self, **extra):
        return self.stack.create_payment(key=ROUTE_API_KEY, **extra)

    def circuit(self, connector, key=ROUTE_API_KEY):
        r = self.stack.api("GET", "/v1/connectors", key=key)
        self.assertEqual(r.status, 200, r)
        [c] = [c for c in r.json()["data"] if c["id"] == connector]
        return c["circuit"]

    def outcomes(self, payment):
        return [(a["connector"], a["outcome"]) for a in payment["attempts"]]

    def test_refused_connections_fail_over_and_open_the_circuit_until_the_gateway_is_back(self):
        s = self.stack
        self.assertEqual(self.circuit("gc_refused"),
                         {"state": "closed", "consecutive_failures": 0, "opened_at": None,
                          "failure_threshold": 3, "cool_down_ms": 2500})
        # Refused: nothing reached the gateway, so the next candidate takes the payment.
        for i in range(3):
            r = self.route_payment()
            self.assertEqual(r.status, 201, r)
            p = r.json()
            self.assertEqual((p["connector"], p["status"]), ("gc_main", "requires_action"))
            self.assertEqual(self.outcomes(p), [("gc_refused", "not_sent"), ("gc_main", "definite")])
            self.assertTrue(p["attempts"][0]["error"])
            self.assertIsNone(p["attempts"][1]["error"])
            self.assertEqual(s.get_payment(p["id"], key=ROUTE_API_KEY)["attempts"], p["attempts"])
            if i < 2:
                self.assertEqual(self.circuit("gc_refused")["state"], "closed")
        c = self.circuit("gc_refused")
        self.assertEqual((c["state"], c["consecutive_failures"]), ("open", 3))
        self.assertIsNotNone(c["opened_at"])
        self.assertEqual(self.circuit("gc_main")["state"], "closed")

        # Open: skipped at once, without trying to connect.
        p = self.route_payment().json()
        self.assertEqual(self.outcomes(p), [("gc_refused", "skipped"), ("gc_main", "definite")])
        self.assertEqual((p["attempts"][0]["error"], p["attempts"][0]["latency_ms"]), ("circuit_open", 0))

        # After the cool-down one probe goes; the gateway still refuses: open again.
        wait_for(lambda: self.circuit("gc_refused")["state"] == "half_open", timeout=5, what="half-open")
        p = self.route_payment().json()
        self.assertEqual(self.outcomes(p), [("gc_refused", "not_sent"), ("gc_main", "definite")])
        c = self.circuit("gc_refused")
        self.assertEqual((c["state"], c["consecutive_failures"]), ("open", 4))
        p = self.route_payment().json()
        self.assertEqual(self.outcomes(p), [("gc_refused", "skipped"), ("gc_main", "definite")])

        # The gateway is back: the next probe succeeds and closes the circuit.
        gateway = ForwardingGateway(s.refused_port, s.sandbox_port)
        try:
            wait_for(lambda: self.circuit("gc_refused")["state"] == "half_open", timeout=5, what="half-open")
            r = self.route_payment()
            self.assertEqual(r.status, 201, r)
            p = r.json()
            self.assertEqual((p["connector"], p["status"]), ("gc_refused", "requires_action"))
            self.assertEqual(self.outcomes(p), [("gc_refused", "definite")])
            c = self.circuit("gc_refused")
            self.assertEqual((c["state"], c["consecutive_failures"]), ("closed", 0))
            p = self.route_payment().json()
            self.assertEqual(self.outcomes(p), [("gc_refused", "definite")])
        finally:
            gateway.close()

    def test_routing_rules_do_not_apply_to_an_explicit_connector_or_other_payments(self):
        # The rule names USD hosted payments only: EUR finds no rule and no connector.
        r = self.route_payment(currency="EUR")
        self.assertError(r, 422, code="unsupported")
        # An explicit connector bypasses the rules.
        r = self.route_payment(currency="EUR", connector="gc_main")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(self.outcomes(r.json()), [("gc_main", "definite")])

    def test_a_timeout_after_the_gateway_received_the_request_is_202_and_reconciled(self):
        s = self.stack
        # CashyPay creates the order but answers after paymux's 1 s timeout.
        r = s.sandbox_api("POST", "/_sandbox/cashypay/delay_answers", {"ms": 2500, "count": 1})
        self.assertEqual(r.status, 200, r)
        body = {"amount": 358320, "currency": "CLP", "reference": f"CL-{uuid.uuid4().hex[:12]}",
                "payment_method": {"type": "hosted"}, "description": "Smart Phone P238 x1",
                "customer": {"email": "buyer@example.cl", "first_name": "Cristian", "last_name": "Alejandro",
                             "phone": "9728034619", "id_type": "RUT", "id_number": "11.111.111-1"}}
        r = s.api("POST", "/v1/payments", body, idem=uuid.uuid4().hex)
        self.assertEqual(r.status, 202, r)
        p = r.json()
        self.assertEqual((p["status"], p["connector"]), ("processing", "cashypay_cl"))
        # Never failed over: Glocash (the next connector) was not asked.
        self.assertEqual(self.outcomes(p), [("cashypay_cl", "unknown")])
        self.assertEqual(s.glocash_transactions(s.order_no(p["id"])), [])
        [order] = wait_for(lambda: s.sandbox_api("GET", "/_sandbox/cashypay/orders?mchOrderNo=" +
                                                 s.order_no(p["id"])).json()["orders"],
                             what="the order at the gateway")
        # What the gateway really did: the customer paid; no notification is sent.
        r = s.sandbox_api("POST", f"/_sandbox/cashypay/orders/{order['orderNo']}/status",
                          {"status": "SUCCESS", "notify": False})
        self.assertEqual(r.status, 200, r)
        done = s.wait_status(p["id"], "succeeded", timeout=15)
        self.assertEqual(done["provider_payment_id"], order["orderNo"])
        self.assertEqual([e["type"] for e in s.events(object_id=p["id"])].count("payment.succeeded"), 1)

    def test_an_abandoned_payment_without_a_query_api_expires_after_the_grace_period(self):
        s = self.stack
        body = test_dhpay.payment_body(1999, {"type": "hosted"}, "dh_web", expires_in=10)
        t0 = time.time()
        r = s.api("POST", "/v1/payments", body, key=ROUTE_API_KEY, idem=uuid.uuid4().hex)
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertEqual((p["status"], p["connector"]), ("requires_action", "dh_web"))
        # Past expires_at but within the grace period (2 s) the notification may still come.
        time.sleep(max(0.0, t0 + 10.3 - time.time()))
        self.assertEqual(s.get_payment(p["id"], key=ROUTE_API_KEY)["status"], "requires_action")
        done = wait_for(lambda: (lambda x: x if x["status"] == "expired" else None)(
            s.get_payment(p["id"], key=ROUTE_API_KEY)), timeout=10, what="the payment to expire")
        self.assertEqual(done["status"], "expired")
        events = s.api("GET", f"/v1/events?object_id={p['id']}", key=ROUTE_API_KEY).json()["data"]
        self.assertEqual([e["type"] for e in events].count("payment.expired"), 1)


    def test_timeouts_open_the_circuit_too_but_never_cause_a_failover(self):
        # Runs last (the fault holds every Glocash request, reconciliation queries included).
        s = self.stack
        s.set_fault("timeout", count=-1, hold_ms=600)
        for failures in (1, 2):
            r = self.route_payment(connector="gc_slow")
            self.assertEqual(r.status, 202, r)
            p = r.json()
            self.assertEqual(p["status"], "processing")
            self.assertEqual(self.outcomes(p), [("gc_slow", "unknown")])
            self.assertEqual(self.circuit("gc_slow")["consecutive_failures"], failures)
        self.assertEqual(self.circuit("gc_slow")["state"], "open")
        # Open: nothing is sent, so the payment fails at once (no other candidate was named).
        reference = f"ORDER-{uuid.uuid4().hex[:12]}"
        r = self.route_payment(connector="gc_slow", reference=reference)
        self.assertError(r, 502, code="provider_unavailable")
        [p] = s.payments_by_reference(reference, key=ROUTE_API_KEY)
        self.assertEqual(p["status"], "failed")
        self.assertEqual([(a["connector"], a["outcome"], a["error"]) for a in p["attempts"]],
                         [("gc_slow", "skipped", "circuit_open")])
        # The gateway answers again: after the cool-down the probe closes the circuit.
        s.clear_faults()
        wait_for(lambda: self.circuit("gc_slow")["state"] == "half_open", timeout=5, what="half-open")
        r = self.route_payment(connector="gc_slow")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(self.circuit("gc_slow")["state"], "closed")


class RateStack(harness.Stack):
    """Glocash with a query rate of 30 per second; payments waiting for the customer are first
    checked 12 s after creation (everything else much later)."""
    RATE = 30

    def paymux_config(self):
        cfg = super().paymux_config()
        anchor = "      - id: glocash_eu\n        provider: glocash\n"
        assert anchor in cfg
        cfg = cfg.replace(anchor, anchor + f"        query_rate: {self.RATE}\n", 1)
        return cfg.replace("merchants:", "reconciler: {first_check_ms: 600000, tick_ms: 100, batch: 100, query_rate: 1000,\n"
                                         "             schedule: {requires_action: {first_check_ms: 12000}}}\nmerchants:", 1)

    def sandbox_config(self):
        return super().sandbox_config().replace("log_level: info", "log_level: warn")


class QueryRateTest(StackTestCase):
    stack_class = RateStack

    def test_a_thousand_pending_payments_reconcile_within_the_connectors_query_rate(self):
        s = self.stack
        rate = RateStack.RATE
        started_ms = int(time.time() * 1000)

        def create(_):
            r = s.create_payment()
            assert r.status == 201, r
            return r.json()["id"]

        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(create, range(1000)))
        created_in = time.time() - t0
        self.assertEqual(len(set(ids)), 1000)
        # Created faster than the rate lets them be queried: without the limit the queries would
        # come as fast as the payments became due.
        self.assertLess(created_in, 1000 / rate, "payments were created too slowly for the test to mean anything")

        def queries():
            r = s.sandbox_api("GET", f"/_sandbox/requests?gateway=glocash&path={QUERY_PATH}&since_ms={started_ms}")
            self.assertEqual(r.status, 200, r)
            return [q["at_ms"] for q in r.json()["requests"]]

        at = wait_for(lambda: (lambda q: q if len(q) >= 1000 else None)(queries()),
                      timeout=12 + 1000 / rate + 30, interval=1, what="1,000 queries")
        at.sort()
        worst, j = 0, 0
        for i in range(len(at)):
            while at[i] - at[j] >= 1000:
                j += 1
            worst = max(worst, i - j + 1)
        self.assertLessEqual(worst, rate + 1, f"{worst} queries in one second")
        span_s = (at[999] - at[0]) / 1000
        self.assertGreaterEqual(span_s, 999 / rate * 0.95)


if __name__ == "__main__":
    unittest.main()
