// The batched-WAL VFS (service/store/sqlite/wal_vfs.hpp) and the SQLite store's checkpoints: every
// commit is in the files when COMMIT returns (a copy of the files taken then, as a crash would leave
// them, holds it), pages SQLite writes twice in one transaction come out right, and under steady
// writes the WAL starts over instead of growing.
#include "service/core/clock.hpp"
#include "service/core/ids.hpp"
#include "service/store/sqlite/db.hpp"
#include "service/store/sqlite/sqlite_store.hpp"
#include "service/store/sqlite/wal_vfs.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

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
