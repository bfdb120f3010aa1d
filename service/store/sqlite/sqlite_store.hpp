#pragma once
// The embedded store. WAL with synchronous=FULL (an acknowledged write survives a crash), versioned
// migrations at open, one writer thread that group-commits whatever queued while the previous
// commit ran (each operation in its own savepoint, so one failing operation does not undo the
// others), and reader threads with their own connections. No SQLite call runs on the event loop:
// callers await completions that are posted back to their executor after the commit.
#include "service/store/store.hpp"

#include <memory>
#include <string>

namespace paymux::store::sqlite {

struct SqliteOptions {
  std::string path;
  unsigned reader_threads = 2;
  std::size_t max_batch = 1024;
};

std::unique_ptr<Store> open_sqlite_store(SqliteOptions options);

}  // namespace paymux::store::sqlite
