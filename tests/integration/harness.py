"""Runs the real paymux and paymux-sandbox binaries on loopback for integration tests.

Each test class gets its own temporary directory, free ports, a generated configuration and both
processes; everything is stopped (SIGTERM, then checked for a clean exit) when the class ends.
Traffic goes to 127.0.0.1 only.
"""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import http.client
import hashlib
import uuid

PAYMUX_BIN = os.environ.get("PAYMUX_BIN", "../../build/release/paymux")
SANDBOX_BIN = os.environ.get("PAYMUX_SANDBOX_BIN", "../../build/release/paymux-sandbox")

GLOCASH_EMAIL = "merchant@paymux.test"
GLOCASH_KEY = "itest-glocash-secret-key-0042"
API_KEY = "sk_test_itest_acme"
OTHER_API_KEY = "sk_test_itest_other"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def request(port, method, path, body=None, headers=None, timeout=30, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    hdrs = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(data, str):
        data = data.encode()
    conn.request(method, path, body=data, headers=hdrs)
    r = conn.getresponse()
    out = Response(r.status, r.getheaders(), r.read().decode("utf-8", "replace"))
    conn.close()
    return out


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (ConnectionError, OSError):
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def glocash_psn_sign(fields, key=GLOCASH_KEY):
    """The PSN formula of Glocash appendix 1, computed independently of paymux."""
    parts = [key] + [fields.get(k, "") for k in
                     ("REQ_TIMES", "REQ_EMAIL", "CUS_EMAIL", "TNS_GCID", "BIL_STATUS", "BIL_METHOD",
                      "PGW_PRICE", "PGW_CURRENCY")]
    return hashlib.sha256("".join(parts).encode()).hexdigest()


class Stack:
    """paymux + paymux-sandbox, configured for one test class."""

    def __init__(self, extra_merchant_yaml="", paymux_env=None, gateway_timeout_ms=3000, time_factor=100.0):
        self.dir = tempfile.mkdtemp(prefix="paymux-it-")
        self.port = free_port()
        self.sandbox_port = free_port()
        self.gateway_timeout_ms = gateway_timeout_ms
        self.time_factor = time_factor
        self.extra_merchant_yaml = extra_merchant_yaml
        self.paymux_env = paymux_env or {}
        self.paymux = None
        self.sandbox = None
        self.db = os.path.join(self.dir, "paymux.db")

    # --- configuration -------------------------------------------------------------------------
    def sandbox_config(self):
        return f"""
listen: "127.0.0.1:{self.sandbox_port}"
public_url: "http://127.0.0.1:{self.sandbox_port}"
threads: 1
time_factor: {self.time_factor}
log_level: info
glocash:
  accounts:
    - email: "{GLOCASH_EMAIL}"
      secret_key: "{GLOCASH_KEY}"
      merchant_name: "Integration Shop"
  psn_retry_seconds: [5, 30, 60, 300]
  max_psn_attempts: 5
  psn_timeout_ms: 2000
"""

    def paymux_config(self):
        sb = f"http://127.0.0.1:{self.sandbox_port}"
        return f"""
server:
  listen: "127.0.0.1:{self.port}"
  public_url: "http://127.0.0.1:{self.port}"
  threads: 2
  limits: {{max_body_bytes: 65536, header_timeout_ms: 2000, idle_timeout_ms: 5000, shutdown_grace_ms: 5000}}
storage:
  url: "sqlite://{self.db}"
log: {{level: debug, format: json}}
merchants:
  - id: acme
    api_keys: ["{API_KEY}"]
    connectors:
      - id: glocash_eu
        provider: glocash
        base_url: "{sb}/glocash"
        timeout_ms: {self.gateway_timeout_ms}
        connect_timeout_ms: 1000
        credentials: {{email: "{GLOCASH_EMAIL}", secret_key: "{GLOCASH_KEY}"}}
  - id: other
    api_key_sha256: ["{hashlib.sha256(OTHER_API_KEY.encode()).hexdigest()}"]
    connectors:
      - id: glocash_other
        provider: glocash
        base_url: "{sb}/glocash"
        credentials: {{email: "{GLOCASH_EMAIL}", secret_key: "{GLOCASH_KEY}"}}
{self.extra_merchant_yaml}
"""

    # --- processes -----------------------------------------------------------------------------
    def start(self):
        self.start_sandbox()
        self.start_paymux()
        return self

    def start_sandbox(self):
        path = os.path.join(self.dir, "sandbox.yaml")
        with open(path, "w") as f:
            f.write(self.sandbox_config())
        self.sandbox_log = open(os.path.join(self.dir, "sandbox.log"), "ab")
        self.sandbox = subprocess.Popen([SANDBOX_BIN, "--config", path], stdout=self.sandbox_log,
                                        stderr=subprocess.STDOUT)
        wait_for(lambda: request(self.sandbox_port, "GET", "/_sandbox/healthz", timeout=1).status == 200,
                 what="sandbox health")

    def start_paymux(self):
        path = os.path.join(self.dir, "paymux.yaml")
        with open(path, "w") as f:
            f.write(self.paymux_config())
        self.paymux_log_path = os.path.join(self.dir, "paymux.log")
        self.paymux_log = open(self.paymux_log_path, "ab")
        env = dict(os.environ)
        env.update(self.paymux_env)
        self.paymux = subprocess.Popen([PAYMUX_BIN, "--config", path], stdout=self.paymux_log,
                                       stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: request(self.port, "GET", "/readyz", timeout=1).status == 200, what="paymux ready")

    def stop_paymux(self, sig=signal.SIGTERM, expect_clean=True):
        if not self.paymux:
            return None
        self.paymux.send_signal(sig)
        rc = self.paymux.wait(timeout=20)
        self.paymux = None
        if expect_clean and sig == signal.SIGTERM:
            assert rc == 0, f"paymux exited with {rc} after SIGTERM"
        return rc

    def stop(self):
        rc = None
        if self.paymux:
            rc = self.stop_paymux()
        if self.sandbox:
            self.sandbox.send_signal(signal.SIGTERM)
            try:
                self.sandbox.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.sandbox.kill()
            self.sandbox = None
        return rc

    def paymux_log_text(self):
        with open(self.paymux_log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    # --- API helpers ---------------------------------------------------------------------------
    def api(self, method, path, body=None, key=API_KEY, idem=None, headers=None, raw=None):
        h = {"Authorization": f"Bearer {key}"} if key else {}
        if idem is not None:
            h["Idempotency-Key"] = idem
        h.update(headers or {})
        return request(self.port, method, path, body=body, headers=h, raw=raw)

    def sandbox_api(self, method, path, body=None):
        return request(self.sandbox_port, method, path, body=body)

    def create_payment(self, amount=1999, currency="USD", reference=None, email="buyer@example.com", idem=None,
                       key=API_KEY, **extra):
        body = {"amount": amount, "currency": currency, "reference": reference or f"ORDER-{uuid.uuid4().hex[:12]}",
                "payment_method": {"type": "hosted"}, "description": "Smart Phone P238 x1",
                "customer": {"email": email}, "return_url": "https://shop.example/orders/1001"}
        body.update(extra)
        return self.api("POST", "/v1/payments", body, key=key, idem=idem or uuid.uuid4().hex)

    def gcid_of(self, payment):
        return payment["provider_payment_id"]

    def pay_on_page(self, payment, card="4000000000000002"):
        """Submits the sandbox payment page as a browser would (automation variant)."""
        url = urllib.parse.urlparse(payment["next_action"]["url"])
        form = urllib.parse.urlencode({"card_number": card, "expiry": "01/30", "cvv": "123",
                                       "holder": "Test Buyer", "auto": "1"})
        return request(url.port, "POST", url.path, raw=form,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})

    def wait_status(self, payment_id, status, timeout=15):
        def check():
            p = self.api("GET", f"/v1/payments/{payment_id}").json()
            return p if p["status"] == status else None
        return wait_for(check, timeout=timeout, what=f"{payment_id} to be {status}")

    def events(self, object_id=None, type=None):
        q = {"limit": "100"}
        if object_id:
            q["object_id"] = object_id
        if type:
            q["type"] = type
        return self.api("GET", "/v1/events?" + urllib.parse.urlencode(q)).json()["data"]


class StackTestCase(unittest.TestCase):
    """A test class with one Stack started before its tests and stopped after them."""
    stack_kwargs = {}

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(**cls.stack_kwargs).start()

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()
