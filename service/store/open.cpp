#include "service/store/pg/pg_store.hpp"
#include "service/store/sqlite/sqlite_store.hpp"
#include "service/store/store.hpp"

#include <stdexcept>
#include <string_view>

namespace paymux::store {

namespace {
constexpr std::string_view kSqlite = "sqlite://";
bool is_postgresql(const std::string& url) {
  return url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
}
}  // namespace

std::unique_ptr<Store> open_store(const std::string& url, asio::any_io_executor ex) {
  if (url.rfind(kSqlite, 0) == 0) {
    sqlite::SqliteOptions o;
    o.path = url.substr(kSqlite.size());
    o.background_migrations = true;
    return sqlite::open_sqlite_store(std::move(o));
  }
  if (is_postgresql(url)) return pg::open_pg_store(pg::pg_options_from_url(url), std::move(ex));
  throw std::invalid_argument("unsupported storage url (sqlite://PATH or postgresql://...)");
}

bool store_is_shared(const std::string& url) { return is_postgresql(url); }

}  // namespace paymux::store
