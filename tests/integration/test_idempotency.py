"""Idempotency-Key on POST /v1/payments: replays, reuse with another payload, concurrent retries, and
the merchant's reference as a second guard against double charges."""
import json
import threading
import time
import unittest
import uuid

from harness import OTHER_API_KEY, StackTestCase


def payment_body(reference=None, amount=1999):
    return {"amount": amount, "currency": "USD", "reference": reference or f"ORDER-{uuid.uuid4().hex[:12]}",
            "payment_method": {"type": "hosted"}, "description": "Smart Phone P238 x1",
            "customer": {"email": "buyer@example.com"}, "return_url": "https://shop.example/orders/1001"}


class IdempotencyTest(StackTestCase):

    def tearDown(self):
        self.stack.clear_faults()
        super().tearDown()

    def post(self, body, key, api_key=None, raw=None):
        kw = {"key": api_key} if api_key else {}
        if raw is not None:
            return self.stack.api("POST", "/v1/payments", raw=raw, idem=key,
                                  headers={"Content-Type": "application/json"}, **kw)
        return self.stack.api("POST", "/v1/payments", body, idem=key, **kw)

    def test_same_key_and_body_replays_the_first_answer(self):
        body = payment_body()
        key = uuid.uuid4().hex
        first = self.post(body, key)
        self.assertEqual(first.status, 201, first)
        self.assertIsNone(first.header("Idempotent-Replayed"))
        second = self.post(body, key)
        self.assertEqual(second.status, 201, second)
        self.assertEqual(second.header("Idempotent-Replayed"), "true")
        self.assertEqual(second.json(), first.json())
        payments = self.stack.payments_by_reference(body["reference"])
        self.assertEqual([p["id"] for p in payments], [first.json()["id"]])
        self.assertEqual(len(self.stack.glocash_transactions(self.stack.order_no(first.json()["id"]))), 1)

    def test_replay_compares_the_canonical_json(self):
        body = payment_body()
        key = uuid.uuid4().hex
        first = self.post(body, key)
        self.assertEqual(first.status, 201, first)
        # the same payload with its members in another order and other whitespace
        reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
        second = self.post(None, key, raw=reordered)
        self.assertEqual(second.status, 201, second)
        self.assertEqual(second.header("Idempotent-Replayed"), "true")
        self.assertEqual(second.json()["id"], first.json()["id"])

    def test_replay_returns_the_first_answer_even_after_the_payment_moved_on(self):
        body = payment_body()
        key = uuid.uuid4().hex
        first = self.post(body, key)
        self.assertEqual(first.status, 201, first)
        self.stack.pay_on_page(first.json())
        self.stack.wait_status(first.json()["id"], "succeeded")
        again = self.post(body, key)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(again.status, 201)
        self.assertEqual(again.json()["status"], "requires_action")
        self.assertEqual(again.json()["id"], first.json()["id"])

    def test_same_key_with_another_body_is_422_key_reused(self):
        body = payment_body()
        key = uuid.uuid4().hex
        self.assertEqual(self.post(body, key).status, 201)
        other = dict(body, amount=2999)
        r = self.post(other, key)
        self.assertError(r, 422, code="key_reused", type="idempotency_error")
        self.assertIsNone(r.header("Idempotent-Replayed"))
        payments = self.stack.payments_by_reference(body["reference"])
        self.assertEqual(len(payments), 1)
        self.assertEqual(payments[0]["amount"], 1999)

    def test_keys_are_scoped_per_merchant(self):
        body = payment_body()
        key = uuid.uuid4().hex
        mine = self.post(body, key)
        theirs = self.post(body, key, api_key=OTHER_API_KEY)
        self.assertEqual(mine.status, 201, mine)
        self.assertEqual(theirs.status, 201, theirs)
        self.assertIsNone(theirs.header("Idempotent-Replayed"))
        self.assertNotEqual(mine.json()["id"], theirs.json()["id"])
        self.assertEqual(theirs.json()["merchant"], "other")

    def test_concurrent_requests_with_one_key_make_one_payment(self):
        # The gateway takes ~1 s to answer: the second request arrives while the first is running.
        self.stack.set_fault("latency", count=1, latency_ms=1000)
        body = payment_body()
        key = uuid.uuid4().hex
        answers = {}

        def send(name):
            answers[name] = self.post(body, key)

        first = threading.Thread(target=send, args=("first",))
        first.start()
        time.sleep(0.3)
        second = threading.Thread(target=send, args=("second",))
        second.start()
        first.join(15)
        second.join(15)
        a, b = answers["first"], answers["second"]
        self.assertEqual(a.status, 201, a)
        if b.status == 409:
            self.assertError(b, 409, code="request_in_progress", type="idempotency_error")
        else:  # the first had finished already: then it is a replay
            self.assertEqual(b.status, 201, b)
            self.assertEqual(b.header("Idempotent-Replayed"), "true")
            self.assertEqual(b.json()["id"], a.json()["id"])
        payments = self.stack.payments_by_reference(body["reference"])
        self.assertEqual([p["id"] for p in payments], [a.json()["id"]])
        order_no = self.stack.order_no(a.json()["id"])
        self.assertEqual(len(self.stack.glocash_transactions(order_no)), 1)
        # once the first is done, the key replays
        c = self.post(body, key)
        self.assertEqual(c.status, 201, c)
        self.assertEqual(c.header("Idempotent-Replayed"), "true")
        self.assertEqual(c.json()["id"], a.json()["id"])

    def test_many_concurrent_retries_make_one_gateway_transaction(self):
        self.stack.set_fault("latency", count=1, latency_ms=800)
        body = payment_body()
        key = uuid.uuid4().hex
        answers = []
        lock = threading.Lock()

        def send():
            r = self.post(body, key)
            with lock:
                answers.append(r)

        threads = [threading.Thread(target=send) for _ in range(6)]
        for t in threads:
            t.start()
            time.sleep(0.02)
        for t in threads:
            t.join(15)
        statuses = sorted(r.status for r in answers)
        self.assertEqual(len(answers), 6)
        created = [r for r in answers if r.status == 201 and r.header("Idempotent-Replayed") is None]
        self.assertEqual(len(created), 1, answers)
        for r in answers:
            self.assertIn(r.status, (201, 409), statuses)
        payments = self.stack.payments_by_reference(body["reference"])
        self.assertEqual(len(payments), 1)
        self.assertEqual(len(self.stack.glocash_transactions(self.stack.order_no(payments[0]["id"]))), 1)

    def test_duplicate_reference_with_a_new_key_is_409(self):
        body = payment_body()
        first = self.post(body, uuid.uuid4().hex)
        self.assertEqual(first.status, 201, first)
        before = self.stack.glocash_transaction_count()
        r = self.post(body, uuid.uuid4().hex)
        self.assertError(r, 409, code="duplicate_reference", param="reference", type="invalid_request_error")
        r = self.post(dict(body, amount=500), uuid.uuid4().hex)
        self.assertError(r, 409, code="duplicate_reference", param="reference")
        self.assertEqual(len(self.stack.payments_by_reference(body["reference"])), 1)
        self.assertEqual(self.stack.glocash_transaction_count(), before)
        # references are per merchant
        self.assertEqual(self.post(body, uuid.uuid4().hex, api_key=OTHER_API_KEY).status, 201)


if __name__ == "__main__":
    unittest.main()
