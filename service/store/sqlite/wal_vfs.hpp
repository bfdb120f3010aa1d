#pragma once
// A SQLite VFS over the default one that hands a connection's WAL writes to the OS in a few large
// writes per commit (64 KiB each) instead of two per page (a frame header, then the page).
//
// SQLite appends a commit's frames to the WAL and then syncs it (synchronous=FULL); only after the
// sync does it publish the new frames in the shared WAL index, where other connections look for
// them. This VFS keeps the appended bytes in memory until the sync (or a read, a size query, a
// truncation or close of the WAL) and writes them then, so the file holds the same bytes at every
// point another connection or a crash can observe. Files other than WALs pass straight through.
//
// Only for connections with synchronous=FULL: with a weaker setting SQLite publishes frames
// without a sync, and other connections would look for bytes still held here.
//
// A thread may also take over its commits' WAL syncs (DeferWalSyncs): a commit then writes its
// bytes out and publishes its frames without waiting for the disk, and the thread syncs later,
// while it goes on with other work. Until that sync, other connections see a commit a crash could
// still take back: whoever defers must hold back everything that depends on it (the SQLite store
// does, see its writer). Checkpoints are unaffected: SQLite syncs the WAL before it copies frames
// into the database file, and those syncs, like all outside a DeferWalSyncs, happen at once.
#include <cstdint>
#include <memory>

namespace paymux::store::sqlite {

// The VFS's name, registered (not as the default) on the first call.
const char* batched_wal_vfs();

// fdatasync of one file through a descriptor of its own (what it writes out is the file's, whichever
// descriptor wrote): a WAL's sync that a commit deferred, or a database file's.
class FileSync {
 public:
  explicit FileSync(int fd) : fd_(fd) {}
  ~FileSync();
  FileSync(const FileSync&) = delete;
  FileSync& operator=(const FileSync&) = delete;
  // fdatasync: 0, or the errno of the failure. After a failure the bytes may be lost whatever a
  // later sync says: do not retry, treat the commits as lost.
  int sync() const noexcept;

 private:
  int fd_;
};

// While one lives, WAL syncs that commits on this thread ask the batched-WAL VFS for are deferred,
// except a file's first sync and the sync of a new WAL header (SQLite relies on those ordering
// later writes). owed() takes the WAL to sync since the last call: null when nothing was deferred.
class DeferWalSyncs {
 public:
  DeferWalSyncs();
  ~DeferWalSyncs();
  DeferWalSyncs(const DeferWalSyncs&) = delete;
  DeferWalSyncs& operator=(const DeferWalSyncs&) = delete;
  static std::shared_ptr<FileSync> owed();
};

// WAL syncs this VFS has done at once, on every thread (not those deferred). For tests.
std::uint64_t wal_syncs_at_once();

}  // namespace paymux::store::sqlite
