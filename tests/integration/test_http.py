"""The merchant API's HTTP behaviour: operations endpoints, request ids, the error shape, request
validation, authentication and tenancy, limits and timeouts of the server."""
import json
import select
import socket
import time
import unittest
import uuid

from harness import API_KEY, OTHER_API_KEY, StackTestCase, request


def read_until_closed(sock, timeout):
    """Reads until the peer closes; returns (bytes, seconds until the close) or (bytes, None)."""
    start = time.monotonic()
    data = b""
    sock.settimeout(0.2)
    while time.monotonic() - start < timeout:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data, time.monotonic() - start
        if not chunk:
            return data, time.monotonic() - start
        data += chunk
    return data, None


def read_responses(sock, count, timeout=10):
    """Reads `count` responses with a Content-Length from one connection; returns
    [(status, headers dict with lower-case names, body bytes)]."""
    sock.settimeout(timeout)
    data = b""
    out = []
    while len(out) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            head = data[:end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:])}
            length = int(headers["content-length"])
            if len(data) >= end + 4 + length:
                out.append((int(head[0].split()[1]), headers, data[end + 4:end + 4 + length]))
                data = data[end + 4 + length:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed after {len(out)} of {count} responses")
        data += chunk
    return out


class HttpBasicsTest(StackTestCase):
    stack_kwargs = {"idle_timeout_ms": 1500, "header_timeout_ms": 2000}

    def valid_body(self, **changes):
        body = {"amount": 1999, "currency": "USD", "reference": f"ORDER-{uuid.uuid4().hex[:12]}",
                "payment_method": {"type": "hosted"}, "customer": {"email": "buyer@example.com"}}
        body.update(changes)
        return body

    def post_payment(self, body, idem=None, **kw):
        return self.stack.api("POST", "/v1/payments", body, idem=idem or uuid.uuid4().hex, **kw)

    # --- operations ------------------------------------------------------------------------------
    def test_healthz_and_readyz_need_no_key(self):
        for path in ("/healthz", "/readyz"):
            r = request(self.stack.port, "GET", path)
            self.assertEqual(r.status, 200, (path, r))
            self.assertTrue(r.header("X-Request-Id"), path)
        # ... and say nothing of the secrets
        for path in ("/healthz", "/readyz"):
            body = request(self.stack.port, "GET", path).body
            self.assertNotIn(API_KEY, body)

    # --- request ids -----------------------------------------------------------------------------
    def test_request_id_is_echoed_when_valid(self):
        rid = "itest-" + uuid.uuid4().hex
        r = request(self.stack.port, "GET", "/healthz", headers={"X-Request-Id": rid})
        self.assertEqual(r.header("X-Request-Id"), rid)
        # echoed on an error too, and in the error body
        r = self.stack.api("GET", "/v1/payments/pay_doesnotexist", headers={"X-Request-Id": rid})
        err = self.assertError(r, 404, code="resource_missing")
        self.assertEqual(err["request_id"], rid)

    def test_request_id_is_generated_when_missing_or_invalid(self):
        a = request(self.stack.port, "GET", "/healthz")
        b = request(self.stack.port, "GET", "/healthz")
        self.assertTrue(a.header("X-Request-Id"))
        self.assertTrue(b.header("X-Request-Id"))
        self.assertNotEqual(a.header("X-Request-Id"), b.header("X-Request-Id"))
        bad = "has spaces and <html>"
        r = request(self.stack.port, "GET", "/healthz", headers={"X-Request-Id": bad})
        self.assertTrue(r.header("X-Request-Id"))
        self.assertNotEqual(r.header("X-Request-Id"), bad)
        r = request(self.stack.port, "GET", "/healthz", headers={"X-Request-Id": "x" * 5000})
        self.assertTrue(r.header("X-Request-Id"))
        self.assertLess(len(r.header("X-Request-Id")), 300)

    def test_every_kind_of_answer_carries_a_request_id(self):
        answers = [
            request(self.stack.port, "GET", "/nope"),                              # 404 route
            request(self.stack.port, "DELETE", "/v1/payments"),                    # 405
            self.stack.api("GET", "/v1/payments", key=None),                       # 401
            self.stack.api("POST", "/v1/payments", {"amount": 1}),                 # 400
            self.stack.api("GET", "/v1/payments?limit=2"),                         # 200 JSON
            request(self.stack.port, "GET", "/checkout/pay_doesnotexist"),         # HTML page
        ]
        for r in answers:
            self.assertTrue(r.header("X-Request-Id"), r)

    # --- routing errors --------------------------------------------------------------------------
    def test_unknown_route_is_404_in_the_error_shape(self):
        r = self.stack.api("GET", "/v1/nothing-here")
        self.assertError(r, 404, code="resource_missing", type="invalid_request_error")

    def test_wrong_method_is_405_with_allow(self):
        r = self.stack.api("DELETE", "/v1/payments")
        self.assertError(r, 405, code="method_not_allowed", type="invalid_request_error")
        allow = {m.strip() for m in (r.header("Allow") or "").split(",")}
        self.assertEqual(allow, {"GET", "POST"})
        r = request(self.stack.port, "POST", "/healthz", raw=b"")
        self.assertError(r, 405, code="method_not_allowed")
        self.assertEqual(r.header("Allow"), "GET")

    # --- request validation ----------------------------------------------------------------------
    def test_malformed_json_is_400(self):
        r = self.stack.api("POST", "/v1/payments", raw='{"amount": 1999, "currency": ',
                           headers={"Content-Type": "application/json"}, idem=uuid.uuid4().hex)
        self.assertError(r, 400, code="json_invalid", type="invalid_request_error")
        r = self.stack.api("POST", "/v1/payments", raw='[1, 2]', headers={"Content-Type": "application/json"},
                           idem=uuid.uuid4().hex)
        self.assertError(r, 400, type="invalid_request_error")

    def test_amount_must_be_an_integer_of_minor_units(self):
        for amount in ("19.99", 19.99, 1999.0, True, None, [1999], {"value": 1999}):
            with self.subTest(amount=amount):
                r = self.post_payment(self.valid_body(amount=amount))
                self.assertError(r, 400, param="amount", type="invalid_request_error")
        r = self.post_payment({k: v for k, v in self.valid_body().items() if k != "amount"})
        self.assertError(r, 400, param="amount")

    def test_amount_must_be_positive(self):
        for amount in (0, -1, -1999):
            with self.subTest(amount=amount):
                self.assertError(self.post_payment(self.valid_body(amount=amount)), 400, param="amount")

    def test_unknown_currency_is_400(self):
        for currency in ("XYZ", "usd", "US", "", 840):
            with self.subTest(currency=currency):
                self.assertError(self.post_payment(self.valid_body(currency=currency)), 400, param="currency")

    def test_unknown_field_is_400_naming_it(self):
        r = self.post_payment(self.valid_body(colour="blue"))
        err = self.assertError(r, 400, param="colour")
        self.assertIn("colour", err["message"])
        r = self.post_payment(self.valid_body(customer={"email": "buyer@example.com", "shoe_size": "44"}))
        err = self.assertError(r, 400, param="customer.shoe_size")
        self.assertIn("shoe_size", err["message"])

    def test_rejected_requests_create_nothing(self):
        reference = f"ORDER-{uuid.uuid4().hex[:12]}"
        before = self.stack.glocash_transaction_count()
        self.post_payment(self.valid_body(reference=reference, amount="19.99"))
        self.post_payment(self.valid_body(reference=reference, colour="blue"))
        self.assertEqual(self.stack.payments_by_reference(reference), [])
        self.assertEqual(self.stack.glocash_transaction_count(), before)

    def test_missing_idempotency_key_is_400(self):
        reference = f"ORDER-{uuid.uuid4().hex[:12]}"
        r = self.stack.api("POST", "/v1/payments", self.valid_body(reference=reference))
        self.assertError(r, 400, param="Idempotency-Key", type="invalid_request_error")
        self.assertEqual(self.stack.payments_by_reference(reference), [])
        for bad in ("", "x" * 256, "caf\u00e9".encode().decode("latin-1")):
            with self.subTest(key=bad):
                r = self.stack.api("POST", "/v1/payments", self.valid_body(), headers={"Idempotency-Key": bad})
                self.assertError(r, 400, param="Idempotency-Key")

    def raw_post(self, framing, body):
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=5) as s:
            s.sendall(b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() +
                      b"\r\nIdempotency-Key: k-" + uuid.uuid4().hex.encode() +
                      b"\r\nContent-Type: application/json\r\n" + framing + b"\r\n" + body)
            data, _ = read_until_closed(s, 5)
        return data

    def test_body_over_the_limit_is_413(self):
        # A body of more than max_body_bytes (65536) with its Content-Length, sent in full as a
        # client would.
        body = self.valid_body(description="x" * 70000)
        r = self.post_payment(body)
        self.assertError(r, 413, code="body_too_large", type="invalid_request_error")
        # Only the declared length: the answer comes without waiting for the body.
        data = self.raw_post(b"Content-Length: 1000000\r\n", b"{")
        self.assertTrue(data.startswith(b"HTTP/1.1 413"), data[:300])
        self.assertIn(b"body_too_large", data)
        self.assertIn(b"x-request-id", data.lower())

    def test_chunked_body_over_the_limit_is_413(self):
        chunk = b"x" * 70000
        data = self.raw_post(b"Transfer-Encoding: chunked\r\n",
                             b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 413"), data[:300])
        self.assertIn(b"body_too_large", data)

    def test_body_under_the_limit_is_read(self):
        small = self.valid_body(description="x" * 200, metadata={"pad": "y" * 500, "pad2": "z" * 500})
        raw = json.dumps(small) + " " * (60000 - len(json.dumps(small)))   # 60000 bytes of JSON
        r = self.stack.api("POST", "/v1/payments", raw=raw, headers={"Content-Type": "application/json"},
                           idem=uuid.uuid4().hex)
        self.assertEqual(r.status, 201, r)

    # --- authentication and tenancy ---------------------------------------------------------------
    def test_missing_or_wrong_api_key_is_401(self):
        cases = [None, "sk_test_wrong", API_KEY + "x", API_KEY[:-1]]
        for key in cases:
            with self.subTest(key=key):
                r = self.stack.api("GET", "/v1/payments", key=key)
                self.assertError(r, 401, type="authentication_error")
                self.assertEqual(r.header("WWW-Authenticate"), "Bearer")
        for header in (f"Basic {API_KEY}", "Bearer ", f"bearer{API_KEY}", API_KEY):
            r = request(self.stack.port, "GET", "/v1/payments", headers={"Authorization": header})
            self.assertError(r, 401, type="authentication_error")
        r = self.stack.api("POST", "/v1/payments", self.valid_body(), key="sk_test_wrong", idem=uuid.uuid4().hex)
        self.assertError(r, 401, type="authentication_error")

    def test_hashed_api_key_authenticates_its_merchant(self):
        r = self.stack.create_payment(key=OTHER_API_KEY)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["merchant"], "other")
        self.assertEqual(r.json()["connector"], "glocash_other")

    def test_another_merchants_payment_is_404(self):
        r = self.stack.create_payment(key=OTHER_API_KEY)
        self.assertEqual(r.status, 201, r)
        theirs = r.json()["id"]
        self.assertEqual(self.stack.api("GET", f"/v1/payments/{theirs}", key=OTHER_API_KEY).status, 200)
        for method, path in (("GET", f"/v1/payments/{theirs}"), ("POST", f"/v1/payments/{theirs}/sync"),
                             ("POST", f"/v1/payments/{theirs}/refunds"), ("GET", f"/v1/payments/{theirs}/refunds"),
                             ("POST", f"/v1/payments/{theirs}/cancel")):
            with self.subTest(path=path):
                r = self.stack.api(method, path, key=API_KEY, idem=uuid.uuid4().hex if method == "POST" else None)
                self.assertError(r, 404, code="resource_missing")
        listed = self.stack.api("GET", "/v1/payments?limit=100").json()["data"]
        self.assertNotIn(theirs, [p["id"] for p in listed])
        events = self.stack.events(object_id=theirs)
        self.assertEqual(events, [])
        their_events = self.stack.api("GET", f"/v1/events?object_id={theirs}", key=OTHER_API_KEY).json()["data"]
        self.assertEqual([e["type"] for e in their_events], ["payment.requires_action"])
        r = self.stack.api("GET", f"/v1/events/{their_events[0]['id']}")
        self.assertError(r, 404, code="resource_missing")

    # --- connection handling ---------------------------------------------------------------------
    def test_slow_headers_are_cut_off_after_header_timeout(self):
        # A client that sends its headers one byte at a time (slowloris): the connection is closed
        # when header_timeout (2 s) has passed, however steadily the bytes keep coming.
        head = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"p" * 60 + b"\r\n\r\n")
        start = time.monotonic()
        closed_after = None
        got = b""
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=5) as s:
            for i in range(len(head)):
                try:
                    s.sendall(head[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    closed_after = time.monotonic() - start
                    break
                readable, _, _ = select.select([s], [], [], 0.1)
                if readable:
                    try:
                        chunk = s.recv(4096)
                    except ConnectionResetError:
                        chunk = b""
                    got += chunk
                    if not chunk:
                        closed_after = time.monotonic() - start
                        break
        self.assertIsNotNone(closed_after, "the connection stayed open while headers trickled in")
        self.assertGreater(closed_after, 1.5)
        self.assertLess(closed_after, 4.0)
        self.assertNotIn(b"200 OK", got)

    def test_idle_keep_alive_connection_is_closed_after_idle_timeout(self):
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=5) as s:
            req = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            s.sendall(req)
            time.sleep(0.3)
            first = s.recv(65536)
            self.assertTrue(first.startswith(b"HTTP/1.1 200"), first)
            # still open within idle_timeout (1.5 s): a second request on the same connection works
            time.sleep(0.7)
            s.sendall(req)
            time.sleep(0.3)
            second = s.recv(65536)
            self.assertTrue(second.startswith(b"HTTP/1.1 200"), second)
            idle_from = time.monotonic()
            data, closed_after = read_until_closed(s, 6)
            self.assertEqual(data, b"")
            self.assertIsNotNone(closed_after, "the idle connection was never closed")
            waited = time.monotonic() - idle_from
            self.assertGreater(waited, 1.0)
            self.assertLess(waited, 4.0)

    def test_requests_sent_together_are_answered_in_order(self):
        # Three requests in one write (pipelined): each is parsed from what was read with the one
        # before it, and answered in turn.
        body = json.dumps(self.valid_body()).encode()
        reqs = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: first\r\n\r\n"
                b"POST /v1/payments HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: second\r\n"
                b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                b"Idempotency-Key: " + uuid.uuid4().hex.encode() + b"\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body +
                b"GET /v1/nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: third\r\n\r\n")
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=10) as s:
            s.sendall(reqs)
            got = read_responses(s, 3)
        self.assertEqual([(status, h["x-request-id"]) for status, h, _ in got],
                         [(200, "first"), (201, "second"), (404, "third")])
        self.assertEqual(json.loads(got[1][2])["amount"], 1999)

    def test_request_arriving_in_pieces_is_read(self):
        # Header and body in several writes with pauses between them, well within header_timeout.
        body = json.dumps(self.valid_body()).encode()
        req = (b"POST /v1/payments HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + API_KEY.encode() +
               b"\r\nContent-Type: application/json\r\nIdempotency-Key: " + uuid.uuid4().hex.encode() +
               b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        cuts = [0, 7, 40, req.index(b"\r\n\r\n") + 2, len(req) - len(body) + 5, len(req)]
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=10) as s:
            for a, b in zip(cuts, cuts[1:]):
                s.sendall(req[a:b])
                time.sleep(0.15)
            (status, _, answer), = read_responses(s, 1)
        self.assertEqual(status, 201, answer[:300])
        self.assertEqual(json.loads(answer)["status"], "requires_action")

    def test_responses_larger_than_the_socket_takes_at_once_arrive_whole(self):
        # Eight pipelined lists of ~0.5 MB each to a client that reads nothing for a while: more
        # than the server's socket takes at once (up to ~3 MB on loopback), so the server finishes
        # a response as the client reads, then goes on to the next request.
        metadata = {f"k{i}": "m" * 500 for i in range(20)}
        for _ in range(50):
            r = self.post_payment(self.valid_body(metadata=metadata))
            self.assertEqual(r.status, 201, r)
        get = (b"GET /v1/payments?limit=50 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Authorization: Bearer " + API_KEY.encode() + b"\r\n\r\n")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", self.stack.port))
            s.sendall(get * 8)
            time.sleep(1.0)
            got = read_responses(s, 8, timeout=20)
            # The connection is still usable afterwards.
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            (after, _, _), = read_responses(s, 1)
        self.assertGreater(sum(len(body) for _, _, body in got), 4_000_000)
        first = None
        for status, _, body in got:
            self.assertEqual(status, 200)
            payments = json.loads(body)["data"]
            self.assertEqual(len(payments), 50)
            self.assertTrue(all(p["metadata"] == metadata for p in payments))
            first = first or body
            self.assertEqual(body, first)
        self.assertEqual(after, 200)

    def test_malformed_http_gets_400_and_server_keeps_serving(self):
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=5) as s:
            s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
            data, _ = read_until_closed(s, 5)
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data[:200])
        self.assertEqual(request(self.stack.port, "GET", "/healthz").status, 200)


if __name__ == "__main__":
    unittest.main()
