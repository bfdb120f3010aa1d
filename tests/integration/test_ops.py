"""Operations: GET /metrics after a scripted run on every kind of traffic, the log (one JSON object
per line, context fields, no configured secret anywhere), readiness while migrations wait for a
locked database or the store cannot take writes, and the online backup (`paymux backup`) restored
into a new process.

    cd tests/integration && PAYMUX_BIN=... PAYMUX_SANDBOX_BIN=... python3 -m unittest -v test_ops
"""
import base64
import json
import os
import re
import sqlite3
import subprocess
import threading
import time
import unittest
import urllib.parse
import uuid

import harness
import test_cashypay as cp
import test_dhpay as dh
from harness import API_KEY, GLOCASH_KEY, OTHER_API_KEY, PAYMUX_BIN, StackTestCase, request, wait_for
from test_webhooks import Receiver

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"operations-webhook-secret-0042!!").decode()
HELD_PREFIX = "HELD-"  # webhook events of payments with this reference prefix are answered 503

METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format: {name: [(labels dict, value)]}, and the TYPE of each family."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = dict(LABEL.findall(m.group(2) or ""))
        samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return samples, types


class OpsStack(cp.CashyPayStack, dh.DhpayStack):
    """Glocash, DHpay (cashier and nonce) and CashyPay connectors, merchant webhooks to a local
    receiver, and a quick reconciler."""
    reconciler = "{first_check_ms: 500, tick_ms: 100, expiry_grace_ms: 500}"

    def __init__(self, receiver_url, **kwargs):
        self.receiver_url = receiver_url
        super().__init__(**kwargs)

    def paymux_config(self):
        cfg = super().paymux_config()
        anchor = f'    api_keys: ["{API_KEY}"]\n'
        assert anchor in cfg, "harness.Stack.paymux_config changed: acme's api_keys not found"
        hook = (f'    webhook: {{url: "{self.receiver_url}", secrets: ["{WEBHOOK_SECRET}"], allow_private: true,\n'
                f'              retry_schedule_seconds: [60]}}\n')
        return cfg.replace(anchor, anchor + hook, 1)


class MetricsAndLogsTest(StackTestCase):
    """One scripted run, then the scrape and the log. Tests run in name order."""

    @classmethod
    def setUpClass(cls):
        cls._failed = False
        cls.receiver = Receiver()
        cls.receiver.policy = lambda event, n: 503 if HELD_PREFIX in json.dumps(event) else 200
        cls.nonces = []
        try:
            cls.stack = OpsStack(cls.receiver.url()).start()
        except BaseException:
            cls.receiver.close()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.receiver.close()

    def metrics(self):
        r = request(self.stack.port, "GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("text/plain; version=0.0.4"), r.headers)
        return parse_metrics(r.body)

    def value(self, samples, name, **labels):
        """The sum over the samples of `name` whose labels include `labels`."""
        return sum(v for l, v in samples.get(name, []) if all(l.get(k) == x for k, x in labels.items()))

    def test_1_scripted_run_then_every_family_has_its_traffic(self):
        s = self.stack
        # Glocash: paid on the page (a PSN notification), then a partial refund.
        paid = s.paid_payment(amount=1999)
        refund = s.api("POST", f"/v1/payments/{paid['id']}/refunds", {"amount": 500}, idem=uuid.uuid4().hex)
        self.assertEqual(refund.status, 201, refund)
        # Glocash: paid without a notification; the reconciler's query settles it.
        quiet = s.create_payment().json()
        s.glocash_force_status(quiet["provider_payment_id"], "paid", notify=False)
        s.wait_status(quiet["id"], "succeeded", timeout=20)
        # A webhook the merchant's endpoint refuses stays in the outbox (retry in 60 s).
        held = s.create_payment(reference=HELD_PREFIX + uuid.uuid4().hex[:8])
        self.assertEqual(held.status, 201, held)
        # DHpay nonce: access token, then a server-to-server payment with a card nonce.
        nonce = "sandbox_tcc_" + uuid.uuid4().hex
        type(self).nonces.append(nonce)
        r = s.dh_api("POST", "/v1/payments",
                     dh.payment_body(1201, {"type": "card_nonce", "nonce": nonce}, dh.NONCE), idem=uuid.uuid4().hex)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["status"], "succeeded", r)
        # CashyPay: the pay desk, its signed notification; and a forged notification.
        body = {"amount": 358320, "currency": "CLP", "reference": f"CL-{uuid.uuid4().hex[:12]}",
                "connector": cp.CONNECTOR, "payment_method": {"type": "hosted"}, "description": "Phone",
                "customer": {"email": "buyer@example.cl", "first_name": "Cristian", "last_name": "Alejandro",
                             "phone": "9728034619", "id_type": "RUT", "id_number": "11.111.111-1"},
                "return_url": "https://shop.example/orders/1001"}
        r = s.api("POST", "/v1/payments", body, idem=uuid.uuid4().hex)
        self.assertEqual(r.status, 201, r)
        cash = r.json()
        url = urllib.parse.urlparse(cash["next_action"]["url"])
        page = request(url.port, "POST", url.path, raw=urllib.parse.urlencode({"action": "pay", "auto": "1"}),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(page.status, 200, page)
        s.wait_status(cash["id"], "succeeded")
        forged = request(s.port, "POST", f"/webhooks/{cp.CONNECTOR}", raw='{"orderNo":"X"}',
                         headers={"Content-Type": "application/json", "MerchantId": cp.CP_MERCHANT_ID,
                                  "Sign": "0" * 32})
        self.assertNotEqual(forged.status, 500, forged)
        # Webhooks delivered for the paid payment.
        wait_for(lambda: self.receiver.delivered_ids(), timeout=15, what="a webhook delivery")

        # Reconciler backlog: pending payments whose checks stall on a gateway that does not answer.
        stalled = [s.create_payment().json() for _ in range(3)]
        s.set_fault("timeout", count=10)
        try:
            def backlog():
                samples, _ = self.metrics()
                return self.value(samples, "paymux_reconciler_backlog_payments") >= 1
            wait_for(backlog, timeout=15, what="a reconciler backlog")
        finally:
            s.clear_faults()
        self.assertTrue(stalled)

        samples, types = self.metrics()
        expected_types = {
            "paymux_http_requests_total": "counter",
            "paymux_http_request_duration_seconds": "histogram",
            "paymux_gateway_requests_total": "counter",
            "paymux_gateway_request_duration_seconds": "histogram",
            "paymux_notifications_received_total": "counter",
            "paymux_webhook_deliveries_total": "counter",
            "paymux_webhook_backlog_deliveries": "gauge",
            "paymux_reconciler_backlog_payments": "gauge",
            "paymux_circuit_state": "gauge",
            "paymux_store_commit_duration_seconds": "histogram",
            "paymux_store_commit_batch_operations": "histogram",
        }
        for name, kind in expected_types.items():
            self.assertEqual(types.get(name), kind, name)

        v = lambda name, **labels: self.value(samples, name, **labels)  # noqa: E731
        # HTTP, by route pattern (never a raw path with an id in it) and status.
        self.assertGreaterEqual(v("paymux_http_requests_total", route="/v1/payments", method="POST", status="201"), 5)
        self.assertGreater(v("paymux_http_requests_total", route="/v1/payments/{id}", method="GET", status="200"), 0)
        self.assertGreater(v("paymux_http_requests_total", route="/v1/payments/{id}/refunds", status="201"), 0)
        self.assertGreater(v("paymux_http_requests_total", route="/webhooks/{connector}"), 0)
        self.assertGreater(v("paymux_http_request_duration_seconds_count", route="/v1/payments", status="201"), 0)
        self.assertGreater(v("paymux_http_request_duration_seconds_sum", route="/v1/payments"), 0)
        for labels, _ in samples["paymux_http_requests_total"]:
            self.assertNotIn("pay_", labels["route"])
        # Gateway calls by connector, flow and outcome, with their latency.
        for connector, flow in (("glocash_eu", "authorize"), ("glocash_eu", "refund"), ("glocash_eu", "sync"),
                                (dh.NONCE, "token"), (dh.NONCE, "authorize"), (cp.CONNECTOR, "authorize")):
            self.assertGreater(v("paymux_gateway_requests_total", connector=connector, flow=flow, outcome="response"),
                               0, (connector, flow))
            self.assertGreater(v("paymux_gateway_request_duration_seconds_count", connector=connector, flow=flow), 0)
        self.assertGreater(v("paymux_gateway_request_duration_seconds_sum", connector="glocash_eu"), 0)
        # Notifications by connector and verification result.
        self.assertGreater(v("paymux_notifications_received_total", connector="glocash_eu", verification="verified"), 0)
        self.assertGreater(v("paymux_notifications_received_total", connector=cp.CONNECTOR, verification="verified"), 0)
        refused = [l for l, x in samples["paymux_notifications_received_total"]
                   if l["connector"] == cp.CONNECTOR and l["verification"] != "verified" and x > 0]
        self.assertTrue(refused, samples["paymux_notifications_received_total"])
        # Webhooks: delivered and refused attempts; the refused one is still in the outbox.
        self.assertGreater(v("paymux_webhook_deliveries_total", outcome="delivered"), 0)
        self.assertGreater(v("paymux_webhook_deliveries_total", outcome="retry"), 0)
        self.assertGreaterEqual(v("paymux_webhook_backlog_deliveries", state="pending"), 1)
        self.assertEqual(v("paymux_webhook_backlog_deliveries", state="disabled"), 0)
        # Circuit state: one series per connector, all closed.
        circuits = {l["connector"]: x for l, x in samples["paymux_circuit_state"]}
        for connector in ("glocash_eu", "glocash_other", dh.WEB, dh.NONCE, cp.CONNECTOR):
            self.assertIn(connector, circuits)
        # Store group commits.
        self.assertGreater(v("paymux_store_commit_duration_seconds_count"), 0)
        self.assertGreater(v("paymux_store_commit_duration_seconds_sum"), 0)
        self.assertGreater(v("paymux_store_commit_batch_operations_count"), 0)
        self.assertGreaterEqual(v("paymux_store_commit_batch_operations_sum"),
                                v("paymux_store_commit_batch_operations_count"))
        self.assertGreater(v("paymux_store_commit_batch_operations_bucket", le="+Inf"), 0)

    def test_2_log_lines_are_json_with_context_and_without_secrets(self):
        s = self.stack
        s.stop_paymux()  # everything written and flushed
        text = s.paymux_log_text()
        lines = [l for l in text.splitlines() if l.strip()]
        self.assertGreater(len(lines), 20)
        records = []
        for line in lines:
            rec = json.loads(line)  # one object per line, nothing else
            self.assertIsInstance(rec, dict, line)
            for key in ("ts", "level", "service", "msg"):
                self.assertIn(key, rec, line)
            records.append(rec)
        gateway = [r for r in records if r["msg"].startswith("gateway call ")]
        self.assertTrue(gateway)
        for r in gateway:
            self.assertIn("connector", r, r)
            self.assertIn("flow", r, r)
        access = [r for r in records if r["msg"].startswith("http ")]
        self.assertTrue(access)
        self.assertTrue(all(r.get("request_id") for r in access))
        transitions = [r for r in records if " status " in r["msg"] and r.get("payment_id", "").startswith("pay_")]
        self.assertTrue(transitions)
        for r in transitions:
            self.assertTrue(r.get("merchant") and r.get("connector"), r)
        self.assertTrue(any(r.get("merchant") == "acme" for r in records if r["msg"].startswith("webhook ")))

        secrets = [API_KEY, OTHER_API_KEY, dh.DH_API_KEY, dh.DH_WRONG_API_KEY, GLOCASH_KEY, dh.DH_SECRET,
                   dh.NONCE_SECRET, cp.CP_API_KEY, WEBHOOK_SECRET, WEBHOOK_SECRET[len("whsec_"):]]
        secrets += self.nonces
        self.assertEqual(len(self.nonces), 1)
        for secret in secrets:
            self.assertNotIn(secret, text, "a configured secret or card nonce reached the log")
        s.start_paymux()


class ReadinessTest(unittest.TestCase):
    """/readyz answers 503 while migrations wait for the database and while the store cannot take a
    write; /healthz answers 200 throughout."""

    def setUp(self):
        self.stack = harness.Stack()
        self.lock = None

    def tearDown(self):
        if self.lock is not None:
            self.lock.close()
        self.stack.stop()
        self.stack.remove_files()

    def probe(self, path, timeout=30):
        try:
            return request(self.stack.port, "GET", path, timeout=timeout).status
        except OSError:
            return None

    def test_not_ready_while_migrations_wait_then_ready(self):
        s = self.stack
        s.start_sandbox()
        # A new database locked by another process: migrations cannot start.
        self.lock = sqlite3.connect(s.db, isolation_level=None)
        self.lock.execute("CREATE TABLE held (x)")
        self.lock.execute("BEGIN EXCLUSIVE")
        self.lock.execute("DROP TABLE held")
        started = {}

        def start():
            try:
                s.start_paymux()
                started["ok"] = True
            except BaseException as e:  # reported below
                started["error"] = e
        t = threading.Thread(target=start)
        t.start()
        wait_for(lambda: self.probe("/healthz", timeout=2) == 200, timeout=10, what="paymux listening")
        for _ in range(5):
            self.assertEqual(self.probe("/healthz"), 200)
            self.assertEqual(self.probe("/readyz"), 503)
            time.sleep(0.2)
        self.lock.execute("COMMIT")
        t.join(30)
        self.assertTrue(started.get("ok"), started)
        self.assertEqual(self.probe("/readyz"), 200)
        versions = sqlite3.connect(s.db).execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0]
        self.assertGreaterEqual(versions, 4)
        # and it works
        r = s.create_payment()
        self.assertEqual(r.status, 201, r)

    def test_not_ready_while_the_store_cannot_take_writes(self):
        s = self.stack.start()
        self.assertEqual(self.probe("/readyz"), 200)
        self.lock = sqlite3.connect(s.db, isolation_level=None, timeout=10)
        self.lock.execute("BEGIN IMMEDIATE")  # the write lock, held
        self.assertEqual(self.probe("/healthz"), 200)
        self.assertEqual(self.probe("/readyz"), 503)
        self.lock.execute("ROLLBACK")
        wait_for(lambda: self.probe("/readyz") == 200, timeout=15, what="ready again")


class MetricsOffStack(harness.Stack):
    def paymux_config(self):
        cfg = super().paymux_config()
        assert "  threads: 2\n" in cfg
        return cfg.replace("  threads: 2\n", "  threads: 2\n  metrics: false\n", 1)


class MetricsSwitchTest(unittest.TestCase):
    def test_metrics_can_be_switched_off(self):
        stack = MetricsOffStack().start()
        try:
            self.assertEqual(request(stack.port, "GET", "/metrics").status, 404)
            self.assertEqual(request(stack.port, "GET", "/readyz").status, 200)
        finally:
            stack.stop()
            stack.remove_files()


class BackupTest(StackTestCase):
    """`paymux backup` copies the live store; a new process started on the copy has the data."""

    def backup(self, *args):
        return subprocess.run([PAYMUX_BIN, "backup", *args], capture_output=True, text=True, timeout=60)

    def test_online_backup_restores_into_a_new_process(self):
        s = self.stack
        before = [s.create_payment().json()["id"] for _ in range(5)]
        cfg = os.path.join(s.dir, "paymux.yaml")
        target = os.path.join(s.dir, "backup", "copy.db")
        os.makedirs(os.path.dirname(target))
        # Writes go on during the copy.
        stop = threading.Event()

        def traffic():
            while not stop.is_set():
                s.create_payment()
        t = threading.Thread(target=traffic)
        t.start()
        try:
            out = self.backup("--config", cfg, "--to", target)
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("backup written to", out.stdout)
        self.assertFalse(os.path.exists(target + ".partial"))
        copy = sqlite3.connect(target)
        self.assertEqual(copy.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        self.assertEqual(copy.execute("PRAGMA journal_mode").fetchone()[0], "delete")
        ids = {row[0] for row in copy.execute("SELECT id FROM payments")}
        copy.close()
        self.assertTrue(set(before) <= ids)

        # Restore: stop, put the copy in place of the database (its -wal and -shm removed), start.
        s.stop_paymux()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(s.db + suffix):
                os.remove(s.db + suffix)
        os.replace(target, s.db)
        s.start_paymux()
        for pid in before:
            self.assertEqual(s.get_payment(pid)["id"], pid)
        self.assertEqual(s.create_payment().status, 201)

    def test_backup_usage_and_errors(self):
        s = self.stack
        cfg = os.path.join(s.dir, "paymux.yaml")
        self.assertEqual(self.backup("--config", cfg).returncode, 2)  # no --to
        self.assertEqual(self.backup("--to", "x.db").returncode, 2)   # no --config
        missing = os.path.join(s.dir, "missing.yaml")
        with open(cfg) as f, open(missing, "w") as g:
            g.write(f.read().replace(s.db, os.path.join(s.dir, "nowhere", "none.db")))
        out = self.backup("--config", missing, "--to", os.path.join(s.dir, "x.db"))
        self.assertEqual(out.returncode, 1, out)
        self.assertIn("no database", out.stderr)


SOURCE_DIR = os.environ.get("PAYMUX_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


class ConfigReferenceTest(unittest.TestCase):
    """docs/operations.md's configuration reference against the parser: every documented key is
    accepted by `paymux --check-config`, and every key name the parser allows is documented."""

    SKELETON = {
        "merchants": [{
            "id": "m1", "api_keys": ["sk_test_reference"],
            "connectors": [{"id": "c1", "provider": "glocash", "base_url": "http://127.0.0.1:9",
                            "credentials": {"email": "a@example.com", "secret_key": "k"}}],
            "routing": [{"connectors": ["c1"]}],
        }],
    }

    @classmethod
    def setUpClass(cls):
        cls.dir = harness.tempfile.mkdtemp(prefix="paymux-doc-")
        with open(os.path.join(SOURCE_DIR, "docs", "operations.md"), encoding="utf-8") as f:
            doc = f.read()
        section = doc.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
        cls.keys = re.findall(r"^\| `([^`]+)` \|", section, re.M)
        with open(os.path.join(SOURCE_DIR, "service", "core", "config.cpp"), encoding="utf-8") as f:
            source = f.read()
        cls.allowed = set()
        for block in re.findall(r"allow_only\(\{(.*?)\}\)", source, re.S):
            cls.allowed.update(re.findall(r'"([a-z_0-9]+)"', block))

    @classmethod
    def tearDownClass(cls):
        harness.shutil.rmtree(cls.dir, ignore_errors=True)

    def check(self, cfg):
        path = os.path.join(self.dir, "c.yaml")
        with open(path, "w") as f:
            json.dump(cfg, f)  # JSON is YAML
        return subprocess.run([PAYMUX_BIN, "--check-config", "--config", path], capture_output=True, text=True,
                              timeout=30, cwd=self.dir)

    def with_key(self, dotted, value):
        """The skeleton with one key set, `a[].b.c` walking into the first entry of list a."""
        cfg = json.loads(json.dumps(self.SKELETON))
        node = cfg
        parts = dotted.split(".")
        for part in parts[:-1]:
            if part.endswith("[]"):
                node = node.setdefault(part[:-2], [{}])[0]
            else:
                node = node.setdefault(part, {})
        node[parts[-1]] = value
        return cfg

    def test_the_skeleton_is_valid_and_an_unknown_key_is_refused(self):
        out = self.check(self.SKELETON)
        self.assertEqual(out.returncode, 0, out.stderr)
        for dotted in ("server.limits.nope", "merchants[].webhook.nope", "merchants[].routing[].when.nope"):
            out = self.check(self.with_key(dotted, "1"))
            self.assertNotEqual(out.returncode, 0, dotted)
            self.assertIn("unknown key", out.stderr, dotted)

    def test_every_documented_key_is_accepted(self):
        self.assertGreater(len(self.keys), 40)
        for dotted in self.keys:
            if "<" in dotted:  # free-form maps (credentials, settings)
                continue
            with self.subTest(key=dotted):
                out = self.check(self.with_key(dotted, "1"))
                # A wrong value may be refused; an unknown key may not.
                self.assertNotIn("unknown key", out.stderr, dotted)

    def test_every_key_the_parser_allows_is_documented(self):
        documented = {re.sub(r"\[\]$", "", k.split(".")[-1]) for k in self.keys}
        documented |= {p.replace("[]", "") for k in self.keys for p in k.split(".")}
        self.assertGreater(len(self.allowed), 40)
        self.assertEqual(sorted(self.allowed - documented), [])


if __name__ == "__main__":
    unittest.main()
