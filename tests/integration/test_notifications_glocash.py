"""Glocash PSN (asynchronous notifications) into paymux: verification, unknown orders, amount checks,
duplicates, out-of-order delivery, re-sending until acknowledged, and PSNs signed by the test
itself (appendix 1 formula, computed independently of paymux)."""
import time
import unittest
import urllib.parse
import uuid

from harness import GLOCASH_EMAIL, GLOCASH_KEY, StackTestCase, glocash_psn_sign, request, wait_for


class GlocashNotificationsTest(StackTestCase):

    def created(self, **kwargs):
        r = self.stack.create_payment(**kwargs)
        self.assertEqual(r.status, 201, r)
        return r.json()

    def event_types(self, payment_id):
        return sorted(e["type"] for e in self.stack.events(object_id=payment_id))

    def post_psn(self, fields, connector="glocash_eu"):
        return request(self.stack.port, "POST", f"/webhooks/{connector}", raw=urllib.parse.urlencode(fields),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})

    def psn_fields(self, payment, status="paid", price=None, currency=None, key=GLOCASH_KEY):
        """A PSN as section 7 describes it, for a payment the sandbox knows, signed by the test."""
        tx = self.stack.glocash_transaction(payment["provider_payment_id"])
        f = {"REQ_INVOICE": tx["invoice"], "CUS_EMAIL": tx["customer_email"], "BIL_METHOD": tx["method"],
             "BIL_PRICE": tx["price"], "BIL_CURRENCY": tx["currency"], "REQ_EMAIL": GLOCASH_EMAIL,
             "REQ_SANDBOX": "ON", "TNS_UTIMES": tx["tns_utimes"], "TNS_GCID": tx["gcid"],
             "BIL_IPADDR": "203.0.113.7", "PGW_PRICE": price or tx["price"], "PGW_CURRENCY": currency or tx["currency"],
             "FDL_DECISION": "ACP", "BIL_STATUS": status, "PGW_NOTIFYTYPE": "transaction",
             "REQ_TIMES": str(int(time.time()))}
        f["REQ_SIGN"] = glocash_psn_sign(f, key)
        return f

    def sandbox_psn(self, payment, **options):
        """The sandbox sends one PSN for the payment now; returns the HTTP statuses paymux answered."""
        out = self.stack.glocash_psn(payment["provider_payment_id"], **options)
        return [r["status"] for r in out["responses"]]

    # --- verification ----------------------------------------------------------------------------
    def test_psn_signed_by_the_test_is_applied(self):
        p = self.created()
        r = self.post_psn(self.psn_fields(p, "paid"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, "success")
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "succeeded")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

    def test_forged_signature_is_not_received_and_changes_nothing(self):
        p = self.created()
        self.assertEqual(self.sandbox_psn(p, status="paid", forge_signature=True), [400])
        # signed with the right key, then altered
        fields = self.psn_fields(p, "failed")
        fields["BIL_STATUS"] = "paid"
        self.assertEqual(self.post_psn(fields).status, 400)
        # signed with another key
        self.assertEqual(self.post_psn(self.psn_fields(p, "paid", key="another-key")).status, 400)
        # no signature at all
        fields = self.psn_fields(p, "paid")
        del fields["REQ_SIGN"]
        self.assertEqual(self.post_psn(fields).status, 400)
        stored = self.stack.get_payment(p["id"])
        self.assertEqual(stored["status"], "requires_action")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action"])

    def test_unknown_order_is_not_received(self):
        p = self.created()
        fields = self.psn_fields(p, "paid")
        fields["REQ_INVOICE"] = "0000000000000000000000"  # a well-formed order number nobody has
        fields["REQ_SIGN"] = glocash_psn_sign(fields)  # (REQ_INVOICE is not signed; re-sign anyway)
        self.assertEqual(self.post_psn(fields).status, 400)
        fields["REQ_INVOICE"] = "not an order"
        self.assertEqual(self.post_psn(fields).status, 400)
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "requires_action")

    def test_notification_to_another_connector_is_not_received(self):
        # The "other" merchant's connector shares the Glocash account (same key) but not the order.
        p = self.created()
        r = self.post_psn(self.psn_fields(p, "paid"), connector="glocash_other")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "requires_action")
        r = self.post_psn(self.psn_fields(p, "paid"), connector="no_such_connector")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "requires_action")

    # --- agreement with the order ----------------------------------------------------------------
    def assert_review(self, p):
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "requires_action")
        types = self.event_types(p["id"])
        self.assertIn("payment.review", types)
        self.assertNotIn("payment.succeeded", types)
        [review] = self.stack.events(object_id=p["id"], type="payment.review")
        return review

    def test_order_amount_mismatch_is_flagged_for_review(self):
        p = self.created(amount=1999)
        self.assertEqual(self.sandbox_psn(p, status="paid", bil_price="1.00"), [200])
        review = self.assert_review(p)
        self.assertEqual(review["data"]["object"]["id"], p["id"])
        self.assertEqual(review["data"]["object"]["review"]["notified_amount"], 100)

    def test_charged_amount_mismatch_is_flagged_for_review(self):
        # PGW_PRICE / PGW_CURRENCY (the signed pair) say 1.00 USD was charged for a 19.99 USD order.
        p = self.created(amount=1999)
        self.assertEqual(self.sandbox_psn(p, status="paid", price="1.00"), [200])
        self.assert_review(p)

    def test_order_currency_mismatch_is_flagged_for_review(self):
        p = self.created(amount=1999, currency="USD")
        fields = self.psn_fields(p, "paid")
        fields["BIL_CURRENCY"] = "EUR"
        self.assertEqual(self.post_psn(fields).status, 200)
        self.assert_review(p)

    def test_settlement_in_another_currency_is_applied(self):
        # Section 7's example: a USD order charged as 3.18 EUR. The order's own amount matches.
        p = self.created(amount=379, currency="USD")
        self.assertEqual(self.sandbox_psn(p, status="paid", price="3.18", currency="EUR"), [200])
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "succeeded")
        self.assertNotIn("payment.review", self.event_types(p["id"]))

    # --- duplicates and order --------------------------------------------------------------------
    def test_repeated_psn_is_received_and_applied_once(self):
        p = self.created()
        self.stack.pay_on_page(p)
        self.stack.wait_status(p["id"], "succeeded")
        self.assertEqual(self.sandbox_psn(p, repeat=3), [200, 200, 200])
        fields = self.psn_fields(p, "paid")
        self.assertEqual(self.post_psn(fields).status, 200)
        self.assertEqual(self.post_psn(fields).status, 200)  # byte for byte the same
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

    def test_late_pending_after_paid_changes_nothing(self):
        p = self.created()
        self.stack.pay_on_page(p)
        self.stack.wait_status(p["id"], "succeeded")
        for status in ("pending", "unpaid", "failed", "cancelled"):
            with self.subTest(status=status):
                self.assertEqual(self.sandbox_psn(p, status=status), [200])
                self.assertEqual(self.stack.get_payment(p["id"])["status"], "succeeded")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

    def test_pending_then_paid_moves_forward(self):
        p = self.created()
        self.assertEqual(self.sandbox_psn(p, status="pending"), [200])
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "processing")
        self.assertEqual(self.sandbox_psn(p, status="paid"), [200])
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "succeeded")
        self.assertEqual(self.event_types(p["id"]),
                         ["payment.processing", "payment.requires_action", "payment.succeeded"])

    # --- after the payment -----------------------------------------------------------------------
    def test_dispute_then_won(self):
        p = self.created()
        self.stack.pay_on_page(p)
        self.stack.wait_status(p["id"], "succeeded")
        self.stack.glocash_force_status(p["provider_payment_id"], "complaint", notify=True)
        self.stack.wait_status(p["id"], "disputed")
        self.stack.glocash_force_status(p["provider_payment_id"], "paid", notify=True)
        self.stack.wait_status(p["id"], "succeeded")
        types = self.event_types(p["id"])
        self.assertEqual(types.count("payment.disputed"), 1)
        self.assertEqual(types.count("payment.succeeded"), 2)

    def test_refund_made_at_the_gateway_is_reported(self):
        p = self.created()
        self.stack.pay_on_page(p)
        self.stack.wait_status(p["id"], "succeeded")
        self.stack.glocash_force_status(p["provider_payment_id"], "refunded", notify=True)
        done = self.stack.wait_status(p["id"], "refunded")
        self.assertEqual(done["amount_refunded"], done["amount"])
        self.assertIn("payment.refunded", self.event_types(p["id"]))

    def test_risk_decision_is_recorded(self):
        p = self.created()
        self.stack.glocash_force_status(p["provider_payment_id"], "paid", notify=True, risk="REV")
        done = self.stack.wait_status(p["id"], "succeeded")
        self.assertEqual(done["risk"], {"decision": "REV", "label": "review"})

    # --- delivery --------------------------------------------------------------------------------
    def test_psn_is_resent_until_paymux_acknowledges_it(self):
        p = self.created()
        self.stack.stop_paymux()
        try:
            self.assertEqual(self.stack.pay_on_page(p).json()["status"], "paid")
            gcid = p["provider_payment_id"]
            # the first attempt finds nobody listening
            wait_for(lambda: self.stack.glocash_transaction(gcid)["psn"]["attempts"] >= 1, timeout=5,
                     what="a first PSN attempt")
            self.assertEqual(self.stack.glocash_transaction(gcid)["psn"]["deliveries"], 0)
        finally:
            self.stack.start_paymux()
        self.stack.wait_status(p["id"], "succeeded", timeout=10)
        psn = wait_for(lambda: (lambda s: s if s["deliveries"] == 1 else None)(
            self.stack.glocash_transaction(gcid)["psn"]), timeout=5, what="the PSN acknowledged")
        self.assertGreaterEqual(psn["attempts"], 2)
        self.assertEqual(psn["log"][-1]["http_status"], 200)
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])


if __name__ == "__main__":
    unittest.main()
