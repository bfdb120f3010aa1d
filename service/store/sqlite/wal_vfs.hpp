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
namespace paymux::store::sqlite {

// The VFS's name, registered (not as the default) on the first call.
const char* batched_wal_vfs();

}  // namespace paymux::store::sqlite
