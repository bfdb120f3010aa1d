#include "service/store/pg/conn.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <libpq-fe.h>

#include <cerrno>
#include <charconv>

#include <sys/socket.h>

namespace paymux::store::pg {

using namespace asio::experimental::awaitable_operators;

bool is_connection_failure(std::string_view s) {
  // 08: connection exception; 57P01-57P03: shutdown, crash, cannot connect now; 53: out of
  // resources (too many connections); 25006: a read-only (standby) server.
  return s.substr(0, 2) == "08" || s.substr(0, 4) == "57P0" || s.substr(0, 2) == "53" || s == "25006";
}

Result::Result(pg_result* r) : r_(r, PQclear) {}
int Result::rows() const { return r_ ? PQntuples(r_.get()) : 0; }
std::int64_t Result::affected() const {
  if (!r_) return 0;
  const char* n = PQcmdTuples(r_.get());
  std::int64_t v = 0;
  std::from_chars(n, n + std::char_traits<char>::length(n), v);
  return v;
}
std::string Result::text(int row, int col) const {
  return std::string(PQgetvalue(r_.get(), row, col), static_cast<std::size_t>(PQgetlength(r_.get(), row, col)));
}
std::int64_t Result::int64(int row, int col) const {
  const char* p = PQgetvalue(r_.get(), row, col);
  std::int64_t v = 0;
  std::from_chars(p, p + PQgetlength(r_.get(), row, col), v);
  return v;
}
bool Result::is_null(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }

Conn::Conn(asio::any_io_executor ex, std::uint64_t epoch) : ex_(std::move(ex)), epoch_(epoch) {}

Conn::~Conn() {
  if (socket_) socket_->release();  // libpq owns the descriptor
  if (conn_) PQfinish(conn_);
}

void Conn::fail(const std::string& what) {
  broken_ = true;
  std::string detail = conn_ ? PQerrorMessage(conn_) : "out of memory";
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
  throw StoreUnavailable("database: " + what + (detail.empty() ? "" : ": " + detail));
}

asio::awaitable<void> Conn::wait(bool write) {
  const int fd = PQsocket(conn_);
  if (fd < 0) fail("no socket");
  if (!socket_ || socket_->native_handle() != fd) {
    if (socket_) socket_->release();
    socket_ = std::make_unique<asio::posix::stream_descriptor>(ex_, fd);
  }
  asio::steady_timer timer(ex_, query_timeout_);
  auto which = write ? asio::posix::descriptor_base::wait_write : asio::posix::descriptor_base::wait_read;
  auto r = co_await (socket_->async_wait(which, asio::use_awaitable) || timer.async_wait(asio::use_awaitable));
  if (r.index() == 1) {
    broken_ = true;
    throw StoreUnavailable("database: no answer within " + std::to_string(query_timeout_.count()) + " ms");
  }
}

asio::awaitable<void> Conn::connect(const ConnOptions& o) {
  query_timeout_ = o.connect_timeout;  // the waits of the hand-shake
  conn_ = PQconnectStart(o.conninfo.c_str());
  if (!conn_ || PQstatus(conn_) == CONNECTION_BAD) fail("cannot connect");
  auto poll = PGRES_POLLING_WRITING;
  const auto deadline = std::chrono::steady_clock::now() + o.connect_timeout;
  while (poll != PGRES_POLLING_OK) {
    if (poll == PGRES_POLLING_FAILED) fail("cannot connect");
    if (std::chrono::steady_clock::now() >= deadline) fail("connect timed out");
    co_await wait(poll == PGRES_POLLING_WRITING);
    poll = PQconnectPoll(conn_);
  }
  if (PQsetnonblocking(conn_, 1) != 0) fail("cannot switch to non-blocking mode");
  // The server's notices ("relation ... already exists, skipping") are not the service's output.
  PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
  query_timeout_ = o.query_timeout;
}

bool Conn::usable() {
  if (broken_ || !conn_ || PQstatus(conn_) != CONNECTION_OK) return false;
  // A server that went away while the connection sat idle has said so and closed the socket:
  // reading what is there (its last words) and peeking for the end of the stream notices it
  // without a round trip.
  const int fd = PQsocket(conn_);
  char byte = 0;
  for (int round = 0; round < 2; ++round) {
    const auto n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return false;  // closed by the server
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (!PQconsumeInput(conn_) || PQstatus(conn_) != CONNECTION_OK || PQisBusy(conn_)) return false;
  }
  return true;
}

bool Conn::failed() const { return broken_ || !conn_ || PQstatus(conn_) != CONNECTION_OK; }

bool Conn::in_transaction() const { return conn_ && PQtransactionStatus(conn_) != PQTRANS_IDLE; }

asio::awaitable<void> Conn::flush() {
  for (;;) {
    const int r = PQflush(conn_);
    if (r == 0) co_return;
    if (r < 0) fail("send failed");
    co_await wait(true);
  }
}

asio::awaitable<Result> Conn::collect(const std::string& what) {
  Result last;
  std::optional<PgError> error;
  for (;;) {
    while (PQisBusy(conn_)) {
      co_await wait(false);
      if (!PQconsumeInput(conn_)) fail("connection lost");
    }
    PGresult* raw = PQgetResult(conn_);
    if (!raw) break;
    Result r(raw);
    if (PQresultStatus(raw) == PGRES_FATAL_ERROR) {
      const char* state = PQresultErrorField(raw, PG_DIAG_SQLSTATE);
      std::string message = PQresultErrorMessage(raw);
      while (!message.empty() && message.back() == '\n') message.pop_back();
      if (!error) error.emplace(state ? state : "", message);
    } else {
      last = std::move(r);
    }
  }
  if (PQstatus(conn_) != CONNECTION_OK) fail("connection lost");
  if (error) {
    if (is_connection_failure(error->sqlstate)) {
      broken_ = true;
      throw StoreUnavailable("database: " + std::string(error->what()));
    }
    throw PgError(error->sqlstate, std::string(error->what()) + " [" + what.substr(0, 80) + "]");
  }
  co_return last;
}

asio::awaitable<Result> Conn::query(const std::string& sql, const Params& params) {
  if (broken_) fail("connection broken");
  broken_ = true;  // until the answer is read: a query cut off midway leaves the connection unusable
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = "p" + std::to_string(prepared_.size() + 1);
    if (!PQsendPrepare(conn_, name.c_str(), sql.c_str(), static_cast<int>(params.size()), nullptr))
      fail("cannot send");
    co_await flush();
    broken_ = false;
    co_await collect(sql);
    broken_ = true;
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  std::vector<const char*> values(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) values[i] = params[i] ? params[i]->c_str() : nullptr;
  if (!PQsendQueryPrepared(conn_, it->second.c_str(), static_cast<int>(values.size()), values.data(), nullptr,
                           nullptr, 0))
    fail("cannot send");
  co_await flush();
  broken_ = false;
  co_return co_await collect(sql);
}

asio::awaitable<void> Conn::exec(const std::string& sql) {
  if (broken_) fail("connection broken");
  broken_ = true;
  if (!PQsendQuery(conn_, sql.c_str())) fail("cannot send");
  co_await flush();
  broken_ = false;
  co_await collect(sql);
}

Pool::Pool(asio::any_io_executor ex, ConnOptions options, std::size_t size, std::chrono::milliseconds acquire_timeout)
    : ex_(ex), options_(std::move(options)), acquire_timeout_(acquire_timeout), slots_(std::max<std::size_t>(1, size)),
      free_(ex, slots_.size()) {
  for (std::size_t i = 0; i < slots_.size(); ++i) free_.try_send(boost::system::error_code{}, i);
}

asio::awaitable<Pool::Lease> Pool::acquire() {
  asio::steady_timer timer(ex_, acquire_timeout_);
  auto r = co_await (free_.async_receive(asio::use_awaitable) || timer.async_wait(asio::use_awaitable));
  if (r.index() == 1)
    throw StoreUnavailable("database: no connection free within " + std::to_string(acquire_timeout_.count()) + " ms");
  Lease lease(shared_from_this(), std::get<0>(r));
  auto& conn = slots_[std::get<0>(r)];
  // A connection opened before another one failed is suspect: the server may have restarted.
  if (!conn || conn->epoch() < failures_.load() || !conn->usable()) {
    conn.reset();
    auto fresh = std::make_unique<Conn>(ex_, failures_.load());
    co_await fresh->connect(options_);
    conn = std::move(fresh);
  }
  co_return lease;
}

void Pool::release(std::size_t slot) { free_.try_send(boost::system::error_code{}, slot); }

asio::awaitable<void> Pool::roll_back_and_release(std::shared_ptr<Pool> pool, std::size_t slot) {
  try {
    co_await pool->slots_[slot]->exec("ROLLBACK");
  } catch (const std::exception&) {
    pool->slots_[slot].reset();
  }
  pool->release(slot);
}

Pool::Lease::~Lease() {
  if (!pool_) return;
  auto& conn = pool_->slots_[slot_];
  // A failure met while leased marks the connection broken (no need to look at the socket again:
  // acquire() does that for an idle one).
  if (conn && conn->failed()) {
    pool_->failures_.fetch_add(1);
    conn.reset();
  }
  if (conn && conn->in_transaction()) {
    // Given back mid-transaction (an error): roll back now, so that no lock outlives the lease.
    auto ex = pool_->ex_;
    asio::co_spawn(ex, roll_back_and_release(std::move(pool_), slot_), asio::detached);
    return;
  }
  pool_->release(slot_);
}

}  // namespace paymux::store::pg
