#include "service/store/sqlite/sqlite_store.hpp"

#include "service/store/sqlite/db.hpp"
#include "service/store/sqlite/migrations.hpp"
#include "service/store/sqlite/wal_vfs.hpp"
#include "service/store/rows.hpp"
#include "service/core/clock.hpp"
#include "service/core/ids.hpp"
#include "service/obs/metrics.hpp"

#include <fcntl.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace paymux::store::sqlite {
namespace {

struct Unit {};

// One queued operation: `run` does the SQL on a store thread and keeps its result; `finish` is
// called after the commit (or with the error) and posts the completion to the awaiting coroutine.
struct Job {
  std::function<void(Db&)> run;
  std::function<void(std::exception_ptr)> finish;
};

template <class T>
class Queue {
 public:
  void push(T j) {
    {
      std::lock_guard lock(m_);
      q_.push_back(std::move(j));
    }
    cv_.notify_one();
  }
  // Blocks until jobs are queued or the queue is closed; takes up to max.
  bool take(std::vector<T>& out, std::size_t max = SIZE_MAX) {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return closed_ || !q_.empty(); });
    if (q_.empty()) return false;
    while (!q_.empty() && out.size() < max) {
      out.push_back(std::move(q_.front()));
      q_.pop_front();
    }
    if (q_.empty()) taken_cv_.notify_all();
    return true;
  }
  void close() {
    {
      std::lock_guard lock(m_);
      closed_ = true;
    }
    cv_.notify_all();
  }
  // Blocks until everything pushed was taken (or the queue is closed).
  void wait_taken() {
    std::unique_lock lock(m_);
    taken_cv_.wait(lock, [&] { return closed_ || q_.empty(); });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::condition_variable taken_cv_;
  std::deque<T> q_;
  bool closed_ = false;
};
using JobQueue = Queue<Job>;

// A batch the writer committed, on its way to the syncer.
struct Synced {
  std::uint64_t seq = 0;  // the commit's number (0: it did not reach COMMIT)
  std::vector<Job> batch;
  std::vector<std::exception_ptr> errors;
  std::exception_ptr commit_error;
  std::shared_ptr<FileSync> wal;  // the sync COMMIT left to do (null: none)
  std::chrono::steady_clock::time_point started;
};

// How far commits are on disk. Readers that saw a commit not yet synced wait here.
class Durable {
 public:
  bool reached(std::uint64_t seq) const { return done_.load() >= seq; }
  // Runs fn now when seq is on disk, else on the syncer's thread once it is.
  void when(std::uint64_t seq, std::function<void()> fn) {
    {
      std::lock_guard lock(m_);
      if (done_.load() < seq) {
        waiting_.emplace_back(seq, std::move(fn));
        return;
      }
    }
    fn();
  }
  void advance(std::uint64_t seq) {
    std::vector<std::function<void()>> ready;
    {
      std::lock_guard lock(m_);
      if (seq <= done_.load()) return;
      done_.store(seq);
      auto keep = waiting_.begin();
      for (auto& [at, fn] : waiting_) {
        if (at <= seq) ready.push_back(std::move(fn));
        else *keep++ = {at, std::move(fn)};
      }
      waiting_.erase(keep, waiting_.end());
    }
    for (auto& fn : ready) fn();
  }

 private:
  std::atomic<std::uint64_t> done_{0};
  std::mutex m_;
  std::vector<std::pair<std::uint64_t, std::function<void()>>> waiting_;
};

// Read-only connections (reader threads and lookups).
const char* const kReaderPragmas = "PRAGMA cache_size=-8192";
// Opening the database: 2 KiB pages for a new one (no effect on an existing one). Each commit
// writes every page it touched whole, in the WAL and again at the checkpoint: with random ids
// (before ids carried their time) 2 KiB pages took ~28 KB per payment against ~65 KB with 4 KiB,
// and with ids in creation order 2 KiB pages still measured faster (bench/README.md). Rows share
// pages: a payment is ~0.5 KB, and event payloads and stored responses are packed to ~0.3 KB
// (packed_text.hpp).
const char* const kOpenPragmas = "PRAGMA page_size=2048; PRAGMA journal_mode=WAL";

// Statement texts live in named constants so that the statement cache keys on stable pointers.
#define SQL static const char* const
// The WHERE of the partial index payments_due, word for word (the planner uses the index only then).
#define PENDING_PAYMENT "(status = 'created' OR status = 'requires_action' OR status = 'processing')"

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(SqliteOptions o) : options_(std::move(o)) {
    if (auto dir = std::filesystem::path(options_.path).parent_path(); !dir.empty())
      std::filesystem::create_directories(dir);
    if (!options_.background_migrations) {
      Db db(options_.path, false);
      db.exec(kOpenPragmas);
      migrate(db);
      migrated_ = true;
    } else {
      Db check(options_.path, false);  // an unusable path fails start-up at once
    }
    writer_ = std::thread([this] { writer_loop(); });
    syncer_ = std::thread([this] { syncer_loop(); });
    checkpointer_ = std::thread([this] { checkpointer_loop(); });
    for (unsigned i = 0; i < std::max(1u, options_.reader_threads); ++i)
      readers_.emplace_back([this] { reader_loop(); });
  }

  ~SqliteStore() override {
    {
      std::lock_guard lock(migrated_mutex_);
      closing_ = true;
    }
    migrated_cv_.notify_all();
    writes_.close();
    reads_.close();
    if (writer_.joinable()) writer_.join();
    if (syncer_.joinable()) syncer_.join();  // the writer closed syncs_: it syncs what is left
    {
      std::lock_guard lock(checkpoint_mutex_);
      checkpoint_closing_ = true;
    }
    checkpoint_cv_.notify_all();
    if (checkpointer_.joinable()) checkpointer_.join();
    for (auto& t : readers_)
      if (t.joinable()) t.join();
  }

  // Goes through the writer: a database that cannot take a write transaction is not ready.
  asio::awaitable<bool> ping() override {
    if (!migrated_) return answer(false);
    return write<bool>([](Db& db) {
      SQL q = "SELECT COUNT(*) FROM schema_migrations";
      auto s = db.prepare(q);
      return s.step();
    });
  }

  asio::awaitable<Backlog> backlog(std::int64_t now) override {
    return read<Backlog>([now](Db& db) {
      SQL w = "SELECT state, COUNT(*) FROM webhook_deliveries WHERE state IN ('pending', 'disabled') GROUP BY state";
      SQL r = "SELECT COUNT(*) FROM payments WHERE " PENDING_PAYMENT
              " AND next_check_at <= ?1";
      Backlog b;
      {
        auto s = db.prepare(w);
        while (s.step()) (s.text(0) == "pending" ? b.webhook_pending : b.webhook_disabled) = s.int64(1);
      }
      auto s = db.prepare(r);
      s.bind(1, now);
      if (s.step()) b.reconcile_due = s.int64(0);
      return b;
    });
  }

  asio::awaitable<CreatePaymentResult> create_payment(PaymentRecord p, std::optional<IdempotencyRecord> key) override {
    if (key) key->owner = instance_id_;
    return write<CreatePaymentResult>([p = std::move(p), key = std::move(key)](Db& db) {
      CreatePaymentResult result;
      db.exec("SAVEPOINT create_payment");
      try {
        if (key) {
          if (!insert_idempotency(db, *key)) {
            db.exec("ROLLBACK TO create_payment; RELEASE create_payment");
            result.outcome = CreatePaymentOutcome::idempotency_exists;
            result.existing = *select_idempotency(db, key->merchant, key->key);
            return result;
          }
        }
        try {
          insert_payment(db, p);
        } catch (const SqliteError& e) {
          if (!is_unique_violation(e)) throw;
          db.exec("ROLLBACK TO create_payment; RELEASE create_payment");
          result.outcome = CreatePaymentOutcome::duplicate_reference;
          return result;
        }
        db.exec("RELEASE create_payment");
      } catch (...) {
        db.exec("ROLLBACK TO create_payment; RELEASE create_payment");
        throw;
      }
      return result;
    });
  }

  asio::awaitable<std::optional<PaymentRecord>> get_payment(std::string id) override {
    return lookup<std::optional<PaymentRecord>>([id = std::move(id)](Db& db) {
      return select_payment(db, id);
    });
  }

  asio::awaitable<std::vector<PaymentRecord>> list_payments(PaymentQuery q) override {
    return read<std::vector<PaymentRecord>>([q = std::move(q)](Db& db) {
      std::int64_t cursor = INT64_MAX;
      if (!q.starting_after.empty()) {
        SQL c = "SELECT seq FROM payments WHERE id = ?1 AND merchant = ?2";
        auto s = db.prepare(c);
        s.bind(1, q.starting_after).bind(2, q.merchant);
        if (!s.step()) return std::vector<PaymentRecord>{};
        cursor = s.int64(0);
      }
      static const std::string sql = std::string("SELECT ") + kPaymentColumns +
                                     " FROM payments WHERE merchant = ?1 AND seq < ?2"
                                     " AND (?3 = '' OR reference = ?3) AND (?4 = '' OR status = ?4)"
                                     " ORDER BY seq DESC LIMIT ?5";
      auto s = db.prepare(sql.c_str());
      s.bind(1, q.merchant).bind(2, cursor).bind(3, q.reference);
      s.bind(4, q.status ? std::string(to_string(*q.status)) : std::string());
      s.bind(5, q.limit);
      std::vector<PaymentRecord> out;
      while (s.step()) out.push_back(read_payment(s));
      return out;
    });
  }

  asio::awaitable<bool> apply_payment_change(PaymentChange c) override {
    // Packed here, on the caller's thread, not on the writer's.
    std::vector<StoredText> payloads;
    payloads.reserve(c.events.size());
    for (const auto& e : c.events) payloads.push_back(pack_text(e.payload_json));
    std::optional<StoredText> response;
    if (c.idempotency_done) response = pack_text(c.idempotency_done->response_body);
    return write<bool>([c = std::move(c), payloads = std::move(payloads), response = std::move(response)](Db& db) {
      db.exec("SAVEPOINT change");
      try {
        SQL u =
            "UPDATE payments SET provider_payment_id = ?3, amount_refunded = ?4, status = ?5, next_action = ?6, "
            "failure = ?7, risk = ?8, attempts = ?9, updated_at = ?10, expires_at = ?11, connector = ?12, "
            "provider = ?13, provider_data = ?14, version = version + 1 WHERE id = ?1 AND version = ?2";
        const auto& p = c.payment;
        {
          auto s = db.prepare(u);
          s.bind(1, p.id).bind(2, c.expected_version).bind(3, p.provider_payment_id).bind(4, p.amount_refunded);
          s.bind(5, to_string(p.status)).bind(6, p.next_action_json).bind(7, p.failure_json).bind(8, p.risk_json);
          s.bind(9, p.attempts_json).bind(10, p.updated_at).bind(11, p.expires_at).bind(12, p.connector);
          s.bind(13, p.provider).bind(14, p.provider_data_json);
          s.exec();
        }
        if (db.changes() == 0) {
          db.exec("ROLLBACK TO change; RELEASE change");
          return false;
        }
        for (std::size_t i = 0; i < c.events.size(); ++i) insert_event(db, c.events[i], payloads[i], p.id);
        if (c.refund) upsert_refund(db, *c.refund);
        if (c.idempotency_done) update_idempotency(db, *c.idempotency_done, *response);
        if (c.notification) insert_notification(db, *c.notification);
        db.exec("RELEASE change");
        return true;
      } catch (...) {
        db.exec("ROLLBACK TO change; RELEASE change");
        throw;
      }
    });
  }

  asio::awaitable<std::vector<PaymentRecord>> pending_payments(std::int64_t updated_before, int limit) override {
    return read<std::vector<PaymentRecord>>([=](Db& db) {
      static const std::string sql = std::string("SELECT ") + kPaymentColumns +
                                     " FROM payments WHERE " PENDING_PAYMENT
                                     " AND updated_at < ?1 ORDER BY updated_at LIMIT ?2";
      auto s = db.prepare(sql.c_str());
      s.bind(1, updated_before).bind(2, limit);
      std::vector<PaymentRecord> out;
      while (s.step()) out.push_back(read_payment(s));
      return out;
    });
  }

  asio::awaitable<std::vector<PaymentRecord>> claim_due_payments(std::string connector, std::int64_t now, int limit,
                                                                 std::int64_t lease_until) override {
    return write<std::vector<PaymentRecord>>([connector = std::move(connector), now, limit, lease_until](Db& db) {
      static const std::string sql = std::string("SELECT ") + kPaymentColumns +
                                     " FROM payments WHERE " PENDING_PAYMENT
                                     " AND next_check_at <= ?1 AND connector = ?2 ORDER BY next_check_at LIMIT ?3";
      std::vector<PaymentRecord> out;
      {
        auto s = db.prepare(sql.c_str());
        s.bind(1, now).bind(2, connector).bind(3, limit);
        while (s.step()) out.push_back(read_payment(s));
      }
      SQL u = "UPDATE payments SET next_check_at = ?2 WHERE id = ?1";
      for (auto& p : out) {
        auto s = db.prepare(u);
        s.bind(1, p.id).bind(2, lease_until);
        s.exec();
        p.next_check_at = lease_until;
      }
      return out;
    });
  }

  asio::awaitable<void> schedule_check(std::string id, std::int64_t next_check_at, int check_count) override {
    return discard(write<Unit>([id = std::move(id), next_check_at, check_count](Db& db) {
      SQL u = "UPDATE payments SET next_check_at = ?2, check_count = ?3 WHERE id = ?1";
      auto s = db.prepare(u);
      s.bind(1, id).bind(2, next_check_at).bind(3, check_count);
      s.exec();
      return Unit{};
    }));
  }

  asio::awaitable<CreateRefundResult> create_refund(RefundRecord r, std::optional<IdempotencyRecord> key) override {
    if (key) key->owner = instance_id_;
    return write<CreateRefundResult>([r = std::move(r), key = std::move(key)](Db& db) {
      CreateRefundResult result;
      db.exec("SAVEPOINT create_refund");
      try {
        if (key && !insert_idempotency(db, *key)) {
          db.exec("ROLLBACK TO create_refund; RELEASE create_refund");
          result.outcome = CreateRefundOutcome::idempotency_exists;
          result.existing = *select_idempotency(db, key->merchant, key->key);
          return result;
        }
        SQL q =
            "SELECT p.amount, p.status, "
            "(SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE payment_id = p.id AND status != 'failed') "
            "FROM payments p WHERE p.id = ?1";
        auto s = db.prepare(q);
        s.bind(1, r.payment_id);
        if (!s.step()) throw std::runtime_error("refund for a missing payment");
        const auto amount = s.int64(0);
        const auto status = payment_status_from(s.text(1)).value_or(PaymentStatus::processing);
        const auto reserved = s.int64(2);
        if (!is_refundable(status)) {
          db.exec("ROLLBACK TO create_refund; RELEASE create_refund");
          result.outcome = CreateRefundOutcome::not_refundable;
          return result;
        }
        if (reserved + r.amount > amount) {
          db.exec("ROLLBACK TO create_refund; RELEASE create_refund");
          result.outcome = CreateRefundOutcome::too_large;
          result.refundable = amount - reserved;
          return result;
        }
        upsert_refund(db, r);
        db.exec("RELEASE create_refund");
        return result;
      } catch (...) {
        db.exec("ROLLBACK TO create_refund; RELEASE create_refund");
        throw;
      }
    });
  }

  asio::awaitable<std::optional<RefundRecord>> get_refund(std::string id) override {
    return lookup<std::optional<RefundRecord>>([id = std::move(id)](Db& db) -> std::optional<RefundRecord> {
      static const std::string sql = std::string("SELECT ") + kRefundColumns + " FROM refunds WHERE id = ?1";
      auto s = db.prepare(sql.c_str());
      s.bind(1, id);
      if (!s.step()) return std::nullopt;
      return read_refund(s);
    });
  }

  asio::awaitable<std::vector<RefundRecord>> list_refunds(std::string payment_id) override {
    return read<std::vector<RefundRecord>>([id = std::move(payment_id)](Db& db) {
      static const std::string sql =
          std::string("SELECT ") + kRefundColumns + " FROM refunds WHERE payment_id = ?1 ORDER BY seq DESC";
      auto s = db.prepare(sql.c_str());
      s.bind(1, id);
      std::vector<RefundRecord> out;
      while (s.step()) out.push_back(read_refund(s));
      return out;
    });
  }

  asio::awaitable<std::vector<RefundRecord>> pending_refunds(std::vector<std::string> connectors,
                                                             std::int64_t updated_before, int limit) override {
    return read<std::vector<RefundRecord>>([connectors = std::move(connectors), updated_before, limit](Db& db) {
      boost::json::array ids;
      for (const auto& c : connectors) ids.emplace_back(c);
      SQL q = "SELECT r.id, r.payment_id, r.merchant, r.amount, r.currency, r.status, r.provider_refund_id, "
              "r.failure, r.reason, r.reference, r.created_at, r.updated_at FROM refunds r "
              "JOIN payments p ON p.id = r.payment_id "
              "WHERE r.status = 'pending' AND r.updated_at < ?1 "
              "AND p.connector IN (SELECT value FROM json_each(?2)) ORDER BY r.updated_at LIMIT ?3";
      auto s = db.prepare(q);
      s.bind(1, updated_before).bind(2, boost::json::serialize(ids)).bind(3, limit);
      std::vector<RefundRecord> out;
      while (s.step()) out.push_back(read_refund(s));
      return out;
    });
  }

  asio::awaitable<std::optional<EventRecord>> get_event(std::string id) override {
    return lookup<std::optional<EventRecord>>([id = std::move(id)](Db& db) -> std::optional<EventRecord> {
      SQL q = "SELECT id, merchant, type, object_id, payload, created_at FROM events WHERE id = ?1";
      auto s = db.prepare(q);
      s.bind(1, id);
      if (!s.step()) return std::nullopt;
      return read_event(s);
    });
  }

  asio::awaitable<std::vector<EventRecord>> list_events(EventQuery q) override {
    return read<std::vector<EventRecord>>([q = std::move(q)](Db& db) {
      std::int64_t cursor = INT64_MAX;
      if (!q.starting_after.empty()) {
        SQL c = "SELECT seq FROM events WHERE id = ?1 AND merchant = ?2";
        auto s = db.prepare(c);
        s.bind(1, q.starting_after).bind(2, q.merchant);
        if (!s.step()) return std::vector<EventRecord>{};
        cursor = s.int64(0);
      }
      SQL l =
          "SELECT id, merchant, type, object_id, payload, created_at FROM events WHERE merchant = ?1 AND seq < ?2 "
          "AND (?3 = '' OR type = ?3) AND (?4 = '' OR object_id = ?4) ORDER BY seq DESC LIMIT ?5";
      auto s = db.prepare(l);
      s.bind(1, q.merchant).bind(2, cursor).bind(3, q.type).bind(4, q.object_id).bind(5, q.limit);
      std::vector<EventRecord> out;
      while (s.step()) out.push_back(read_event(s));
      return out;
    });
  }

  asio::awaitable<BeginResult> begin_idempotency(IdempotencyRecord r) override {
    r.owner = instance_id_;
    return write<BeginResult>([r = std::move(r)](Db& db) {
      BeginResult result;
      if (!insert_idempotency(db, r)) {
        result.outcome = BeginOutcome::exists;
        result.existing = *select_idempotency(db, r.merchant, r.key);
      }
      return result;
    });
  }

  asio::awaitable<void> complete_idempotency(IdempotencyRecord r) override {
    auto response = pack_text(r.response_body);
    return discard(write<Unit>([r = std::move(r), response = std::move(response)](Db& db) {
      update_idempotency(db, r, response);
      return Unit{};
    }));
  }

  asio::awaitable<void> release_idempotency(std::string merchant, std::string key) override {
    return discard(write<Unit>([merchant = std::move(merchant), key = std::move(key)](Db& db) {
      SQL d = "DELETE FROM idempotency_keys WHERE merchant = ?1 AND key = ?2 AND state = 'in_progress'";
      auto s = db.prepare(d);
      s.bind(1, merchant).bind(2, key);
      s.exec();
      return Unit{};
    }));
  }

  asio::awaitable<std::optional<ConnectorCredentialsRecord>> get_connector_credentials(std::string connector) override {
    return read<std::optional<ConnectorCredentialsRecord>>([connector = std::move(connector)](Db& db) {
      SQL q = "SELECT connector, data, version, updated_at FROM connector_credentials WHERE connector = ?1";
      auto s = db.prepare(q);
      s.bind(1, connector);
      if (!s.step()) return std::optional<ConnectorCredentialsRecord>{};
      return std::optional<ConnectorCredentialsRecord>(
          ConnectorCredentialsRecord{s.text(0), s.text(1), s.int64(2), s.int64(3)});
    });
  }

  asio::awaitable<bool> put_connector_credentials(ConnectorCredentialsRecord r, std::int64_t expected_version) override {
    return write<bool>([r = std::move(r), expected_version](Db& db) {
      if (expected_version == 0) {
        SQL i = "INSERT OR IGNORE INTO connector_credentials (connector, data, version, updated_at) VALUES (?1, ?2, 1, ?3)";
        auto s = db.prepare(i);
        s.bind(1, r.connector).bind(2, r.data_json).bind(3, r.updated_at);
        s.exec();
      } else {
        SQL u = "UPDATE connector_credentials SET data = ?2, version = version + 1, updated_at = ?3 "
                "WHERE connector = ?1 AND version = ?4";
        auto s = db.prepare(u);
        s.bind(1, r.connector).bind(2, r.data_json).bind(3, r.updated_at).bind(4, expected_version);
        s.exec();
      }
      return db.changes() == 1;
    });
  }

  asio::awaitable<std::optional<IdempotencyRecord>> get_idempotency(std::string merchant, std::string key) override {
    return lookup<std::optional<IdempotencyRecord>>(
        [merchant = std::move(merchant), key = std::move(key)](Db& db) { return select_idempotency(db, merchant, key); });
  }

  asio::awaitable<std::int64_t> prune_idempotency(std::int64_t created_before) override {
    return write<std::int64_t>([=](Db& db) {
      SQL d = "DELETE FROM idempotency_keys WHERE created_at < ?1 AND state = 'completed'";
      auto s = db.prepare(d);
      s.bind(1, created_before);
      s.exec();
      return db.changes();
    });
  }

  asio::awaitable<std::vector<IdempotencyRecord>> in_progress_idempotency(std::int64_t created_before,
                                                                          std::int64_t alive_after) override {
    return read<std::vector<IdempotencyRecord>>([created_before, alive_after, self = instance_id_](Db& db) {
      static const std::string sql = std::string("SELECT ") + kIdempotencyColumns +
                                     " FROM idempotency_keys k WHERE state = 'in_progress' AND created_at < ?1"
                                     " AND owner != ?3 AND NOT EXISTS (SELECT 1 FROM instances i"
                                     " WHERE i.id = k.owner AND i.heartbeat_at >= ?2)";
      auto s = db.prepare(sql.c_str());
      s.bind(1, created_before).bind(2, alive_after).bind(3, self);
      std::vector<IdempotencyRecord> out;
      while (s.step()) out.push_back(read_idempotency(s));
      return out;
    });
  }

  // --- merchant webhooks -----------------------------------------------------------------

  asio::awaitable<std::vector<WebhookEndpointRecord>> sync_webhook_endpoints(std::vector<WebhookEndpointRecord> configured,
                                                                             std::int64_t now) override {
    return write<std::vector<WebhookEndpointRecord>>([configured = std::move(configured), now](Db& db) {
      db.exec("SAVEPOINT sync_endpoints");
      try {
        db.exec("CREATE TEMP TABLE IF NOT EXISTS configured_endpoints (merchant TEXT PRIMARY KEY)");
        db.exec("DELETE FROM temp.configured_endpoints");
        for (const auto& c : configured) {
          SQL t = "INSERT OR IGNORE INTO temp.configured_endpoints (merchant) VALUES (?1)";
          auto s = db.prepare(t);
          s.bind(1, c.merchant);
          s.exec();
          // A new URL is a new endpoint: enabled, and what a 410 held back is queued again.
          SQL r =
              "UPDATE webhook_deliveries SET state = 'pending', failures = 0, next_attempt_at = ?2, updated_at = ?2 "
              "WHERE merchant = ?1 AND state = 'disabled' AND EXISTS (SELECT 1 FROM webhook_endpoints "
              "WHERE merchant = ?1 AND url != ?3)";
          auto rs = db.prepare(r);
          rs.bind(1, c.merchant).bind(2, now).bind(3, c.url);
          rs.exec();
          SQL u =
              "INSERT INTO webhook_endpoints (merchant, url, disabled_at, disabled_reason, updated_at) "
              "VALUES (?1, ?2, 0, '', ?3) ON CONFLICT (merchant) DO UPDATE SET url = excluded.url, "
              "disabled_at = CASE WHEN url = excluded.url THEN disabled_at ELSE 0 END, "
              "disabled_reason = CASE WHEN url = excluded.url THEN disabled_reason ELSE '' END, "
              "updated_at = CASE WHEN url = excluded.url THEN updated_at ELSE excluded.updated_at END";
          auto us = db.prepare(u);
          us.bind(1, c.merchant).bind(2, c.url).bind(3, now);
          us.exec();
        }
        // Two statements, so that each walks its partial index rather than the whole table.
        db.exec(
            "UPDATE webhook_deliveries SET state = 'skipped', lease_until = 0 WHERE state = 'pending' "
            "AND merchant NOT IN (SELECT merchant FROM temp.configured_endpoints)");
        db.exec(
            "UPDATE webhook_deliveries SET state = 'skipped', lease_until = 0 WHERE state = 'disabled' "
            "AND merchant NOT IN (SELECT merchant FROM temp.configured_endpoints)");
        db.exec("DELETE FROM webhook_endpoints WHERE merchant NOT IN (SELECT merchant FROM temp.configured_endpoints)");
        db.exec("DELETE FROM temp.configured_endpoints");
        std::vector<WebhookEndpointRecord> out;
        SQL q = "SELECT merchant, url, disabled_at, disabled_reason, updated_at FROM webhook_endpoints ORDER BY merchant";
        auto s = db.prepare(q);
        while (s.step()) out.push_back(read_endpoint(s));
        db.exec("RELEASE sync_endpoints");
        return out;
      } catch (...) {
        db.exec("ROLLBACK TO sync_endpoints; RELEASE sync_endpoints");
        throw;
      }
    });
  }

  asio::awaitable<std::optional<WebhookEndpointRecord>> get_webhook_endpoint(std::string merchant) override {
    return read<std::optional<WebhookEndpointRecord>>(
        [merchant = std::move(merchant)](Db& db) -> std::optional<WebhookEndpointRecord> {
          SQL q = "SELECT merchant, url, disabled_at, disabled_reason, updated_at FROM webhook_endpoints WHERE merchant = ?1";
          auto s = db.prepare(q);
          s.bind(1, merchant);
          if (!s.step()) return std::nullopt;
          return read_endpoint(s);
        });
  }

  asio::awaitable<bool> enable_webhook_endpoint(std::string merchant, std::int64_t now) override {
    return write<bool>([merchant = std::move(merchant), now](Db& db) {
      SQL u =
          "UPDATE webhook_endpoints SET disabled_at = 0, disabled_reason = '', updated_at = ?2 WHERE merchant = ?1";
      {
        auto s = db.prepare(u);
        s.bind(1, merchant).bind(2, now);
        s.exec();
      }
      if (db.changes() == 0) return false;
      SQL r =
          "UPDATE webhook_deliveries SET state = 'pending', failures = 0, next_attempt_at = ?2, updated_at = ?2 "
          "WHERE merchant = ?1 AND state = 'disabled'";
      auto s = db.prepare(r);
      s.bind(1, merchant).bind(2, now);
      s.exec();
      return true;
    });
  }

  asio::awaitable<std::vector<ClaimedDelivery>> claim_deliveries(std::string merchant, std::int64_t now, int limit,
                                                                 std::int64_t lease_until) override {
    return write<std::vector<ClaimedDelivery>>([merchant = std::move(merchant), now, limit, lease_until](Db& db) {
      std::vector<ClaimedDelivery> out;
      {
        SQL e = "SELECT disabled_at FROM webhook_endpoints WHERE merchant = ?1";
        auto s = db.prepare(e);
        s.bind(1, merchant);
        if (!s.step() || s.int64(0) != 0) return out;
      }
      static const std::string sql =
          std::string("SELECT ") + kDeliveryColumnsD +
          ", e.payload FROM webhook_deliveries d JOIN events e ON e.id = d.event_id "
          "WHERE d.merchant = ?1 AND d.state = 'pending' AND d.next_attempt_at <= ?2 AND d.lease_until <= ?2 "
          "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.order_key = d.order_key "
          "AND p.state = 'pending' AND p.seq < d.seq) "
          "ORDER BY d.next_attempt_at, d.seq LIMIT ?3";
      {
        auto s = db.prepare(sql.c_str());
        s.bind(1, merchant).bind(2, now).bind(3, limit);
        while (s.step()) {
          ClaimedDelivery c;
          c.delivery = read_delivery(s);
          c.payload_json = s.text(kDeliveryColumnCount);
          c.delivery.lease_until = lease_until;
          out.push_back(std::move(c));
        }
      }
      SQL u = "UPDATE webhook_deliveries SET lease_until = ?2 WHERE event_id = ?1";
      for (const auto& c : out) {
        auto s = db.prepare(u);
        s.bind(1, c.delivery.event_id).bind(2, lease_until);
        s.exec();
      }
      return out;
    });
  }

  asio::awaitable<void> record_deliveries(std::vector<DeliveryResult> results) override {
    return discard(write<Unit>([results = std::move(results)](Db& db) {
      db.exec("SAVEPOINT record_deliveries");
      try {
        for (const auto& r : results) record_delivery(db, r);
        db.exec("RELEASE record_deliveries");
      } catch (...) {
        db.exec("ROLLBACK TO record_deliveries; RELEASE record_deliveries");
        throw;
      }
      return Unit{};
    }));
  }

  static void record_delivery(Db& db, const DeliveryResult& r) {
    {
      const auto& a = r.attempt;
      SQL i =
          "INSERT INTO webhook_attempts (event_id, attempted_at, http_status, latency_ms, error, outcome) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
      {
        auto s = db.prepare(i);
        s.bind(1, a.event_id).bind(2, a.attempted_at).bind(3, a.http_status).bind(4, a.latency_ms);
        s.bind(5, a.error).bind(6, a.outcome);
        s.exec();
      }
      SQL u =
          "UPDATE webhook_deliveries SET state = ?3, attempts = attempts + 1, failures = ?4, next_attempt_at = ?5, "
          "lease_until = 0, last_status = ?6, last_error = ?7, updated_at = ?8 "
          "WHERE event_id = ?1 AND generation = ?2 AND state = 'pending'";
      {
        auto s = db.prepare(u);
        s.bind(1, a.event_id).bind(2, r.generation).bind(3, to_string(r.state)).bind(4, r.failures);
        s.bind(5, r.next_attempt_at).bind(6, a.http_status).bind(7, a.error).bind(8, a.attempted_at);
        s.exec();
      }
      if (db.changes() == 0) {
        // Queued again (redelivery) or settled meanwhile: keep that, count the attempt.
        SQL k =
            "UPDATE webhook_deliveries SET attempts = attempts + 1, lease_until = 0, last_status = ?2, "
            "last_error = ?3, updated_at = ?4 WHERE event_id = ?1";
        auto s = db.prepare(k);
        s.bind(1, a.event_id).bind(2, a.http_status).bind(3, a.error).bind(4, a.attempted_at);
        s.exec();
      }
      if (r.disable_endpoint) {
        SQL d =
            "UPDATE webhook_endpoints SET disabled_at = ?2, disabled_reason = ?3, updated_at = ?2 "
            "WHERE merchant = ?1 AND disabled_at = 0";
        auto s = db.prepare(d);
        s.bind(1, r.merchant).bind(2, a.attempted_at).bind(3, "410 Gone from the endpoint (event " + a.event_id + ")");
        s.exec();
      }
    }
  }

  asio::awaitable<std::optional<DeliveryRecord>> get_delivery(std::string event_id) override {
    return read<std::optional<DeliveryRecord>>([id = std::move(event_id)](Db& db) -> std::optional<DeliveryRecord> {
      static const std::string sql =
          std::string("SELECT ") + kDeliveryColumnsD + " FROM webhook_deliveries d WHERE d.event_id = ?1";
      auto s = db.prepare(sql.c_str());
      s.bind(1, id);
      if (!s.step()) return std::nullopt;
      return read_delivery(s);
    });
  }

  asio::awaitable<std::vector<DeliveryAttemptRecord>> list_delivery_attempts(std::string event_id, int limit) override {
    return read<std::vector<DeliveryAttemptRecord>>([id = std::move(event_id), limit](Db& db) {
      SQL q =
          "SELECT event_id, attempted_at, http_status, latency_ms, error, outcome FROM webhook_attempts "
          "WHERE event_id = ?1 ORDER BY seq LIMIT ?2";
      auto s = db.prepare(q);
      s.bind(1, id).bind(2, limit);
      std::vector<DeliveryAttemptRecord> out;
      while (s.step()) {
        DeliveryAttemptRecord a;
        a.event_id = s.text(0);
        a.attempted_at = s.int64(1);
        a.http_status = static_cast<unsigned>(s.int64(2));
        a.latency_ms = s.int64(3);
        a.error = s.text(4);
        a.outcome = s.text(5);
        out.push_back(std::move(a));
      }
      return out;
    });
  }

  asio::awaitable<bool> redeliver(std::string event_id, std::int64_t now) override {
    return write<bool>([id = std::move(event_id), now](Db& db) {
      // An event without a row (written before migration 3, or while its merchant had no URL) gets one.
      SQL u =
          "INSERT INTO webhook_deliveries (event_id, merchant, order_key, state, next_attempt_at, created_at, "
          "updated_at) SELECT id, merchant, object_id, 'pending', ?2, ?2, ?2 FROM events WHERE id = ?1 "
          "ON CONFLICT (event_id) DO UPDATE SET state = 'pending', failures = 0, generation = generation + 1, "
          "next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at";
      auto s = db.prepare(u);
      s.bind(1, id).bind(2, now);
      s.exec();
      return db.changes() > 0;
    });
  }

  const std::string& instance_id() const override { return instance_id_; }

  asio::awaitable<void> heartbeat(std::int64_t now) override {
    return discard(write<Unit>([self = instance_id_, started = started_at_, now](Db& db) {
      SQL u = "INSERT INTO instances (id, started_at, heartbeat_at) VALUES (?1, ?2, ?3) "
              "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at";
      auto s = db.prepare(u);
      s.bind(1, self).bind(2, started).bind(3, now);
      s.exec();
      SQL d = "DELETE FROM instances WHERE heartbeat_at < ?1";  // gone for a day
      auto g = db.prepare(d);
      g.bind(1, now - 86'400'000);
      g.exec();
      return Unit{};
    }));
  }

  asio::awaitable<void> record_notification(NotificationRecord n) override {
    return discard(write<Unit>([n = std::move(n)](Db& db) {
      insert_notification(db, n);
      return Unit{};
    }));
  }

 private:
  // --- statements used inside write jobs -----------------------------------------------------

  static void insert_payment(Db& db, const PaymentRecord& p) {
    static const std::string sql = std::string("INSERT INTO payments (") + kPaymentColumns +
                                   ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                                   "?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)";
    auto s = db.prepare(sql.c_str());
    s.bind(1, p.id).bind(2, p.merchant).bind(3, p.reference).bind(4, p.connector).bind(5, p.provider);
    s.bind(6, p.provider_payment_id).bind(7, p.amount).bind(8, p.currency).bind(9, p.amount_refunded);
    s.bind(10, to_string(p.status)).bind(11, p.payment_method_json).bind(12, p.request_json);
    s.bind(13, p.next_action_json).bind(14, p.failure_json).bind(15, p.risk_json).bind(16, p.attempts_json);
    s.bind(17, p.return_url).bind(18, p.metadata_json).bind(19, p.created_at).bind(20, p.updated_at);
    s.bind(21, p.expires_at).bind(22, p.version).bind(23, p.next_check_at).bind(24, p.check_count);
    s.bind(25, p.provider_data_json);
    s.exec();
  }

  static std::optional<PaymentRecord> select_payment(Db& db, const std::string& id) {
    static const std::string sql = std::string("SELECT ") + kPaymentColumns + " FROM payments WHERE id = ?1";
    auto s = db.prepare(sql.c_str());
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    return read_payment(s);
  }

  // The event and its webhook delivery row, in the caller's transaction. order_key is the payment
  // the change belongs to (a refund's events keep their order with the payment's).
  // payload: e.payload_json as pack_text left it.
  static void insert_event(Db& db, const EventRecord& e, const StoredText& payload, const std::string& order_key) {
    SQL i = "INSERT INTO events (id, merchant, type, object_id, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    {
      auto s = db.prepare(i);
      s.bind(1, e.id).bind(2, e.merchant).bind(3, e.type).bind(4, e.object_id).bind(5, payload);
      s.bind(6, e.created_at);
      s.exec();
    }
    SQL d =
        "INSERT INTO webhook_deliveries (event_id, merchant, order_key, state, next_attempt_at, created_at, updated_at) "
        "SELECT ?1, ?2, ?3, CASE WHEN EXISTS (SELECT 1 FROM webhook_endpoints WHERE merchant = ?2) "
        "THEN 'pending' ELSE 'skipped' END, ?4, ?4, ?4";
    auto s = db.prepare(d);
    s.bind(1, e.id).bind(2, e.merchant).bind(3, order_key.empty() ? e.object_id : order_key).bind(4, e.created_at);
    s.exec();
  }

  static void upsert_refund(Db& db, const RefundRecord& r) {
    SQL i =
        "INSERT INTO refunds (id, payment_id, merchant, amount, currency, status, provider_refund_id, failure, reason, "
        "reference, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, provider_refund_id = excluded.provider_refund_id, "
        "failure = excluded.failure, updated_at = excluded.updated_at";
    auto s = db.prepare(i);
    s.bind(1, r.id).bind(2, r.payment_id).bind(3, r.merchant).bind(4, r.amount).bind(5, r.currency);
    s.bind(6, to_string(r.status)).bind(7, r.provider_refund_id).bind(8, r.failure_json).bind(9, r.reason);
    s.bind(10, r.reference).bind(11, r.created_at).bind(12, r.updated_at);
    s.exec();
  }

  // false when the key exists already.
  static bool insert_idempotency(Db& db, const IdempotencyRecord& r) {
    SQL i =
        "INSERT INTO idempotency_keys (merchant, key, endpoint, fingerprint, state, response_status, response_body, "
        "resource_id, created_at, owner) VALUES (?1, ?2, ?3, ?4, 'in_progress', 0, '', ?5, ?6, ?7) "
        "ON CONFLICT (merchant, key) DO NOTHING";
    auto s = db.prepare(i);
    s.bind(1, r.merchant).bind(2, r.key).bind(3, r.endpoint).bind(4, r.fingerprint).bind(5, r.resource_id);
    s.bind(6, r.created_at).bind(7, r.owner);
    s.exec();
    return db.changes() == 1;
  }

  // body: r.response_body as pack_text left it.
  static void update_idempotency(Db& db, const IdempotencyRecord& r, const StoredText& body) {
    SQL u =
        "UPDATE idempotency_keys SET state = 'completed', response_status = ?3, response_body = ?4, "
        "resource_id = ?5 WHERE merchant = ?1 AND key = ?2";
    auto s = db.prepare(u);
    s.bind(1, r.merchant).bind(2, r.key).bind(3, r.response_status).bind(4, body).bind(5, r.resource_id);
    s.exec();
  }

  static std::optional<IdempotencyRecord> select_idempotency(Db& db, const std::string& merchant,
                                                              const std::string& key) {
    static const std::string sql =
        std::string("SELECT ") + kIdempotencyColumns + " FROM idempotency_keys WHERE merchant = ?1 AND key = ?2";
    auto s = db.prepare(sql.c_str());
    s.bind(1, merchant).bind(2, key);
    if (!s.step()) return std::nullopt;
    return read_idempotency(s);
  }

  static void insert_notification(Db& db, const NotificationRecord& n) {
    SQL i =
        "INSERT INTO notifications (id, connector, received_at, method, raw, verification, payment_id, outcome, "
        "dedup_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
    auto s = db.prepare(i);
    s.bind(1, n.id).bind(2, n.connector).bind(3, n.received_at).bind(4, n.method).bind(5, n.raw);
    s.bind(6, n.verification).bind(7, n.payment_id).bind(8, n.outcome).bind(9, n.dedup_key);
    s.exec();
  }

  // --- threads -------------------------------------------------------------------------------

  void migrate(Db& db) {
    db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
    int current = 0;
    {
      auto s = db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
      if (s.step()) current = static_cast<int>(s.int64(0));
    }
    for (const auto& m : kMigrations) {
      if (m.version <= current) continue;
      db.exec("BEGIN IMMEDIATE");
      try {
        db.exec(m.sql);
        auto s = db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, strftime('%s','now'))");
        s.bind(1, m.version);
        s.exec();
        db.exec("COMMIT");
        spdlog::info("store migrated to version {}", m.version);
      } catch (...) {
        db.exec("ROLLBACK");
        throw;
      }
    }
  }

  // Background migrations: retried until they succeed (a locked or unreachable database at
  // start-up keeps the service "not ready" instead of stopping it); readers wait for them.
  void migrate_in_background() {
    for (int attempt = 1; !migrated_; ++attempt) {
      try {
        Db db(options_.path, false);
        db.exec(kOpenPragmas);
        migrate(db);
        std::lock_guard lock(migrated_mutex_);
        migrated_ = true;
      } catch (const std::exception& e) {
        spdlog::warn("store: migrations not applied (attempt {}): {}; retrying", attempt, e.what());
        std::unique_lock lock(migrated_mutex_);
        if (migrated_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return closing_; })) return;
      }
    }
    migrated_cv_.notify_all();
  }

  // Readers start once the schema is there; false when the store closed first.
  bool wait_migrated() {
    std::unique_lock lock(migrated_mutex_);
    migrated_cv_.wait(lock, [this] { return migrated_ || closing_; });
    return migrated_;
  }

  // The writer does not wait for the disk: each batch's commit is published (readers see it) with
  // its WAL sync deferred, and the batch goes to the syncer, which syncs and only then completes its
  // operations. Meanwhile the writer commits the next batch, so the disk's flush (most of a commit's
  // time) overlaps the next batch's work instead of following it. What a crash could still take
  // back is never handed out: a batch completes after its own sync, which also covers every batch
  // before it (the WAL is one file, synced in order), and a read completes once every commit it
  // could have seen is synced (durable_).
  void writer_loop() {
    if (options_.background_migrations) migrate_in_background();
    if (!migrated_) {
      fail_queued(writes_);
      return syncs_.close();
    }
    std::unique_ptr<Db> db;
    for (;;) {
      Synced done;
      if (!writes_.take(done.batch, options_.max_batch)) break;
      done.errors.resize(done.batch.size());
      done.started = std::chrono::steady_clock::now();
      try {
        if (!db) {
          // synchronous=FULL is what the batched-WAL VFS needs (see wal_vfs.hpp).
          db = std::make_unique<Db>(options_.path, false, batched_wal_vfs());
          db->exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA journal_mode=WAL");
          // Replaces SQLite's automatic checkpoint on this connection (see after_commit).
          sqlite3_wal_hook(db->raw(), &SqliteStore::on_wal_commit, this);
        }
        db->exec("BEGIN IMMEDIATE");
        for (std::size_t i = 0; i < done.batch.size(); ++i) {
          try {
            done.batch[i].run(*db);
          } catch (...) {
            done.errors[i] = std::current_exception();
          }
        }
        done.seq = ++visible_;  // before COMMIT: a reader may see the commit as soon as it publishes
        {
          DeferWalSyncs defer;
          db->exec("COMMIT");
          done.wal = DeferWalSyncs::owed();
        }
      } catch (const std::exception& e) {
        spdlog::error("store commit failed: {}", e.what());
        done.commit_error = std::make_exception_ptr(StoreUnavailable(e.what()));
        if (db) {
          try {
            db->exec("ROLLBACK");
          } catch (...) {
            db.reset();  // reopen on the next batch
          }
        }
      }
      const bool committed = !done.commit_error;
      syncs_.push(std::move(done));
      // After the hand-over: the batch's sync runs while the writer checkpoints, if it must.
      if (committed) after_commit(*db);
      // One committed batch waits for the syncer at most: the next commit (with whatever queued
      // meanwhile) is made when the syncer starts on this one, and still makes the sync after.
      // Committing sooner would not be synced sooner, and each commit writes the pages it
      // touched again.
      syncs_.wait_taken();
    }
    syncs_.close();
  }

  // After a failed fdatasync the kernel may have dropped the bytes, and a later sync can succeed
  // without them: nothing may rely on them (readers may have seen commits not yet synced, and a
  // checkpoint would start the WAL over). Nothing that depends on them was handed out yet: stop,
  // and the restart recovers from what the disk holds, as after a power cut.
  static void sync_or_stop(const FileSync& file, const char* what) {
    if (const int err = file.sync(); err != 0) {
      spdlog::critical("store: syncing the {} failed ({}); stopping", what, std::strerror(err));
      std::abort();
    }
  }

  // Syncs what the writer committed, oldest first, one fdatasync for all that queued meanwhile,
  // then completes those batches' operations and releases the reads that waited for them.
  void syncer_loop() {
    std::vector<Synced> items;
    while (syncs_.take(items)) {
      if (options_.before_sync) options_.before_sync();
      const FileSync* last = nullptr;
      for (const auto& item : items) {
        if (!item.wal || item.wal.get() == last) continue;
        last = item.wal.get();
        sync_or_stop(*last, "WAL");
      }
      const auto now = std::chrono::steady_clock::now();
      for (auto& item : items) {
        if (!item.commit_error)
          obs::metrics::observe_store_commit(std::chrono::duration<double>(now - item.started).count(),
                                             item.batch.size());
        for (std::size_t i = 0; i < item.batch.size(); ++i)
          item.batch[i].finish(item.commit_error ? item.commit_error : item.errors[i]);
      }
      std::uint64_t seq = 0;
      for (const auto& item : items) seq = std::max(seq, item.seq);
      durable_.advance(seq);
      items.clear();
    }
  }

  // Checkpoints (copying committed pages from the WAL into the database file, so that the WAL can
  // start over) run on their own thread and connection, not on the writer's: commits go on while
  // one runs. A checkpoint copies only what was committed when it started, and SQLite starts the WAL
  // over only once everything in it was copied; so when the background has copied all but a few
  // frames, the writer copies those itself between two batches (a short pause: two syncs and the
  // copy), and the next batch writes the WAL from its start again.
  // At options_.checkpoint_frames a background pass starts; passes follow one another while more
  // than options_.checkpoint_tail_frames are left and each leaves fewer than the one before; then
  // the writer copies the rest. At four times checkpoint_frames (the background cannot keep up) the
  // writer copies everything.

  static int on_wal_commit(void* self, sqlite3*, const char*, int frames) {
    auto* store = static_cast<SqliteStore*>(self);
    if (frames < store->wal_frames_) ++store->wal_restarts_;  // this commit wrote the WAL from its start
    store->wal_frames_ = frames;
    return SQLITE_OK;
  }

  void after_commit(Db& db) {
    const int frames = wal_frames_, threshold = std::max(options_.checkpoint_frames, 4);
    if (frames < threshold) return;
    {
      std::lock_guard lock(checkpoint_mutex_);
      // A background pass asked for and not yet begun counts as running: its checkpointer has not
      // woken up yet, and backfilled_ does not show its work. Copying now would copy the whole WAL
      // while commits wait (8-10 ms at ~1,000 frames), and the pass would then find nothing left.
      if (checkpoint_running_ || checkpoint_wanted_) return;
      if (checkpoint_restarts_ != wal_restarts_) {
        // The WAL started over since the last pass (after the writer's pass, or a background one
        // that copied everything while commits paused): nothing of it is copied yet.
        checkpoint_restarts_ = wal_restarts_;
        backfilled_ = 0;
        left_before_ = INT_MAX;
      }
      const int left = frames - backfilled_;
      if (left > options_.checkpoint_tail_frames && left < left_before_ && frames < 4 * threshold) {
        left_before_ = left;
        checkpoint_wanted_ = true;
      } else {
        backfilled_ = checkpoint(db, "writer");
        left_before_ = INT_MAX;
        return;
      }
    }
    checkpoint_cv_.notify_one();
  }

  // The number of WAL frames now in the database file (0 when the checkpoint did not run).
  static int checkpoint(Db& db, const char* who) {
    int frames = 0, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(db.raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
      spdlog::warn("store: checkpoint ({}) failed: {}", who, sqlite3_errstr(rc));
    return rc == SQLITE_OK ? std::max(copied, 0) : 0;
  }

  void checkpointer_loop() {
    if (!wait_migrated()) return;
    std::unique_ptr<Db> db;
    std::unique_ptr<FileSync> db_file;  // the database file's own descriptor, for sync()
    for (;;) {
      int copied = 0;
      {
        std::unique_lock lock(checkpoint_mutex_);
        checkpoint_cv_.wait(lock, [this] { return checkpoint_wanted_ || checkpoint_closing_; });
        if (checkpoint_closing_) return;
        checkpoint_wanted_ = false;
        checkpoint_running_ = true;
      }
      try {
        if (!db) {
          db = std::make_unique<Db>(options_.path, false);
          db->exec("PRAGMA journal_mode=WAL");  // opens the WAL: until then a checkpoint does nothing
        }
        copied = checkpoint(*db, "background");
        // SQLite syncs the database file only when a checkpoint reached the end of the WAL, which a
        // background pass seldom does (commits go on meanwhile); the pages it copied would then all
        // be synced by the writer's last pass, while commits wait. Synced here, that pass syncs
        // only its own.
        if (!db_file) {
          if (const int fd = ::open(options_.path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0)
            db_file = std::make_unique<FileSync>(fd);
        }
        if (copied > 0 && db_file) sync_or_stop(*db_file, "database file");
      } catch (const std::exception& e) {
        spdlog::warn("store: checkpoint connection: {}", e.what());
        db.reset();
      }
      std::lock_guard lock(checkpoint_mutex_);
      backfilled_ = copied;
      checkpoint_running_ = false;
    }
  }

  // Closed before the schema was there: whatever was queued fails.
  static void fail_queued(JobQueue& queue) {
    std::vector<Job> rest;
    while (queue.take(rest, 1024)) {
      for (auto& job : rest) job.finish(std::make_exception_ptr(StoreUnavailable("store closed")));
      rest.clear();
    }
  }

  void reader_loop() {
    if (!wait_migrated()) return fail_queued(reads_);
    std::unique_ptr<Db> db;
    std::vector<Job> batch;
    for (;;) {
      batch.clear();
      if (!reads_.take(batch, 16)) break;
      for (auto& job : batch) {
        std::exception_ptr error;
        try {
          if (!db) db = open_reader();
          job.run(*db);
        } catch (const SqliteError& e) {
          error = std::make_exception_ptr(StoreUnavailable(e.what()));
          db.reset();
        } catch (...) {
          error = std::current_exception();
        }
        durable_.when(visible_.load(), [job = std::move(job), error] { job.finish(error); });
      }
    }
  }

  template <class T, class Fn>
  asio::awaitable<T> submit(JobQueue& queue, Fn fn) {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, T)>(
        [&queue, fn = std::move(fn)](auto handler) mutable {
          using H = decltype(handler);
          auto h = std::make_shared<H>(std::move(handler));
          auto slot = std::make_shared<std::optional<T>>();
          queue.push(Job{
              [slot, fn = std::move(fn)](Db& db) mutable { slot->emplace(fn(db)); },
              [slot, h](std::exception_ptr e) {
                auto ex = asio::get_associated_executor(*h);
                asio::post(ex, [h, slot, e]() mutable {
                  if (e || !*slot)
                    (*h)(e ? e : std::make_exception_ptr(StoreUnavailable("no result")), T{});
                  else
                    (*h)(nullptr, std::move(**slot));
                });
              }});
        },
        asio::use_awaitable);
  }

  static asio::awaitable<void> discard(asio::awaitable<Unit> a) { co_await std::move(a); }
  static asio::awaitable<bool> answer(bool value) { co_return value; }

  // Plain functions, not coroutines: GCC 12 destroys a lambda passed by value to a coroutine
  // twice (the callers pass their job lambdas as temporaries), which freed captured strings twice.
  template <class T, class Fn>
  asio::awaitable<T> write(Fn fn) {
    return submit<T>(writes_, std::move(fn));
  }
  template <class T, class Fn>
  asio::awaitable<T> read(Fn fn) {
    return submit<T>(reads_, std::move(fn));
  }

  // A lookup by key runs at once on the calling thread, on a read-only connection taken from a
  // pool (in WAL mode a reader never waits for the writer): handing a query that takes a few
  // microseconds to a reader thread and back costs more than the query. Until the schema is there
  // it queues like any read.
  template <class T, class Fn>
  asio::awaitable<T> lookup(Fn fn) {
    if (!migrated_) return read<T>(std::move(fn));
    std::unique_ptr<Db> db;
    {
      std::lock_guard lock(lookup_mutex_);
      if (!lookup_pool_.empty()) {
        db = std::move(lookup_pool_.back());
        lookup_pool_.pop_back();
      }
    }
    try {
      if (!db) db = open_reader();
      auto result = fn(*db);
      const auto seen = visible_.load();  // after the query: covers every commit it could see
      {
        std::lock_guard lock(lookup_mutex_);
        lookup_pool_.push_back(std::move(db));
      }
      if (durable_.reached(seen)) return ready<T>(std::move(result));
      return when_durable<T>(seen, std::move(result));
    } catch (const SqliteError& e) {
      return failed<T>(std::make_exception_ptr(StoreUnavailable(e.what())));  // the connection is dropped
    } catch (...) {
      return failed<T>(std::current_exception());
    }
  }
  template <class T>
  static asio::awaitable<T> ready(T value) {
    co_return value;
  }
  // value, once commit seq is on disk.
  template <class T>
  asio::awaitable<T> when_durable(std::uint64_t seq, T value) {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, T)>(
        [this, seq, value = std::move(value)](auto handler) mutable {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          auto v = std::make_shared<T>(std::move(value));
          durable_.when(seq, [h, v] {
            asio::post(asio::get_associated_executor(*h), [h, v] { (*h)(nullptr, std::move(*v)); });
          });
        },
        asio::use_awaitable);
  }
  template <class T>
  static asio::awaitable<T> failed(std::exception_ptr e) {
    std::rethrow_exception(e);
    co_return T{};
  }

  std::unique_ptr<Db> open_reader() {
    auto db = std::make_unique<Db>(options_.path, true);
    db->exec(kReaderPragmas);
    return db;
  }

  SqliteOptions options_;
  const std::string instance_id_ = new_id("ins_");
  const std::int64_t started_at_ = now_ms();
  JobQueue writes_;
  JobQueue reads_;
  Queue<Synced> syncs_;  // writer -> syncer
  std::atomic<std::uint64_t> visible_{0};  // the last commit readers may see (writer counts)
  Durable durable_;                        // the last commit on disk (syncer advances)
  std::thread writer_;
  std::thread syncer_;
  std::vector<std::thread> readers_;
  std::mutex lookup_mutex_;
  std::vector<std::unique_ptr<Db>> lookup_pool_;  // idle connections of lookup()
  std::atomic<bool> migrated_{false};
  bool closing_ = false;
  std::mutex migrated_mutex_;
  std::condition_variable migrated_cv_;
  std::thread checkpointer_;
  int wal_frames_ = 0;  // the WAL's size after the last commit (writer thread only)
  std::uint64_t wal_restarts_ = 0;  // times a commit wrote the WAL from its start (writer thread only)
  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_cv_;
  int backfilled_ = 0;  // WAL frames the last checkpoint left in the database file
  int left_before_ = INT_MAX;  // frames left to copy when the last background pass started
  std::uint64_t checkpoint_restarts_ = 0;  // wal_restarts_ that backfilled_ and left_before_ are of
  bool checkpoint_wanted_ = false;
  bool checkpoint_running_ = false;
  bool checkpoint_closing_ = false;
};

}  // namespace

std::unique_ptr<Store> open_sqlite_store(SqliteOptions options) {
  return std::make_unique<SqliteStore>(std::move(options));
}

}  // namespace paymux::store::sqlite

