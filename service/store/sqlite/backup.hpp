#pragma once
// Online backup of the SQLite store (sqlite3_backup_*): a consistent copy of a live database, taken
// while the service keeps writing (WAL: the copy reads one snapshot and does not block writers).
#include <cstdint>
#include <string>

namespace paymux::store::sqlite {

struct BackupResult {
  std::int64_t pages = 0;
  std::int64_t bytes = 0;
};

// Copies the database at `source` into `target` (written as target + ".partial", checked with
// PRAGMA quick_check, then renamed over `target`). Throws std::runtime_error on failure.
BackupResult backup_database(const std::string& source, const std::string& target);

}  // namespace paymux::store::sqlite
