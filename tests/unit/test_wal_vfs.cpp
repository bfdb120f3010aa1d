// The batched-WAL VFS (service/store/sqlite/wal_vfs.hpp) and the SQLite store's checkpoints: every
// commit is in the files when COMMIT returns (a copy of the files taken then, as a crash would leave
// them, holds it), pages SQLite writes twice in one transaction come out right, under steady
// writes the WAL starts over instead of growing, WAL syncs are deferred only where SQLite does not
// rely on them, and the store hands out nothing of a commit before its deferred sync.
#include "service/core/clock.hpp"
#include "service/core/ids.hpp"
#include "service/store/sqlite/db.hpp"
#include "service/store/sqlite/sqlite_store.hpp"
#include "service/store/sqlite/wal_vfs.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

using namespace paymux;
using namespace paymux::store;
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  auto dir = fs::temp_directory_path() / ("paymux-wal-" + new_id(""));
  fs::create_directories(dir);
  return dir;
}

std::int64_t scalar(sqlite::Db& db, const char* sql) {
  auto s = db.prepare(sql);
  REQUIRE(s.step());
  return s.int64(0);
}

std::string integrity(sqlite::Db& db) {
  auto s = db.prepare("PRAGMA integrity_check");
  REQUIRE(s.step());
  return s.text(0);
}

// What a crash right now would leave: the database and its WAL copied aside (no shared-memory
// index: opening the copy rebuilds it from the WAL's checksummed frames), opened by a plain
// connection.
struct Crashed {
  sqlite::Db db;
  explicit Crashed(const fs::path& dir, const std::string& name) : db(copy(dir, name), false) {}
  static std::string copy(const fs::path& dir, const std::string& name) {
    const auto to = dir / ("crash-" + name);
    fs::create_directories(to);
    fs::copy_file(dir / "test.db", to / "test.db");
    if (fs::exists(dir / "test.db-wal")) fs::copy_file(dir / "test.db-wal", to / "test.db-wal");
    return (to / "test.db").string();
  }
};

// A connection like the store's writer: the batched-WAL VFS, synchronous=FULL, 2 KiB pages, and no
// automatic checkpoint (so the WAL holds everything written).
std::unique_ptr<sqlite::Db> writer(const fs::path& dir) {
  auto db = std::make_unique<sqlite::Db>((dir / "test.db").string(), false, sqlite::batched_wal_vfs());
  db->exec("PRAGMA page_size=2048; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0");
  db->exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
  return db;
}

}  // namespace

TEST_CASE("batched WAL: each commit is in the files when COMMIT returns", "[sqlite][wal]") {
  const auto dir = temp_dir();
  auto db = writer(dir);
  int rows = 0;
  std::int64_t bytes = 0;
  struct Step {
    const char* name;
    int count;
    std::size_t size;
  };
  // One row; a few hundred (several 64 KiB writes); 6 MB in one transaction (more than the VFS
  // holds at once); then small ones again.
  for (const Step& step : {Step{"one", 1, 10}, Step{"hundreds", 300, 900}, Step{"large", 3000, 2000},
                           Step{"after", 5, 100}}) {
    INFO(step.name);
    db->exec("BEGIN IMMEDIATE");
    for (int i = 0; i < step.count; ++i) {
      auto s = db->prepare("INSERT INTO t (id, v) VALUES (?1, ?2)");
      s.bind(1, rows + i + 1).bind(2, std::string(step.size, static_cast<char>('a' + i % 26)));
      s.exec();
    }
    db->exec("COMMIT");
    rows += step.count;
    bytes += static_cast<std::int64_t>(step.count) * static_cast<std::int64_t>(step.size);

    Crashed copy(dir, step.name);
    CHECK(scalar(copy.db, "SELECT COUNT(*) FROM t") == rows);
    CHECK(scalar(copy.db, "SELECT SUM(LENGTH(v)) FROM t") == bytes);
    CHECK(integrity(copy.db) == "ok");
  }
  // A plain connection on the live files sees the same.
  sqlite::Db reader((dir / "test.db").string(), true);
  CHECK(scalar(reader, "SELECT COUNT(*) FROM t") == rows);
  fs::remove_all(dir);
}

TEST_CASE("batched WAL: pages written twice in one transaction come out right", "[sqlite][wal]") {
  const auto dir = temp_dir();
  auto db = writer(dir);
  // A tiny page cache spills pages to the WAL in the middle of the transaction; the updates then
  // write the same pages again, which SQLite does over the frames it appended earlier.
  db->exec("PRAGMA cache_size=10");
  db->exec("BEGIN IMMEDIATE");
  for (int i = 1; i <= 2000; ++i) {
    auto s = db->prepare("INSERT INTO t (id, v) VALUES (?1, ?2)");
    s.bind(1, i).bind(2, std::string(500, 'x'));
    s.exec();
  }
  db->exec("UPDATE t SET v = printf('%.*c', 400 + id % 7, 'y')");
  db->exec("COMMIT");
  const std::int64_t expected = [] {
    std::int64_t n = 0;
    for (int i = 1; i <= 2000; ++i) n += 400 + i % 7;
    return n;
  }();
  {
    Crashed copy(dir, "rewritten");
    CHECK(scalar(copy.db, "SELECT COUNT(*) FROM t WHERE v GLOB 'y*'") == 2000);
    CHECK(scalar(copy.db, "SELECT SUM(LENGTH(v)) FROM t") == expected);
    CHECK(integrity(copy.db) == "ok");
  }
  sqlite::Db reader((dir / "test.db").string(), true);
  CHECK(scalar(reader, "SELECT SUM(LENGTH(v)) FROM t") == expected);
  CHECK(integrity(*db) == "ok");
  fs::remove_all(dir);
}

TEST_CASE("the SQLite store's WAL starts over under steady writes", "[sqlite][wal]") {
  const auto dir = temp_dir();
  const auto path = (dir / "test.db").string();
  sqlite::SqliteOptions o;
  o.path = path;
  o.checkpoint_frames = 100;  // ~200 KB instead of ~4 MB, so that a few thousand payments suffice
  o.checkpoint_tail_frames = 25;  // so that background passes run, not the writer's alone
  auto store = sqlite::open_sqlite_store(o);
  asio::io_context ioc;
  constexpr int n = 3000, in_flight = 64;
  int created = 0, next = 0;
  std::uintmax_t largest_wal = 0;
  // in_flight workers, each creating payments one after another: steady load, batches of many.
  for (int w = 0; w < in_flight; ++w)
    asio::co_spawn(ioc, [&]() -> asio::awaitable<void> {
      while (next < n) {
        const int i = next++;
        PaymentRecord p;
        p.id = new_id(kPaymentPrefix);
        p.merchant = "acme";
        p.reference = "REF-" + std::to_string(i);
        p.connector = "c1";
        p.provider = "glocash";
        p.amount = 1999;
        p.currency = "USD";
        p.request_json = "{\"description\":\"" + std::string(600, 'r') + "\"}";  // ~ a real request
        p.created_at = p.updated_at = now_ms();
        auto r = co_await store->create_payment(p, std::nullopt);
        if (r.outcome == CreatePaymentOutcome::created) ++created;
        std::error_code ec;
        largest_wal = std::max(largest_wal, fs::file_size(path + "-wal", ec));
      }
    }, asio::detached);
  ioc.run();
  CHECK(created == n);
  const auto db_size = fs::file_size(path);
  INFO("database " << db_size << " bytes, largest WAL " << largest_wal << " bytes");
  // The payments are in the database file, so checkpoints ran, and the WAL stayed a fraction of
  // what went through it: four times the threshold (~830 KB) plus the batch being written.
  CHECK(db_size > 3u * 1024 * 1024);
  CHECK(largest_wal < 2u * 1024 * 1024);
  store.reset();
  sqlite::Db reader(path, true);
  CHECK(scalar(reader, "SELECT COUNT(*) FROM payments") == n);
  CHECK(integrity(reader) == "ok");
  fs::remove_all(dir);
}

TEST_CASE("batched WAL: a deferred sync is left to the committing thread, except where SQLite orders writes",
          "[sqlite][wal]") {
  const auto dir = temp_dir();
  auto db = writer(dir);  // CREATE TABLE: the WAL's first sync, done at once
  auto insert = [&](int id) {
    auto s = db->prepare("INSERT INTO t (id, v) VALUES (?1, 'x')");
    s.bind(1, id);
    s.exec();
  };
  auto syncs = sqlite::wal_syncs_at_once();
  auto synced_at_once = [&] {
    const auto before = std::exchange(syncs, sqlite::wal_syncs_at_once());
    return syncs - before;
  };
  {
    sqlite::DeferWalSyncs defer;
    insert(1);
    CHECK(synced_at_once() == 0);
    auto owed = sqlite::DeferWalSyncs::owed();
    REQUIRE(owed);
    CHECK(owed->sync() == 0);
    CHECK_FALSE(sqlite::DeferWalSyncs::owed());  // taken
  }
  insert(2);  // outside: synced at once, nothing owed
  CHECK(synced_at_once() == 1);
  CHECK_FALSE(sqlite::DeferWalSyncs::owed());
  // Everything copied into the database file: the next commit writes the WAL from its start, with a
  // new header, which SQLite syncs before it writes the frames that follow it.
  db->exec("PRAGMA wal_checkpoint(RESTART)");
  synced_at_once();
  {
    sqlite::DeferWalSyncs defer;
    insert(3);
    CHECK(synced_at_once() == 1);  // the header's, at once; the commit's, deferred
    CHECK(sqlite::DeferWalSyncs::owed());
    insert(4);
    CHECK(synced_at_once() == 0);
    CHECK(sqlite::DeferWalSyncs::owed());
  }
  // Deferred or not, the commits are in the files, and other connections see them.
  Crashed copy(dir, "deferred");
  CHECK(scalar(copy.db, "SELECT COUNT(*) FROM t") == 4);
  fs::remove_all(dir);
}

TEST_CASE("the SQLite store hands out nothing before its commit is on disk", "[sqlite][wal]") {
  const auto dir = temp_dir();
  const auto path = (dir / "test.db").string();
  std::mutex m;
  std::condition_variable cv;
  bool hold = false, held = false;
  sqlite::SqliteOptions o;
  o.path = path;
  o.before_sync = [&] {
    std::unique_lock lock(m);
    held = hold;
    cv.notify_all();
    cv.wait(lock, [&] { return !hold; });
    held = false;
  };
  auto store = sqlite::open_sqlite_store(o);
  auto payment = [](const std::string& ref) {
    PaymentRecord p;
    p.id = new_id(kPaymentPrefix);
    p.merchant = "acme";
    p.reference = ref;
    p.connector = "c1";
    p.provider = "glocash";
    p.amount = 1999;
    p.currency = "USD";
    p.request_json = "{}";
    p.created_at = p.updated_at = now_ms();
    return p;
  };
  asio::io_context ioc;
  auto run = [&](auto f) {
    ioc.restart();
    auto fut = asio::co_spawn(ioc, f(), asio::use_future);
    ioc.run();
    return fut.get();
  };
  const auto before = payment("REF-before");
  run([&] { return store->create_payment(before, std::nullopt); });

  {
    std::lock_guard lock(m);
    hold = true;
  }
  const auto p = payment("REF-held");
  auto created = asio::co_spawn(ioc, store->create_payment(p, std::nullopt), asio::use_future);
  ioc.restart();
  std::thread loop([&] {
    auto work = asio::make_work_guard(ioc);
    ioc.run_for(std::chrono::seconds(10));
  });
  {
    std::unique_lock lock(m);
    REQUIRE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return held; }));
  }
  // Committed (another connection sees the row) but not synced: neither the write nor a read that
  // could have seen it completes.
  sqlite::Db reader(path, true);
  CHECK(scalar(reader, ("SELECT COUNT(*) FROM payments WHERE id = '" + p.id + "'").c_str()) == 1);
  auto read = asio::co_spawn(ioc, store->get_payment(p.id), asio::use_future);  // at once, on a pooled connection
  PaymentQuery q;
  q.merchant = "acme";
  auto listed = asio::co_spawn(ioc, store->list_payments(q), asio::use_future);  // on a reader thread
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(created.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
  CHECK(read.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
  CHECK(listed.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
  {
    std::lock_guard lock(m);
    hold = false;
  }
  cv.notify_all();
  CHECK(created.get().outcome == CreatePaymentOutcome::created);
  const auto got = read.get();
  REQUIRE(got.has_value());
  CHECK(got->reference == "REF-held");
  CHECK(listed.get().size() == 2);
  ioc.stop();
  loop.join();
  store.reset();
  fs::remove_all(dir);
}
