#include "service/store/sqlite/db.hpp"

namespace paymux::store::sqlite {
namespace {

// SQLite counts the memory it allocates by default, under one process-wide mutex taken on every
// allocation and free: the writer, the checkpointer and every lookup contended for it. Nothing
// reads those counts. Possible only before SQLite initializes, which the first open does.
void configure_sqlite_once() {
  static const int rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)rc;  // SQLITE_MISUSE when something in the process initialized SQLite first: counts stay on
}

}  // namespace

Db::Db(const std::string& path, bool read_only, const char* vfs) {
  configure_sqlite_once();
  int flags = (read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) |
              SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, vfs);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
    throw SqliteError(rc, "cannot open " + path + ": " + msg);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, 5000);
}

Db::~Db() {
  for (auto& [k, s] : cache_) sqlite3_finalize(s);
  if (db_) sqlite3_close(db_);
}

void Db::exec(const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw SqliteError(rc, "sqlite exec: " + msg);
  }
}

Stmt Db::prepare(const char* sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) throw SqliteError(rc, std::string("sqlite prepare: ") + sqlite3_errmsg(db_));
    it = cache_.emplace(sql, s).first;
  }
  return Stmt(db_, it->second);
}

}  // namespace paymux::store::sqlite
