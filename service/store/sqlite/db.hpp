#pragma once
// A thin RAII layer over one sqlite3 connection: cached prepared statements, typed binding and
// reading, savepoints. Used only on the store's own threads.
#include "service/store/sqlite/packed_text.hpp"

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

namespace paymux::store::sqlite {

struct SqliteError : std::runtime_error {
  int code;
  SqliteError(int c, const std::string& what) : std::runtime_error(what), code(c) {}
};

class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  ~Stmt() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, std::string_view v) {
    check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Stmt& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  // A packed text goes in as a BLOB, which text() unpacks.
  Stmt& bind(int i, const StoredText& v) {
    if (!v.packed) return bind(i, std::string_view(v.bytes));
    check(sqlite3_bind_blob(s_, i, v.bytes.data(), static_cast<int>(v.bytes.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(s_, i, v));
    return *this;
  }
  Stmt& bind(int i, int v) { return bind(i, static_cast<std::int64_t>(v)); }
  Stmt& bind(int i, unsigned v) { return bind(i, static_cast<std::int64_t>(v)); }
  Stmt& bind_null(int i) {
    check(sqlite3_bind_null(s_, i));
    return *this;
  }

  // true: a row is available; false: done. Throws on error (constraint violations included).
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw SqliteError(rc, std::string("sqlite step: ") + sqlite3_errmsg(db_));
  }
  // Runs a statement that returns no rows.
  void exec() {
    while (step()) {
    }
  }

  // The column's text. The store writes no BLOB but packed texts (see packed_text.hpp): a BLOB is
  // unpacked, and one that is not a packed text is an error.
  std::string text(int col) const {
    if (sqlite3_column_type(s_, col) == SQLITE_BLOB) {
      auto b = static_cast<const char*>(sqlite3_column_blob(s_, col));
      return unpack_text(std::string_view(b, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))));
    }
    auto p = sqlite3_column_text(s_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(s_, col)))
             : std::string();
  }
  std::int64_t int64(int col) const { return sqlite3_column_int64(s_, col); }
  bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) throw SqliteError(rc, std::string("sqlite bind: ") + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  sqlite3_stmt* s_;
};

class Db {
 public:
  // vfs: a registered VFS's name, or nullptr for the default one.
  Db(const std::string& path, bool read_only, const char* vfs = nullptr);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void exec(const char* sql);
  // A cached prepared statement for this literal SQL text (keyed by the pointer).
  Stmt prepare(const char* sql);
  std::int64_t changes() const { return sqlite3_changes64(db_); }
  sqlite3* raw() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::map<const char*, sqlite3_stmt*> cache_;
};

// Constraint violations carry extended codes; this tells a UNIQUE violation apart.
inline bool is_unique_violation(const SqliteError& e) {
  return e.code == SQLITE_CONSTRAINT || (e.code & 0xff) == SQLITE_CONSTRAINT;
}

}  // namespace paymux::store::sqlite
