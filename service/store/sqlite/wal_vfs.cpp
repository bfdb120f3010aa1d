#include "service/store/sqlite/wal_vfs.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

namespace paymux::store::sqlite {
namespace {

// Bytes held at most (a larger commit is handed over as it goes), and the size of each write.
constexpr std::size_t kMaxPending = 4u << 20;
constexpr std::size_t kMaxWrite = 64u << 10;

sqlite3_vfs* g_real = nullptr;

// Set by DeferWalSyncs on the committing thread; `owed` is the WAL whose sync was left to it.
thread_local bool t_defer = false;
thread_local std::shared_ptr<FileSync> t_owed;
std::atomic<std::uint64_t> g_wal_syncs{0};

struct File {
  sqlite3_file base;  // first: SQLite sees a File as a sqlite3_file
  sqlite3_file* real;
  bool wal;
  sqlite3_int64 start = 0;     // file offset of pending[0]
  std::vector<char> pending;   // bytes written to the WAL and not yet handed to the OS
  std::shared_ptr<FileSync> deferred_sync;  // WAL only; null when its descriptor could not be opened
  bool synced = false;         // a sync of this file has been done here since it was opened
  bool header_written = false; // the WAL's header was written since the last sync done here
};

constexpr std::size_t kRealOffset = (sizeof(File) + 15) & ~std::size_t{15};

File* self(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
const sqlite3_io_methods* io(File* f) { return f->real->pMethods; }

int flush(File* f) {
  int rc = SQLITE_OK;
  // In pieces: the default VFS writes at most 128 KiB per call.
  for (std::size_t done = 0; done < f->pending.size() && rc == SQLITE_OK; done += kMaxWrite) {
    const auto n = std::min(kMaxWrite, f->pending.size() - done);
    rc = io(f)->xWrite(f->real, f->pending.data() + done, static_cast<int>(n),
                       f->start + static_cast<sqlite3_int64>(done));
  }
  // On failure the bytes are dropped: the sync that asked for them fails, so does the commit, and
  // SQLite writes the frames again in a later transaction.
  f->pending.clear();
  return rc;
}

int x_close(sqlite3_file* file) {
  File* f = self(file);
  int rc = flush(f);
  int rc2 = io(f)->xClose(f->real);
  f->~File();
  return rc != SQLITE_OK ? rc : rc2;
}

int x_read(sqlite3_file* file, void* buf, int amt, sqlite3_int64 off) {
  File* f = self(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return io(f)->xRead(f->real, buf, amt, off);
}

int x_write(sqlite3_file* file, const void* buf, int amt, sqlite3_int64 off) {
  File* f = self(file);
  if (!f->wal) return io(f)->xWrite(f->real, buf, amt, off);
  if (off == 0) f->header_written = true;  // the WAL starts over (see x_sync)
  const auto n = static_cast<std::size_t>(amt);
  const auto* bytes = static_cast<const char*>(buf);
  const sqlite3_int64 end = f->start + static_cast<sqlite3_int64>(f->pending.size());
  if (!f->pending.empty() && off >= f->start && off + amt <= end) {
    // A frame of this transaction written again (SQLite rewrites a page it already appended).
    std::memcpy(f->pending.data() + (off - f->start), bytes, n);
    return SQLITE_OK;
  }
  if (!f->pending.empty() && off == end && f->pending.size() + n <= kMaxPending) {
    f->pending.insert(f->pending.end(), bytes, bytes + n);
    return SQLITE_OK;
  }
  // Anywhere else: what is held goes first. (One call from SQLite is a frame header or a page, far
  // below kMaxPending; flush() writes in pieces whatever the size.)
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  f->start = off;
  f->pending.assign(bytes, bytes + n);
  return SQLITE_OK;
}

int x_truncate(sqlite3_file* file, sqlite3_int64 size) {
  File* f = self(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return io(f)->xTruncate(f->real, size);
}

int x_sync(sqlite3_file* file, int flags) {
  File* f = self(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  // Deferred: the bytes are with the OS (so other connections can read the frames SQLite is about
  // to publish) and the committing thread syncs them later. Done here at once: the first sync of a
  // file (SQLite's also makes its directory entry durable) and the sync after a new WAL header,
  // which SQLite needs on disk before any frame that follows it.
  if (f->wal && t_defer && f->deferred_sync && f->synced && !f->header_written) {
    t_owed = f->deferred_sync;
    return SQLITE_OK;
  }
  int rc = io(f)->xSync(f->real, flags);
  if (f->wal) ++g_wal_syncs;
  if (rc == SQLITE_OK) {
    f->synced = true;
    f->header_written = false;
  }
  return rc;
}

int x_file_size(sqlite3_file* file, sqlite3_int64* size) {
  File* f = self(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return io(f)->xFileSize(f->real, size);
}

int x_file_control(sqlite3_file* file, int op, void* arg) {
  File* f = self(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return io(f)->xFileControl(f->real, op, arg);
}

// The rest pass straight through.
int x_lock(sqlite3_file* f, int l) { return io(self(f))->xLock(self(f)->real, l); }
int x_unlock(sqlite3_file* f, int l) { return io(self(f))->xUnlock(self(f)->real, l); }
int x_check_reserved(sqlite3_file* f, int* out) { return io(self(f))->xCheckReservedLock(self(f)->real, out); }
int x_sector_size(sqlite3_file* f) { return io(self(f))->xSectorSize(self(f)->real); }
int x_device(sqlite3_file* f) { return io(self(f))->xDeviceCharacteristics(self(f)->real); }
int x_shm_map(sqlite3_file* f, int pg, int sz, int extend, void volatile** out) {
  return io(self(f))->xShmMap(self(f)->real, pg, sz, extend, out);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return io(self(f))->xShmLock(self(f)->real, offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) { io(self(f))->xShmBarrier(self(f)->real); }
int x_shm_unmap(sqlite3_file* f, int del) { return io(self(f))->xShmUnmap(self(f)->real, del); }
int x_fetch(sqlite3_file* f, sqlite3_int64 off, int amt, void** out) {
  return io(self(f))->xFetch(self(f)->real, off, amt, out);
}
int x_unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) { return io(self(f))->xUnfetch(self(f)->real, off, p); }

const sqlite3_io_methods kMethods = {
    3,           x_close,       x_read,     x_write,     x_truncate,   x_sync,        x_file_size,
    x_lock,      x_unlock,      x_check_reserved, x_file_control, x_sector_size, x_device,
    x_shm_map,   x_shm_lock,    x_shm_barrier,    x_shm_unmap,    x_fetch,       x_unfetch,
};

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  auto* f = new (file) File{};
  f->base.pMethods = nullptr;  // SQLite calls xClose only when pMethods is set
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kRealOffset);
  f->wal = (flags & SQLITE_OPEN_WAL) != 0;
  int rc = g_real->xOpen(g_real, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK || !f->real->pMethods || f->real->pMethods->iVersion < 3) {
    // A file whose methods are set is closed even when opening failed (SQLite's own rule).
    if (f->real->pMethods) f->real->pMethods->xClose(f->real);
    f->~File();
    return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
  }
  if (f->wal && name) {
    // A second descriptor of the same file: what fdatasync writes out is the file's, whichever
    // descriptor asks, and this one stays valid for as long as a deferred sync holds it.
    const int fd = ::open(name, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) f->deferred_sync = std::make_shared<FileSync>(fd);
  }
  f->base.pMethods = &kMethods;
  return SQLITE_OK;
}

sqlite3_vfs make_vfs() {
  g_real = sqlite3_vfs_find(nullptr);
  if (!g_real) throw std::runtime_error("sqlite: no default VFS");
  sqlite3_vfs v = *g_real;  // every other entry is the default VFS's own
  v.pNext = nullptr;
  v.szOsFile = static_cast<int>(kRealOffset) + g_real->szOsFile;
  v.zName = "paymux-batched-wal";
  v.xOpen = x_open;
  return v;
}

}  // namespace

FileSync::~FileSync() { ::close(fd_); }

int FileSync::sync() const noexcept {
  int rc;
  do rc = ::fdatasync(fd_);
  while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : errno;
}

DeferWalSyncs::DeferWalSyncs() {
  t_defer = true;
  t_owed.reset();
}

DeferWalSyncs::~DeferWalSyncs() {
  t_defer = false;
  t_owed.reset();
}

std::shared_ptr<FileSync> DeferWalSyncs::owed() { return std::exchange(t_owed, nullptr); }

std::uint64_t wal_syncs_at_once() { return g_wal_syncs.load(); }

const char* batched_wal_vfs() {
  static sqlite3_vfs vfs = make_vfs();
  static const int registered = sqlite3_vfs_register(&vfs, 0);
  if (registered != SQLITE_OK) throw std::runtime_error("sqlite: cannot register the batched WAL VFS");
  return vfs.zName;
}

}  // namespace paymux::store::sqlite
