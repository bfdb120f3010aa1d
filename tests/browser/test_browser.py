"""Customer journeys in a real browser: headless Debian chromium (playwright-core, driver.mjs)
against the real paymux and paymux-sandbox binaries on loopback, configured from the quick start's
own files (config/sandbox.yaml, config/sandbox-gateways.yaml) with test ports.

For each gateway the test creates a payment through the API, opens its checkout_url, completes the
payment on the sandbox gateway's page as a person would (labelled fields, named buttons), lands on
the merchant's return_url (a page this test serves) with payment_id and status, and sees the status
through the API and as a signed webhook in the sandbox's merchant receiver. Screenshots of every
page go to $PAYMUX_BROWSER_ARTIFACTS (default: a temporary folder, printed).

A new case is one method: create the payment, then `self.journey(payment, name, steps, status)`
with `steps(browser)` doing what the customer does on the gateway's page (test_shouqianba_qr shows
a QR code, which the test "scans" as the customer's wallet would).

    tests/browser/run.sh            (installs playwright-core from the lock file, then runs this)
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import harness  # noqa: E402
import test_dhpay  # noqa: E402

API_KEY = "sk_test_demo"  # config/sandbox.yaml's default
VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def render(path, values):
    """A quick-start file with ${VAR} / ${VAR:-default} taken from `values`, else the default
    (comment lines kept as they are)."""
    def sub(m):
        if m.group(1) in values:
            return str(values[m.group(1)])
        if m.group(2) is None:
            raise KeyError(f"{path}: ${{{m.group(1)}}} has no default and no test value")
        return m.group(2)
    return "".join(line if line.lstrip().startswith("#") else VAR.sub(sub, line)
                   for line in path.read_text().splitlines(keepends=True))


class QuickStartStack(harness.Stack):
    """paymux + paymux-sandbox with the quick start's configuration files on free ports."""

    def sandbox_config(self):
        return render(ROOT / "config" / "sandbox-gateways.yaml", {
            "SANDBOX_LISTEN": f"127.0.0.1:{self.sandbox_port}",
            "SANDBOX_PUBLIC_URL": f"http://127.0.0.1:{self.sandbox_port}",
            "SANDBOX_TIME_FACTOR": 60})

    def paymux_config(self):
        # Key files named relative to config/ are read from the source tree.
        return render(ROOT / "config" / "sandbox.yaml", {
            "PAYMUX_LISTEN": f"127.0.0.1:{self.port}",
            "PAYMUX_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "PAYMUX_THREADS": 2,
            "PAYMUX_STORAGE_URL": f"sqlite://{self.db}",
            "PAYMUX_LOG_LEVEL": "debug",
            "PAYMUX_LOG_FORMAT": "json",
            "PAYMUX_SANDBOX_URL": f"http://127.0.0.1:{self.sandbox_port}",
            "PAYMUX_GATEWAY_TIMEOUT_MS": 5000}).replace('"../sandbox/keys/', f'"{ROOT}/sandbox/keys/')


class Shop:
    """The merchant's own pages: return_url lands here (GET /orders/<ref>?...)."""

    def __init__(self):
        self.visits = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                shop.visits.append(self.path)
                q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
                body = (f"<!doctype html><html lang=en><title>Demo shop</title><h1>Back at the shop</h1>"
                        f"<p id=result>Payment {q.get('payment_id', '?')}: {q.get('status', '?')}</p>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Browser:
    """driver.mjs: one JSON command per line in, one JSON answer per line out."""

    def __init__(self, artifacts):
        self.artifacts = artifacts
        self.proc = subprocess.Popen(["node", str(HERE / "driver.mjs")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=sys.stderr, text=True, cwd=HERE)

    def do(self, op, **args):
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the browser driver exited (status {self.proc.wait()})")
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise AssertionError(f"browser {op} {args}: {answer['error']} (at {answer.get('url')})")
        return answer

    def open(self, url, **args):
        return self.do("open", url=url, **args)

    def fill(self, label, value):
        self.do("fill_label", label=label, value=value)

    def click(self, name, role="button"):
        self.do("click", role=role, name=name)

    def wait_url(self, prefix, timeout_ms=15000):
        return self.do("wait_url", prefix=prefix, timeout_ms=timeout_ms)["url"]

    def wait_text(self, text, timeout_ms=15000):
        self.do("wait_text", text=text, timeout_ms=timeout_ms)

    def info(self):
        return self.do("info")

    def screenshot(self, name):
        self.do("screenshot", path=str(self.artifacts / f"{name}.png"))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


class CheckoutJourneys(harness.StackTestCase):
    @classmethod
    def setUpClass(cls):
        cls._failed = False
        cls.artifacts = Path(os.environ.get("PAYMUX_BROWSER_ARTIFACTS") or tempfile.mkdtemp(prefix="paymux-browser-"))
        cls.artifacts.mkdir(parents=True, exist_ok=True)
        print(f"\nscreenshots: {cls.artifacts}", file=sys.stderr)
        cls.stack = QuickStartStack().start()
        cls.shop = Shop()
        try:
            cls.browser = Browser(cls.artifacts)
        except BaseException:
            cls.shop.close()
            cls.stack.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.browser.close()
            cls.shop.close()
        finally:
            super().tearDownClass()

    # --- the journey shared by every gateway ---------------------------------------------------
    def create(self, connector, method, amount, currency, **extra):
        ref = f"BR-{uuid.uuid4().hex[:10]}"
        body = {"amount": amount, "currency": currency, "reference": ref, "connector": connector,
                "payment_method": method, "description": "Smart Phone P238 x1",
                "customer": {"email": "buyer@example.com"},
                # an existing query string: paymux adds payment_id and status and keeps it
                "return_url": f"{self.shop.url}/orders/{ref}?lang=en"}
        body.update(extra)
        r = self.stack.api("POST", "/v1/payments", body, key=API_KEY, idem=uuid.uuid4().hex)
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertEqual(p["status"], "requires_action", p)
        self.assertEqual(p["checkout_url"], f"http://127.0.0.1:{self.stack.port}/checkout/{p['id']}")
        return p

    def check_checkout_page(self, payment, name):
        """The checkout page as served: security headers; for a page of paymux's own (not a 303),
        the amount and description, and a way on that works without scripts (screenshot)."""
        r = harness.request(self.stack.port, "GET", urllib.parse.urlparse(payment["checkout_url"]).path)
        self.assertEqual(r.header("Referrer-Policy"), "no-referrer")
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        csp = r.header("Content-Security-Policy") or ""
        for part in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"):
            self.assertIn(part, csp)
        gateway = payment["next_action"].get("url", "")
        if r.status == 303:
            self.assertEqual(r.header("Location"), gateway)
            self.assertEqual(self.browser.open(payment["checkout_url"], javascript=False)["url"], gateway)
            self.browser.screenshot(f"{name}-1-checkout")
            return
        self.assertEqual(r.status, 200, r)
        shown = self.browser.open(payment["checkout_url"], javascript=False)
        self.assertEqual(shown["url"], payment["checkout_url"])
        text = self.browser.info()["text"]
        self.assertIn(payment["description"], text)
        # The gateway's signed form may carry customer fields (hidden); the page shows none of them.
        self.assertNotIn("buyer@example.com", text)
        self.browser.screenshot(f"{name}-1-checkout")
        if payment["next_action"]["type"] == "display_qr":
            self.assertIn("<svg", r.body)
            self.assertIn("Scan this code", text)
        elif payment["next_action"]["type"] == "form_post":
            # Without scripts the button takes the customer on (the gateway shows the same order
            # again when the form comes twice).
            self.browser.click("Continue to payment")
            self.browser.wait_url("{0.scheme}://{0.netloc}/".format(urllib.parse.urlparse(gateway)))

    def journey(self, payment, name, steps, status):
        """checkout_url -> the gateway's pages (`steps`) -> the merchant's return_url, then the
        status through the API and the webhook at the merchant receiver."""
        self.check_checkout_page(payment, name)
        self.browser.open(payment["checkout_url"], wait_until="commit")
        steps(self.browser)
        landed = self.browser.wait_url(self.shop.url, timeout_ms=20000)
        self.browser.screenshot(f"{name}-9-return")
        url = urllib.parse.urlparse(landed)
        q = urllib.parse.parse_qs(url.query)
        self.assertEqual(url.path, urllib.parse.urlparse(payment["return_url"]).path)
        self.assertEqual(q, {"lang": ["en"], "payment_id": [payment["id"]], "status": [status]}, landed)
        self.assertIn(f"Payment {payment['id']}: {status}", self.browser.info()["text"])
        self.assertEqual(self.browser.info()["problems"], [])  # no CSP violation or script error
        self.assertEqual(self.stack.get_payment(payment["id"], key=API_KEY)["status"], status)
        event = harness.wait_for(lambda: self.webhook(payment["id"], f"payment.{status}"), timeout=15,
                                 what=f"payment.{status} webhook for {payment['id']}")
        self.assertEqual(event["event"]["data"]["object"]["status"], status)

    def webhook(self, payment_id, type_):
        r = self.stack.sandbox_api("GET", "/_sandbox/merchant/events")
        self.assertEqual(r.status, 200, r)
        for e in r.json()["events"]:
            if e["type"] == type_ and e["event"]["data"]["object"]["id"] == payment_id:
                return e
        return None

    def card(self, number, expiry, cvv="123"):
        """Fills a sandbox card form through its labels."""
        def fill(b):
            b.fill("Card number", number)
            b.fill(f"Expiry ({'MM/YYYY' if len(expiry) == 7 else 'MM/YY'})", expiry)
            b.fill("CVV", cvv)
        return fill

    # --- one method per gateway --------------------------------------------------------------------
    def test_glocash_card_page(self):
        p = self.create("glocash_sandbox", {"type": "hosted"}, 1999, "USD")

        def steps(b):
            b.wait_url(f"http://127.0.0.1:{self.stack.sandbox_port}/glocash/gateway/payment/index/token/")
            b.wait_text("4000000000000002")  # the test cards are on the page
            self.card("4000000000000002", "01/2030")(b)
            b.screenshot("glocash-2-gateway")
            b.click("Pay 19.99 USD")

        self.journey(p, "glocash", steps, "succeeded")

    def test_glocash_declined_card(self):
        p = self.create("glocash_sandbox", {"type": "hosted"}, 2500, "USD")

        def steps(b):
            b.wait_url(f"http://127.0.0.1:{self.stack.sandbox_port}/glocash/gateway/payment/index/token/")
            self.card("5200000000000023", "01/2030")(b)
            b.screenshot("glocash-declined-2-gateway")
            b.click("Pay 25.00 USD")

        self.journey(p, "glocash-declined", steps, "failed")
        self.assertIsNotNone(self.stack.get_payment(p["id"], key=API_KEY)["failure"])

    def test_dhpay_web_cashier(self):
        p = self.create("dhpay_sandbox", {"type": "hosted"}, 1999, "USD", **DHPAY_ORDER)

        def steps(b):
            b.wait_url(f"http://127.0.0.1:{self.stack.sandbox_port}/dhpay/")
            b.wait_text("4111111111111111")
            self.card("4111111111111111", "12/30")(b)
            b.screenshot("dhpay-2-gateway")
            b.click("Pay 19.99 USD")

        self.journey(p, "dhpay", steps, "succeeded")

    def test_dhpay_nonce_three_d_secure(self):
        p = self.create("dhpay_nonce_sandbox", {"type": "card_nonce", "nonce": "tok_3ds"}, 1999, "USD", **DHPAY_ORDER)
        self.assertEqual(p["next_action"]["type"], "form_post")

        def steps(b):
            b.wait_url(f"http://127.0.0.1:{self.stack.sandbox_port}/dhpay/acs/")
            b.wait_text("3-D Secure authentication")
            b.screenshot("dhpay-nonce-2-acs")
            b.click("Authenticate")

        self.journey(p, "dhpay-nonce", steps, "succeeded")

    def test_cashypay_pay_desk(self):
        p = self.create("cashypay_sandbox", {"type": "hosted"}, 12000, "CLP", customer=CASHYPAY_CUSTOMER)
        self.assertEqual(p["next_action"]["type"], "redirect")

        def steps(b):
            b.wait_url(f"http://127.0.0.1:{self.stack.sandbox_port}/cashypay/paydesk/")
            b.screenshot("cashypay-2-gateway")
            b.click("Pay 12000 CLP")

        self.journey(p, "cashypay", steps, "succeeded")

    def test_shouqianba_qr(self):
        p = self.create("shouqianba_sandbox", {"type": "qr"}, 100, "CNY")
        self.assertEqual(p["next_action"]["type"], "display_qr", p)
        qr = urllib.parse.urlparse(p["next_action"]["qr_code"])
        self.assertEqual(qr.netloc, f"127.0.0.1:{self.stack.sandbox_port}")

        def steps(b):
            # paymux's own page: the code, the amount, and a status that follows the payment.
            b.wait_text("Scan this code")
            b.screenshot("shouqianba-2-qr")
            # The customer's phone scans the code: the wallet's page (the simulator's) opens beside
            # the checkout page, the customer pays there, and the checkout page follows.
            b.do("open_tab", url=p["next_action"]["qr_code"])
            b.wait_text("Pay 1.00 CNY")
            b.screenshot("shouqianba-3-wallet")
            b.click("Pay 1.00 CNY")
            b.wait_text("This order is PAID")
            b.do("close_tab")

        self.journey(p, "shouqianba", steps, "succeeded")

    def test_live_status_until_final(self):
        # The status a QR page follows, on a payment that is processing: paid on the gateway's page
        # with its "pending" card, then settled by the gateway while the customer watches.
        p = self.create("glocash_sandbox", {"type": "hosted"}, 1500, "USD")
        self.assertEqual(self.stack.pay_on_page(p, card="5200000000000106").json()["status"], "pending")
        harness.wait_for(lambda: self.stack.get_payment(p["id"], key=API_KEY)["status"] == "processing",
                         what=f"{p['id']} processing")
        self.browser.open(p["checkout_url"])
        self.browser.wait_text("This payment is being processed")
        self.browser.screenshot("live-1-checkout")
        self.stack.glocash_force_status(self.stack.gcid_of(p), "paid", notify=True)
        landed = urllib.parse.urlparse(self.browser.wait_url(self.shop.url, timeout_ms=20000))
        self.browser.screenshot("live-9-return")
        self.assertEqual(urllib.parse.parse_qs(landed.query),
                         {"lang": ["en"], "payment_id": [p["id"]], "status": ["succeeded"]})
        self.assertEqual(self.browser.info()["problems"], [])


# What DHpay's documents make mandatory (customer, billing, shipping, items), as test_dhpay sends it.
DHPAY_ORDER = {k: v for k, v in test_dhpay.payment_body(1999, None, None).items()
               if k in ("items", "customer", "billing", "shipping")}
CASHYPAY_CUSTOMER = {"email": "buyer@example.cl", "first_name": "Cristian", "last_name": "Alejandro",
                     "phone": "9728034619", "id_type": "RUT", "id_number": "11.111.111-1"}

if __name__ == "__main__":
    unittest.main()
