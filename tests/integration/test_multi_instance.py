"""Two paymux instances on one PostgreSQL database (a throw-away server from tools/pg-test-server.sh),
behind one sandbox, on real processes:

- the same Idempotency-Key sent to both at the same moment makes one payment and one gateway call;
- 1,000 events are delivered to the merchant once each while one instance is killed with SIGKILL
  halfway (only a delivery cut off by the kill may come again, from the other instance, after its
  lease; never by both at once);
- the reconciler settles pending payments with either instance dead;
- a PostgreSQL crash and restart mid-traffic loses no acknowledged payment: requests during the
  outage get 503 at once, /readyz says 503 while the database is away and 200 again when it is back,
  without restarting paymux.
"""
import base64
import os
import signal
import threading
import time
import unittest
import urllib.parse
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from harness import Cluster, ClusterTestCase, Stack, request, wait_for
from test_webhooks import Receiver, WebhookStack, webhook_yaml

SECRET = "whsec_" + base64.b64encode(b"multi-instance-webhook-secret!!!").decode()
CREATE_PATH = "/glocash/gateway/payment/index"


def payment_body(reference=None):
    return {"amount": 1999, "currency": "USD", "reference": reference or f"ORDER-{uuid.uuid4().hex[:12]}",
            "payment_method": {"type": "hosted"}, "description": "Smart Phone P238 x1",
            "customer": {"email": "buyer@example.com"}, "return_url": "https://shop.example/orders/1001"}


def socket_owner(local_port, remote_port, pids):
    """Which of `pids` ({name: pid}) holds the loopback TCP socket local_port -> remote_port, or None."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if (int(cols[1].rsplit(":", 1)[1], 16) == local_port and
                            int(cols[2].rsplit(":", 1)[1], 16) == remote_port):
                        inode = cols[9]
        except OSError:
            continue
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for name, pid in pids.items():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return name
            except OSError:
                pass
    return None


class SenderReceiver(Receiver):
    """A merchant endpoint that also records which paymux instance sent each request (`sender`: the
    name in `pids` of the process holding the connection's other end; looked up once per connection)."""

    def __init__(self):
        self.pids = {}
        super().__init__()

    def annotate(self, h, record):
        if getattr(h, "paymux_sender", None) is None:
            h.paymux_sender = socket_owner(h.client_address[1], self.port, self.pids)
        record["sender"] = h.paymux_sender


# --- (a) idempotency across instances ------------------------------------------------------------

class IdempotencyAcrossInstancesTest(ClusterTestCase):

    def test_one_key_at_both_instances_at_once_makes_one_payment_and_one_gateway_call(self):
        a, b = self.stacks
        started_ms = int(time.time() * 1000)
        rounds = 16
        ids = []
        replays = conflicts = 0
        for i in range(rounds):
            if i >= rounds // 2:
                # The gateway answers slowly: the second request finds the first still running.
                a.set_fault("latency", count=1, latency_ms=400)
            body = payment_body()
            key = uuid.uuid4().hex
            gate = threading.Barrier(2)

            def send(stack):
                gate.wait(5)
                return stack.api("POST", "/v1/payments", body, idem=key)

            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(send, (a, b)))
            created = [r for r in answers if r.status == 201 and r.header("Idempotent-Replayed") is None]
            self.assertEqual(len(created), 1, answers)
            payment = created[0].json()
            for r in answers:
                if r is created[0]:
                    continue
                if r.status == 409:
                    self.assertError(r, 409, code="request_in_progress", type="idempotency_error")
                    conflicts += 1
                else:
                    self.assertEqual(r.status, 201, r)
                    self.assertEqual(r.header("Idempotent-Replayed"), "true")
                    self.assertEqual(r.json()["id"], payment["id"])
                    replays += 1
            # One payment, one gateway transaction, and both instances see it.
            for s in (a, b):
                self.assertEqual([p["id"] for p in s.payments_by_reference(body["reference"])], [payment["id"]])
                self.assertEqual(s.get_payment(payment["id"])["status"], "requires_action")
            self.assertEqual(len(a.glocash_transactions(a.order_no(payment["id"]))), 1)
            # Once the first is done, the key replays on either instance.
            for s in (a, b):
                r = s.api("POST", "/v1/payments", body, idem=key)
                self.assertEqual(r.status, 201, r)
                self.assertEqual(r.header("Idempotent-Replayed"), "true")
                self.assertEqual(r.json()["id"], payment["id"])
            ids.append(payment["id"])
        calls = a.sandbox_api("GET", "/_sandbox/requests?" + urllib.parse.urlencode(
            {"gateway": "glocash", "path": CREATE_PATH, "since_ms": started_ms})).json()["count"]
        self.assertEqual(calls, rounds)
        self.assertEqual(len(set(ids)), rounds)
        print(f"\n{rounds} keys sent to both instances at once: {rounds} payments, {calls} gateway calls "
              f"({replays} replays, {conflicts} answered 409 request_in_progress)")


# --- (b) webhooks delivered once across instances, one killed halfway ----------------------------

class WebhooksAcrossInstancesTest(ClusterTestCase):
    EVENTS = 1000
    # The lease of a claimed delivery (service/notify/webhooks.cpp): timeout + min(timeout, 5 s) + 10 s.
    TIMEOUT_MS = 2000
    LEASE_S = (TIMEOUT_MS + min(TIMEOUT_MS, 5000) + 10000) / 1000
    MAX_IN_FLIGHT = 64  # webhooks.max_in_flight_per_merchant (the default)

    @classmethod
    def setUpClass(cls):
        cls.receiver = SenderReceiver()
        cls.addClassCleanup(cls.receiver.close)  # after tearDownClass, or when setUpClass fails
        # A few milliseconds per answer, as a real endpoint: deliveries are in flight at the kill.
        cls.receiver.policy = lambda event, n: (time.sleep(0.003), 200)[1]
        super().setUpClass()

    @classmethod
    def make_cluster(cls):
        return Cluster(WebhookStack,
                       acme_webhook=webhook_yaml(cls.receiver.url(), [SECRET], [1] * 60, timeout_ms=cls.TIMEOUT_MS),
                       sender="webhooks: {poll_ms: 50}\n")

    def test_1000_events_once_each_while_one_instance_is_killed_halfway(self):
        a, b = self.stacks
        rx = self.receiver
        rx.pids = {"a": a.paymux.pid, "b": b.paymux.pid}
        acknowledged = []
        lock = threading.Lock()
        killed = threading.Event()
        kill_at = [None]

        def create(i):
            # Alternate between the instances; once A is dead, only B.
            while True:
                stack = a if (i % 2 == 0 and not killed.is_set()) else b
                try:
                    r = stack.create_payment(reference=f"MULTI{i}-{uuid.uuid4().hex[:8]}")
                except OSError:
                    continue  # A died under this request: its payment may or may not exist
                if r.status == 201:
                    with lock:
                        acknowledged.append(r.json()["id"])
                    return
                if not (stack is a and killed.is_set()):
                    self.fail(f"payment creation on {'a' if stack is a else 'b'}: {r}")

        def killer():
            wait_for(lambda: len(rx.delivered_ids()) >= self.EVENTS // 2, timeout=120, interval=0.01,
                     what="half of the events delivered")
            kill_at[0] = time.time()
            killed.set()
            a.stop_paymux(signal.SIGKILL)

        started = time.time()
        kill_thread = threading.Thread(target=killer, daemon=True)
        kill_thread.start()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(self.EVENTS)))
        kill_thread.join(130)
        self.assertIsNotNone(kill_at[0], "the instance was never killed")
        created_s = time.time() - started

        self.assertEqual(len(acknowledged), self.EVENTS)
        events = {e["id"]: e for e in b.all_events(type="payment.requires_action")}
        # Every acknowledged payment has its event (a request cut off by the kill may have made one more).
        by_payment = {e["data"]["object"]["id"] for e in events.values()}
        self.assertEqual(set(acknowledged) - by_payment, set())
        ids = set(events)
        wait_for(lambda: ids <= rx.delivered_ids(), timeout=self.LEASE_S + 60, interval=0.25,
                 what=f"all {len(ids)} events delivered")
        delivered_s = time.time() - started
        time.sleep(1.0)  # anything sent twice would arrive by now

        with rx.lock:
            receipts = list(rx.requests)
        per_event = {}
        for r in receipts:
            per_event.setdefault(r["id"], []).append(r)
        self.assertEqual(set(per_event) - ids, set(), "requests for events that are not the merchant's")
        senders = {"a": 0, "b": 0, None: 0}
        for r in receipts:
            senders[r.get("sender")] += 1
        self.assertGreater(senders["a"], 0, senders)
        self.assertGreater(senders["b"], 0, senders)
        # Nothing from A once it was dead.
        late_a = [r for r in receipts if r.get("sender") == "a" and r["at"] > kill_at[0] + 0.5]
        self.assertEqual(late_a, [])
        # Each receipt is an attempt paymux recorded (GET /v1/events/{id}/attempts; one that timed out
        # is recorded as "retry", even if the endpoint read it afterwards), and at most one of them is
        # "delivered". The exception is an attempt A had under way when it was killed: never recorded,
        # and sent once more by B, once A's lease ran out.
        # A loaded machine may leave a request unread for seconds, so a receipt's time ("at") is not
        # when it was sent: the send time is the webhook-timestamp header (whole seconds, rounded down).
        def sent(r):
            return int(r["headers"]["webhook-timestamp"])

        def describe(r):
            return (f"by {r.get('sender')}, sent at kill{sent(r) - kill_at[0]:+.0f} s, read at kill{r['at'] - kill_at[0]:+.3f} s"
                    + (f", answered at kill{r['end'] - kill_at[0]:+.3f} s" if "end" in r else ", not answered"))

        again, wrong, retried = {}, [], 0
        for event_id, rs in per_event.items():
            rs.sort(key=lambda r: (sent(r), r["at"]))
            self.assertTrue(all(r["status"] == 200 for r in rs), rs)
            if len(rs) == 1:
                continue
            listed = b.api("GET", f"/v1/events/{event_id}/attempts")
            self.assertEqual(listed.status, 200, listed)
            outcomes = [a["outcome"] for a in listed.json()["data"]]
            retried += "retry" in outcomes
            unrecorded = len(rs) - len(outcomes)
            why = []
            if outcomes.count("delivered") > 1:
                why.append(f"recorded as delivered {outcomes.count('delivered')} times")
            if unrecorded > 1:
                why.append(f"received {unrecorded} times more than recorded")
            if unrecorded == 1:
                cut = [r for r in rs if r.get("sender") in ("a", None)
                       and kill_at[0] - self.LEASE_S - 1 <= sent(r) <= kill_at[0]]
                if not cut:
                    why.append("received once more than recorded, and not sent by A before the kill")
                else:
                    # B may send it only once A's lease (taken just before A sent it) has run out.
                    by_b = [r for r in rs if r.get("sender") == "b" and sent(r) >= sent(cut[-1])]
                    if any(sent(r) < sent(cut[-1]) + self.LEASE_S - 1 for r in by_b):
                        why.append("sent by B within A's lease (by both at once)")
                    elif by_b:
                        again[event_id] = by_b[0]["at"] - kill_at[0]
            if why:
                wrong.append(f"{event_id}: {'; '.join(why)}: {'; '.join(map(describe, rs))}; recorded {outcomes}")
        self.assertEqual(wrong, [], f"{len(wrong)} events received twice without the kill to explain it")
        self.assertLessEqual(len(again), 2 * self.MAX_IN_FLIGHT, sorted(again))
        print(f"\n{len(ids)} events ({self.EVENTS} acknowledged payments) in {created_s:.1f} s; all delivered "
              f"{delivered_s:.1f} s after the start; sent by A {senders['a']}, by B {senders['b']}, "
              f"sender unknown {senders[None]}; {retried} retried after an attempt timed out; "
              f"{len(again)} sent again after the kill "
              f"({min(again.values(), default=0):.1f}-{max(again.values(), default=0):.1f} s after it)")


# --- (c) the reconciler with either instance dead ------------------------------------------------

class ReconcilerStack(Stack):
    def paymux_config(self):
        return super().paymux_config().replace(
            "merchants:",
            "reconciler: {first_check_ms: 500, max_interval_ms: 1000, tick_ms: 100, query_rate: 100, "
            "lease_ms: 1000}\nmerchants:", 1)


class ReconcilerAcrossInstancesTest(ClusterTestCase):
    # timeout 1 s: a reconciler lease of 2 x (10 ms + 1 s + 1 s connect + 1 s) = 6 s (orchestrator.cpp).
    cluster_kwargs = {"stack_class": ReconcilerStack, "gateway_timeout_ms": 1000}

    def settle_with_one_dead(self, dead, alive):
        payments = [dead.create_payment().json() for _ in range(3)] + [alive.create_payment().json() for _ in range(3)]
        for p in payments:
            self.assertEqual(p["status"], "requires_action", p)
        time.sleep(0.8)  # the dead one may have claimed some for a check: its leases must run out
        dead.stop_paymux(signal.SIGKILL)
        # The gateway takes them all, and tells nobody: only queries can find out.
        for p in payments:
            alive.glocash_force_status(p["provider_payment_id"], "paid", notify=False)
        started = time.time()
        for p in payments:
            alive.wait_status(p["id"], "succeeded", timeout=30)
        took = time.time() - started
        for p in payments:
            types = [e["type"] for e in alive.events(object_id=p["id"])]
            self.assertEqual(types.count("payment.succeeded"), 1, types)
        dead.start_paymux()
        for p in payments:
            self.assertEqual(dead.get_payment(p["id"])["status"], "succeeded")
        return took

    def test_settled_with_the_first_instance_dead(self):
        a, b = self.stacks
        print(f"\nsettled by B in {self.settle_with_one_dead(a, b):.1f} s")

    def test_settled_with_the_second_instance_dead(self):
        a, b = self.stacks
        print(f"\nsettled by A in {self.settle_with_one_dead(b, a):.1f} s")


# --- (d) a PostgreSQL crash and restart mid-traffic ----------------------------------------------

class DatabaseRestartTest(ClusterTestCase):
    FAST_S = 2.0  # "at once": a request during the outage is answered within this

    def test_a_database_restart_mid_traffic_loses_nothing_acknowledged(self):
        stacks = self.stacks
        pg = self.cluster.pg
        results = []
        lock = threading.Lock()
        stop = threading.Event()

        def traffic(n):
            stack = stacks[n % len(stacks)]
            while not stop.is_set():
                key = uuid.uuid4().hex
                body = payment_body()
                t0 = time.time()
                try:
                    r = stack.api("POST", "/v1/payments", body, idem=key)
                    status = r.status
                except OSError as e:
                    r, status = e, None
                t1 = time.time()
                with lock:
                    results.append({"stack": stack, "key": key, "body": body, "t0": t0, "t1": t1,
                                    "status": status, "response": r})
                if status != 201:
                    time.sleep(0.1)

        def ready(stack):
            return request(stack.port, "GET", "/readyz", timeout=5).status

        threads = [threading.Thread(target=traffic, args=(n,), daemon=True) for n in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(3)
            down_at = time.time()
            pg.stop("immediate")  # as a crash: only what was committed (fsync) is there afterwards
            for s in stacks:
                wait_for(lambda: ready(s) == 503, timeout=10, what="/readyz 503 with the database down")
            time.sleep(3)
            for s in stacks:
                self.assertEqual(ready(s), 503)
            up_at = time.time()
            pg.start()  # crash recovery first: seconds on a busy disk
            pg_up_at = time.time()
            for s in stacks:
                wait_for(lambda: ready(s) == 200, timeout=30, interval=0.2, what="/readyz 200 with the database back")
            back_at = time.time()
            time.sleep(3)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        with lock:
            done = list(results)

        def answered(rs, status):
            return [r for r in rs if r["status"] == status]

        def statuses(rs):
            return dict(sorted(Counter(r["status"] for r in rs).items(), key=str))

        before = [r for r in done if r["t1"] < down_at]
        during = [r for r in done if r["t0"] > down_at + 1 and r["t1"] < up_at]
        after = [r for r in done if r["t0"] > back_at]
        phases = (f"statuses before the crash {statuses(before)}, during the outage {statuses(during)}, "
                  f"after the recovery {statuses(after)}, in all {statuses(done)}")
        acknowledged = answered(done, 201)
        retried = {}

        # Independent checks: each reports on its own.
        with self.subTest("every acknowledged payment is there, on both instances, as it was answered"):
            for r in acknowledged:
                p = r["response"].json()
                for s in stacks:
                    got = s.get_payment(p["id"])
                    self.assertEqual(got["reference"], r["body"]["reference"])
                    self.assertEqual(got["amount"], 1999)
                    self.assertIn(got["status"], ("requires_action", "succeeded", "failed", "expired"), got)
            stored = {row[0] for row in pg.query("SELECT id FROM payments")}
            self.assertEqual({r["response"].json()["id"] for r in acknowledged} - stored, set())

        with self.subTest("traffic went on before, during and after the outage"):
            self.assertGreater(len(answered(before, 201)), 10, phases)
            self.assertGreater(len(during), 10, phases)
            self.assertGreater(len(answered(after, 201)), 10, phases)

        with self.subTest("201 or 503 only: 503 during the outage, 201 before and after it"):
            odd = [r["response"] for r in done if r["status"] not in (201, 503)]
            self.assertEqual(len(odd), 0, f"{phases}; the first: {odd[:1]}")
            self.assertEqual(statuses(before), {201: len(before)}, phases)
            self.assertEqual(statuses(during), {503: len(during)}, phases)
            self.assertEqual(statuses(after), {201: len(after)}, phases)
            for r in answered(done, 503):
                self.assertError(r["response"], 503, code="service_unavailable", type="api_error")
                self.assertEqual(r["response"].header("Retry-After"), "1")

        with self.subTest("requests during the outage are answered at once"):
            slow = [round(r["t1"] - r["t0"], 2) for r in during if r["t1"] - r["t0"] > self.FAST_S]
            self.assertEqual(slow, [])

        # A request answered 503 may be sent again with its key: it makes the payment, or replays it,
        # or (its key taken before the database went away) is still "in progress" for the other
        # instances' sake; never a second payment.
        with self.subTest("a request that failed, sent again with its key, makes at most one payment"):
            for r in [r for r in done if r["status"] not in (201, None)]:
                retry = r["stack"].api("POST", "/v1/payments", r["body"], idem=r["key"])
                retried[retry.status] = retried.get(retry.status, 0) + 1
                if retry.status == 409:
                    self.assertError(retry, 409, code="request_in_progress")
                else:
                    self.assertEqual(retry.status, 201, retry)
                found = [p["id"] for p in r["stack"].payments_by_reference(r["body"]["reference"])]
                self.assertLessEqual(len(found), 1, found)
                if retry.status == 201:
                    self.assertEqual(found, [retry.json()["id"]])
        print(f"\n{len(done)} requests ({phases}): {len(acknowledged)} acknowledged, "
              f"{len(answered(done, 503))} answered 503 "
              f"(max {max((r['t1'] - r['t0'] for r in during), default=0) * 1000:.0f} ms during the outage); "
              f"the database back {pg_up_at - up_at:.1f} s after its start, both instances ready "
              f"{back_at - pg_up_at:.1f} s later; retried with their keys: {retried}")


if __name__ == "__main__":
    unittest.main()
