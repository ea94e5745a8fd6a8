#include "usher/core/sqlite.h"

#include <stdexcept>

namespace usher::sql {
namespace {
[[noreturn]] void fail(sqlite3* db, const std::string& what) {
  throw std::runtime_error("SQLite: " + what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "?"));
}
}  // namespace

// Opens a connection with `flags` (plus FULLMUTEX) that waits up to 10 s for another's lock.
Result<Database> Database::connect(const std::string& path, int flags) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_FULLMUTEX, nullptr);
  Database db(raw);
  if (rc != SQLITE_OK) {
    return make_error(Errc::storage, "cannot open " + path + ": " + (raw != nullptr ? sqlite3_errmsg(raw) : "out of memory"));
  }
  sqlite3_busy_timeout(raw, 10000);
  return db;
}

Result<Database> Database::open(const std::string& path, bool create) {
  USHER_TRY(auto db, connect(path, SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0)));
  try {
    db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
  } catch (const std::exception& e) {
    return make_error(Errc::storage, "cannot use " + path + ": " + e.what());
  }
  return db;
}

Result<Database> Database::open_read_only(const std::string& path) { return connect(path, SQLITE_OPEN_READONLY); }

Result<Database> Database::open_exclusive(const std::string& path, bool read_only) {
  USHER_TRY(auto db, connect(path, read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE));
  try {
    db.exec("PRAGMA locking_mode=EXCLUSIVE;");
    if (!read_only) db.exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
  } catch (const std::exception& e) {
    return make_error(Errc::storage, "cannot use " + path + ": " + e.what());
  }
  return db;
}

void Database::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err != nullptr ? err : "?";
    sqlite3_free(err);
    throw std::runtime_error("SQLite: " + msg);
  }
}

Statement Database::prepare(const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_.get(), sql.c_str(), static_cast<int>(sql.size()), &s, nullptr) != SQLITE_OK) {
    fail(db_.get(), "prepare '" + sql + "'");
  }
  return Statement(s);
}

std::int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_.get()); }
int Database::changes() const { return sqlite3_changes(db_.get()); }

Statement& Statement::bind(int i, std::int64_t v) {
  sqlite3_bind_int64(stmt_.get(), i, v);
  return *this;
}
Statement& Statement::bind(int i, const std::string& v) {
  sqlite3_bind_text(stmt_.get(), i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::bind(int i, std::span<const std::uint8_t> blob) {
  sqlite3_bind_blob(stmt_.get(), i, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::bind_null(int i) {
  sqlite3_bind_null(stmt_.get(), i);
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(sqlite3_db_handle(stmt_.get()), "step");
}
void Statement::run() {
  while (step()) {
  }
}
void Statement::reset() {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
}

std::int64_t Statement::column_int(int c) const { return sqlite3_column_int64(stmt_.get(), c); }
std::string Statement::column_text(int c) const {
  const auto* t = sqlite3_column_text(stmt_.get(), c);
  return t != nullptr ? std::string(reinterpret_cast<const char*>(t), static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), c))) : std::string();
}
std::vector<std::uint8_t> Statement::column_blob(int c) const {
  const auto* b = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_.get(), c));
  const int n = sqlite3_column_bytes(stmt_.get(), c);
  return b != nullptr ? std::vector<std::uint8_t>(b, b + n) : std::vector<std::uint8_t>();
}
Key256 Statement::column_key(int c) const {
  const auto* b = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_.get(), c));
  if (b == nullptr || sqlite3_column_bytes(stmt_.get(), c) != 32) {
    throw std::runtime_error("SQLite: column " + std::to_string(c) + " is not a 32-byte key: the database file is damaged");
  }
  return Key256(std::span<const std::uint8_t, 32>(b, 32));
}
bool Statement::column_is_null(int c) const { return sqlite3_column_type(stmt_.get(), c) == SQLITE_NULL; }

Transaction::Transaction(Database& db) : db_(db), nested_(db.in_transaction()) {
  db_.exec(nested_ ? "SAVEPOINT nested" : "BEGIN IMMEDIATE");
}
Transaction::~Transaction() {
  if (!done_) {
    try {
      db_.exec(nested_ ? "ROLLBACK TO nested; RELEASE nested" : "ROLLBACK");
    } catch (...) {
    }
  }
}
void Transaction::commit() {
  db_.exec(nested_ ? "RELEASE nested" : "COMMIT");
  done_ = true;
}

Status Database::atomically(const std::function<void()>& work, const std::string& what) {
  try {
    Transaction tx(*this);
    work();
    tx.commit();
  } catch (const std::exception& e) {
    return make_error(Errc::storage, what + ": " + e.what());
  }
  return ok_status();
}

bool Database::in_transaction() const { return sqlite3_get_autocommit(db_.get()) == 0; }

}  // namespace usher::sql
