// The store, SQLite and (when PAYMUX_TEST_PG_URL names a server) PostgreSQL, through the same cases:
// conditional updates, events in the same transaction, idempotency keys, refund reservations,
// concurrent writes, durability across reopening, claims by two stores on one database; and for
// operations the backlog counts, commit metrics, and the SQLite store's background migrations and
// online backup.
#include "service/core/clock.hpp"
#include "service/core/ids.hpp"
#include "service/obs/metrics.hpp"
#include "service/store/sqlite/backup.hpp"
#include "service/store/sqlite/db.hpp"
#include "service/store/pg/pg_store.hpp"
#include "service/store/sqlite/sqlite_store.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>
#include <thread>

using namespace paymux;
using namespace paymux::store;
namespace asio = boost::asio;

namespace {

std::string temp_db() {
  auto dir = std::filesystem::temp_directory_path() / ("paymux-store-" + new_id(""));
  std::filesystem::create_directories(dir);
  return (dir / "test.db").string();
}

// One store implementation on a database of its own; open() can be called again for the same
// database (a restart, or a second instance).
struct Backend {
  std::string name;
  std::function<std::unique_ptr<Store>(asio::any_io_executor)> opener;
  asio::io_context ioc;

  std::unique_ptr<Store> open() { return opener(ioc.get_executor()); }
  template <class F>
  auto run(F f) {
    ioc.restart();
    auto fut = asio::co_spawn(ioc, f(), asio::use_future);
    ioc.run();
    return fut.get();
  }
  // Runs every coroutine spawned on ioc until all are done.
  void drain() {
    ioc.restart();
    ioc.run();
  }
};

// A fresh schema on the test server, so that each case starts from an empty database.
std::string fresh_pg_database(const std::string& url) {
  const std::string schema = "t_" + new_id("").substr(0, 20);
  PGconn* c = PQconnectdb(url.c_str());
  REQUIRE(PQstatus(c) == CONNECTION_OK);
  PGresult* r = PQexec(c, ("CREATE SCHEMA " + schema).c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  PQfinish(c);
  REQUIRE(ok);
  return url + (url.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema;
}

// Runs the body once per store implementation.
template <class Body>
void for_each_store(Body body) {
  {
    Backend b;
    b.name = "sqlite";
    b.opener = [path = temp_db()](asio::any_io_executor) { return sqlite::open_sqlite_store({path}); };
    INFO("store: sqlite");
    body(b);
  }
  if (const char* url = std::getenv("PAYMUX_TEST_PG_URL"); url && *url) {
    Backend b;
    b.name = "postgresql";
    b.opener = [conninfo = fresh_pg_database(url)](asio::any_io_executor ex) {
      pg::PgOptions o;
      o.conninfo = conninfo;
      return pg::open_pg_store(o, ex);
    };
    INFO("store: postgresql");
    body(b);
  }
}

template <class F>
auto run(F f) {
  asio::io_context ioc;
  auto fut = asio::co_spawn(ioc, f(), asio::use_future);
  ioc.run();
  return fut.get();
}

PaymentRecord payment(const std::string& merchant, const std::string& reference, std::int64_t amount = 1999) {
  PaymentRecord p;
  p.id = new_id(kPaymentPrefix);
  p.merchant = merchant;
  p.reference = reference;
  p.connector = "c1";
  p.provider = "glocash";
  p.amount = amount;
  p.currency = "USD";
  p.created_at = p.updated_at = now_ms();
  return p;
}

IdempotencyRecord key(const std::string& merchant, const std::string& k, const std::string& resource) {
  IdempotencyRecord r;
  r.merchant = merchant;
  r.key = k;
  r.endpoint = "POST /v1/payments";
  r.fingerprint = "fp";
  r.resource_id = resource;
  r.created_at = now_ms();
  return r;
}

// A processing payment whose reconciliation check is due at next_check_at.
PaymentRecord pending(std::int64_t next_check_at) {
  auto p = payment("acme", new_id("REF-"));
  p.status = PaymentStatus::processing;
  p.next_check_at = next_check_at;
  return p;
}

}  // namespace

TEST_CASE("payments are created once per idempotency key and once per reference", "[store]") {
  for_each_store([](Backend& b) {
    auto store = b.open();
    auto run = [&](auto f) { return b.run(f); };
    auto p = payment("acme", "ORDER-1");
    auto first = run([&]() { return store->create_payment(p, key("acme", "k1", p.id)); });
    CHECK(first.outcome == CreatePaymentOutcome::created);

    auto again = payment("acme", "ORDER-1");
    auto second = run([&]() { return store->create_payment(again, key("acme", "k1", again.id)); });
    CHECK(second.outcome == CreatePaymentOutcome::idempotency_exists);
    CHECK(second.existing.resource_id == p.id);
    CHECK(second.existing.state == IdempotencyState::in_progress);

    auto dup = run([&]() { return store->create_payment(payment("acme", "ORDER-1"), key("acme", "k2", "x")); });
    CHECK(dup.outcome == CreatePaymentOutcome::duplicate_reference);
    // the key of the refused request was not kept
    auto k2 = run([&]() { return store->get_idempotency("acme", "k2"); });
    CHECK_FALSE(k2);
    // the same reference is fine for another merchant
    auto other = run([&]() { return store->create_payment(payment("other", "ORDER-1"), std::nullopt); });
    CHECK(other.outcome == CreatePaymentOutcome::created);
  });
}

TEST_CASE("payment changes are conditional on the version and write their events atomically", "[store]") {
  for_each_store([](Backend& b) {
    auto store = b.open();
    auto run = [&](auto f) { return b.run(f); };
    auto p = payment("acme", "ORDER-2");
    run([&]() { return store->create_payment(p, std::nullopt); });

    PaymentChange c;
    c.payment = p;
    c.payment.status = PaymentStatus::succeeded;
    c.expected_version = 0;
    EventRecord e{new_id(kEventPrefix), "acme", "payment.succeeded", p.id, "{}", now_ms()};
    c.events.push_back(e);
    CHECK(run([&]() { return store->apply_payment_change(c); }));

    // A writer that read version 0 loses: nothing of its change is written, its event neither.
    PaymentChange stale = c;
    stale.payment.status = PaymentStatus::failed;
    stale.events[0].id = new_id(kEventPrefix);
    CHECK_FALSE(run([&]() { return store->apply_payment_change(stale); }));
    auto now = run([&]() { return store->get_payment(p.id); });
    CHECK(now->status == PaymentStatus::succeeded);
    CHECK(now->version == 1);
    auto events = run([&]() { return store->list_events(EventQuery{"acme", "", p.id, "", 10}); });
    REQUIRE(events.size() == 1);
    CHECK(events[0].id == e.id);
  });
}

TEST_CASE("refund reservations never exceed the payment", "[store]") {
  for_each_store([](Backend& b) {
    auto store = b.open();
    auto run = [&](auto f) { return b.run(f); };
    auto p = payment("acme", "ORDER-3", 1000);
    p.status = PaymentStatus::succeeded;
    run([&]() { return store->create_payment(p, std::nullopt); });
    auto refund = [&](std::int64_t amount) {
      RefundRecord r;
      r.id = new_id(kRefundPrefix);
      r.payment_id = p.id;
      r.merchant = "acme";
      r.amount = amount;
      r.currency = "USD";
      r.created_at = r.updated_at = now_ms();
      return r;
    };
    CHECK(run([&]() { return store->create_refund(refund(600), std::nullopt); }).outcome == CreateRefundOutcome::created);
    auto over = run([&]() { return store->create_refund(refund(500), std::nullopt); });
    CHECK(over.outcome == CreateRefundOutcome::too_large);
    CHECK(over.refundable == 400);
    CHECK(run([&]() { return store->create_refund(refund(400), std::nullopt); }).outcome == CreateRefundOutcome::created);
    CHECK(run([&]() { return store->list_refunds(p.id); }).size() == 2);
  });
}

TEST_CASE("concurrent writes all commit and are durable after reopening", "[store]") {
  for_each_store([](Backend& b) {
    constexpr int n = 400;
    {
      auto store = b.open();
      int done = 0;
      for (int i = 0; i < n; ++i)
        asio::co_spawn(b.ioc, [&, i]() -> asio::awaitable<void> {
          auto p = payment("acme", "REF-" + std::to_string(i));
          auto r = co_await store->create_payment(p, key("acme", "key-" + std::to_string(i), p.id));
          if (r.outcome == CreatePaymentOutcome::created) ++done;
        }, asio::detached);
      b.drain();
      CHECK(done == n);
    }
    auto reopened = b.open();
    auto rows = b.run([&]() { return reopened->list_payments(PaymentQuery{"acme", "", std::nullopt, "", 1000}); });
    CHECK(rows.size() == n);
    // newest first, and the cursor continues after the given id
    auto page = b.run([&]() { return reopened->list_payments(PaymentQuery{"acme", "", std::nullopt, rows[9].id, 5}); });
    REQUIRE(page.size() == 5);
    CHECK(page[0].id == rows[10].id);
  });
}

TEST_CASE("keys left in progress are found once their process has gone silent", "[store]") {
  for_each_store([](Backend& b) {
    auto gone = b.open();
    auto live = b.open();
    auto other = b.open();
    const auto now = now_ms();
    b.run([&]() { return gone->heartbeat(now - 60'000); });
    b.run([&]() { return live->heartbeat(now); });
    auto k1 = key("acme", "k-gone", "pay_gone");
    k1.created_at = now - 30'000;
    auto k2 = key("acme", "k-live", "pay_live");
    k2.created_at = now - 30'000;
    CHECK(b.run([&]() { return gone->begin_idempotency(k1); }).outcome == BeginOutcome::started);
    CHECK(b.run([&]() { return live->begin_idempotency(k2); }).outcome == BeginOutcome::started);
    CHECK(b.run([&]() { return gone->get_idempotency("acme", "k-gone"); })->owner == gone->instance_id());
    // Seen from a third process: only the silent one's key, and only if taken before the cutoff.
    auto found = b.run([&]() { return other->in_progress_idempotency(now, now - 20'000); });
    REQUIRE(found.size() == 1);
    CHECK(found[0].key == "k-gone");
    CHECK(b.run([&]() { return other->in_progress_idempotency(now - 40'000, now - 20'000); }).empty());
    // Alone on the store at start-up, every other process counts as gone; its own keys never do.
    CHECK(b.run([&]() { return other->in_progress_idempotency(now, INT64_MAX); }).size() == 2);
    CHECK(b.run([&]() { return live->in_progress_idempotency(now, INT64_MAX); }).size() == 1);
    CHECK(gone->instance_id() != live->instance_id());
  });
}

TEST_CASE("two stores on one database: a key, a claim and a delivery go to one of them only", "[store]") {
  for_each_store([](Backend& b) {
    auto one = b.open();
    auto two = b.open();
    b.run([&]() {
      return one->sync_webhook_endpoints({{"acme", "http://127.0.0.1:9/hook", 0, "", 1}}, 1);
    });
    b.run([&]() {
      return two->sync_webhook_endpoints({{"acme", "http://127.0.0.1:9/hook", 0, "", 1}}, 1);
    });
    // 40 pending payments, each with one event (its own order key), all due.
    for (int i = 0; i < 40; ++i) {
      auto p = pending(1000);
      b.run([&]() { return one->create_payment(p, std::nullopt); });
      PaymentChange c;
      c.payment = p;
      c.expected_version = 0;
      c.events.push_back(EventRecord{new_id(kEventPrefix), "acme", "payment.processing", p.id, "{}", 1000});
      REQUIRE(b.run([&]() { return two->apply_payment_change(c); }));
    }
    // Both claim at the same time, in small batches, until nothing is left.
    std::vector<std::string> payments_one, payments_two, events_one, events_two;
    int keys_started = 0;
    auto claimer = [&](Store& s, std::vector<std::string>& payments, std::vector<std::string>& events)
        -> asio::awaitable<void> {
      for (;;) {
        auto p = co_await s.claim_due_payments("c1", 2000, 3, 60000);
        auto d = co_await s.claim_deliveries("acme", 2000, 3, 60000);
        for (auto& x : p) payments.push_back(x.id);
        for (auto& x : d) events.push_back(x.delivery.event_id);
        if (p.empty() && d.empty()) co_return;
      }
    };
    auto begin = [&](Store& s) -> asio::awaitable<void> {
      auto r = co_await s.begin_idempotency(key("acme", "same-key", "pay_same"));
      if (r.outcome == BeginOutcome::started) ++keys_started;
    };
    asio::co_spawn(b.ioc, claimer(*one, payments_one, events_one), asio::detached);
    asio::co_spawn(b.ioc, claimer(*two, payments_two, events_two), asio::detached);
    asio::co_spawn(b.ioc, begin(*one), asio::detached);
    asio::co_spawn(b.ioc, begin(*two), asio::detached);
    b.drain();
    CHECK(keys_started == 1);
    auto all_payments = payments_one;
    all_payments.insert(all_payments.end(), payments_two.begin(), payments_two.end());
    auto all_events = events_one;
    all_events.insert(all_events.end(), events_two.begin(), events_two.end());
    std::sort(all_payments.begin(), all_payments.end());
    std::sort(all_events.begin(), all_events.end());
    CHECK(all_payments.size() == 40);
    CHECK(std::adjacent_find(all_payments.begin(), all_payments.end()) == all_payments.end());
    CHECK(all_events.size() == 40);
    CHECK(std::adjacent_find(all_events.begin(), all_events.end()) == all_events.end());
  });
}

TEST_CASE("idempotency keys complete, replay and are pruned", "[store]") {
  for_each_store([](Backend& b) {
    auto store = b.open();
    auto run = [&](auto f) { return b.run(f); };
    auto k = key("acme", "kk", "pay_x");
    CHECK(run([&]() { return store->begin_idempotency(k); }).outcome == BeginOutcome::started);
    CHECK(run([&]() { return store->begin_idempotency(k); }).outcome == BeginOutcome::exists);
    CHECK(run([&]() { return store->in_progress_idempotency(INT64_MAX, INT64_MAX); }).empty());  // its own
    k.state = IdempotencyState::completed;
    k.response_status = 201;
    k.response_body = "{\"id\":\"pay_x\"}";
    run([&]() { return store->complete_idempotency(k); });
    auto got = run([&]() { return store->get_idempotency("acme", "kk"); });
    CHECK(got->state == IdempotencyState::completed);
    CHECK(got->response_status == 201);
    CHECK(got->response_body == k.response_body);
    // Pruned by when it was taken: not while it is younger than the cutoff, then at once.
    CHECK(run([&]() { return store->prune_idempotency(k.created_at); }) == 0);
    CHECK(run([&]() { return store->prune_idempotency(k.created_at + 1); }) == 1);
    CHECK_FALSE(run([&]() { return store->get_idempotency("acme", "kk"); }));
  });
}

TEST_CASE("SQLite keeps large texts packed and serves them as they were written", "[store]") {
  const auto path = temp_db();
  auto store = sqlite::open_sqlite_store({path});
  run([&]() { return store->sync_webhook_endpoints({{"acme", "http://127.0.0.1:9/hook", 0, "", 1}}, 1); });
  auto p = payment("acme", "ORDER-packed");
  auto k = key("acme", "k-packed", p.id);
  run([&]() { return store->create_payment(p, k); });
  // A payment's JSON (as an event's payload and as the stored response), with text that is not ASCII.
  std::string json = "{\"id\":\"" + p.id + "\",\"object\":\"payment\",\"merchant\":\"acme\",\"status\":\"succeeded\"," +
                     "\"amount\":1999,\"currency\":\"USD\",\"metadata\":{\"note\":\"caf\xc3\xa9\"}," +
                     "\"attempts\":[{\"connector\":\"c1\",\"outcome\":\"definite\",\"error\":null}]}";
  PaymentChange c;
  c.payment = p;
  c.payment.status = PaymentStatus::succeeded;
  c.expected_version = 0;
  EventRecord e{new_id(kEventPrefix), "acme", "payment.succeeded", p.id, "{\"data\":" + json + "}", now_ms()};
  c.events.push_back(e);
  k.state = IdempotencyState::completed;
  k.response_status = 201;
  k.response_body = json;
  c.idempotency_done = k;
  REQUIRE(run([&]() { return store->apply_payment_change(c); }));
  // A row written before texts were packed: its payload is TEXT.
  EventRecord old{new_id(kEventPrefix), "acme", "payment.processing", p.id, "{\"data\":" + json + ",\"old\":1}", now_ms()};
  {
    sqlite::Db raw(path, false);
    auto s = raw.prepare("INSERT INTO events (id, merchant, type, object_id, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    s.bind(1, old.id).bind(2, old.merchant).bind(3, old.type).bind(4, old.object_id).bind(5, old.payload_json);
    s.bind(6, old.created_at);
    s.exec();
    auto t = raw.prepare("SELECT typeof(payload), length(payload) FROM events WHERE id = ?1");
    t.bind(1, e.id);
    REQUIRE(t.step());
    CHECK(t.text(0) == "blob");
    CHECK(static_cast<std::size_t>(t.int64(1)) < e.payload_json.size());
    auto r = raw.prepare("SELECT typeof(response_body) FROM idempotency_keys WHERE key = 'k-packed'");
    REQUIRE(r.step());
    CHECK(r.text(0) == "blob");
  }
  auto got = run([&]() { return store->get_event(e.id); });
  REQUIRE(got);
  CHECK(got->payload_json == e.payload_json);
  auto listed = run([&]() { return store->list_events(EventQuery{"acme", "", p.id, "", 10}); });
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].payload_json == old.payload_json);
  CHECK(listed[1].payload_json == e.payload_json);
  auto claimed = run([&]() { return store->claim_deliveries("acme", now_ms() + 1000, 10, now_ms() + 60000); });
  REQUIRE(claimed.size() == 1);  // the TEXT row was inserted without a delivery
  CHECK(claimed[0].payload_json == e.payload_json);
  auto replay = run([&]() { return store->get_idempotency("acme", "k-packed"); });
  REQUIRE(replay);
  CHECK(replay->response_body == json);
  // A key completed on its own (not with a payment change) is packed as well.
  auto k2 = key("acme", "k-packed-2", p.id);
  REQUIRE(run([&]() { return store->begin_idempotency(k2); }).outcome == BeginOutcome::started);
  k2.state = IdempotencyState::completed;
  k2.response_status = 200;
  k2.response_body = json;
  run([&]() { return store->complete_idempotency(k2); });
  {
    sqlite::Db raw(path, true);
    auto r = raw.prepare("SELECT typeof(response_body) FROM idempotency_keys WHERE key = 'k-packed-2'");
    REQUIRE(r.step());
    CHECK(r.text(0) == "blob");
  }
  CHECK(run([&]() { return store->get_idempotency("acme", "k-packed-2"); })->response_body == json);
  // And after a restart, from the file.
  store.reset();
  store = sqlite::open_sqlite_store({path});
  CHECK(run([&]() { return store->get_event(e.id); })->payload_json == e.payload_json);
  CHECK(run([&]() { return store->get_idempotency("acme", "k-packed"); })->response_body == json);
  CHECK(run([&]() { return store->get_idempotency("acme", "k-packed-2"); })->response_body == json);
}

TEST_CASE("due payments are claimed once per lease, per connector, and again once the lease is over", "[store][reconcile]") {
  for_each_store([](Backend& b) {
  auto run = [&](auto f) { return b.run(f); };
  std::vector<std::string> ids;
  {
    auto store = b.open();
    for (int i = 0; i < 5; ++i) {
      auto p = payment("acme", "DUE-" + std::to_string(i));
      p.status = i == 4 ? PaymentStatus::succeeded : PaymentStatus::processing;  // final: never due
      p.next_check_at = 1000 + i;
      if (i == 3) p.connector = "c2";
      ids.push_back(p.id);
      run([&]() { return store->create_payment(p, std::nullopt); });
    }
    // Not due yet.
    CHECK(run([&]() { return store->claim_due_payments("c1", 999, 10, 5000); }).empty());
    // Oldest due first, only the connector's own, at most `limit`.
    auto first = run([&]() { return store->claim_due_payments("c1", 2000, 2, 5000); });
    REQUIRE(first.size() == 2);
    CHECK(first[0].id == ids[0]);
    CHECK(first[1].id == ids[1]);
    CHECK(first[0].next_check_at == 5000);
    // A second claimant at the same moment gets only what is left.
    auto second = run([&]() { return store->claim_due_payments("c1", 2000, 10, 5000); });
    REQUIRE(second.size() == 1);
    CHECK(second[0].id == ids[2]);
    CHECK(run([&]() { return store->claim_due_payments("c1", 2000, 10, 5000); }).empty());
    auto other = run([&]() { return store->claim_due_payments("c2", 2000, 10, 5000); });
    REQUIRE(other.size() == 1);
    CHECK(other[0].id == ids[3]);
    // The claimant of ids[1] scheduled its next check; the others stopped without doing so.
    run([&]() { return store->schedule_check(ids[1], 9000, 1); });
  }
  // After a restart the abandoned claims come back once their lease is over, not before.
  auto store = b.open();
  CHECK(run([&]() { return store->claim_due_payments("c1", 4999, 10, 20000); }).empty());
  auto back = run([&]() { return store->claim_due_payments("c1", 5000, 10, 20000); });
  REQUIRE(back.size() == 2);
  CHECK(back[0].id == ids[0]);
  CHECK(back[1].id == ids[2]);
  auto later = run([&]() { return store->claim_due_payments("c1", 9000, 10, 20000); });
  REQUIRE(later.size() == 1);
  CHECK(later[0].id == ids[1]);
  CHECK(later[0].check_count == 1);
  });
}

// --- operations: backlog counts, commit metrics, background migrations, online backup ---------

TEST_CASE("the store counts its backlog and records its group commits", "[store][ops]") {
  for_each_store([](Backend& b) {
    auto store = b.open();
    auto run = [&](auto f) { return b.run(f); };
    const auto commits = [] {
      const std::string text = obs::metrics::serialize(), series = "\npaymux_store_commit_duration_seconds_count ";
      const auto at = text.find(series);
      return at == std::string::npos ? 0.0 : std::stod(text.substr(at + series.size()));
    };
    const double before = commits();
    const auto now = now_ms();
    run([&]() { return store->create_payment(pending(now - 1000), std::nullopt); });
    run([&]() { return store->create_payment(pending(now - 10), std::nullopt); });
    run([&]() { return store->create_payment(pending(now + 60000), std::nullopt); });
    auto backlog = run([&]() { return store->backlog(now); });
    CHECK(backlog.reconcile_due == 2);
    CHECK(backlog.webhook_pending == 0);
    CHECK(backlog.webhook_disabled == 0);
    CHECK(commits() >= before + 3);
  });
}

TEST_CASE("background migrations: not ready while the database is locked, then ready", "[ops]") {
  const auto path = temp_db();
  sqlite::Db lock(path, false);
  lock.exec("CREATE TABLE held (x); BEGIN EXCLUSIVE; DROP TABLE held");
  sqlite::SqliteOptions o;
  o.path = path;
  o.background_migrations = true;
  auto store = sqlite::open_sqlite_store(o);
  CHECK_FALSE(run([&]() { return store->ping(); }));
  // A read queued meanwhile waits for the schema rather than failing.
  asio::io_context ioc;
  auto later = asio::co_spawn(ioc, store->get_payment("pay_none"), asio::use_future);
  std::thread t([&] { ioc.run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(later.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
  lock.exec("COMMIT");
  CHECK_FALSE(later.get().has_value());
  t.join();
  CHECK(run([&]() { return store->ping(); }));
}

TEST_CASE("online backup of a live store is a consistent copy", "[ops]") {
  const auto path = temp_db();
  auto store = sqlite::open_sqlite_store({path});
  const auto p = payment("acme", "REF-backup");
  run([&]() { return store->create_payment(p, std::nullopt); });
  const auto target = std::filesystem::path(path).parent_path() / "copy.db";
  auto r = sqlite::backup_database(path, target.string());
  CHECK(r.pages > 0);
  CHECK(r.bytes > 0);
  CHECK_FALSE(std::filesystem::exists(target.string() + ".partial"));
  auto copy = sqlite::open_sqlite_store({target.string()});
  auto got = run([&]() { return copy->get_payment(p.id); });
  REQUIRE(got.has_value());
  CHECK(got->amount == 1999);
  CHECK_THROWS(sqlite::backup_database(path + ".missing", target.string()));
}

TEST_CASE("issued connector credentials are replaced only from the version read", "[store]") {
  for_each_store([](Backend& b) {
    auto store = b.open();
    auto run = [&](auto f) { return b.run(f); };
    auto put = [&](const std::string& data, std::int64_t at, std::int64_t expected) {
      ConnectorCredentialsRecord r{"sqb", data, 0, at};
      return run([&]() { return store->put_connector_credentials(r, expected); });
    };
    auto get = [&]() { return run([&]() { return store->get_connector_credentials("sqb"); }); };
    CHECK_FALSE(get());
    CHECK(put(R"({"terminal_key":"k1"})", 1, 0));
    CHECK_FALSE(put(R"({"terminal_key":"kx"})", 2, 0));  // inserted already
    auto r = get();
    REQUIRE(r);
    CHECK(r->version == 1);
    CHECK(r->data_json == R"({"terminal_key":"k1"})");
    CHECK(put(R"({"terminal_key":"k2"})", 3, 1));
    CHECK_FALSE(put(R"({"terminal_key":"k3"})", 4, 1));  // version 1 is gone: another writer won
    r = get();
    CHECK(r->version == 2);
    CHECK(r->data_json == R"({"terminal_key":"k2"})");
    CHECK(r->updated_at == 3);
  });
}

TEST_CASE("pending refunds are listed for the connectors asked, oldest first", "[store]") {
  for_each_store([](Backend& b) {
    auto store = b.open();
    auto run = [&](auto f) { return b.run(f); };
    auto p = payment("acme", "ORDER-PR", 1000);
    p.status = PaymentStatus::succeeded;
    run([&]() { return store->create_payment(p, std::nullopt); });
    RefundRecord r;
    r.id = new_id(kRefundPrefix);
    r.payment_id = p.id;
    r.merchant = "acme";
    r.amount = 100;
    r.currency = "USD";
    r.created_at = r.updated_at = 5000;
    run([&]() { return store->create_refund(r, std::nullopt); });
    auto pending = [&](std::vector<std::string> connectors, std::int64_t before) {
      return run([&]() { return store->pending_refunds(connectors, before, 10); });
    };
    CHECK(pending({"c1"}, 5001).size() == 1);
    CHECK(pending({"c1"}, 5000).empty());  // changed at 5000: not before it
    CHECK(pending({"c2"}, 5001).empty());  // another connector's refunds only
    CHECK(pending({}, 5001).empty());
  });
}
