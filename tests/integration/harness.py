"""Runs the real paymux and paymux-sandbox binaries on loopback for integration tests.

Each test class gets its own temporary directory, free ports, a generated configuration and both
processes; everything is stopped (SIGTERM, then checked for a clean exit) when the class ends, and
the directory removed unless a test failed (then its path and the logs' tails are printed).
Traffic goes to 127.0.0.1 only.

    cd tests/integration && PAYMUX_BIN=... PAYMUX_SANDBOX_BIN=... python3 -m unittest -v test_http
"""
import copy
import json
import secrets
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import http.client
import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor

PAYMUX_BIN = os.environ.get("PAYMUX_BIN", "../../build/release/paymux")
SANDBOX_BIN = os.environ.get("PAYMUX_SANDBOX_BIN", "../../build/release/paymux-sandbox")
SOURCE_DIR = os.environ.get("PAYMUX_SOURCE_DIR",
                            os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")))
PG_SERVER_SCRIPT = os.path.join(SOURCE_DIR, "tools", "pg-test-server.sh")

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


def pg_schema_url(url):
    """A fresh, empty schema on the PostgreSQL server at url; the URL that uses it."""
    schema = "it_" + secrets.token_hex(8)
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", f"CREATE SCHEMA {schema}"], check=True)
    return url + ("&" if "?" in url else "?") + "options=-csearch_path%3D" + schema


class Stack:
    """paymux + paymux-sandbox, configured for one test class.

    extra_merchant_yaml: more entries of paymux's merchants list (indented by two spaces, as in
    paymux_config); "@SANDBOX_URL@" in it becomes the sandbox's base URL. storage_url: the store
    (default: a SQLite file in the stack's directory)."""

    def __init__(self, extra_merchant_yaml="", paymux_env=None, gateway_timeout_ms=3000, time_factor=100.0,
                 header_timeout_ms=2000, idle_timeout_ms=5000, shutdown_grace_ms=5000, storage_url=None):
        self.dir = tempfile.mkdtemp(prefix="paymux-it-")
        self.header_timeout_ms = header_timeout_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.shutdown_grace_ms = shutdown_grace_ms
        self.port = free_port()
        self.sandbox_port = free_port()
        self.gateway_timeout_ms = gateway_timeout_ms
        self.time_factor = time_factor
        self.extra_merchant_yaml = extra_merchant_yaml
        self.paymux_env = paymux_env or {}
        self.paymux = None
        self.sandbox = None
        self.db = os.path.join(self.dir, "paymux.db")
        self.storage_url = storage_url or f"sqlite://{self.db}"
        if storage_url is None and os.environ.get("PAYMUX_TEST_PG_URL"):  # the suite can run on PostgreSQL
            self.storage_url = pg_schema_url(os.environ["PAYMUX_TEST_PG_URL"])
        self.owns_sandbox = True

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
  limits: {{max_body_bytes: 65536, header_timeout_ms: {self.header_timeout_ms}, idle_timeout_ms: {self.idle_timeout_ms},
            shutdown_grace_ms: {self.shutdown_grace_ms}}}
storage:
  url: "{self.storage_url}"
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
{self.extra_merchant_yaml.replace("@SANDBOX_URL@", sb)}
"""

    # --- processes -----------------------------------------------------------------------------
    def start(self):
        for attempt in range(3):
            try:
                if self.owns_sandbox:
                    self.start_sandbox()
                self.start_paymux()
                return self
            except AssertionError:
                self.kill_all()
                if attempt == 2:
                    raise
                # Another process may have taken a "free" port meanwhile: pick new ones.
                self.port = free_port()
                if self.owns_sandbox:
                    self.sandbox_port = free_port()
            except BaseException:
                self.kill_all()
                raise
        return self

    def peer(self):
        """Another paymux of the same class and settings, on its own port and directory, with this
        stack's sandbox and store (a shared database: storage_url); not started. Stopping it leaves
        the sandbox running."""
        other = copy.copy(self)
        other.dir = tempfile.mkdtemp(prefix="paymux-it-")
        other.port = free_port()
        other.paymux = other.sandbox = None
        other.owns_sandbox = False
        return other

    def kill_all(self):
        for proc in (self.paymux, self.sandbox):
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self.paymux = self.sandbox = None

    def start_sandbox(self):
        path = os.path.join(self.dir, "sandbox.yaml")
        with open(path, "w") as f:
            f.write(self.sandbox_config())
        with open(os.path.join(self.dir, "sandbox.log"), "ab") as log:
            self.sandbox = subprocess.Popen([SANDBOX_BIN, "--config", path], stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self._alive(self.sandbox, "paymux-sandbox") and
                 request(self.sandbox_port, "GET", "/_sandbox/healthz", timeout=1).status == 200,
                 what="sandbox health")

    def start_paymux(self):
        path = os.path.join(self.dir, "paymux.yaml")
        with open(path, "w") as f:
            f.write(self.paymux_config())
        self.paymux_log_path = os.path.join(self.dir, "paymux.log")
        env = dict(os.environ)
        env.update(self.paymux_env)
        with open(self.paymux_log_path, "ab") as log:
            self.paymux = subprocess.Popen([PAYMUX_BIN, "--config", path], stdout=log, stderr=subprocess.STDOUT,
                                           env=env)
        wait_for(lambda: self._alive(self.paymux, "paymux") and
                 request(self.port, "GET", "/readyz", timeout=1).status == 200, what="paymux ready")

    @staticmethod
    def _alive(proc, name):
        rc = proc.poll()
        if rc is not None:
            raise AssertionError(f"{name} exited with {rc} during start-up")
        return True

    def stop_paymux(self, sig=signal.SIGTERM, expect_clean=True):
        if not self.paymux:
            return None
        self.paymux.send_signal(sig)
        try:
            rc = self.paymux.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.paymux.kill()
            self.paymux.wait(timeout=10)
            self.paymux = None
            raise AssertionError(f"paymux did not exit within 20 s of signal {sig}")
        self.paymux = None
        if expect_clean and sig == signal.SIGTERM:
            assert rc == 0, f"paymux exited with {rc} after SIGTERM"
        return rc

    def stop(self):
        rc = None
        try:
            if self.paymux:
                rc = self.stop_paymux()
        finally:
            if self.sandbox:
                self.sandbox.send_signal(signal.SIGTERM)
                try:
                    self.sandbox.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.sandbox.kill()
                    self.sandbox.wait(timeout=10)
                self.sandbox = None
        return rc

    def remove_files(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, name, lines=40):
        try:
            with open(os.path.join(self.dir, name), "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

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

    def set_fault(self, mode, count=1, **params):
        """A sandbox fault on the Glocash simulator: status_500, timeout, drop, garbage or latency."""
        r = self.sandbox_api("POST", "/_sandbox/faults", {"gateway": "glocash", "mode": mode, "count": count, **params})
        assert r.status == 200, r
        return r.json()

    def clear_faults(self):
        r = self.sandbox_api("DELETE", "/_sandbox/faults")
        assert r.status == 200, r

    def glocash_transactions(self, invoice):
        """The sandbox's Glocash transactions for one REQ_INVOICE (paymux's order number)."""
        r = self.sandbox_api("GET", "/_sandbox/glocash/transactions?" + urllib.parse.urlencode({"invoice": invoice}))
        assert r.status == 200, r
        return r.json()["transactions"]

    def glocash_transaction(self, gcid):
        r = self.sandbox_api("GET", f"/_sandbox/glocash/transactions/{gcid}")
        assert r.status == 200, r
        return r.json()

    def glocash_transaction_count(self):
        r = self.sandbox_api("GET", "/_sandbox")
        assert r.status == 200, r
        return r.json()["simulators"]["glocash"]["transactions"]

    def glocash_force_status(self, gcid, status, notify=False, **extra):
        r = self.sandbox_api("POST", f"/_sandbox/glocash/transactions/{gcid}/status",
                             {"status": status, "notify": notify, **extra})
        assert r.status == 200, r
        return r.json()

    def glocash_psn(self, gcid, **options):
        """Has the sandbox send one hand-made PSN now (options: status, price, currency, bil_price,
        forge_signature, repeat, url); returns its answer with the notified party's responses."""
        r = self.sandbox_api("POST", f"/_sandbox/glocash/transactions/{gcid}/psn", options)
        assert r.status == 200, r
        return r.json()

    def create_payment(self, amount=1999, currency="USD", reference=None, email="buyer@example.com", idem=None,
                       key=API_KEY, **extra):
        body = {"amount": amount, "currency": currency, "reference": reference or f"ORDER-{uuid.uuid4().hex[:12]}",
                "payment_method": {"type": "hosted"}, "description": "Smart Phone P238 x1",
                "customer": {"email": email}, "return_url": "https://shop.example/orders/1001"}
        body.update(extra)
        return self.api("POST", "/v1/payments", body, key=key, idem=idem or uuid.uuid4().hex)

    def gcid_of(self, payment):
        return payment["provider_payment_id"]

    @staticmethod
    def order_no(payment_id):
        """paymux's REQ_INVOICE for a payment: its id without the pay_ prefix."""
        assert payment_id.startswith("pay_"), payment_id
        return payment_id[len("pay_"):]

    def get_payment(self, payment_id, key=API_KEY):
        r = self.api("GET", f"/v1/payments/{payment_id}", key=key)
        assert r.status == 200, r
        return r.json()

    def payments_by_reference(self, reference, key=API_KEY):
        r = self.api("GET", "/v1/payments?" + urllib.parse.urlencode({"reference": reference, "limit": "100"}), key=key)
        assert r.status == 200, r
        return r.json()["data"]

    def paid_payment(self, amount=1999, **kwargs):
        """A payment taken on the sandbox page with a card that pays, once paymux has the PSN."""
        r = self.create_payment(amount=amount, **kwargs)
        assert r.status == 201, r
        page = self.pay_on_page(r.json())
        assert page.status == 200 and page.json()["status"] == "paid", page
        return self.wait_status(r.json()["id"], "succeeded")

    def pay_on_page(self, payment, card="4000000000000002"):
        """Submits the sandbox payment page as a browser would (automation variant)."""
        url = urllib.parse.urlparse(payment["next_action"]["url"])
        form = urllib.parse.urlencode({"card_number": card, "card_expiry": "01/2030", "card_cvv": "123",
                                       "card_holder": "Test Buyer", "auto": "1"})
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

    def all_events(self, type=None, key=API_KEY):
        """Every event of the merchant (of one type), page after page, newest first."""
        out, cursor = [], None
        while True:
            q = {"limit": "100"}
            if type:
                q["type"] = type
            if cursor:
                q["starting_after"] = cursor
            r = self.api("GET", "/v1/events?" + urllib.parse.urlencode(q), key=key)
            assert r.status == 200, r
            page = r.json()
            out += page["data"]
            if not page["has_more"]:
                return out
            cursor = page["data"][-1]["id"]


class StackTestCase(unittest.TestCase):
    """A test class with one Stack started before its tests and stopped after them.

    The stack's directory (configs, database, both logs) is removed when every test of the class
    passed; otherwise it is kept, and its path and the logs' last lines are printed."""
    stack_class = Stack
    stack_kwargs = {}
    _failed = False

    @classmethod
    def setUpClass(cls):
        cls._failed = False
        cls.stack = cls.stack_class(**cls.stack_kwargs).start()

    @classmethod
    def tearDownClass(cls):
        try:
            rc = cls.stack.stop()
        finally:
            if cls._failed:
                sys.stderr.write(f"\n{cls.__name__}: files kept in {cls.stack.dir}\n"
                                 f"--- paymux.log (tail) ---\n{cls.stack.log_tail('paymux.log')}\n"
                                 f"--- sandbox.log (tail) ---\n{cls.stack.log_tail('sandbox.log')}\n")
            else:
                cls.stack.remove_files()
        return rc

    def tearDown(self):
        # A test during which paymux died fails with that, and the next test gets a fresh paymux
        # (same port and database) instead of a cascade of connection errors.
        proc = self.stack.paymux
        if proc is not None and proc.poll() is not None:
            rc = proc.returncode
            self.stack.paymux = None
            self.stack.start_paymux()
            self.fail(f"paymux died during this test (exit status {rc}; negative: killed by signal {-rc})")

    def run(self, result=None):
        before = (len(result.failures), len(result.errors)) if result is not None else None
        out = super().run(result)
        if result is not None and (len(result.failures), len(result.errors)) != before:
            type(self)._failed = True
        return out

    # --- assertions shared by the test files ---------------------------------------------------
    def assertError(self, response, status, code=None, param=None, type=None):
        """An error answer in the contract's shape, with the response's X-Request-Id in its body."""
        self.assertEqual(response.status, status, response)
        self.assertTrue((response.header("Content-Type") or "").startswith("application/json"), response.headers)
        err = response.json()["error"]
        for key in ("type", "code", "message", "request_id"):
            self.assertIn(key, err, response)
        self.assertTrue(err["message"])
        self.assertEqual(err["request_id"], response.header("X-Request-Id"))
        if code is not None:
            self.assertEqual(err["code"], code, response)
        if param is not None:
            self.assertEqual(err.get("param"), param, response)
        if type is not None:
            self.assertEqual(err["type"], type, response)
        return err


class PgServer:
    """A throw-away PostgreSQL server (tools/pg-test-server.sh) in its own temporary directory, on
    127.0.0.1 and a free port that stays the same across stop/start/restart."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="paymux-pg-")
        self.port = None
        self._url = None

    def _script(self, *args, timeout=120):
        r = subprocess.run(["bash", PG_SERVER_SCRIPT, *args], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"pg-test-server.sh {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}\n"
                                 f"{self.log_tail()}")
        return r.stdout

    def start(self):
        self._url = self._script("start", self.dir, *([str(self.port)] if self.port else [])).strip()
        self.port = urllib.parse.urlparse(self._url).port
        return self

    def stop(self, mode="fast"):
        """mode: pg_ctl's, fast (clients disconnected, a clean shut-down) or immediate (as a crash)."""
        self._script("stop", self.dir, mode)

    def restart(self):
        self._script("restart", self.dir)

    @property
    def url(self):
        assert self._url, "the server was never started"
        return self._url

    def query(self, sql):
        """Rows of one SQL statement (psql, unaligned): a list of tuples of strings."""
        r = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", self.url,
                            "-c", sql], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"psql: {r.stderr.strip()}")
        return [tuple(line.split("\t")) for line in r.stdout.splitlines()]

    def log_tail(self, lines=20):
        try:
            with open(os.path.join(self.dir, "postgres.log"), "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def remove(self):
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """Several paymux instances sharing one PostgreSQL database (a PgServer of their own) and one
    sandbox: stacks[0] is a `stack_class(**kwargs)` stack that runs the sandbox, the others are its
    peers (own port, directory and log). `configure(i, stack)` may adjust instance i before it starts.
    All instances start at the same moment, so that their migrations race as in a real roll-out."""

    def __init__(self, stack_class=Stack, instances=2, configure=None, **kwargs):
        self.pg = PgServer()
        self.stack_class = stack_class
        self.instances = instances
        self.configure = configure
        self.kwargs = kwargs
        self.stacks = []

    def start(self):
        try:
            self.pg.start()
            first = self.stack_class(storage_url=self.pg.url, **self.kwargs)
            self.stacks = [first]
            for attempt in range(3):
                try:
                    first.start_sandbox()
                    break
                except AssertionError:
                    first.kill_all()
                    if attempt == 2:
                        raise
                    first.sandbox_port = free_port()
            self.stacks += [first.peer() for _ in range(self.instances - 1)]
            if self.configure:
                for i, s in enumerate(self.stacks):
                    self.configure(i, s)
            with ThreadPoolExecutor(len(self.stacks)) as pool:
                for f in [pool.submit(s.start_paymux) for s in self.stacks]:
                    f.result()
        except BaseException:
            self.kill_all()
            raise
        return self

    def kill_all(self):
        for s in self.stacks:
            s.kill_all()
        try:
            self.pg.stop("immediate")
        except AssertionError:
            pass

    def stop(self):
        """Stops every instance (peers first, the sandbox with stacks[0]), then the database."""
        errors = []
        for s in reversed(self.stacks):
            try:
                s.stop()
            except AssertionError as e:
                errors.append(str(e))
        self.pg.stop()
        if errors:
            raise AssertionError("; ".join(errors))

    def remove_files(self):
        for s in self.stacks:
            s.remove_files()
        self.pg.remove()

    def report(self):
        out = [f"PostgreSQL: {self.pg.dir}\n--- postgres.log (tail) ---\n{self.pg.log_tail()}"]
        for i, s in enumerate(self.stacks):
            out.append(f"instance {i}: files kept in {s.dir}\n--- paymux.log (tail) ---\n{s.log_tail('paymux.log')}")
        if self.stacks:
            out.append(f"--- sandbox.log (tail) ---\n{self.stacks[0].log_tail('sandbox.log')}")
        return "\n".join(out)


class ClusterTestCase(StackTestCase):
    """A test class with one Cluster (cls.cluster; cls.stacks its instances, cls.stack the first)
    started before its tests and stopped after them; files are kept and reported if a test failed.
    Instances stopped by a test are not restarted behind its back."""
    cluster_kwargs = {}

    @classmethod
    def make_cluster(cls):
        return Cluster(**cls.cluster_kwargs)

    @classmethod
    def setUpClass(cls):
        cls._failed = False
        cls.cluster = cls.make_cluster().start()
        cls.stacks = cls.cluster.stacks
        cls.stack = cls.stacks[0]

    @classmethod
    def tearDownClass(cls):
        try:
            cls.cluster.stop()
        finally:
            if cls._failed:
                sys.stderr.write(f"\n{cls.__name__}:\n{cls.cluster.report()}\n")
            else:
                cls.cluster.remove_files()

    def tearDown(self):
        pass
