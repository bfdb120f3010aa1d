"""Payments through the Glocash connector against the sandbox: the hosted page flow, outcomes by
test card, sync, mandatory fields, gateway refusals, unknown outcomes (5xx, timeout, garbage,
dropped connection), an unreachable gateway, the browser return, and listing."""
import unittest
import urllib.parse
import uuid

from harness import GLOCASH_EMAIL, GLOCASH_KEY, StackTestCase, free_port, request

BADKEY_API_KEY = "sk_test_itest_badkey"
DOWN_API_KEY = "sk_test_itest_down"
SLOW_API_KEY = "sk_test_itest_slow"


class GlocashPaymentsTest(StackTestCase):
    @classmethod
    def setUpClass(cls):
        closed_port = free_port()  # nothing listens there
        # Merchants whose only connector is misconfigured on purpose.
        cls.stack_kwargs = {"extra_merchant_yaml": f"""
  - id: badkey
    api_keys: ["{BADKEY_API_KEY}"]
    connectors:
      - id: glocash_badkey
        provider: glocash
        base_url: "@SANDBOX_URL@/glocash"
        credentials: {{email: "{GLOCASH_EMAIL}", secret_key: "not-the-{GLOCASH_KEY}"}}
  - id: down
    api_keys: ["{DOWN_API_KEY}"]
    connectors:
      - id: glocash_down
        provider: glocash
        base_url: "http://127.0.0.1:{closed_port}/glocash"
        timeout_ms: 2000
        connect_timeout_ms: 1000
        credentials: {{email: "{GLOCASH_EMAIL}", secret_key: "{GLOCASH_KEY}"}}
  - id: slow
    api_keys: ["{SLOW_API_KEY}"]
    connectors:
      - id: glocash_slow
        provider: glocash
        base_url: "@SANDBOX_URL@/glocash"
        timeout_ms: 700
        connect_timeout_ms: 500
        credentials: {{email: "{GLOCASH_EMAIL}", secret_key: "{GLOCASH_KEY}"}}
"""}
        super().setUpClass()

    def setUp(self):
        super().setUp()
        self.stack.clear_faults()

    def tearDown(self):
        self.stack.clear_faults()
        super().tearDown()

    def created(self, **kwargs):
        r = self.stack.create_payment(**kwargs)
        self.assertEqual(r.status, 201, r)
        return r.json()

    def event_types(self, payment_id):
        return sorted(e["type"] for e in self.stack.events(object_id=payment_id))

    # --- the hosted page flow --------------------------------------------------------------------
    def test_create_answers_requires_action_with_a_redirect_to_the_gateway_page(self):
        r = self.stack.create_payment(amount=1999, currency="USD")
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertTrue(p["id"].startswith("pay_"))
        self.assertEqual(p["object"], "payment")
        self.assertEqual(p["status"], "requires_action")
        self.assertEqual((p["amount"], p["currency"], p["amount_refunded"]), (1999, "USD", 0))
        self.assertEqual((p["connector"], p["provider"], p["merchant"]), ("glocash_eu", "glocash", "acme"))
        self.assertRegex(p["provider_payment_id"], r"^CC[A-Z0-9]{14}$")
        self.assertEqual(p["next_action"]["type"], "redirect")
        page = urllib.parse.urlparse(p["next_action"]["url"])
        self.assertEqual(page.port, self.stack.sandbox_port)
        self.assertTrue(page.path.startswith("/glocash/gateway/payment/index/token/"), page)
        self.assertEqual(p["checkout_url"], f"http://127.0.0.1:{self.stack.port}/checkout/{p['id']}")
        self.assertIsNone(p["failure"])
        # what the gateway received
        [tx] = self.stack.glocash_transactions(self.stack.order_no(p["id"]))
        self.assertEqual(tx["gcid"], p["provider_payment_id"])
        self.assertEqual((tx["price"], tx["currency"]), ("19.99", "USD"))
        self.assertEqual(tx["customer_email"], "buyer@example.com")
        self.assertEqual(tx["urls"]["notify"], f"http://127.0.0.1:{self.stack.port}/webhooks/glocash_eu")
        self.assertEqual(tx["status"], "unpaid")
        # the page itself is there
        self.assertEqual(request(page.port, "GET", page.path).status, 200)
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action"])

    def test_amounts_are_sent_in_the_currencys_minor_unit(self):
        for amount, currency, price in ((500, "JPY", "500"), (12345, "KWD", "12.345"), (7, "EUR", "0.07")):
            with self.subTest(currency=currency):
                p = self.created(amount=amount, currency=currency)
                [tx] = self.stack.glocash_transactions(self.stack.order_no(p["id"]))
                self.assertEqual((tx["price"], tx["currency"]), (price, currency))

    def test_checkout_page_redirects_to_the_gateway_page(self):
        p = self.created()
        r = request(self.stack.port, "GET", f"/checkout/{p['id']}")
        self.assertEqual(r.status, 303, r)
        self.assertEqual(r.header("Location"), p["next_action"]["url"])
        self.assertEqual(request(self.stack.port, "GET", "/checkout/pay_doesnotexist").status, 404)

    def test_checkout_status_return_and_assets(self):
        p = self.created(return_url="https://shop.example/orders/1001?x=1")
        r = request(self.stack.port, "GET", f"/checkout/{p['id']}")
        self.assertEqual((r.header("Referrer-Policy"), r.header("Cache-Control")), ("no-referrer", "no-store"))
        # the live status: the status and nothing else
        r = request(self.stack.port, "GET", f"/checkout/{p['id']}/status")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "requires_action"})
        self.assertEqual((r.header("Cache-Control"), r.header("X-Content-Type-Options")), ("no-store", "nosniff"))
        self.assertEqual(request(self.stack.port, "GET", "/checkout/pay_doesnotexist/status").status, 404)
        # leaving the page: to return_url with payment_id and status, its own query kept
        r = request(self.stack.port, "GET", f"/checkout/{p['id']}/return")
        self.assertEqual(r.status, 303, r)
        self.assertEqual(r.header("Location"),
                         f"https://shop.example/orders/1001?x=1&payment_id={p['id']}&status=requires_action")
        self.assertEqual(request(self.stack.port, "GET", "/checkout/pay_doesnotexist/return").status, 404)
        # the pages' script and style, served by paymux itself (CSP 'self')
        for path, kind, marker in (("checkout.js", "text/javascript", "data-status-url"),
                                   ("checkout.css", "text/css", ".qr{")):
            r = request(self.stack.port, "GET", f"/checkout/assets/{path}")
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.header("Content-Type").startswith(kind), r.headers)
            self.assertIn(marker, r.body)

    def test_paid_card_makes_the_payment_succeed(self):
        p = self.created()
        page = self.stack.pay_on_page(p, card="4000000000000002")
        self.assertEqual(page.status, 200, page)
        self.assertEqual(page.json()["status"], "paid")
        done = self.stack.wait_status(p["id"], "succeeded")
        self.assertIsNone(done["next_action"])
        self.assertNotIn("checkout_url", done)
        self.assertEqual(done["risk"]["decision"], "ACP")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])
        [ev] = self.stack.events(object_id=p["id"], type="payment.succeeded")
        self.assertTrue(ev["id"].startswith("evt_"))
        self.assertEqual(ev["data"]["object"]["id"], p["id"])
        self.assertEqual(ev["data"]["object"]["status"], "succeeded")
        self.assertEqual(self.stack.api("GET", f"/v1/events/{ev['id']}").json(), ev)
        # the checkout page now says so instead of redirecting
        r = request(self.stack.port, "GET", f"/checkout/{p['id']}")
        self.assertEqual(r.status, 200)
        self.assertIn("succeeded", r.body)
        # the sandbox counts the PSN as delivered
        tx = self.stack.glocash_transaction(p["provider_payment_id"])
        self.assertEqual(tx["psn"]["deliveries"], 1)

    def test_declined_card_makes_the_payment_fail(self):
        p = self.created()
        self.assertEqual(self.stack.pay_on_page(p, card="5200000000000023").json()["status"], "failed")
        done = self.stack.wait_status(p["id"], "failed")
        self.assertEqual(done["failure"]["code"], "failed")
        self.assertTrue(done["failure"]["message"])
        self.assertEqual(self.event_types(p["id"]), ["payment.failed", "payment.requires_action"])

    def test_pending_card_makes_the_payment_processing(self):
        p = self.created()
        self.assertEqual(self.stack.pay_on_page(p, card="5200000000000106").json()["status"], "pending")
        self.stack.wait_status(p["id"], "processing")
        self.assertEqual(self.event_types(p["id"]), ["payment.processing", "payment.requires_action"])
        # ... and settles later
        self.stack.glocash_force_status(p["provider_payment_id"], "paid", notify=True)
        self.stack.wait_status(p["id"], "succeeded")

    def test_cancel_on_the_page_makes_the_payment_canceled(self):
        p = self.created()
        url = urllib.parse.urlparse(p["next_action"]["url"])
        r = request(url.port, "POST", url.path, raw="action=cancel&auto=1",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.json()["status"], "cancelled")
        self.stack.wait_status(p["id"], "canceled")

    def test_sync_reads_the_gateways_current_state(self):
        p = self.created()
        # The gateway's state changes and nobody tells paymux.
        self.stack.glocash_force_status(p["provider_payment_id"], "paid", notify=False)
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "requires_action")
        r = self.stack.api("POST", f"/v1/payments/{p['id']}/sync")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "succeeded")
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "succeeded")
        self.assertIn("payment.succeeded", self.event_types(p["id"]))
        # a second sync changes nothing and writes no event
        r = self.stack.api("POST", f"/v1/payments/{p['id']}/sync")
        self.assertEqual(r.json()["status"], "succeeded")
        self.assertEqual(self.event_types(p["id"]).count("payment.succeeded"), 1)

    def test_sync_of_a_failed_payment_and_a_gateway_failure(self):
        p = self.created()
        self.stack.glocash_force_status(p["provider_payment_id"], "failed", notify=False)
        r = self.stack.api("POST", f"/v1/payments/{p['id']}/sync")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "failed")
        self.assertEqual(r.json()["failure"]["code"], "failed")
        q = self.created()
        self.stack.set_fault("status_500")
        r = self.stack.api("POST", f"/v1/payments/{q['id']}/sync")
        self.assertError(r, 502, type="provider_error")
        self.assertEqual(self.stack.get_payment(q["id"])["status"], "requires_action")

    def test_cancel_is_unsupported_by_glocash_and_409_when_final(self):
        p = self.created()
        r = self.stack.api("POST", f"/v1/payments/{p['id']}/cancel", idem=uuid.uuid4().hex)
        self.assertError(r, 422, code="unsupported")
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "requires_action")
        done = self.stack.paid_payment()
        r = self.stack.api("POST", f"/v1/payments/{done['id']}/cancel")
        self.assertError(r, 409, code="state_conflict")

    # --- what is checked before anything is sent -------------------------------------------------
    def test_missing_customer_email_is_400_before_any_gateway_call(self):
        before = self.stack.glocash_transaction_count()
        reference = f"ORDER-{uuid.uuid4().hex[:12]}"
        r = self.stack.api("POST", "/v1/payments", {
            "amount": 1999, "currency": "USD", "reference": reference, "payment_method": {"type": "hosted"}},
            idem=uuid.uuid4().hex)
        self.assertError(r, 400, param="customer.email", type="invalid_request_error")
        r = self.stack.create_payment(email="", reference=reference)
        self.assertError(r, 400, param="customer.email")
        r = self.stack.create_payment(email="not-an-email", reference=reference)
        self.assertError(r, 400, param="customer.email")
        self.assertEqual(self.stack.glocash_transaction_count(), before)
        self.assertEqual(self.stack.payments_by_reference(reference), [])

    def test_unsupported_payment_method_is_refused(self):
        before = self.stack.glocash_transaction_count()
        r = self.stack.create_payment(payment_method={"type": "qr"})
        self.assertError(r, 422, code="unsupported")
        self.assertEqual(self.stack.glocash_transaction_count(), before)

    # --- the gateway's answers -------------------------------------------------------------------
    def test_gateway_refusal_req_error_is_a_failed_payment(self):
        # The badkey connector signs with another key: Glocash answers {"REQ_ERROR":"REQ_SIGN"}.
        r = self.stack.create_payment(key=BADKEY_API_KEY)
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertEqual(p["status"], "failed")
        self.assertEqual(p["failure"]["code"], "REQ_SIGN")
        self.assertIsNone(p["next_action"])
        self.assertIsNone(p["provider_payment_id"])
        self.assertEqual(self.stack.glocash_transactions(self.stack.order_no(p["id"])), [])
        events = self.stack.api("GET", f"/v1/events?object_id={p['id']}", key=BADKEY_API_KEY).json()["data"]
        self.assertEqual([e["type"] for e in events], ["payment.failed"])

    def assert_unknown_outcome(self, r, key=None):
        self.assertEqual(r.status, 202, r)
        p = r.json()
        self.assertEqual(p["status"], "processing")
        self.assertIsNone(p["failure"])
        stored = self.stack.get_payment(p["id"], **({"key": key} if key else {}))
        self.assertEqual(stored["status"], "processing")
        return p

    def test_gateway_5xx_is_202_processing(self):
        self.stack.set_fault("status_500")
        self.assert_unknown_outcome(self.stack.create_payment())

    def test_gateway_garbage_is_202_processing(self):
        self.stack.set_fault("garbage")
        self.assert_unknown_outcome(self.stack.create_payment())

    def test_connection_dropped_after_sending_is_202_processing(self):
        # The gateway read the request and dropped the connection: it may have the payment, so
        # paymux neither fails it nor sends it again (a second POST could charge twice).
        self.stack.create_payment()  # leaves a pooled keep-alive connection to the gateway
        self.stack.set_fault("drop", count=2)
        p = self.assert_unknown_outcome(self.stack.create_payment())
        self.assertEqual(self.stack.glocash_transactions(self.stack.order_no(p["id"])), [])
        faults = self.stack.sandbox_api("GET", "/_sandbox/faults").json()["faults"]
        self.assertEqual([(f["mode"], f["count"]) for f in faults], [("drop", 1)], "the POST was sent twice")

    def test_gateway_timeout_is_202_processing(self):
        # glocash_slow waits 700 ms; the gateway holds the connection for 2 s.
        self.stack.set_fault("timeout", hold_ms=2000)
        p = self.assert_unknown_outcome(self.stack.create_payment(key=SLOW_API_KEY), key=SLOW_API_KEY)
        self.assertEqual(p["connector"], "glocash_slow")

    def test_answer_lost_after_a_timeout_leaves_nothing_to_query(self):
        # The gateway creates the transaction but answers after paymux's timeout (700 ms).
        self.stack.set_fault("latency", latency_ms=1200)
        p = self.assert_unknown_outcome(self.stack.create_payment(key=SLOW_API_KEY), key=SLOW_API_KEY)
        self.assertIsNone(p["provider_payment_id"])
        # Without the gateway's id the query API cannot be asked: a conflict, not a crash or a 5xx.
        s = self.stack.api("POST", f"/v1/payments/{p['id']}/sync", key=SLOW_API_KEY)
        self.assertError(s, 409, code="state_conflict")
        self.assertEqual(self.stack.get_payment(p["id"], key=SLOW_API_KEY)["status"], "processing")

    def test_unreachable_gateway_is_502_and_a_failed_payment(self):
        reference = f"ORDER-{uuid.uuid4().hex[:12]}"
        r = self.stack.create_payment(key=DOWN_API_KEY, reference=reference)
        err = self.assertError(r, 502, type="provider_error")
        self.assertEqual(err["code"], "provider_unavailable")
        [p] = self.stack.payments_by_reference(reference, key=DOWN_API_KEY)
        self.assertEqual(p["status"], "failed")
        self.assertEqual(p["failure"]["code"], "provider_unavailable")
        events = self.stack.api("GET", f"/v1/events?object_id={p['id']}", key=DOWN_API_KEY).json()["data"]
        self.assertEqual([e["type"] for e in events], ["payment.failed"])

    # --- the browser's return --------------------------------------------------------------------
    def test_browser_return_redirects_to_the_merchant_with_id_and_status(self):
        p = self.created(return_url="https://shop.example/orders/1001")
        page = self.stack.pay_on_page(p).json()
        self.stack.wait_status(p["id"], "succeeded")
        ret = urllib.parse.urlparse(page["return_url"])
        self.assertEqual((ret.port, ret.path), (self.stack.port, "/return/glocash_eu"))
        r = request(self.stack.port, "POST", ret.path + "?" + ret.query,
                    raw=urllib.parse.urlencode(page["return_fields"]),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 303, r)
        self.assertEqual(r.header("Location"),
                         f"https://shop.example/orders/1001?payment_id={p['id']}&status=succeeded")

    def test_browser_return_keeps_the_merchants_query_and_fragment(self):
        p = self.created(return_url="https://shop.example/done?order=1001#top")
        page = self.stack.pay_on_page(p, card="5200000000000023").json()
        self.stack.wait_status(p["id"], "failed")
        ret = urllib.parse.urlparse(page["return_url"])
        r = request(self.stack.port, "POST", ret.path + "?" + ret.query,
                    raw=urllib.parse.urlencode(page["return_fields"]),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 303, r)
        self.assertEqual(r.header("Location"),
                         f"https://shop.example/done?order=1001&payment_id={p['id']}&status=failed#top")

    def test_browser_return_is_not_the_source_of_truth(self):
        # A return that claims "paid" before any PSN: the redirect reports the stored status.
        p = self.created()
        page = self.stack.pay_on_page(p).json()
        fields = dict(page["return_fields"])
        q = self.created()
        fields["REQ_SIGN"] = "0" * 64  # forged
        r = request(self.stack.port, "POST", f"/return/glocash_eu?payment={q['id']}",
                    raw=urllib.parse.urlencode(fields),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 303, r)
        self.assertIn(f"payment_id={q['id']}", r.header("Location"))
        self.assertIn("status=requires_action", r.header("Location"))
        self.assertEqual(self.stack.get_payment(q["id"])["status"], "requires_action")
        # unknown payment: 404
        r = request(self.stack.port, "GET", "/return/glocash_eu?payment=pay_doesnotexist")
        self.assertEqual(r.status, 404, r)

    def test_browser_return_asks_the_gateway(self):
        # Paid at the gateway, no PSN sent (yet): the return queries Glocash and reports the answer.
        p = self.created(return_url="https://shop.example/done?status=stale&lang=en")
        self.stack.glocash_force_status(self.stack.gcid_of(p), "paid", notify=False)
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "requires_action")
        r = request(self.stack.port, "GET", f"/return/glocash_eu?payment={p['id']}")
        self.assertEqual(r.status, 303, r)
        self.assertEqual(r.header("Location"),
                         f"https://shop.example/done?status=succeeded&lang=en&payment_id={p['id']}")
        self.assertEqual(self.stack.get_payment(p["id"])["status"], "succeeded")

    # --- listing ---------------------------------------------------------------------------------
    def test_list_is_newest_first_with_cursor_pagination(self):
        ids = [self.created()["id"] for _ in range(3)]  # a, b, c: c is the newest
        page1 = self.stack.api("GET", "/v1/payments?limit=2").json()
        self.assertEqual(page1["object"], "list")
        self.assertEqual([p["id"] for p in page1["data"]], [ids[2], ids[1]])
        self.assertTrue(page1["has_more"])
        page2 = self.stack.api("GET", f"/v1/payments?limit=2&starting_after={ids[1]}").json()
        self.assertEqual(page2["data"][0]["id"], ids[0])
        # walking every page returns each payment once
        seen, cursor = [], None
        while True:
            q = "limit=3" + (f"&starting_after={cursor}" if cursor else "")
            page = self.stack.api("GET", "/v1/payments?" + q).json()
            seen += [p["id"] for p in page["data"]]
            if not page["has_more"]:
                break
            cursor = page["data"][-1]["id"]
        self.assertEqual(len(seen), len(set(seen)))
        for i in ids:
            self.assertIn(i, seen)
        last = self.stack.api("GET", f"/v1/payments?limit=100&starting_after={seen[-2]}").json()
        self.assertEqual([p["id"] for p in last["data"]], [seen[-1]])
        self.assertFalse(last["has_more"])

    def test_list_filters_and_validates_its_parameters(self):
        p = self.created()
        by_ref = self.stack.api("GET", f"/v1/payments?reference={p['reference']}").json()
        self.assertEqual([x["id"] for x in by_ref["data"]], [p["id"]])
        self.assertFalse(by_ref["has_more"])
        by_status = self.stack.api("GET", "/v1/payments?status=requires_action&limit=100").json()["data"]
        self.assertIn(p["id"], [x["id"] for x in by_status])
        self.assertTrue(all(x["status"] == "requires_action" for x in by_status))
        for q in ("limit=0", "limit=101", "limit=abc", "status=nonsense", "colour=blue"):
            with self.subTest(q=q):
                self.assertError(self.stack.api("GET", "/v1/payments?" + q), 400)

    def test_connectors_lists_the_merchants_connectors(self):
        r = self.stack.api("GET", "/v1/connectors")
        self.assertEqual(r.status, 200, r)
        [c] = r.json()["data"]
        self.assertEqual((c["id"], c["provider"]), ("glocash_eu", "glocash"))
        self.assertIn("refund", c["flows"])
        self.assertIn("hosted", c["payment_methods"])
        self.assertNotIn(GLOCASH_KEY, r.body)


if __name__ == "__main__":
    unittest.main()
