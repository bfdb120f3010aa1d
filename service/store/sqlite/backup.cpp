#include "service/store/sqlite/backup.hpp"

#include "service/store/sqlite/db.hpp"

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

namespace paymux::store::sqlite {

BackupResult backup_database(const std::string& source, const std::string& target) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(source, ec)) throw std::runtime_error("no database at " + source);
  const std::string partial = target + ".partial";
  fs::remove(partial, ec);

  BackupResult result;
  {
    Db from(source, true);
    Db to(partial, false);
    sqlite3_backup* b = sqlite3_backup_init(to.raw(), "main", from.raw(), "main");
    if (!b) throw std::runtime_error(std::string("backup cannot start: ") + sqlite3_errmsg(to.raw()));
    int rc = SQLITE_OK;
    // All pages in one step: one read snapshot of the source (in WAL mode writers go on meanwhile).
    for (int busy = 0; busy < 100; ++busy) {
      rc = sqlite3_backup_step(b, -1);
      if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    result.pages = sqlite3_backup_pagecount(b);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
      fs::remove(partial, ec);
      throw std::runtime_error(std::string("backup failed: ") + sqlite3_errstr(rc));
    }
    bool ok = false;
    {
      auto check = to.prepare("PRAGMA quick_check");
      ok = check.step() && check.text(0) == "ok";
    }
    if (!ok) {
      fs::remove(partial, ec);
      throw std::runtime_error("backup copy failed its integrity check");
    }
    // A self-contained file: the copy is left in rollback-journal mode with no -wal beside it.
    to.exec("PRAGMA journal_mode=DELETE");
  }
  fs::rename(partial, target);
  result.bytes = static_cast<std::int64_t>(fs::file_size(target, ec));
  return result;
}

}  // namespace paymux::store::sqlite
