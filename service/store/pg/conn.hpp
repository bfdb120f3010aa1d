#pragma once
// libpq in non-blocking mode on the Asio event loop: a connection waits for its socket to become
// readable or writable (no thread per query), statements are prepared once per connection, and a
// bounded pool hands connections to coroutines. Parameters and results use libpq's text format.
#include "service/store/store.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct pg_conn;
struct pg_result;

namespace paymux::store::pg {

namespace asio = boost::asio;

// An error the database reported for a statement (constraint, syntax...); the connection is fine.
// Connection-level failures are StoreUnavailable instead.
struct PgError : std::runtime_error {
  std::string sqlstate;
  PgError(std::string state, const std::string& what) : std::runtime_error(what), sqlstate(std::move(state)) {}
};

// Statement parameters, as text; a missing value is SQL NULL.
class Params {
 public:
  Params& add(std::string_view v) {
    values_.emplace_back(v);
    return *this;
  }
  Params& add(const std::string& v) { return add(std::string_view(v)); }
  Params& add(const char* v) { return add(std::string_view(v)); }
  Params& add(std::int64_t v) {
    values_.emplace_back(std::to_string(v));
    return *this;
  }
  Params& add(int v) { return add(static_cast<std::int64_t>(v)); }
  Params& add(unsigned v) { return add(static_cast<std::int64_t>(v)); }
  Params& add(bool v) { return add(std::string_view(v ? "true" : "false")); }
  Params& null() {
    values_.emplace_back(std::nullopt);
    return *this;
  }
  std::size_t size() const { return values_.size(); }
  const std::optional<std::string>& operator[](std::size_t i) const { return values_[i]; }

 private:
  std::vector<std::optional<std::string>> values_;
};

// The rows of one statement's result.
class Result {
 public:
  Result() = default;
  explicit Result(pg_result* r);
  int rows() const;
  std::int64_t affected() const;  // rows changed by INSERT/UPDATE/DELETE
  std::string text(int row, int col) const;
  std::int64_t int64(int row, int col) const;
  bool is_null(int row, int col) const;

 private:
  std::shared_ptr<pg_result> r_;
};

struct ConnOptions {
  std::string conninfo;  // a libpq connection string or URI
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds query_timeout{30000};  // no answer at all within it: the connection is dropped
};

class Conn {
 public:
  // epoch: the pool's count of failed connections when this one was opened.
  Conn(asio::any_io_executor ex, std::uint64_t epoch);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  asio::awaitable<void> connect(const ConnOptions& o);
  // Runs one statement, prepared on this connection the first time its text is seen.
  asio::awaitable<Result> query(const std::string& sql, const Params& params);
  // Runs SQL text without parameters (several statements allowed): transactions, migrations.
  asio::awaitable<void> exec(const std::string& sql);

  // False once the connection failed; a broken connection is replaced, never reused.
  bool usable();
  // A failure was met (or a statement cut off midway): the connection is not to be used again.
  bool failed() const;
  bool in_transaction() const;
  std::uint64_t epoch() const { return epoch_; }

 private:
  asio::awaitable<void> flush();
  asio::awaitable<Result> collect(const std::string& what);
  asio::awaitable<void> wait(bool write);
  [[noreturn]] void fail(const std::string& what);

  asio::any_io_executor ex_;
  pg_conn* conn_ = nullptr;
  std::unique_ptr<asio::posix::stream_descriptor> socket_;
  std::chrono::milliseconds query_timeout_{30000};
  std::unordered_map<std::string, std::string> prepared_;  // SQL text -> statement name
  bool broken_ = false;
  std::uint64_t epoch_ = 0;
};

// A bounded pool. acquire() waits for a free connection (at most `acquire_timeout`), opening one
// when its slot has none or its connection broke. Once one connection is found broken, every
// connection opened before is replaced at its next use (the server probably restarted), so a
// database restart costs the requests in flight at that moment, not one request per connection. A lease given back inside a transaction is rolled
// back before the connection is used again.
class Pool : public std::enable_shared_from_this<Pool> {
 public:
  Pool(asio::any_io_executor ex, ConnOptions options, std::size_t size,
       std::chrono::milliseconds acquire_timeout);

  class Lease {
   public:
    Lease(std::shared_ptr<Pool> pool, std::size_t slot) : pool_(std::move(pool)), slot_(slot) {}
    Lease(Lease&& o) noexcept : pool_(std::move(o.pool_)), slot_(o.slot_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    Conn* operator->() const { return pool_->slots_[slot_].get(); }
    Conn& operator*() const { return *pool_->slots_[slot_]; }

   private:
    std::shared_ptr<Pool> pool_;
    std::size_t slot_;
  };

  asio::awaitable<Lease> acquire();
  std::size_t size() const { return slots_.size(); }
  const ConnOptions& options() const { return options_; }

 private:
  void release(std::size_t slot);
  static asio::awaitable<void> roll_back_and_release(std::shared_ptr<Pool> pool, std::size_t slot);

  asio::any_io_executor ex_;
  ConnOptions options_;
  std::chrono::milliseconds acquire_timeout_;
  std::vector<std::unique_ptr<Conn>> slots_;  // touched only by the slot's current holder
  std::atomic<std::uint64_t> failures_{0};    // connections found broken so far
  asio::experimental::concurrent_channel<void(boost::system::error_code, std::size_t)> free_;
};

// SQLSTATE classes that mean the database (not the statement) failed.
bool is_connection_failure(std::string_view sqlstate);

}  // namespace paymux::store::pg
