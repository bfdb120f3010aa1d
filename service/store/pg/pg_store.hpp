#pragma once
// The PostgreSQL store, for more than one paymux instance on one database. Statements run on a
// bounded pool of non-blocking libpq connections driven by the event loop (see conn.hpp).
// Migrations run once under an advisory lock, on the first operation (and again after a failure:
// a database that is not there at start-up keeps the service "not ready" until it is). Work that
// must happen once across instances is claimed with FOR UPDATE SKIP LOCKED and a lease; status
// changes are conditional on the version read; idempotency keys are a primary key.
#include "service/store/store.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace paymux::store::pg {

struct PgOptions {
  std::string conninfo;  // libpq URI or key=value string
  std::size_t pool_size = 8;
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds query_timeout{30000};
  std::chrono::milliseconds acquire_timeout{5000};
};

std::unique_ptr<Store> open_pg_store(PgOptions options, asio::any_io_executor ex);

// Reads paymux's own parameters off a postgresql:// URL (pool_size, connect_timeout_ms,
// query_timeout_ms), leaving libpq's.
PgOptions pg_options_from_url(const std::string& url);

}  // namespace paymux::store::pg
