#pragma once
// The embedded store. WAL with synchronous=FULL (an acknowledged write survives a crash), versioned
// migrations at open, one writer thread that group-commits whatever queued while the previous
// commit ran (each operation in its own savepoint, so one failing operation does not undo the
// others), and reader threads with their own connections. Writes and queries do not run on the
// event loop: callers await completions that are posted back to their executor once the commit is
// on disk. The writer does not wait for the disk itself: a syncer thread syncs each commit while
// the writer commits the next batch, and a read that saw a commit not yet synced waits for it.
// Lookups by key are the exception: they run at once on the caller's thread, on pooled read-only
// connections (a WAL reader never waits for the writer; the handoff would cost more than the query).
#include "service/store/store.hpp"

#include <functional>
#include <memory>
#include <string>

namespace paymux::store::sqlite {

struct SqliteOptions {
  std::string path;
  unsigned reader_threads = 2;
  std::size_t max_batch = 1024;
  // WAL size (in pages) at which a background checkpoint starts; see SqliteStore::after_commit.
  // ~2 MB of 2 KiB pages. The writer's own share of a checkpoint (up to a quarter of this) pauses
  // commits: at c48 in bench/, 1,000 kept p99 near 18 ms, 2,000 near 22 ms, 6,000 near 28 ms.
  int checkpoint_frames = 1000;
  // Frames left over that the writer copies itself (see SqliteStore::after_commit); more, and the
  // background makes another pass first. A pass leaves what commits added while it ran, ~150-250
  // frames at c64 in bench/; another would leave about as many (it takes two syncs however little
  // it copies), so the writer takes those.
  int checkpoint_tail_frames = 256;
  // false: migrations run in open_sqlite_store, which throws when they fail. true: the writer thread
  // runs them (retrying while the database is locked or unreachable), operations wait for them and
  // ping() answers false meanwhile, so that the service can listen and report "not ready".
  bool background_migrations = false;
  // Tests: called on the syncer's thread before each sync of committed batches.
  std::function<void()> before_sync;
};

std::unique_ptr<Store> open_sqlite_store(SqliteOptions options);

}  // namespace paymux::store::sqlite
