"""paymux stopping and starting: a crash (kill -9) loses nothing acknowledged, a request cut off by a
crash is settled at start-up, and SIGTERM drains in-flight requests before a clean exit."""
import signal
import socket
import threading
import time
import unittest
import uuid

from harness import StackTestCase, request, wait_for


class RestartTest(StackTestCase):

    def tearDown(self):
        self.stack.clear_faults()
        if self.stack.paymux is None:
            self.stack.start_paymux()
        super().tearDown()

    def create_in_background(self, body_kwargs, key):
        """POST /v1/payments on a thread; returns (thread, dict that gets 'response' or 'error')."""
        out = {}

        def run():
            try:
                out["response"] = self.stack.create_payment(idem=key, **body_kwargs)
            except (ConnectionError, OSError) as e:
                out["error"] = e
        t = threading.Thread(target=run)
        t.start()
        return t, out

    def test_kill_9_loses_nothing_that_was_acknowledged(self):
        waiting = self.stack.create_payment().json()
        paid = self.stack.paid_payment()
        key = uuid.uuid4().hex
        reference = f"ORDER-{uuid.uuid4().hex[:12]}"
        last = self.stack.create_payment(idem=key, reference=reference)
        self.assertEqual(last.status, 201, last)
        # no pause: the answers above were given, so their writes are durable
        self.assertEqual(self.stack.stop_paymux(signal.SIGKILL), -signal.SIGKILL)
        self.stack.start_paymux()
        self.assertEqual(request(self.stack.port, "GET", "/readyz").status, 200)
        for before in (waiting, paid, last.json()):
            after = self.stack.get_payment(before["id"])
            for field in ("status", "amount", "currency", "reference", "provider_payment_id", "next_action",
                          "created_at"):
                self.assertEqual(after[field], before[field], field)
        self.assertEqual(sorted(e["type"] for e in self.stack.events(object_id=paid["id"])),
                         ["payment.requires_action", "payment.succeeded"])
        # idempotency keys survive too
        again = self.stack.create_payment(idem=key, reference=reference)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(again.json()["id"], last.json()["id"])
        # and the payment that waited for its customer can still be paid
        self.stack.pay_on_page(waiting)
        self.stack.wait_status(waiting["id"], "succeeded")

    def test_request_cut_off_by_a_crash_is_settled_at_start_up(self):
        # The gateway takes 1.5 s; paymux is killed while it waits for the answer.
        self.stack.set_fault("latency", latency_ms=1500)
        key = uuid.uuid4().hex
        reference = f"ORDER-{uuid.uuid4().hex[:12]}"
        t, out = self.create_in_background({"reference": reference}, key)
        wait_for(lambda: self.stack.payments_by_reference(reference), what="the payment row")
        time.sleep(0.2)  # the gateway call is under way
        self.stack.stop_paymux(signal.SIGKILL)
        t.join(10)
        self.assertIn("error", out, "the client got an answer from a killed process")
        self.stack.start_paymux()
        [p] = self.stack.payments_by_reference(reference)
        # it may have reached the gateway: unknown, not failed and not forgotten
        self.assertEqual(p["status"], "processing")
        # the client's retry with the same key gets that answer instead of a second payment
        r = self.stack.create_payment(idem=key, reference=reference)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.header("Idempotent-Replayed"), "true")
        self.assertEqual(r.json()["id"], p["id"])
        self.assertEqual(len(self.stack.payments_by_reference(reference)), 1)
        # the gateway saw it once (its late answer went nowhere)
        order_no = self.stack.order_no(p["id"])
        wait_for(lambda: self.stack.glocash_transactions(order_no), what="the gateway's transaction")
        self.assertEqual(len(self.stack.glocash_transactions(order_no)), 1)

    def test_sigterm_lets_the_request_in_flight_finish(self):
        self.stack.set_fault("latency", latency_ms=1500)
        reference = f"ORDER-{uuid.uuid4().hex[:12]}"
        t, out = self.create_in_background({"reference": reference}, uuid.uuid4().hex)
        wait_for(lambda: self.stack.payments_by_reference(reference), what="the payment row")
        time.sleep(0.2)  # the gateway call is under way
        started = time.monotonic()
        self.stack.paymux.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # no new connections while draining
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.stack.port), timeout=1).close()
        t.join(10)
        self.assertIn("response", out, out)
        r = out["response"]
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["status"], "requires_action")
        self.assertEqual(r.header("Connection"), "close")
        rc = self.stack.paymux.wait(timeout=10)
        self.stack.paymux = None
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - started, 4.0)
        self.stack.start_paymux()
        self.assertEqual(self.stack.get_payment(r.json()["id"])["status"], "requires_action")

    def test_sigterm_does_not_wait_for_idle_connections(self):
        # A keep-alive connection that sent one request and now waits: shutdown does not wait for
        # its idle timeout (5 s here).
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            time.sleep(0.2)
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
            started = time.monotonic()
            self.assertEqual(self.stack.stop_paymux(signal.SIGTERM), 0)
            self.assertLess(time.monotonic() - started, 2.0)
        self.stack.start_paymux()


if __name__ == "__main__":
    unittest.main()
