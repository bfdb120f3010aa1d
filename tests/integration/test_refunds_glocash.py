"""Refunds through the Glocash connector: partial and full refunds, over-refunds, refunds of payments
that cannot be refunded, idempotent retries, a gateway that declines, and the events written."""
import unittest
import uuid
from decimal import Decimal

from harness import StackTestCase


class GlocashRefundsTest(StackTestCase):

    def tearDown(self):
        self.stack.clear_faults()
        super().tearDown()

    def refund(self, payment_id, body=None, idem=None):
        return self.stack.api("POST", f"/v1/payments/{payment_id}/refunds", body if body is not None else {},
                              idem=idem if idem is not None else uuid.uuid4().hex)

    def gateway_refunds(self, payment):
        """What the gateway refunded: (the total in minor units, each refund's PGW_PRICE as sent)."""
        tx = self.stack.glocash_transaction(payment["provider_payment_id"])
        return int(Decimal(tx["refunded"]) * 100), [r["amount"] for r in tx["refunds"]]

    def refund_events(self, refund_id, type):
        return [e for e in self.stack.events(type=type) if e["data"]["object"]["id"] == refund_id]

    def test_refund_events_are_filed_under_the_refund(self):
        # GET /v1/events?object_id=re_... finds a refund's events; the payment's id finds the
        # payment's own.
        p = self.stack.paid_payment(amount=1999)
        refund = self.refund(p["id"], {"amount": 500}).json()
        self.assertEqual([e["type"] for e in self.stack.events(object_id=refund["id"])], ["refund.succeeded"])
        self.assertEqual(sorted(e["data"]["object"]["id"] for e in self.stack.events(object_id=p["id"])),
                         [p["id"]] * 3)  # requires_action, succeeded, partially_refunded

    def test_partial_then_remaining_refund(self):
        p = self.stack.paid_payment(amount=1999)
        r = self.refund(p["id"], {"amount": 500, "reason": "one item returned"})
        self.assertEqual(r.status, 201, r)
        first = r.json()
        self.assertTrue(first["id"].startswith("re_"), first)
        self.assertEqual((first["object"], first["payment"]), ("refund", p["id"]))
        self.assertEqual((first["amount"], first["currency"], first["status"]), (500, "USD", "succeeded"))
        self.assertIsNone(first["failure"])
        after = self.stack.get_payment(p["id"])
        self.assertEqual((after["status"], after["amount_refunded"]), ("partially_refunded", 500))
        self.assertEqual(self.gateway_refunds(p), (500, ["5.00"]))

        # no amount: what is left
        r = self.refund(p["id"], {})
        self.assertEqual(r.status, 201, r)
        second = r.json()
        self.assertEqual((second["amount"], second["status"]), (1499, "succeeded"))
        after = self.stack.get_payment(p["id"])
        self.assertEqual((after["status"], after["amount_refunded"]), ("refunded", 1999))
        self.assertEqual(self.gateway_refunds(p), (1999, ["5.00", "14.99"]))

        self.assertEqual(self.stack.api("GET", f"/v1/refunds/{first['id']}").json(), first)
        listed = self.stack.api("GET", f"/v1/payments/{p['id']}/refunds").json()
        self.assertEqual(sorted(x["id"] for x in listed["data"]), sorted([first["id"], second["id"]]))

        # events: one refund.succeeded per refund, and the payment's own transitions
        for refund in (first, second):
            [ev] = self.refund_events(refund["id"], "refund.succeeded")
            self.assertEqual(ev["data"]["object"]["amount"], refund["amount"])
            self.assertEqual(ev["data"]["object"]["status"], "succeeded")
        types = [e["type"] for e in self.stack.events(type="payment.partially_refunded")
                 if e["data"]["object"]["id"] == p["id"]]
        types += [e["type"] for e in self.stack.events(type="payment.refunded") if e["data"]["object"]["id"] == p["id"]]
        self.assertEqual(sorted(types), ["payment.partially_refunded", "payment.refunded"])

        # nothing is left to refund
        r = self.refund(p["id"], {"amount": 1})
        self.assertEqual(r.status, 409, r)
        self.assertEqual(self.gateway_refunds(p)[0], 1999)

    def test_over_refund_is_400_amount_too_large(self):
        p = self.stack.paid_payment(amount=1999)
        self.assertError(self.refund(p["id"], {"amount": 2000}), 400, code="amount_too_large", param="amount")
        self.assertEqual(self.refund(p["id"], {"amount": 1000}).status, 201)
        self.assertError(self.refund(p["id"], {"amount": 1000}), 400, code="amount_too_large", param="amount")
        self.assertEqual(self.refund(p["id"], {"amount": 999}).status, 201)
        self.assertEqual(self.gateway_refunds(p), (1999, ["10.00", "9.99"]))
        self.assertEqual(self.stack.get_payment(p["id"])["amount_refunded"], 1999)

    def test_refund_of_a_payment_that_did_not_succeed_is_409(self):
        r = self.stack.create_payment()
        pending = r.json()
        self.assertError(self.refund(pending["id"], {"amount": 100}), 409, code="state_conflict")
        failed = self.stack.create_payment().json()
        self.stack.pay_on_page(failed, card="5200000000000023")
        self.stack.wait_status(failed["id"], "failed")
        self.assertError(self.refund(failed["id"]), 409, code="state_conflict")
        for p in (pending, failed):
            self.assertEqual(self.gateway_refunds(p), (0, []))
            self.assertEqual(self.stack.api("GET", f"/v1/payments/{p['id']}/refunds").json()["data"], [])

    def test_same_idempotency_key_refunds_once(self):
        p = self.stack.paid_payment(amount=1999)
        key = uuid.uuid4().hex
        first = self.refund(p["id"], {"amount": 500}, idem=key)
        self.assertEqual(first.status, 201, first)
        again = self.refund(p["id"], {"amount": 500}, idem=key)
        self.assertEqual(again.status, 201, again)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(again.json(), first.json())
        self.assertEqual(self.gateway_refunds(p), (500, ["5.00"]))
        self.assertEqual(self.stack.get_payment(p["id"])["amount_refunded"], 500)
        self.assertError(self.refund(p["id"], {"amount": 600}, idem=key), 422, code="key_reused")
        self.assertEqual(len(self.stack.api("GET", f"/v1/payments/{p['id']}/refunds").json()["data"]), 1)

    def test_refund_request_validation(self):
        p = self.stack.paid_payment(amount=1999)
        for body, param in (({"amount": "5.00"}, "amount"), ({"amount": 5.0}, "amount"), ({"amount": 0}, "amount"),
                            ({"amount": -5}, "amount"), ({"amount": 500, "colour": "red"}, "colour"),
                            ({"reason": 5}, "reason")):
            with self.subTest(body=body):
                self.assertError(self.refund(p["id"], body), 400, param=param)
        self.assertEqual(self.gateway_refunds(p), (0, []))
        self.assertError(self.refund("pay_doesnotexist", {"amount": 1}), 404, code="resource_missing")

    def test_refund_declined_by_the_gateway_is_failed(self):
        p = self.stack.paid_payment(amount=1999)
        # The gateway no longer sees the payment as paid (and says nothing to paymux).
        self.stack.glocash_force_status(p["provider_payment_id"], "pending", notify=False)
        r = self.refund(p["id"], {"amount": 500})
        self.assertEqual(r.status, 201, r)
        refund = r.json()
        self.assertEqual(refund["status"], "failed")
        self.assertTrue(refund["failure"]["code"])
        after = self.stack.get_payment(p["id"])
        self.assertEqual((after["status"], after["amount_refunded"]), ("succeeded", 0))
        self.assertEqual(len(self.refund_events(refund["id"], "refund.failed")), 1)
        self.assertEqual(self.refund_events(refund["id"], "refund.succeeded"), [])
        # a failed refund does not count against what is left
        self.stack.glocash_force_status(p["provider_payment_id"], "paid", notify=False)
        r = self.refund(p["id"], {"amount": 1999})
        self.assertEqual((r.status, r.json()["status"]), (201, "succeeded"))

    def test_refund_with_unknown_outcome_stays_pending(self):
        p = self.stack.paid_payment(amount=1999)
        self.stack.set_fault("status_500")
        r = self.refund(p["id"], {"amount": 500})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["status"], "pending")
        after = self.stack.get_payment(p["id"])
        self.assertEqual((after["status"], after["amount_refunded"]), ("succeeded", 0))
        # the pending amount is reserved: no over-refund while it is unsettled
        self.assertError(self.refund(p["id"], {"amount": 1500}), 400, code="amount_too_large")


if __name__ == "__main__":
    unittest.main()
