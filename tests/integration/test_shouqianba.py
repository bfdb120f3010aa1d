"""Shouqianba (document 003, upay v2) end to end: paymux's `shouqianba` connectors against the
sandbox's Shouqianba simulator. Barcode payments follow the document's client algorithm (section
2.4): a definite answer settles them at once; anything else is polled from the store and cancelled
when the polling window is over (short windows here). QR payments are precreated and paid on the
sandbox's QR page. Refunds carry one refund_request_no per paymux refund. Terminal keys come from
the configuration, or from `paymux shouqianba activate`, and are rotated by check-ins.
Notifications are RSA-signed (SHA256withRSA) by the sandbox's test key.

    cd tests/integration && PAYMUX_BIN=... PAYMUX_SANDBOX_BIN=... python3 -m unittest -v test_shouqianba
"""
import os
import signal
import sqlite3
import subprocess
import time
import unittest
import urllib.parse
import uuid

import harness
from harness import StackTestCase, request, wait_for

SOURCE_DIR = os.environ.get("PAYMUX_SOURCE_DIR",
                            os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
PUBLIC_KEY = os.path.join(SOURCE_DIR, "sandbox", "keys", "shouqianba_sandbox_test_public.pem")

VENDOR_SN = "91800077"
VENDOR_KEY = "itest-shouqianba-vendor-key"
ACTIVATION_CODE = "55501234"
TERMINAL_SN = "100000330000000042"
TERMINAL_KEY = "itest-shouqianba-terminal-key"
POLL_WINDOW_MS = 4000


class ShouqianbaStack(harness.Stack):
    """The harness's stack plus the Shouqianba simulator and four connectors of acme:
    sqb (polled fast, notifications on), sqb_slow (QR polled once a minute), sqb_notify (slow,
    notifications on) and sqb_act (no terminal until activated; checks in every 2 s)."""

    def __init__(self, **kw):
        super().__init__(gateway_timeout_ms=1500, **kw)

    def sandbox_config(self):
        return super().sandbox_config() + f"""
shouqianba:
  vendors:
    - {{vendor_sn: "{VENDOR_SN}", vendor_key: "{VENDOR_KEY}"}}
  activation_codes: "{ACTIVATION_CODE}"
  terminals:
    - {{terminal_sn: "{TERMINAL_SN}", terminal_key: "{TERMINAL_KEY}"}}
  cancel_paid_orders: false
  lost_answer_hold_ms: 6000
  notify_retry_seconds: [1, 5, 30, 600]
  notify_timeout_ms: 2000
"""

    def connector(self, cid, terminal=True, notify=False, **settings):
        creds = f'terminal_sn: "{TERMINAL_SN}", terminal_key: "{TERMINAL_KEY}"' if terminal else \
            f'vendor_sn: "{VENDOR_SN}", vendor_key: "{VENDOR_KEY}"'
        if notify:
            creds += f', notify_public_key_file: "{PUBLIC_KEY}"'
        values = {"notify": "true" if notify else "false", "pay_poll_interval_ms": "400",
                  "pay_poll_window_ms": str(POLL_WINDOW_MS), "qr_poll_interval_ms": "300",
                  "qr_poll_slow_interval_ms": "500"}
        values.update(settings)
        rendered = ", ".join(f'{k}: "{v}"' for k, v in values.items())
        return f"""      - id: {cid}
        provider: shouqianba
        base_url: "http://127.0.0.1:{self.sandbox_port}/shouqianba"
        timeout_ms: {self.gateway_timeout_ms}
        connect_timeout_ms: 1000
        credentials: {{{creds}}}
        settings: {{{rendered}}}
"""

    def paymux_config(self):
        cfg = super().paymux_config()
        slow = {"qr_poll_fast_window_ms": "0", "qr_poll_interval_ms": "60000", "qr_poll_slow_interval_ms": "60000"}
        connectors = (self.connector("sqb", notify=True) + self.connector("sqb_slow", **slow) +
                      self.connector("sqb_notify", notify=True, **slow) +
                      self.connector("sqb_act", terminal=False, app_id="2016", checkin_interval_seconds="2"))
        anchor = "      - id: glocash_eu\n"
        assert anchor in cfg, "harness.Stack.paymux_config changed: acme's connectors not found"
        cfg = cfg.replace(anchor, connectors + anchor, 1)
        # The reconciler's own first check is a minute away: the gateway's poll plan drives polling.
        return cfg.replace("merchants:", "reconciler: {first_check_ms: 60000, tick_ms: 100, lease_ms: 3000}\nmerchants:", 1)


class ShouqianbaTest(StackTestCase):
    @classmethod
    def setUpClass(cls):
        cls._failed = False
        cls.stack = ShouqianbaStack().start()

    # --- helpers -----------------------------------------------------------------------------------
    def pay(self, barcode=None, amount=1999, connector="sqb", currency="CNY", method=None, idem=None):
        body = {"amount": amount, "currency": currency, "reference": f"SQB-{uuid.uuid4().hex[:12]}",
                "connector": connector, "description": "达美乐披萨",
                "payment_method": method or {"type": "barcode", "barcode": barcode}}
        return self.stack.api("POST", "/v1/payments", body, idem=idem or uuid.uuid4().hex)

    def order(self, payment):
        r = self.stack.sandbox_api("GET", "/_sandbox/shouqianba/orders/" + harness.Stack.order_no(payment["id"]))
        self.assertEqual(r.status, 200, r)
        return r.json()

    def calls(self, payment):
        return self.order(payment)["calls"]

    def event_types(self, pid):
        return sorted(e["type"] for e in self.stack.events(object_id=pid))

    def scan(self, payment, action="pay"):
        url = urllib.parse.urlparse(payment["next_action"]["qr_code"])
        r = request(url.port, "POST", url.path, raw=urllib.parse.urlencode({"action": action, "auto": "1"}),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 200, r)
        return r.json()

    def paid(self, amount=1000, connector="sqb"):
        r = self.pay("130000001", amount=amount, connector=connector)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["status"], "succeeded", r)
        return r.json()

    # --- barcode: definite answers -------------------------------------------------------------------
    def test_barcode_pay_success(self):
        r = self.pay("130012345678")
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertEqual(p["status"], "succeeded")
        self.assertTrue(p["provider_payment_id"])
        self.assertEqual(p["provider_data"].get("order_status"), "PAID")
        o = self.order(p)
        self.assertEqual(o["order"]["total_amount"], "1999")
        self.assertEqual(o["calls"]["pay"], 1)
        self.assertNotIn("130012345678", self.stack.paymux_log_text())  # the barcode is never logged

    def test_barcode_pay_fail(self):
        r = self.pay("130112345678")
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertEqual(p["status"], "failed")
        self.assertEqual(p["failure"]["code"], "TRADE_FAILED")
        self.assertEqual(p["failure"]["provider_status"], "PAY_CANCELED")

    def test_barcode_business_fail_names_the_gateway_code(self):
        r = self.pay("130612345678")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["status"], "failed")
        self.assertEqual(r.json()["failure"]["code"], "INVALID_BARCODE")

    def test_communication_error_400_is_a_failure_with_its_code(self):
        r = self.pay("13AB")  # not digits: the gateway answers result_code 400 INVALID_BARCODE
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["status"], "failed")
        self.assertEqual(r.json()["failure"]["code"], "INVALID_BARCODE")
        self.assertEqual(r.json()["failure"]["provider_status"], "400")

    def test_other_currency_is_400_naming_it(self):
        r = self.pay("130012345678", currency="USD")
        self.assertError(r, 400, param="currency")

    def test_pay_fail_error_is_processing_with_one_review_event(self):
        r = self.pay("130412345678")
        self.assertEqual(r.status, 202, r)
        p = r.json()
        self.assertEqual(p["status"], "processing")
        self.assertEqual(p["provider_data"].get("review"), "PAY_FAIL_ERROR")
        # A query says PAY_ERROR: still the same review; no cancel from paymux (section 2.4 raises).
        synced = self.stack.api("POST", f"/v1/payments/{p['id']}/sync")
        self.assertEqual(synced.status, 200, synced)
        self.assertEqual(synced.json()["provider_data"]["order_status"], "PAY_ERROR")
        time.sleep(POLL_WINDOW_MS / 1000 + 0.5)
        self.assertEqual(self.event_types(p["id"]).count("payment.review"), 1, self.event_types(p["id"]))
        self.assertEqual(self.calls(p)["cancel"], 0)
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "processing")

    # --- barcode: polling, then cancel ----------------------------------------------------------------
    def test_in_progress_then_paid_by_polling(self):
        r = self.pay("130212345678")
        self.assertEqual(r.status, 202, r)
        p = r.json()
        self.assertEqual(p["status"], "processing")
        self.assertTrue(p["provider_payment_id"])  # the gateway's sn is kept from the first answer
        done = self.stack.wait_status(p["id"], "succeeded", timeout=10)
        self.assertEqual(self.calls(p)["query"], 2)
        self.assertEqual(self.calls(p)["cancel"], 0)
        self.assertEqual(self.event_types(p["id"]).count("payment.succeeded"), 1)
        self.assertEqual(done["provider_data"]["order_status"], "PAID")

    def test_lost_pay_answer_is_polled_not_resent(self):
        started = time.time()
        r = self.pay("130512345678")
        self.assertLess(time.time() - started, 5)  # the merchant is not held for the gateway's 6 s
        self.assertEqual(r.status, 202, r)
        p = r.json()
        self.stack.wait_status(p["id"], "succeeded", timeout=10)
        self.assertEqual(self.calls(p)["pay"], 1)

    def test_never_final_is_cancelled_after_the_window(self):
        r = self.pay("130312345678")
        self.assertEqual(r.status, 202, r)
        p = r.json()
        self.stack.wait_status(p["id"], "canceled", timeout=POLL_WINDOW_MS / 1000 + 8)
        # The gateway's notification of the cancellation may be applied first; the cancel's own
        # answer is recorded either way.
        done = wait_for(lambda: (lambda x: x if "auto_cancel" in x["provider_data"] else None)(
            self.stack.get_payment(p["id"])), timeout=5, what="the cancel's answer recorded")
        self.assertEqual(done["provider_data"]["auto_cancel"], "CANCEL_SUCCESS")
        self.assertGreaterEqual(self.calls(p)["query"], 3)
        self.assertEqual(self.calls(p)["cancel"], 1)
        self.assertEqual(self.event_types(p["id"]).count("payment.canceled"), 1)
        self.assertEqual(self.order(p)["order"]["order_status"], "CANCELED")

    def test_cancel_abort_success_cancels(self):
        r = self.pay("130812345678")
        self.assertEqual(r.status, 202, r)
        self.stack.wait_status(r.json()["id"], "canceled", timeout=POLL_WINDOW_MS / 1000 + 8)

    def test_cancel_error_after_the_window_goes_to_review(self):
        r = self.pay("130712345678")
        self.assertEqual(r.status, 202, r)
        p = r.json()
        wait_for(lambda: "payment.review" in self.event_types(p["id"]), timeout=POLL_WINDOW_MS / 1000 + 8,
                 what="review event")
        now = self.stack.get_payment(p["id"])
        self.assertEqual(now["status"], "processing")
        self.assertEqual(now["provider_data"]["auto_cancel"], "CANCEL_ERROR")
        self.assertEqual(self.calls(p)["cancel"], 1)
        time.sleep(1.5)
        self.assertEqual(self.calls(p)["cancel"], 1)  # cancelled once, as the algorithm says
        self.assertEqual(self.event_types(p["id"]).count("payment.review"), 1)

    def test_restart_while_polling_resumes_and_settles_once(self):
        r = self.pay("130312345678")
        self.assertEqual(r.status, 202, r)
        p = r.json()
        wait_for(lambda: self.calls(p)["query"] >= 1, timeout=5, what="first query")
        time.sleep(0.15)  # between two polls (every 0.4 s): the next one is scheduled in the store
        self.stack.stop_paymux(sig=signal.SIGKILL, expect_clean=False)
        queries_before = self.calls(p)["query"]
        self.stack.start_paymux()
        self.stack.wait_status(p["id"], "canceled", timeout=POLL_WINDOW_MS / 1000 + 10)
        self.assertGreater(self.calls(p)["query"], queries_before)  # polling resumed from the store
        self.assertEqual(self.calls(p)["cancel"], 1)
        types = self.event_types(p["id"])
        self.assertEqual(types.count("payment.canceled"), 1, types)
        self.assertEqual(types.count("payment.processing"), 1, types)

    def test_restart_during_the_pay_call_settles_by_polling(self):
        import threading
        reference = f"SQB-{uuid.uuid4().hex[:12]}"
        idem = uuid.uuid4().hex
        body = {"amount": 1999, "currency": "CNY", "reference": reference, "connector": "sqb",
                "payment_method": {"type": "barcode", "barcode": "130512345678"}}
        worker = threading.Thread(target=lambda: self._swallow(lambda: self.stack.api("POST", "/v1/payments", body,
                                                                                      idem=idem)))
        worker.start()
        wait_for(lambda: self.stack.payments_by_reference(reference), timeout=5, what="payment row")
        time.sleep(0.3)  # the pay call is in flight (the gateway holds its answer)
        self.stack.stop_paymux(sig=signal.SIGKILL, expect_clean=False)
        worker.join(timeout=10)
        self.stack.start_paymux()
        pid = self.stack.payments_by_reference(reference)[0]["id"]
        self.stack.wait_status(pid, "succeeded", timeout=10)
        replay = self.stack.api("POST", "/v1/payments", body, idem=idem)
        self.assertEqual(replay.header("Idempotent-Replayed"), "true", replay)
        self.assertEqual(replay.json()["id"], pid)
        self.assertEqual(self.calls({"id": pid})["pay"], 1)

    @staticmethod
    def _swallow(fn):
        try:
            fn()
        except OSError:
            pass  # the connection dies with paymux

    # --- QR ------------------------------------------------------------------------------------------
    def test_qr_precreate_then_scan_pays(self):
        r = self.pay(method={"type": "qr"})
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertEqual(p["status"], "requires_action")
        self.assertEqual(p["next_action"]["type"], "display_qr")
        self.assertIn("/shouqianba/qr/", p["next_action"]["qr_code"])
        self.assertTrue(p["checkout_url"])
        self.assertTrue(p["expires_at"])
        wait_for(lambda: self.calls(p)["query"] >= 1, timeout=5, what="QR polling")
        self.scan(p, "pay")
        self.stack.wait_status(p["id"], "succeeded", timeout=5)

    def test_qr_declined_fails(self):
        p = self.pay(method={"type": "qr"}).json()
        self.scan(p, "decline")
        done = self.stack.wait_status(p["id"], "failed", timeout=5)
        self.assertEqual(done["failure"]["provider_status"], "PAY_CANCELED")

    def test_cancel_of_an_order_paid_at_the_gateway_maps_its_error(self):
        p = self.pay(method={"type": "qr"}, connector="sqb_slow").json()
        self.assertEqual(p["status"], "requires_action")
        self.scan(p, "pay")  # paid at the gateway; paymux has not asked yet
        r = self.stack.api("POST", f"/v1/payments/{p['id']}/cancel")
        err = self.assertError(r, 409, code="state_conflict")
        self.assertIn("UPAY_CANCEL_INVALID_ORDER_STATE", err["message"])
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "succeeded")  # learned on the way
        self.assertEqual(self.order(p)["order"]["order_status"], "PAID")

    def test_cancel_of_a_pending_qr_order(self):
        p = self.pay(method={"type": "qr"}, connector="sqb_slow").json()
        r = self.stack.api("POST", f"/v1/payments/{p['id']}/cancel")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "canceled")
        self.assertEqual(self.order(p)["order"]["order_status"], "CANCELED")
        r = self.stack.api("POST", f"/v1/payments/{p['id']}/cancel")
        self.assertError(r, 409)

    # --- refunds -------------------------------------------------------------------------------------
    def test_partial_refunds_retry_and_over_refund(self):
        p = self.paid(amount=1000)
        key = uuid.uuid4().hex
        first = self.stack.api("POST", f"/v1/payments/{p['id']}/refunds", {"amount": 300}, idem=key)
        self.assertEqual(first.status, 201, first)
        self.assertEqual(first.json()["status"], "succeeded")
        again = self.stack.api("POST", f"/v1/payments/{p['id']}/refunds", {"amount": 300}, idem=key)
        self.assertEqual(again.status, 201, again)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(again.json()["id"], first.json()["id"])
        second = self.stack.api("POST", f"/v1/payments/{p['id']}/refunds", {"amount": 600}, idem=uuid.uuid4().hex)
        self.assertEqual(second.json()["status"], "succeeded", second)
        self.assertNotEqual(second.json()["provider_refund_id"], first.json()["provider_refund_id"])
        over = self.stack.api("POST", f"/v1/payments/{p['id']}/refunds", {"amount": 200}, idem=uuid.uuid4().hex)
        self.assertError(over, 400, code="amount_too_large", param="amount")
        o = self.order(p)
        self.assertEqual(o["calls"]["refund"], 2)  # one gateway refund per paymux refund
        self.assertEqual(len(o["order"]["refunds"]), 2)
        self.assertEqual(o["order"]["net_amount"], "100")
        self.assertEqual(o["order"]["order_status"], "PARTIAL_REFUNDED")
        now = self.stack.get_payment(p["id"])
        self.assertEqual(now["status"], "partially_refunded")
        self.assertEqual(now["amount_refunded"], 900)
        last = self.stack.api("POST", f"/v1/payments/{p['id']}/refunds", {}, idem=uuid.uuid4().hex)
        self.assertEqual(last.json()["amount"], 100, last)
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "refunded")
        self.assertEqual(self.order(p)["order"]["order_status"], "REFUNDED")

    def test_refund_with_a_lost_answer_is_asked_again_with_its_number(self):
        p = self.paid(amount=800)
        fault = self.stack.sandbox_api("POST", "/_sandbox/faults",
                                       {"gateway": "shouqianba", "mode": "timeout", "count": 1, "hold_ms": 3000})
        self.assertEqual(fault.status, 200, fault)
        try:
            r = self.stack.api("POST", f"/v1/payments/{p['id']}/refunds", {"amount": 300}, idem=uuid.uuid4().hex)
        finally:
            self.stack.sandbox_api("DELETE", "/_sandbox/faults")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["status"], "pending")  # the answer never came
        rid = r.json()["id"]
        done = wait_for(lambda: (lambda x: x if x["status"] != "pending" else None)(
            self.stack.api("GET", f"/v1/refunds/{rid}").json()), timeout=15, what="the refund settled")
        self.assertEqual(done["status"], "succeeded", done)
        self.assertEqual(self.stack.get_payment(p["id"])["amount_refunded"], 300)
        o = self.order(p)
        self.assertEqual(len(o["order"]["refunds"]), 1)
        self.assertEqual(o["order"]["net_amount"], "500")
        self.assertEqual(self.event_types(rid).count("refund.succeeded"), 1)

    def test_sync_queries_the_gateway(self):
        p = self.paid()
        r = self.stack.api("POST", f"/v1/payments/{p['id']}/sync")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "succeeded")

    # --- notifications -------------------------------------------------------------------------------
    def test_notification_applies_and_forged_one_is_rejected(self):
        p = self.pay(method={"type": "qr"}, connector="sqb_notify").json()
        order_no = harness.Stack.order_no(p["id"])
        bad = self.stack.sandbox_api("POST", f"/_sandbox/shouqianba/orders/{order_no}/notify", {"forge_signature": True})
        self.assertEqual(bad.status, 200, bad)
        self.assertNotEqual(bad.json()["responses"][0]["body"].strip(), "success")
        self.scan(p, "pay")  # the sandbox notifies paymux; polling is a minute away
        self.stack.wait_status(p["id"], "succeeded", timeout=5)
        bare = self.stack.sandbox_api("POST", f"/_sandbox/shouqianba/orders/{order_no}/notify", {"bare_signature": True})
        self.assertEqual(bare.json()["responses"][0]["body"].strip(), "success")  # a repeat: received, no change
        self.assertEqual(self.event_types(p["id"]).count("payment.succeeded"), 1)

    # --- terminal keys -------------------------------------------------------------------------------
    def activate(self, code):
        return subprocess.run([harness.PAYMUX_BIN, "shouqianba", "activate", "--connector", "sqb_act", "--code", code,
                               "--config", os.path.join(self.stack.dir, "paymux.yaml")],
                              capture_output=True, text=True, timeout=30)

    def test_activation_by_cli_then_check_in_rotates_the_key(self):
        r = self.pay("130012345678", connector="sqb_act")
        self.assertError(r, 422)  # no terminal key yet
        bad = self.activate("00000000")
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("INVALID_PARAMS", bad.stderr)
        ok = self.activate(ACTIVATION_CODE)
        self.assertEqual(ok.returncode, 0, ok.stderr)

        def terminal():
            ts = self.stack.sandbox_api("GET", "/_sandbox/shouqianba/terminals").json()["terminals"]
            return next((t for t in ts if t.get("device_id") == "sqb_act"), None)
        self.assertIsNotNone(terminal())
        # The running paymux picks the key up from the store, and pays with it.
        r = wait_for(lambda: (lambda x: x if x.status == 201 else None)(self.pay("130012345678", connector="sqb_act")),
                     timeout=5, interval=0.2, what="payment with the activated terminal")
        self.assertEqual(r.json()["status"], "succeeded")
        # Check-ins every 2 s replace the key; payments keep working with the newest.
        wait_for(lambda: terminal()["checkins"] >= 2, timeout=10, what="two check-ins")
        r = self.pay("130012345678", connector="sqb_act")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["status"], "succeeded")
        with sqlite3.connect(self.stack.db) as db:
            row = db.execute("SELECT data FROM connector_credentials WHERE connector = 'sqb_act'").fetchone()
        self.assertIsNotNone(row)
        import json
        key = json.loads(row[0])["terminal_key"]
        self.assertNotIn(key, self.stack.paymux_log_text())  # never logged


if __name__ == "__main__":
    unittest.main()
