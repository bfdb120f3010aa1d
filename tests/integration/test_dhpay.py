"""DHpay through paymux against the sandbox's DHpay simulators, for both connectors:

- `dhpay` (web cashier, provider-docs/001): paymux answers requires_action with a form_post to the
  cashier; the test posts those fields as the browser would, pays on the sandbox page, and paymux
  learns the result from the signed GET notify (and the browser return).
- `dhpay_nonce` (Cashier nonce API, provider-docs/000): OAuth2 token, server-to-server payment with a
  nonce, 3-D Secure through the sandbox's ACS page and the web-cashier callback format.

Success, failure with the gateway's code, pending then notify, duplicate and forged notifications,
amount mismatch, unknown invoices, storage unavailable during a notify, token expiry under
concurrent traffic, the 3-D Secure round trip, mandatory fields and unsupported flows.

Callback hashes the test makes itself follow SIGNING.md, computed here independently of paymux and
of the sandbox."""
import concurrent.futures
import hashlib
import sqlite3
import time
import unittest
import urllib.parse
import uuid
from html.parser import HTMLParser

from harness import Stack, StackTestCase, request, wait_for

DH_MERCHANT = "200000000147049"
DH_SECRET = "itest-dhpay-secret-key-0042"
NONCE_CLIENT = "50517365"
NONCE_SECRET = "itest-dhpay-nonce-secret-0042"
NONCE_MERCHANT = "200000000109510"
DH_API_KEY = "sk_test_itest_dhpay"
DH_WRONG_API_KEY = "sk_test_itest_dhpay_wrong"

WEB = "dhpay_web"
NONCE = "dhpay_nonce_main"
CALLBACK_SIGNED = ("amount", "currency", "failure_reason", "invoice_id", "merchant_id", "order_no", "ref_no",
                   "status", "trans_date", "trans_time")
THREE_DS_FIELDS = {"MD", "TermUrl", "paReq", "orderId", "transactionId", "sessionToken"}


def dh_request_hash(secret, amount, currency, invoice_id, merchant_id):
    return hashlib.sha256((secret + amount + currency + invoice_id + merchant_id).encode()).hexdigest().upper()


def dh_callback_hash(fields, secret):
    return hashlib.sha256((secret + "".join(fields.get(k, "") for k in CALLBACK_SIGNED)).encode()).hexdigest().upper()


class HiddenInputs(HTMLParser):
    """The action and hidden inputs of the first form of a page."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action")
        if tag == "input" and a.get("type") == "hidden":
            self.fields[a.get("name")] = a.get("value", "")


class DhpayStack(Stack):
    """The harness's stack plus the sandbox's dhpay section and a merchant with both connectors."""

    def __init__(self, **kwargs):
        kwargs.setdefault("extra_merchant_yaml", f"""
  - id: dhshop
    api_keys: ["{DH_API_KEY}"]
    connectors:
      - id: {WEB}
        provider: dhpay
        base_url: "@SANDBOX_URL@/dhpay"
        timeout_ms: 3000
        connect_timeout_ms: 1000
        credentials: {{merchant_id: "{DH_MERCHANT}", secret_key: "{DH_SECRET}"}}
        settings: {{sandbox: "true"}}
      - id: {NONCE}
        provider: dhpay_nonce
        base_url: "@SANDBOX_URL@/dhpay"
        timeout_ms: 3000
        connect_timeout_ms: 1000
        credentials: {{client_id: "{NONCE_CLIENT}", secret: "{NONCE_SECRET}", merchant_id: "{NONCE_MERCHANT}"}}
  - id: dhwrong
    api_keys: ["{DH_WRONG_API_KEY}"]
    connectors:
      - id: dhpay_nonce_wrong_merchant
        provider: dhpay_nonce
        base_url: "@SANDBOX_URL@/dhpay"
        timeout_ms: 3000
        credentials: {{client_id: "{NONCE_CLIENT}", secret: "{NONCE_SECRET}", merchant_id: "999999999"}}
""")
        super().__init__(**kwargs)

    def sandbox_config(self):
        # time_factor 100: retry waits 0.15 s, 0.3 s, 0.6 s, ...; processing payments settle after 1.5 s.
        return super().sandbox_config() + f"""
dhpay:
  merchants:
    - {{merchant_id: "{DH_MERCHANT}", secret_key: "{DH_SECRET}", name: "Integration Shop"}}
  nonce_clients:
    - {{client_id: "{NONCE_CLIENT}", secret: "{NONCE_SECRET}", merchant_id: "{NONCE_MERCHANT}"}}
  token_lifetime_seconds: 28800
  notify_max_sends: 10
  notify_retry_seconds: [15, 30, 60, 120, 300, 600, 1800, 3600, 7200]
  notify_timeout_ms: 8000
  pending_settle_seconds: 150
"""

    # --- paymux API as the dhshop merchant ------------------------------------------------------
    def dh_api(self, method, path, body=None, idem=None, key=DH_API_KEY):
        return self.api(method, path, body=body, key=key, idem=idem)

    def dh_payment(self, payment_id):
        r = self.dh_api("GET", f"/v1/payments/{payment_id}")
        assert r.status == 200, r
        return r.json()

    def dh_wait(self, payment_id, status, timeout=10):
        def check():
            p = self.dh_payment(payment_id)
            return p if p["status"] == status else None
        return wait_for(check, timeout=timeout, what=f"{payment_id} to be {status}")

    def dh_events(self, payment_id, type=None):
        q = {"limit": "100", "object_id": payment_id}
        if type:
            q["type"] = type
        r = self.dh_api("GET", "/v1/events?" + urllib.parse.urlencode(q))
        assert r.status == 200, r
        return r.json()["data"]

    # --- the sandbox's control API --------------------------------------------------------------
    def dh_order(self, ident):
        r = self.sandbox_api("GET", f"/_sandbox/dhpay/orders/{ident}")
        assert r.status == 200, r
        return r.json()

    def dh_order_count(self):
        return self.sandbox_api("GET", "/_sandbox").json()["simulators"]["dhpay"]["orders"]

    def dh_notify(self, ident, **options):
        r = self.sandbox_api("POST", f"/_sandbox/dhpay/orders/{ident}/notify", options)
        assert r.status == 200, r
        return r.json()

    def dh_tokens(self, **changes):
        r = self.sandbox_api("POST", "/_sandbox/dhpay/tokens", changes) if changes else \
            self.sandbox_api("GET", "/_sandbox/dhpay/tokens")
        assert r.status == 200, r
        return r.json()


def payment_body(amount, method, connector, **extra):
    body = {
        "amount": amount, "currency": "USD", "reference": f"DH-{uuid.uuid4().hex[:12]}", "connector": connector,
        "payment_method": method, "description": "Book",
        "items": [{"name": "Book", "unit_amount": amount, "quantity": 1}],
        "customer": {"email": "buyer@example.com", "first_name": "Steve", "last_name": "Martin", "id": "cust1001",
                     "ip": "203.0.113.7"},
        "billing": {"country": "US", "state": "Alabama", "city": "New York", "line1": "Bboolltem st.02",
                    "postal_code": "100081", "phone": "112300081"},
        "shipping": {"first_name": "Steve", "last_name": "Martin", "country": "US", "state": "Alabama",
                     "city": "New York", "line1": "Bboolltem st.02", "postal_code": "100081",
                     "email": "ship@example.com", "phone": "112300081"},
        "return_url": "https://shop.example/orders/1001",
    }
    body.update(extra)
    return body


class DhpayTestCase(StackTestCase):
    @classmethod
    def setUpClass(cls):
        cls._failed = False
        cls.stack = DhpayStack(**cls.stack_kwargs).start()

    def event_types(self, payment_id):
        return sorted(e["type"] for e in self.stack.dh_events(payment_id))

    def order_no(self, payment):
        return self.stack.order_no(payment["id"])

    def notify_bodies(self, out):
        return [r["body"] for r in out["responses"]]

    def get_webhook(self, connector, fields):
        return request(self.stack.port, "GET", f"/webhooks/{connector}?" + urllib.parse.urlencode(fields))

    def signed_callback(self, order, secret, **changes):
        """A callback for a sandbox order, signed by the test (SIGNING.md)."""
        f = {"merchant_id": order["merchant_id"], "invoice_id": order["invoice_id"], "order_no": order["order_no"],
             "currency": order["currency"], "amount": order["amount"], "ref_no": order["ref_no"], "status": "01",
             "failure_reason": "", "trans_date": "20260101", "trans_time": "120000", "description": ""}
        f.update(changes)
        f["hash"] = dh_callback_hash(f, secret)
        return f


# =================================================================================================
class DhpayWebCashierTest(DhpayTestCase):

    def created(self, amount=1999, **extra):
        r = self.stack.dh_api("POST", "/v1/payments", payment_body(amount, {"type": "hosted"}, WEB, **extra),
                              idem=uuid.uuid4().hex)
        self.assertEqual(r.status, 201, r)
        return r.json()

    def post_cashier(self, payment, fields=None):
        """The browser posts paymux's form to the cashier; answers the sandbox's response."""
        na = payment["next_action"]
        url = urllib.parse.urlparse(na["url"])
        return request(url.port, "POST", url.path + ("?" + url.query if url.query else ""),
                       raw=urllib.parse.urlencode(na["fields"] if fields is None else fields),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})

    def open_page(self, payment):
        r = self.post_cashier(payment)
        self.assertEqual(r.status, 303, r)
        return urllib.parse.urlparse(r.header("Location"))

    def pay(self, payment, card="4111111111111111"):
        page = self.open_page(payment)
        r = request(page.port, "POST", page.path,
                    raw=urllib.parse.urlencode({"card_number": card, "card_expiry": "12/30", "card_cvv": "123",
                                                "card_holder": "Steve Martin", "auto": "1"}),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 200, r)
        return r.json()

    # --- creation --------------------------------------------------------------------------------
    def test_create_answers_a_form_post_to_the_cashier_with_the_documents_fields(self):
        before = self.stack.dh_order_count()
        p = self.created(amount=45852)
        self.assertEqual((p["status"], p["connector"], p["provider"]), ("requires_action", WEB, "dhpay"))
        na = p["next_action"]
        self.assertEqual(na["type"], "form_post")
        self.assertEqual(na["url"], f"http://127.0.0.1:{self.stack.sandbox_port}/dhpay/merchant/web/cashier"
                                    "?env=dhpaysandbox")
        f = na["fields"]
        for name in ("merchant_id", "invoice_id", "order_no", "currency", "amount", "buyer_email", "shipping_country",
                     "first_name", "last_name", "country", "state", "city", "address_line", "zipcode",
                     "product_name", "product_price", "product_quantity", "shipping_first_name",
                     "shipping_last_name", "shipping_address_line", "shipping_city", "shipping_state",
                     "shipping_zipcode", "shipping_email", "shipping_phone", "return_url", "notify_url", "remark",
                     "hash"):
            self.assertIn(name, f)
        self.assertEqual((f["merchant_id"], f["invoice_id"], f["amount"], f["currency"]),
                         (DH_MERCHANT, self.order_no(p), "458.52", "USD"))
        self.assertEqual(f["hash"].upper(), dh_request_hash(DH_SECRET, "458.52", "USD", f["invoice_id"], DH_MERCHANT))
        self.assertEqual(f["notify_url"], f"http://127.0.0.1:{self.stack.port}/webhooks/{WEB}")
        self.assertTrue(f["return_url"].startswith(f"http://127.0.0.1:{self.stack.port}/return/{WEB}?payment="))
        self.assertEqual(self.stack.dh_order_count(), before, "no gateway call at creation")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action"])
        # the cashier accepts the form as it is and shows its payment page
        page = self.open_page(p)
        r = request(page.port, "GET", page.path)
        self.assertEqual(r.status, 200, r)
        self.assertIn("4111111111111111", r.body)
        order = self.stack.dh_order(self.order_no(p))
        self.assertEqual((order["status"], order["env"], order["amount"]), ("", "dhpaysandbox", "458.52"))
        # posting the same form again (back button) shows the same order
        self.assertEqual(self.open_page(p), page)

    def test_success(self):
        p = self.created()
        out = self.pay(p)
        self.assertEqual((out["status"], out["failure_reason"]), ("01", ""))
        # the browser goes back to paymux's return_url, whose own query is kept: "&" joins the callback
        back = urllib.parse.urlparse(out["return_url"])
        self.assertEqual((back.port, back.path), (self.stack.port, f"/return/{WEB}"))
        q = dict(urllib.parse.parse_qsl(back.query, keep_blank_values=True))
        self.assertEqual(q["payment"], p["id"])
        self.assertEqual(q["hash"], dh_callback_hash(q, DH_SECRET))
        done = self.stack.dh_wait(p["id"], "succeeded")
        self.assertEqual(done["provider_payment_id"], out["ref_no"])
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])
        order = wait_for(lambda: (lambda o: o if o["notify"]["deliveries"] == 1 else None)(
            self.stack.dh_order(out["ref_no"])), timeout=5, what="the notify acknowledged")
        self.assertEqual(order["notify"]["log"][-1]["body"], "success")
        r = request(self.stack.port, "GET", back.path + "?" + back.query)
        self.assertEqual(r.status, 303, r)
        self.assertTrue(r.header("Location").startswith("https://shop.example/orders/1001?"), r.header("Location"))
        self.assertIn("status=succeeded", r.header("Location"))

    def test_failure_keeps_the_gateways_code(self):
        for card, amount, code in (("4000000000000002", 1999, "M0092"), ("4000000000000119", 1999, "M0023"),
                                   ("5555555555554444", 1902, "M0092")):
            with self.subTest(card=card, amount=amount):
                p = self.created(amount=amount)
                out = self.pay(p, card=card)
                self.assertEqual((out["status"], out["failure_reason"]), ("02", code))
                done = self.stack.dh_wait(p["id"], "failed")
                self.assertEqual(done["failure"]["code"], code)
                self.assertEqual(done["failure"]["message"], out["callback"]["description"])
                self.assertEqual(self.event_types(p["id"]), ["payment.failed", "payment.requires_action"])

    def test_pending_then_notify(self):
        p = self.created(amount=1906)
        out = self.pay(p, card="5555555555554444")
        self.assertEqual(out["status"], "00")
        self.stack.dh_wait(p["id"], "processing", timeout=5)
        # the sandbox settles it (1.5 s at time factor 100) and sends the 01 callback
        self.stack.dh_wait(p["id"], "succeeded", timeout=10)
        self.assertEqual(self.event_types(p["id"]),
                         ["payment.processing", "payment.requires_action", "payment.succeeded"])

    def test_duplicate_notify_is_acknowledged_and_applied_once(self):
        p = self.created()
        out = self.pay(p)
        self.stack.dh_wait(p["id"], "succeeded")
        self.assertEqual(self.notify_bodies(self.stack.dh_notify(out["ref_no"], repeat=3)), ["success"] * 3)
        order = self.stack.dh_order(out["ref_no"])
        fields = self.signed_callback(order, DH_SECRET, trans_date=order["trans_date"], trans_time=order["trans_time"])
        self.assertEqual(self.get_webhook(WEB, fields).body, "success")
        self.assertEqual(self.get_webhook(WEB, fields).body, "success")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

    def test_forged_hash_is_not_acknowledged_and_changes_nothing(self):
        p = self.created()
        self.open_page(p)
        ident = self.order_no(p)
        out = self.stack.dh_notify(ident, status="01", forge_hash=True)
        self.assertNotEqual(out["responses"][0]["body"], "success")
        order = self.stack.dh_order(ident)
        wrong_key = self.signed_callback(order, "not-the-" + DH_SECRET)
        self.assertNotEqual(self.get_webhook(WEB, wrong_key).body, "success")
        altered = self.signed_callback(order, DH_SECRET, status="02", failure_reason="M0092")
        altered["status"], altered["failure_reason"] = "01", ""
        self.assertNotEqual(self.get_webhook(WEB, altered).body, "success")
        unsigned = self.signed_callback(order, DH_SECRET)
        del unsigned["hash"]
        self.assertNotEqual(self.get_webhook(WEB, unsigned).body, "success")
        self.assertEqual(self.stack.dh_payment(p["id"])["status"], "requires_action")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action"])

    def test_amount_mismatch_is_flagged_for_review_and_changes_nothing(self):
        p = self.created(amount=1999)
        self.open_page(p)
        out = self.stack.dh_notify(self.order_no(p), status="01", amount="1.00")
        self.assertEqual(out["fields"]["hash"], dh_callback_hash(out["fields"], DH_SECRET))  # validly signed
        self.assertEqual(self.notify_bodies(out), ["success"])
        self.assertEqual(self.stack.dh_payment(p["id"])["status"], "requires_action")
        types = self.event_types(p["id"])
        self.assertIn("payment.review", types)
        self.assertNotIn("payment.succeeded", types)
        [review] = self.stack.dh_events(p["id"], type="payment.review")
        self.assertEqual(review["data"]["object"]["review"]["notified_amount"], 100)

    def test_notify_for_an_unknown_invoice_is_not_acknowledged(self):
        p = self.created()
        self.open_page(p)
        out = self.stack.dh_notify(self.order_no(p), status="01", invoice_id="A" * 22)
        self.assertNotEqual(out["responses"][0]["body"], "success")
        order = self.stack.dh_order(self.order_no(p))
        for invoice in ("B" * 22, "NOSUCHINVOICE"):
            self.assertNotEqual(self.get_webhook(WEB, self.signed_callback(order, DH_SECRET, invoice_id=invoice)).body,
                                "success")
        self.assertEqual(self.stack.dh_payment(p["id"])["status"], "requires_action")

    def test_notify_while_paymux_is_down_is_resent_and_applied_once(self):
        p = self.created()
        page = self.open_page(p)
        self.stack.stop_paymux()
        try:
            r = request(page.port, "POST", page.path,
                        raw=urllib.parse.urlencode({"card_number": "4111111111111111", "auto": "1"}),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
            self.assertEqual(r.json()["status"], "01", r)
            ref = r.json()["ref_no"]
            wait_for(lambda: self.stack.dh_order(ref)["notify"]["attempts"] >= 2, timeout=5,
                     what="two notify attempts refused")
            self.assertEqual(self.stack.dh_order(ref)["notify"]["deliveries"], 0)
        finally:
            self.stack.start_paymux()
        self.stack.dh_wait(p["id"], "succeeded", timeout=10)
        n = wait_for(lambda: (lambda o: o["notify"] if o["notify"]["deliveries"] == 1 else None)(
            self.stack.dh_order(ref)), timeout=5, what="the notify acknowledged")
        self.assertGreaterEqual(n["attempts"], 3)
        self.assertEqual([e["acknowledged"] for e in n["log"]].count(True), 1)
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

    # --- before any gateway call ------------------------------------------------------------------
    def test_mandatory_field_missing_is_400_naming_it(self):
        before = self.stack.dh_order_count()
        for drop, param, gateway_field in ((("shipping", "city"), "shipping.city", "shipping_city"),
                                           (("billing", "postal_code"), "billing.postal_code", "zipcode"),
                                           (("customer", "first_name"), "customer.first_name", "first_name")):
            with self.subTest(param=param):
                body = payment_body(1999, {"type": "hosted"}, WEB)
                del body[drop[0]][drop[1]]
                r = self.stack.dh_api("POST", "/v1/payments", body, idem=uuid.uuid4().hex)
                err = self.assertError(r, 400, param=param)
                self.assertIn(gateway_field, err["message"])
        self.assertEqual(self.stack.dh_order_count(), before)

    def test_cashier_refuses_a_form_missing_a_field_or_with_a_wrong_hash(self):
        p = self.created()
        fields = dict(p["next_action"]["fields"])
        del fields["shipping_zipcode"]
        r = self.post_cashier(p, fields)
        self.assertEqual(r.status, 400, r)
        self.assertIn('id="error-field">shipping_zipcode<', r.body)
        fields = dict(p["next_action"]["fields"], amount="20.00")  # signed for 19.99
        r = self.post_cashier(p, fields)
        self.assertEqual(r.status, 400, r)
        self.assertIn('id="error-field">hash<', r.body)
        fields = dict(p["next_action"]["fields"], amount="19.9")
        self.assertIn('id="error-field">amount<', self.post_cashier(p, fields).body)

    def test_sync_and_refund_are_unsupported(self):
        p = self.created()
        self.pay(p)
        self.stack.dh_wait(p["id"], "succeeded")
        r = self.stack.dh_api("POST", f"/v1/payments/{p['id']}/sync", {})
        self.assertError(r, 422, code="unsupported")
        r = self.stack.dh_api("POST", f"/v1/payments/{p['id']}/refunds", {}, idem=uuid.uuid4().hex)
        self.assertError(r, 422, code="unsupported")
        self.assertEqual(self.stack.dh_payment(p["id"])["status"], "succeeded")

    def test_connectors_report_no_query_and_no_refund(self):
        r = self.stack.dh_api("GET", "/v1/connectors")
        self.assertEqual(r.status, 200, r)
        by_id = {c["id"]: c for c in r.json()["data"]}
        for cid, method in ((WEB, "hosted"), (NONCE, "card_nonce")):
            self.assertEqual(by_id[cid]["flows"], ["authorize", "notification"])
            self.assertEqual(by_id[cid]["payment_methods"], [method])
            for flow in ("sync", "refund", "refund_sync", "cancel"):
                self.assertNotIn(flow, by_id[cid]["flows"])


# =================================================================================================
class DhpayNonceTest(DhpayTestCase):

    def create(self, amount=1999, nonce="tok_success", key=DH_API_KEY, connector=NONCE, **extra):
        return self.stack.dh_api("POST", "/v1/payments",
                                 payment_body(amount, {"type": "card_nonce", "nonce": nonce}, connector, **extra),
                                 idem=uuid.uuid4().hex, key=key)

    def created(self, amount=1999, nonce="tok_success", **extra):
        r = self.create(amount, nonce, **extra)
        self.assertEqual(r.status, 201, r)
        return r.json()

    def acs(self, payment, **extra):
        na = payment["next_action"]
        url = urllib.parse.urlparse(na["url"])
        return request(url.port, "POST", url.path, raw=urllib.parse.urlencode({**na["fields"], **extra}),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})

    # --- outcomes --------------------------------------------------------------------------------
    def test_success(self):
        p = self.created(nonce="tok_success")
        self.assertEqual(p["status"], "succeeded")
        order = self.stack.dh_order(self.order_no(p))
        self.assertEqual(p["provider_payment_id"], order["ref_no"])
        self.assertEqual((order["product"], order["client_id"], order["token_info"]), ("nonce", NONCE_CLIENT,
                                                                                      "tok_success"))
        self.assertEqual((order["merchant_id"], order["amount"], order["status"]), (NONCE_MERCHANT, "19.99", "01"))
        self.assertEqual(order["request"]["buyer_id"], "cust1001")
        self.assertEqual(self.event_types(p["id"]), ["payment.succeeded"])
        # by amount, with a nonce the sandbox has no rule for
        self.assertEqual(self.created(amount=1201, nonce="sandbox_tcc_877924e3442847afb3c234829b93ddd7")["status"],
                         "succeeded")

    def test_failure_keeps_the_gateways_code(self):
        p = self.created(nonce="tok_decline")
        self.assertEqual(p["status"], "failed")
        self.assertEqual(p["failure"]["code"], "M0092")
        p = self.created(amount=1202, nonce="sandbox_tcc_1")
        self.assertEqual((p["status"], p["failure"]["code"]), ("failed", "M0092"))
        # an API-level refusal: the connector's merchant_id is not the client's (E0013)
        r = self.create(key=DH_WRONG_API_KEY, connector="dhpay_nonce_wrong_merchant")
        self.assertEqual(r.status, 201, r)
        self.assertEqual((r.json()["status"], r.json()["failure"]["code"]), ("failed", "E0013"))

    def test_pending_then_notify(self):
        p = self.created(nonce="tok_pending")
        self.assertEqual(p["status"], "processing")
        self.stack.dh_wait(p["id"], "succeeded", timeout=10)
        self.assertEqual(self.event_types(p["id"]), ["payment.processing", "payment.succeeded"])
        order = self.stack.dh_order(self.order_no(p))
        self.assertEqual(order["notify"]["deliveries"], 1)

    def test_duplicate_notify_is_acknowledged_and_applied_once(self):
        p = self.created(nonce="tok_pending")
        self.stack.dh_wait(p["id"], "succeeded", timeout=10)
        ident = self.order_no(p)
        self.assertEqual(self.notify_bodies(self.stack.dh_notify(ident, status="01", repeat=3)), ["success"] * 3)
        order = self.stack.dh_order(ident)
        fields = self.signed_callback(order, NONCE_SECRET, trans_date=order["trans_date"],
                                      trans_time=order["trans_time"])
        self.assertEqual(self.get_webhook(NONCE, fields).body, "success")
        self.assertEqual(self.event_types(p["id"]), ["payment.processing", "payment.succeeded"])

    def test_forged_hash_is_not_acknowledged_and_changes_nothing(self):
        p = self.created(nonce="tok_3ds")
        ident = self.order_no(p)
        self.assertNotEqual(self.stack.dh_notify(ident, status="01", forge_hash=True)["responses"][0]["body"],
                            "success")
        order = self.stack.dh_order(ident)
        # signed with the web cashier merchant's key instead of the nonce client's secret
        self.assertNotEqual(self.get_webhook(NONCE, self.signed_callback(order, DH_SECRET)).body, "success")
        self.assertEqual(self.stack.dh_payment(p["id"])["status"], "requires_action")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action"])

    def test_amount_mismatch_is_flagged_for_review_and_changes_nothing(self):
        p = self.created(nonce="tok_3ds")
        out = self.stack.dh_notify(self.order_no(p), status="01", amount="0.01")
        self.assertEqual(self.notify_bodies(out), ["success"])
        self.assertEqual(self.stack.dh_payment(p["id"])["status"], "requires_action")
        types = self.event_types(p["id"])
        self.assertIn("payment.review", types)
        self.assertNotIn("payment.succeeded", types)
        out = self.stack.dh_notify(self.order_no(p), status="01", currency="EUR")
        self.assertEqual(self.stack.dh_payment(p["id"])["status"], "requires_action")

    def test_notify_for_an_unknown_invoice_is_not_acknowledged(self):
        p = self.created(nonce="tok_3ds")
        out = self.stack.dh_notify(self.order_no(p), status="01", invoice_id="Z" * 22)
        self.assertNotEqual(out["responses"][0]["body"], "success")
        # a known invoice of the other connector is unknown to this one
        web = self.stack.dh_api("POST", "/v1/payments", payment_body(1999, {"type": "hosted"}, WEB),
                                idem=uuid.uuid4().hex).json()
        out = self.stack.dh_notify(self.order_no(p), status="01", invoice_id=self.order_no(web))
        self.assertNotEqual(out["responses"][0]["body"], "success")
        self.assertEqual(self.stack.dh_payment(p["id"])["status"], "requires_action")
        self.assertEqual(self.stack.dh_payment(web["id"])["status"], "requires_action")

    def test_storage_unavailable_during_the_notify(self):
        """paymux's database is locked by another writer while the 3-D Secure callback arrives: paymux
        cannot record it and does not answer success; DHpay sends again and exactly one transition happens."""
        p = self.created(nonce="tok_3ds")
        ident = self.order_no(p)
        lock = sqlite3.connect(self.stack.db, isolation_level=None, timeout=5)
        try:
            lock.execute("BEGIN IMMEDIATE")
            r = self.acs(p, action="authenticate", auto="1")
            self.assertEqual((r.status, r.json()["status"]), (200, "01"), r)
            first = wait_for(lambda: (self.stack.dh_order(ident)["notify"]["log"] or [None])[0], timeout=10,
                             what="the first callback answered")
            self.assertFalse(first["acknowledged"], first)
            self.assertNotEqual(first["body"], "success")
            self.assertEqual(self.stack.dh_payment(p["id"])["status"], "requires_action")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        self.stack.dh_wait(p["id"], "succeeded", timeout=10)
        n = wait_for(lambda: (lambda o: o["notify"] if o["notify"]["deliveries"] == 1 else None)(
            self.stack.dh_order(ident)), timeout=10, what="the callback acknowledged")
        self.assertGreaterEqual(n["attempts"], 2)
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

    # --- tokens ----------------------------------------------------------------------------------
    def test_token_expiry_mid_traffic(self):
        """Short token lifetime, payments in concurrent waves across several expiries, and an expiry
        forced while a wave is in flight: every payment succeeds; one token fetch per lifetime."""
        lifetime = 3
        self.stack.dh_tokens(lifetime_seconds=lifetime, revoke_all=True, reset_counters=True)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=6)
        try:
            def wave(n):
                return list(pool.map(lambda _: self.create(amount=2001), range(n)))

            results = []
            start = time.time()
            while time.time() - start < 4.5:
                results += wave(4)
                time.sleep(0.4)
            elapsed = time.time() - start
            t = self.stack.dh_tokens()
            # paymux refreshes ahead of expiry (lifetime minus a margin of at least 1 s): at most one
            # fetch per (lifetime - 1) s of traffic, plus the first one
            self.assertLessEqual(t["requests"], int(elapsed // (lifetime - 1)) + 1, t)
            self.assertLess(t["requests"], len(results))
            # a token fetched just now (a revoked one is replaced at once), so that paymux still holds
            # it as fresh when the sandbox expires it below, whatever the waves' timing was
            self.stack.dh_tokens(revoke_all=True)
            results += wave(1)
            # every token paymux was given expired in the sandbox now: the next wave meets E0010
            before = self.stack.dh_tokens(expire_all=True)
            results += wave(6)
            after = self.stack.dh_tokens()
            self.assertEqual(after["requests"] - before["requests"], 1, after)  # one refresh shared by the wave
            self.assertGreaterEqual(after["stale_token_answers"]["E0010"], 1, after)
            # revoked tokens (E0002) are refreshed the same way
            before = self.stack.dh_tokens(revoke_all=True)
            results += wave(6)
            after = self.stack.dh_tokens()
            self.assertEqual(after["requests"] - before["requests"], 1, after)
            self.assertGreaterEqual(after["stale_token_answers"]["E0002"], 1, after)
        finally:
            pool.shutdown()
            self.stack.dh_tokens(lifetime_seconds=28800)
        for r in results:
            self.assertEqual(r.status, 201, r)
            self.assertEqual(r.json()["status"], "succeeded", r)
        self.assertEqual(self.stack.dh_tokens()["refused"], 0)

    def test_token_and_payment_endpoints_refuse_like_the_document(self):
        port = self.stack.sandbox_port
        token_path = "/dhpay/api/oauth2/token"
        base = {"Accept": "application/json", "Client-Id": NONCE_CLIENT, "Secret": NONCE_SECRET}
        for drop, code in (("Client-Id", "E0015"), ("Secret", "E0016"), ("Accept", "E0014")):
            h = {k: v for k, v in base.items() if k != drop}
            self.assertEqual(request(port, "POST", token_path, headers=h).json(), {"status": "02", "error_code": code})
        r = request(port, "POST", token_path, headers=dict(base, Secret="wrong"))
        self.assertEqual(r.json(), {"status": "02", "error_code": "E0017"})
        r = request(port, "POST", token_path, headers=base).json()
        self.assertEqual((r["status"], r["data"]["token_type"], r["data"]["expires_in"]), ("01", "Bearer", 28800))
        self.assertRegex(r["data"]["access_token"], r"^[0-9A-F]{32}$")
        pay_path = "/dhpay/api/payments/nonce/v1"
        h = {"Content-Type": "application/json", "version": "v1"}
        self.assertEqual(request(port, "POST", pay_path, body={}, headers=h).json()["error_code"], "E0002")
        h["Authorization"] = "Bearer " + r["data"]["access_token"]
        self.assertEqual(request(port, "POST", pay_path, body={}, headers=h).json()["error_code"], "E0001")
        self.assertEqual(request(port, "POST", pay_path, body={}, headers=dict(h, version="v2")).json()["error_code"],
                         "E0004")

    def test_gateway_error_on_the_payment_leaves_the_outcome_unknown(self):
        for mode in ("status_500", "garbage"):
            with self.subTest(mode=mode):
                r = self.stack.sandbox_api("POST", "/_sandbox/faults", {"gateway": "dhpay", "mode": mode, "count": 1})
                self.assertEqual(r.status, 200, r)
                try:
                    r = self.create(nonce="tok_success")
                finally:
                    self.stack.sandbox_api("DELETE", "/_sandbox/faults?gateway=dhpay")
                self.assertEqual(r.status, 202, r)
                self.assertEqual(r.json()["status"], "processing")
                self.assertEqual(self.stack.dh_tokens()["refused"], 0)

    # --- 3-D Secure ------------------------------------------------------------------------------
    def test_three_d_secure_round_trip(self):
        p = self.created(nonce="tok_3ds")
        self.assertEqual(p["status"], "requires_action")
        na = p["next_action"]
        self.assertEqual(na["type"], "form_post")
        self.assertEqual(na["url"], f"http://127.0.0.1:{self.stack.sandbox_port}/dhpay/acs/pit1/acsService")
        self.assertEqual(set(na["fields"]), THREE_DS_FIELDS)
        order = self.stack.dh_order(self.order_no(p))
        self.assertEqual(na["fields"], order["three_ds"]["fields"])
        self.assertEqual(p["provider_payment_id"], order["ref_no"])
        # the browser posts the fields to the ACS: its page offers Authenticate / Fail
        page = self.acs(p)
        self.assertEqual(page.status, 200, page)
        self.assertIn("Authenticate", page.body)
        # Authenticate: the ACS sends the browser to DHpay's TermUrl with PaRes and MD
        done = self.acs(p, action="authenticate")
        self.assertEqual(done.status, 200, done)
        form = HiddenInputs()
        form.feed(done.body)
        self.assertEqual(form.action, na["fields"]["TermUrl"])
        self.assertEqual(set(form.fields), {"PaRes", "MD"})
        term = urllib.parse.urlparse(form.action)
        back = request(term.port, "POST", term.path, raw=urllib.parse.urlencode(form.fields),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(back.status, 303, back)
        # ... which sends it back to paymux's return_url with the signed result, and notifies paymux
        location = urllib.parse.urlparse(back.header("Location"))
        self.assertEqual((location.port, location.path), (self.stack.port, f"/return/{NONCE}"))
        q = dict(urllib.parse.parse_qsl(location.query, keep_blank_values=True))
        self.assertEqual((q["payment"], q["status"], q["ref_no"]), (p["id"], "01", order["ref_no"]))
        self.assertEqual(q["hash"], dh_callback_hash(q, NONCE_SECRET))
        self.stack.dh_wait(p["id"], "succeeded")
        r = request(self.stack.port, "GET", location.path + "?" + location.query)
        self.assertEqual(r.status, 303, r)
        self.assertIn("status=succeeded", r.header("Location"))
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])
        # the authentication cannot be used twice
        self.assertEqual(self.acs(p, action="authenticate", auto="1").status, 409)

    def test_three_d_secure_failure(self):
        p = self.created(amount=1203, nonce="sandbox_tcc_2")
        self.assertEqual(p["status"], "requires_action")
        r = self.acs(p, action="fail", auto="1")
        self.assertEqual((r.status, r.json()["status"]), (200, "02"), r)
        done = self.stack.dh_wait(p["id"], "failed")
        self.assertEqual(done["failure"]["code"], "M0092")
        # a field missing or altered on the way to the ACS is named
        p = self.created(nonce="tok_3ds")
        fields = dict(p["next_action"]["fields"])
        del fields["sessionToken"]
        url = urllib.parse.urlparse(p["next_action"]["url"])
        r = request(url.port, "POST", url.path, raw=urllib.parse.urlencode(fields),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 400, r)
        self.assertIn('id="error-field">sessionToken<', r.body)

    # --- before any gateway call ------------------------------------------------------------------
    def test_mandatory_field_missing_is_400_naming_it(self):
        before = self.stack.dh_tokens()["payment_requests"]
        for drop, param, gateway_field in ((("customer", "id"), "customer.id", "buyer_id"),
                                           (("shipping", "email"), "shipping.email", "shipping_email"),
                                           (("billing", "line1"), "billing.line1", "address_line")):
            with self.subTest(param=param):
                body = payment_body(1999, {"type": "card_nonce", "nonce": "tok_success"}, NONCE)
                del body[drop[0]][drop[1]]
                r = self.stack.dh_api("POST", "/v1/payments", body, idem=uuid.uuid4().hex)
                err = self.assertError(r, 400, param=param)
                self.assertIn(gateway_field, err["message"])
        self.assertEqual(self.stack.dh_tokens()["payment_requests"], before)


if __name__ == "__main__":
    unittest.main()
