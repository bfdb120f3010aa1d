"""CashyPay (document 004, pay desk) end to end: paymux's `cashypay` connector against the sandbox's
CashyPay simulator. Payments redirect to the pay desk; the pay desk's result arrives as a signed JSON
notification (Sign = MD5(raw body + api key), SIGNING.md), is applied exactly once and answered
200 "SUCCESS"; anything else is re-sent on the document's 1, 2, 4 ... 512 minute schedule (divided by
the sandbox's time factor). Signatures in these tests are computed here, independently of paymux and
of the simulator.

    cd tests/integration && PAYMUX_BIN=... PAYMUX_SANDBOX_BIN=... python3 -m unittest -v test_cashypay
"""
import hashlib
import http.server
import json
import re
import threading
import time
import unittest
import urllib.parse
import uuid

import harness
from harness import StackTestCase, request, wait_for

CP_MERCHANT_ID = "1002001"
CP_API_KEY = "itest-cashypay-api-key-0042"
CONNECTOR = "cashypay_cl"
RETRY_MINUTES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]  # the document's schedule


def cp_sign(body, key=CP_API_KEY, upper=True):
    """SIGNING.md: MD5(raw body bytes + apiKey), hex."""
    if isinstance(body, str):
        body = body.encode()
    h = hashlib.md5(body + key.encode()).hexdigest()
    return h.upper() if upper else h


class CashyPayStack(harness.Stack):
    """The harness's stack plus a CashyPay merchant in the sandbox and a `cashypay` connector
    (CLP, 1000..5000000) for the merchant acme."""
    reconciler = "{first_check_ms: 600000, tick_ms: 1000}"  # out of the way: the tests sync themselves

    def sandbox_config(self):
        return super().sandbox_config() + f"""
cashypay:
  merchants:
    - merchant_id: "{CP_MERCHANT_ID}"
      api_key: "{CP_API_KEY}"
  amount_min: 1000
  amount_max: 5000000
  currencies: "CLP"
  notify_retry_minutes: {RETRY_MINUTES}
  notify_timeout_ms: 2000
"""

    def paymux_config(self):
        cfg = super().paymux_config()
        connector = f"""      - id: {CONNECTOR}
        provider: cashypay
        base_url: "http://127.0.0.1:{self.sandbox_port}/cashypay"
        timeout_ms: {self.gateway_timeout_ms}
        connect_timeout_ms: 1000
        credentials: {{merchant_id: "{CP_MERCHANT_ID}", api_key: "{CP_API_KEY}"}}
        settings: {{currency: CLP, amount_min: "1000", amount_max: "5000000"}}
"""
        anchor = "      - id: glocash_eu\n"
        assert anchor in cfg, "harness.Stack.paymux_config changed: acme's connectors not found"
        cfg = cfg.replace(anchor, connector + anchor, 1)
        return cfg.replace("merchants:", f"reconciler: {self.reconciler}\nmerchants:", 1)


class FlakyProxy:
    """A notifyUrl in front of paymux's webhook: answers the first `failures` requests with HTTP 500
    (without forwarding them) and forwards the later ones, relaying paymux's answer."""

    def __init__(self, target_port, path, failures=1):
        self.seen = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                proxy.seen.append(body)
                if len(proxy.seen) <= failures:
                    status, text = 500, "busy"
                else:
                    headers = {k: self.headers[k] for k in ("Content-Type", "MerchantId", "Sign") if self.headers[k]}
                    r = request(target_port, "POST", path, raw=body, headers=headers)
                    status, text = r.status, r.body
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class CashyPayCase(StackTestCase):
    """Helpers shared by the CashyPay test classes."""
    stack_class = CashyPayStack

    @classmethod
    def setUpClass(cls):
        cls._failed = False
        cls.stack = cls.stack_class().start()

    def setUp(self):
        super().setUp()
        self.stack.clear_faults()

    def tearDown(self):
        self.stack.clear_faults()
        self.sandbox("POST", "/_sandbox/cashypay/delay_answers", {"ms": 0})
        super().tearDown()

    # --- paymux ------------------------------------------------------------------------------------
    def create(self, amount=358320, customer=None, drop=(), **extra):
        cust = {"email": "buyer@example.cl", "first_name": "Cristian", "last_name": "Alejandro",
                "phone": "9728034619", "id_type": "RUT", "id_number": "11.111.111-1"}
        cust.update(customer or {})
        for key in drop:
            del cust[key]
        body = {"amount": amount, "currency": "CLP", "reference": f"CL-{uuid.uuid4().hex[:12]}",
                "connector": CONNECTOR, "payment_method": {"type": "hosted"}, "description": "Smart Phone P238 x1",
                "customer": cust, "return_url": "https://shop.example/orders/1001"}
        body.update(extra)
        return self.stack.api("POST", "/v1/payments", body, idem=uuid.uuid4().hex)

    def created(self, **kwargs):
        r = self.create(**kwargs)
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertEqual(p["status"], "requires_action", p)
        return p

    def payment(self, pid):
        return self.stack.get_payment(pid)

    def event_types(self, pid):
        return sorted(e["type"] for e in self.stack.events(object_id=pid))

    def sync(self, pid):
        return self.stack.api("POST", f"/v1/payments/{pid}/sync")

    def post_notify(self, body, sign=None, merchant_id=CP_MERCHANT_ID, connector=CONNECTOR):
        """A notification posted to paymux by the test itself."""
        headers = {"Content-Type": "application/json"}
        if merchant_id is not None:
            headers["MerchantId"] = merchant_id
        if sign is not None:
            headers["Sign"] = sign
        return request(self.stack.port, "POST", f"/webhooks/{connector}", raw=body, headers=headers)

    # --- sandbox -----------------------------------------------------------------------------------
    def sandbox(self, method, path, body=None):
        r = self.stack.sandbox_api(method, path, body)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def order(self, order_no):
        return self.sandbox("GET", f"/_sandbox/cashypay/orders/{order_no}")

    def order_of(self, payment):
        return self.order(payment["provider_payment_id"])

    def order_count(self):
        return self.sandbox("GET", "/_sandbox")["simulators"]["cashypay"]["orders"]

    def force(self, order_no, status, **options):
        return self.sandbox("POST", f"/_sandbox/cashypay/orders/{order_no}/status", {"status": status, **options})

    def notify_now(self, order_no, **options):
        """One hand-made notification sent by the sandbox now; the HTTP statuses paymux answered."""
        out = self.sandbox("POST", f"/_sandbox/cashypay/orders/{order_no}/notify", options)
        return [r["status"] for r in out["responses"]]

    def pay_desk(self, payment, action):
        """The pay desk's automation variant: the Pay / Fail buttons as a JSON call."""
        url = urllib.parse.urlparse(payment["next_action"]["url"])
        return request(url.port, "POST", url.path, raw=urllib.parse.urlencode({"action": action, "auto": "1"}),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})

    def wait_delivered(self, order_no, deliveries=1, timeout=15):
        return wait_for(lambda: (lambda o: o if o["notify"]["deliveries"] >= deliveries else None)(self.order(order_no)),
                        timeout=timeout, what=f"{order_no}: notification acknowledged")

    def notification_body(self, payment, status="SUCCESS", amount=None):
        """A notification as the document's example shows it, for an order the sandbox has."""
        o = self.order_of(payment)
        return ('{"amount":%s,"completionTime":"2024-12-02 16:08:32","fee":9083.0000,"mchOrderNo":%s,'
                '"merchantId":"%s","nonceStr":"%d","orderNo":%s,"orderStatus":"%s","payUrl":%s}' % (
                    amount or "%d.00" % payment["amount"], json.dumps(o["mchOrderNo"]), CP_MERCHANT_ID,
                    int(time.time() * 1000), json.dumps(o["orderNo"]), status, json.dumps(o["payUrl"])))


class CashyPayPaymentsTest(CashyPayCase):

    # --- the pay desk flow -------------------------------------------------------------------------
    def test_success_redirects_to_the_pay_desk_and_the_notification_settles_the_exact_amount(self):
        p = self.created(amount=358320)
        self.assertEqual(p["connector"], CONNECTOR)
        self.assertEqual(p["provider"], "cashypay")
        self.assertRegex(p["provider_payment_id"], r"^PAYDESK\d+$")
        o = self.order_of(p)
        self.assertEqual(p["next_action"], {"type": "redirect", "url": o["payUrl"]})
        self.assertEqual(o["payUrl"], f"http://127.0.0.1:{self.stack.sandbox_port}/cashypay/paydesk/{o['orderNo']}")
        # What paymux sent /api/payDesk: every mandatory field of the document.
        self.assertEqual(o["mchOrderNo"], harness.Stack.order_no(p["id"]))
        self.assertEqual((o["currency"], o["amount"], o["amount_cents"]), ("CLP", "358320", 35832000))
        self.assertEqual((o["realName"], o["phone"], o["email"]), ("Cristian Alejandro", "9728034619", "buyer@example.cl"))
        self.assertEqual((o["idType"], o["idCard"]), ("RUT", "11.111.111-1"))
        self.assertEqual(o["remark"], "Smart Phone P238 x1")
        self.assertFalse(o["reusableStatus"])
        self.assertEqual(o["notifyUrl"], f"http://127.0.0.1:{self.stack.port}/webhooks/{CONNECTOR}")
        self.assertTrue(o["nonceStr"])
        self.assertGreater(o["expireTime"], 0)

        page = request(self.stack.sandbox_port, "GET", urllib.parse.urlparse(o["payUrl"]).path)
        self.assertEqual(page.status, 200)
        self.assertIn('value="pay"', page.body)
        self.assertIn('value="fail"', page.body)
        self.assertIn("358320 CLP", page.body)

        r = self.pay_desk(p, "pay")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["orderStatus"], "SUCCESS")
        done = self.stack.wait_status(p["id"], "succeeded")
        self.assertEqual(done["amount"], 358320)
        self.assertIsNone(done["next_action"])
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

        # The notification: the document's shape, amount a JSON number with two decimals written
        # textually, signed MD5(body + key); paymux answered 200 "SUCCESS" at the first send.
        o = self.wait_delivered(p["provider_payment_id"])
        sent = o["notify"]["sent"][-1]
        self.assertIn('"amount":358320.00,', sent["body"])
        self.assertIn('"fee":8958.0000,', sent["body"])
        # The fee is kept on the payment exactly as CashyPay wrote it.
        self.assertEqual(self.payment(p["id"])["provider_data"]["fee"], "8958.0000")
        self.assertIn('"orderStatus":"SUCCESS"', sent["body"])
        self.assertEqual(sent["sign"], cp_sign(sent["body"]))
        body = json.loads(sent["body"])
        self.assertEqual(body["mchOrderNo"], o["mchOrderNo"])
        self.assertRegex(body["completionTime"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
        [attempt] = o["notify"]["log"]
        self.assertEqual((attempt["attempt"], attempt["http_status"], attempt["acknowledged"]), (1, 200, True))
        self.assertEqual(attempt["body"], "SUCCESS")

    def test_fail_on_the_pay_desk_makes_the_payment_fail(self):
        p = self.created(amount=10000)
        r = self.pay_desk(p, "fail")
        self.assertEqual(r.json()["orderStatus"], "FAIL", r)
        done = self.stack.wait_status(p["id"], "failed")
        self.assertIsNotNone(done["failure"])
        self.assertEqual(self.event_types(p["id"]), ["payment.failed", "payment.requires_action"])
        # Final: the page says so, and a second click is refused.
        again = self.pay_desk(p, "pay")
        self.assertEqual(again.status, 409, again)
        self.assertEqual(again.json()["orderStatus"], "FAIL")

    def test_sync_reads_the_pay_desk_order(self):
        p = self.created(amount=5000)
        s = self.sync(p["id"])
        self.assertEqual(s.status, 200, s)
        self.assertEqual(s.json()["status"], "requires_action")  # PAYING
        self.force(p["provider_payment_id"], "SUCCESS", notify=False)
        s = self.sync(p["id"])
        self.assertEqual(s.status, 200, s)
        self.assertEqual(s.json()["status"], "succeeded")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])
        # A final order queried again changes nothing.
        self.assertEqual(self.sync(p["id"]).json()["status"], "succeeded")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

    def test_sync_of_a_failed_order(self):
        p = self.created(amount=6000)
        self.force(p["provider_payment_id"], "FAIL", notify=False)
        s = self.sync(p["id"])
        self.assertEqual(s.status, 200, s)
        self.assertEqual(s.json()["status"], "failed")
        self.assertEqual(s.json()["failure"]["provider_status"], "FAIL")

    def test_expired_pay_desk_order_and_sync(self):
        p = self.created(amount=20000, expires_in=60)
        self.assertIsNotNone(p["expires_at"])
        o = self.order_of(p)
        self.assertEqual(o["expireTime"], 60)  # expires_in becomes expireTime
        o = self.sandbox("POST", f"/_sandbox/cashypay/orders/{o['orderNo']}/expire")
        self.assertEqual(o["orderStatus"], "EXPIRED")
        page = request(self.stack.sandbox_port, "GET", urllib.parse.urlparse(o["payUrl"]).path)
        self.assertIn("expired", page.body)
        self.assertNotIn('value="pay"', page.body)
        self.assertEqual(self.pay_desk(p, "pay").status, 410)
        # The query says EXPIRED, a status paymux does not map: it stays pending (logged) until its
        # own expires_at passes (then the reconciler expires it: CashyPayExpiryTest).
        s = self.sync(p["id"])
        self.assertEqual(s.status, 200, s)
        self.assertEqual(s.json()["status"], "requires_action")
        self.assertIn("unknown orderStatus 'EXPIRED'", self.stack.paymux_log_text())
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action"])

    def test_the_gateways_expire_time_becomes_expires_at(self):
        # Issue 5: "`expireTime` becomes `expires_at`". paymux ignores data.expireTime: without
        # expires_in the pay desk link expires (3600 s by default) but the payment has no expires_at,
        # so the reconciler never expires it.
        p = self.created(amount=20000)
        self.assertIsNotNone(p["expires_at"])

    # --- notifications -----------------------------------------------------------------------------
    def test_repeated_notifications_are_acknowledged_and_applied_once(self):
        p = self.created(amount=15000)
        self.pay_desk(p, "pay")
        self.stack.wait_status(p["id"], "succeeded")
        order_no = p["provider_payment_id"]
        self.assertEqual(self.notify_now(order_no, repeat=3), [200, 200, 200])
        body = self.notification_body(p)
        self.assertEqual(self.post_notify(body, cp_sign(body)).status, 200)
        self.assertEqual(self.post_notify(body, cp_sign(body)).status, 200)  # byte for byte the same
        # A late FAIL for the same order changes nothing either.
        self.assertEqual(self.notify_now(order_no, status="FAIL"), [200])
        self.assertEqual(self.payment(p["id"])["status"], "succeeded")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

    def test_forged_notifications_are_refused_and_change_nothing(self):
        p = self.created(amount=12000)
        self.assertEqual(self.notify_now(p["provider_payment_id"], status="SUCCESS", forge_signature=True), [400])
        body = self.notification_body(p)
        for name, (b, sign, mid) in {
            "another key": (body, cp_sign(body, key="another-key"), CP_MERCHANT_ID),
            "altered after signing": (body.replace("SUCCESS", "SUCCESS "), cp_sign(body), CP_MERCHANT_ID),
            "no Sign header": (body, None, CP_MERCHANT_ID),
            "empty Sign": (body, "", CP_MERCHANT_ID),
            "another MerchantId": (body, cp_sign(body), "1002002"),
            "no MerchantId": (body, cp_sign(body), None),
            "not JSON": ("amount=12000&orderStatus=SUCCESS", cp_sign("amount=12000&orderStatus=SUCCESS"),
                         CP_MERCHANT_ID),
        }.items():
            with self.subTest(name):
                r = self.post_notify(b, sign, merchant_id=mid)
                self.assertGreaterEqual(r.status, 300, r)
                self.assertNotIn(r.status, (301, 302), r)  # both count as "received" for CashyPay
        self.assertEqual(self.payment(p["id"])["status"], "requires_action")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action"])
        # The same body signed right (lower-case hex: verified case-insensitively) is applied.
        r = self.post_notify(body, cp_sign(body, upper=False))
        self.assertEqual((r.status, r.body), (200, "SUCCESS"))
        self.assertEqual(self.payment(p["id"])["status"], "succeeded")

    def test_notification_for_an_unknown_order_is_not_received(self):
        p = self.created(amount=12000)
        body = self.notification_body(p).replace(harness.Stack.order_no(p["id"]), "0" * 22)
        r = self.post_notify(body, cp_sign(body))
        self.assertGreaterEqual(r.status, 400, r)
        self.assertEqual(self.payment(p["id"])["status"], "requires_action")

    def test_amount_mismatch_is_flagged_for_review_and_changes_nothing(self):
        p = self.created(amount=358320)
        order_no = p["provider_payment_id"]
        for amount in ("1.00", "358321.00", "358320.50", "3583200"):
            with self.subTest(amount=amount):
                self.assertEqual(self.notify_now(order_no, status="SUCCESS", amount=amount), [200])
        self.assertEqual(self.payment(p["id"])["status"], "requires_action")
        types = self.event_types(p["id"])
        self.assertEqual(types.count("payment.review"), 4, types)
        self.assertNotIn("payment.succeeded", types)
        review = self.stack.events(object_id=p["id"], type="payment.review")[0]
        self.assertEqual(review["data"]["object"]["review"]["reason"], "amount_mismatch")
        # The exact amount, however written ("358320", "358320.0", "358320.000"), is the order's.
        self.assertEqual(self.notify_now(order_no, status="SUCCESS", amount="358320.000"), [200])
        self.assertEqual(self.payment(p["id"])["status"], "succeeded")

    def test_notification_that_arrives_before_the_create_call_returned(self):
        # The gateway has the order but its answer is slow (held 2 s after the order exists); the
        # result notification is sent and answered meanwhile.
        self.sandbox("POST", "/_sandbox/cashypay/delay_answers", {"ms": 2000, "count": 1})
        before = self.order_count()
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", self.create(amount=250000)))
        t.start()
        try:
            wait_for(lambda: self.order_count() > before, timeout=5, what="the order at the sandbox")
            [o] = self.sandbox("GET", "/_sandbox/cashypay/orders?limit=1")["orders"]
            self.force(o["orderNo"], "SUCCESS")
            o = self.wait_delivered(o["orderNo"], timeout=5)
            self.assertTrue(t.is_alive(), "the create call returned before the notification was answered")
        finally:
            t.join(15)
        r = result["r"]
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertEqual(harness.Stack.order_no(p["id"]), o["mchOrderNo"])
        # The create answer agrees with what the notification did: succeeded, no redirect left.
        self.assertEqual(p["status"], "succeeded", p)
        self.assertEqual(p["provider_payment_id"], o["orderNo"])
        self.assertIsNone(p["next_action"])
        self.assertEqual(self.payment(p["id"])["status"], "succeeded")
        self.assertEqual(self.event_types(p["id"]).count("payment.succeeded"), 1)
        self.assertNotIn("payment.requires_action", self.event_types(p["id"]))
        self.assertEqual(o["notify"]["attempts"], 1)

    # --- re-sending until received -----------------------------------------------------------------
    def assert_schedule(self, log):
        """Consecutive automatic sends are 1, 2, 4 ... minutes apart, divided by the time factor."""
        for i in range(1, len(log)):
            want_ms = RETRY_MINUTES[i - 1] * 60_000 / self.stack.time_factor
            gap = log[i]["at_ms"] - log[i - 1]["at_ms"]
            self.assertGreaterEqual(gap, want_ms * 0.9, (i, gap, log))
            self.assertLess(gap, want_ms + 3000, (i, gap, log))  # plus the previous send's time

    def test_a_first_500_answer_then_success_leaves_one_transition(self):
        p = self.created(amount=30000)
        proxy = FlakyProxy(self.stack.port, f"/webhooks/{CONNECTOR}", failures=1)
        try:
            self.force(p["provider_payment_id"], "SUCCESS", url=proxy.url)
            o = self.wait_delivered(p["provider_payment_id"], timeout=10)
        finally:
            proxy.close()
        log = o["notify"]["log"]
        self.assertEqual([(a["attempt"], a["http_status"], a["acknowledged"]) for a in log],
                         [(1, 500, False), (2, 200, True)])
        self.assert_schedule(log)
        self.assertEqual(proxy.seen[0], proxy.seen[1])  # the same notification, byte for byte
        self.assertEqual(self.payment(p["id"])["status"], "succeeded")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

    def test_an_answer_lost_after_applying_is_resent_and_applied_once(self):
        # paymux applies the first send and answers 200, but the gateway counts it as not received
        # (the answer was lost): the re-send is a duplicate.
        p = self.created(amount=31000)
        self.force(p["provider_payment_id"], "SUCCESS", ignore_answers=2)
        o = self.wait_delivered(p["provider_payment_id"], timeout=10)
        log = o["notify"]["log"]
        self.assertEqual([(a["http_status"], a["acknowledged"]) for a in log], [(200, False), (200, False), (200, True)])
        self.assert_schedule(log)
        self.assertEqual(self.payment(p["id"])["status"], "succeeded")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

    def test_notifications_sent_while_paymux_is_down_are_resent_until_received(self):
        p = self.created(amount=32000)
        order_no = p["provider_payment_id"]
        self.stack.stop_paymux()
        self.force(order_no, "SUCCESS")
        wait_for(lambda: self.order(order_no)["notify"]["attempts"] >= 2, timeout=5, what="two failed sends")
        self.stack.start_paymux()
        o = self.wait_delivered(order_no, timeout=15)
        log = o["notify"]["log"]
        self.assertTrue(all(not a["acknowledged"] and a["outcome"] == "not_sent" for a in log[:-1]), log)
        self.assertEqual((log[-1]["http_status"], log[-1]["acknowledged"], log[-1]["final"]), (200, True, True))
        self.assert_schedule(log)
        self.assertEqual(self.payment(p["id"])["status"], "succeeded")
        self.assertEqual(self.event_types(p["id"]), ["payment.requires_action", "payment.succeeded"])

    # --- refused before any gateway call -----------------------------------------------------------
    def test_missing_customer_data_is_400_naming_the_field_before_any_call(self):
        before = self.order_count()
        for key in ("first_name", "phone", "email", "id_type", "id_number"):
            with self.subTest(key=key):
                r = self.create(drop=(key,))
                self.assertError(r, 400, param=f"customer.{key}")
        r = self.create(customer={"phone": ""})
        self.assertError(r, 400, param="customer.phone")
        r = self.create(customer={"id_number": "1" * 33})
        self.assertError(r, 400, param="customer.id_number")
        self.assertEqual(self.order_count(), before)

    def test_amount_outside_the_connectors_limits_is_400_before_any_call(self):
        before = self.order_count()
        for amount in (999, 5000001, 1):
            with self.subTest(amount=amount):
                self.assertError(self.create(amount=amount), 400, param="amount")
        self.assertEqual(self.order_count(), before)
        for amount in (1000, 5000000):  # the limits themselves are accepted, by paymux and by the gateway
            with self.subTest(amount=amount):
                p = self.created(amount=amount)
                self.assertEqual(self.order_of(p)["amount"], str(amount))
        self.assertEqual(self.order_count(), before + 2)

    # --- gateway answers ---------------------------------------------------------------------------
    def test_a_gateway_refusal_is_a_failed_payment_with_its_code_and_msg(self):
        # idCard is format-checked by CashyPay ("会进行格式校验"); the simulator refuses letters.
        r = self.create(customer={"id_number": "ABC-DEF"})
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertEqual(p["status"], "failed")
        self.assertEqual(p["failure"]["code"], "400")
        self.assertIn("idCard", p["failure"]["message"])

    def test_a_long_accented_name_is_cut_on_a_character_boundary(self):
        # paymux bug: realName (first_name + " " + last_name) is cut at 64 bytes, which can split a
        # UTF-8 character; the body is then not valid JSON and the gateway refuses the order.
        r = self.create(customer={"first_name": "María José", "last_name": "Ñ" * 30})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["status"], "requires_action", r)

    def test_gateway_5xx_is_202_processing(self):
        self.stack.sandbox_api("POST", "/_sandbox/faults", {"gateway": "cashypay", "mode": "status_500", "count": 1})
        r = self.create(amount=40000)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["status"], "processing")

    def test_refund_and_cancel_are_unsupported(self):
        p = self.created(amount=50000)
        self.assertError(self.stack.api("POST", f"/v1/payments/{p['id']}/cancel", idem=uuid.uuid4().hex), 422,
                         code="unsupported")
        self.pay_desk(p, "pay")
        self.stack.wait_status(p["id"], "succeeded")
        r = self.stack.api("POST", f"/v1/payments/{p['id']}/refunds", {"amount": 1000}, idem=uuid.uuid4().hex)
        self.assertError(r, 422, code="unsupported")
        self.assertEqual(self.payment(p["id"])["status"], "succeeded")


class CashyPayExpiryStack(CashyPayStack):
    reconciler = "{first_check_ms: 500, tick_ms: 100, expiry_grace_ms: 500}"


class CashyPayExpiryTest(CashyPayCase):
    """What paymux does with a pay desk order that expired at the gateway."""
    stack_class = CashyPayExpiryStack

    def test_an_expired_pay_desk_order_expires_once_expires_at_passes(self):
        p = self.created(amount=20000, expires_in=10)
        # The pay desk link lapses with the payment (expireTime = expires_in), never later.
        # Here the gateway expires the order at once.
        self.assertEqual(self.order_of(p)["expireTime"], 10)
        self.sandbox("POST", f"/_sandbox/cashypay/orders/{p['provider_payment_id']}/expire")
        time.sleep(1.5)  # the reconciler has asked meanwhile: EXPIRED is not final for paymux
        self.assertEqual(self.payment(p["id"])["status"], "requires_action")
        done = self.stack.wait_status(p["id"], "expired", timeout=20)
        self.assertEqual(self.event_types(done["id"]), ["payment.expired", "payment.requires_action"])
        # A late SUCCESS notification changes nothing (it is acknowledged, so not re-sent forever).
        self.assertEqual(self.notify_now(p["provider_payment_id"], status="SUCCESS"), [200])
        self.assertEqual(self.payment(p["id"])["status"], "expired")


if __name__ == "__main__":
    unittest.main()
