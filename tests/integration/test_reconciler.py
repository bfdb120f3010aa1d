"""Reconciliation: a payment whose result the gateway never notified is settled by querying it, and
a payment abandoned on the gateway's page expires after expires_at."""
import unittest

import harness


class ReconcilerStack(harness.Stack):
    def paymux_config(self):
        return super().paymux_config().replace(
            "merchants:",
            "reconciler: {first_check_ms: 500, tick_ms: 100, expiry_grace_ms: 500}\nmerchants:", 1)


class ReconcilerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = ReconcilerStack().start()

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_a_paid_payment_without_notification_is_settled_by_a_query(self):
        s = self.stack
        p = s.create_payment().json()
        self.assertEqual(p["status"], "requires_action")
        # The gateway marks it paid but sends no PSN: only a query can tell.
        r = s.sandbox_api("POST", f"/_sandbox/glocash/transactions/{p['provider_payment_id']}/status",
                          {"status": "paid", "notify": False})
        self.assertEqual(r.status, 200, r)
        done = s.wait_status(p["id"], "succeeded", timeout=15)
        self.assertEqual(done["amount_refunded"], 0)
        types = [e["type"] for e in s.events(object_id=p["id"])]
        self.assertEqual(types.count("payment.succeeded"), 1)

    def test_an_abandoned_payment_expires(self):
        s = self.stack
        p = s.create_payment(expires_in=10).json()
        self.assertEqual(p["status"], "requires_action")
        self.assertIsNotNone(p["expires_at"])
        s.wait_status(p["id"], "expired", timeout=25)
        self.assertIn("payment.expired", [e["type"] for e in s.events(object_id=p["id"])])
        # Final: a late PSN saying paid is answered but changes nothing.
        late = s.sandbox_api("POST", f"/_sandbox/glocash/transactions/{p['provider_payment_id']}/psn",
                             {"status": "paid"})
        self.assertEqual(late.status, 200, late)
        self.assertEqual(s.api("GET", f"/v1/payments/{p['id']}").json()["status"], "expired")


if __name__ == "__main__":
    unittest.main()
