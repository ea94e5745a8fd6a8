#include "usher/core/sqlite.h"

#include <sqlite3.h>

#include <stdexcept>

namespace usher::sql {
namespace {

[[noreturn]] void fail(sqlite3* db, const std::string& what) {
  throw std::runtime_error("SQLite: " + what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "?"));
}

struct CloseDatabase {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct FinalizeStatement {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};

class SqliteCursor final : public Cursor {
 public:
  explicit SqliteCursor(sqlite3_stmt* s) : stmt_(s) {}

  void bind_int(int i, std::int64_t v) override { sqlite3_bind_int64(stmt_.get(), i, v); }
  void bind_text(int i, const std::string& v) override {
    sqlite3_bind_text(stmt_.get(), i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind_blob(int i, std::span<const std::uint8_t> blob) override {
    sqlite3_bind_blob(stmt_.get(), i, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  }
  void bind_null(int i) override { sqlite3_bind_null(stmt_.get(), i); }

  bool step() override {
    const int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(sqlite3_db_handle(stmt_.get()), "step");
  }
  void reset() override {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
  }

  [[nodiscard]] std::int64_t column_int(int c) const override { return sqlite3_column_int64(stmt_.get(), c); }
  [[nodiscard]] std::string column_text(int c) const override {
    const auto* t = sqlite3_column_text(stmt_.get(), c);
    return t != nullptr ? std::string(reinterpret_cast<const char*>(t), static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), c)))
                        : std::string();
  }
  [[nodiscard]] std::vector<std::uint8_t> column_blob(int c) const override {
    const auto* b = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_.get(), c));
    const int n = sqlite3_column_bytes(stmt_.get(), c);
    return b != nullptr ? std::vector<std::uint8_t>(b, b + n) : std::vector<std::uint8_t>();
  }
  [[nodiscard]] bool column_is_null(int c) const override { return sqlite3_column_type(stmt_.get(), c) == SQLITE_NULL; }
  [[nodiscard]] Key256 column_key(int c) const override {
    const auto* b = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_.get(), c));
    if (b == nullptr || sqlite3_column_bytes(stmt_.get(), c) != 32) {
      throw std::runtime_error("SQLite: column " + std::to_string(c) + " is not a 32-byte key: the database file is damaged");
    }
    return Key256(std::span<const std::uint8_t, 32>(b, 32));
  }

 private:
  std::unique_ptr<sqlite3_stmt, FinalizeStatement> stmt_;
};

class SqliteConnection final : public Connection {
 public:
  SqliteConnection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

  [[nodiscard]] Dialect dialect() const override { return Dialect::sqlite; }
  [[nodiscard]] std::string where() const override { return path_; }

  void exec(const std::string& sql) override {
    char* err = nullptr;
    if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error("SQLite: " + msg);
    }
  }
  std::unique_ptr<Cursor> prepare(const std::string& sql) override {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.c_str(), static_cast<int>(sql.size()), &s, nullptr) != SQLITE_OK) {
      fail(db_.get(), "prepare '" + sql + "'");
    }
    return std::make_unique<SqliteCursor>(s);
  }
  [[nodiscard]] int changes() const override { return sqlite3_changes(db_.get()); }
  [[nodiscard]] bool in_transaction() const override { return sqlite3_get_autocommit(db_.get()) == 0; }

  // Savepoints nest under the outermost BEGIN IMMEDIATE; their depth is counted so that each
  // commit or rollback ends the one it opened.
  void begin() override {
    if (!in_transaction()) {
      exec("BEGIN IMMEDIATE");
      depth_ = 0;
    } else {
      exec("SAVEPOINT nested");
      ++depth_;
    }
  }
  void commit() override {
    if (depth_ > 0) {
      exec("RELEASE nested");
      --depth_;
    } else {
      exec("COMMIT");
    }
  }
  void rollback() override {
    if (depth_ > 0) {
      --depth_;
      exec("ROLLBACK TO nested; RELEASE nested");
    } else if (in_transaction()) {
      exec("ROLLBACK");
    }
  }

  int schema_version() override {
    auto st = prepare("PRAGMA user_version");
    st->step();
    return static_cast<int>(st->column_int(0));
  }
  void set_schema_version(int version) override { exec("PRAGMA user_version = " + std::to_string(version)); }
  bool has_tables() override {
    auto st = prepare("SELECT COUNT(*) FROM sqlite_master");
    st->step();
    return st->column_int(0) > 0;
  }

 private:
  std::unique_ptr<sqlite3, CloseDatabase> db_;
  std::string path_;
  int depth_ = 0;
};

// Opens a connection with `flags` (plus FULLMUTEX) that waits up to 10 s for another's lock.
Result<Database> connect(const std::string& path, int flags) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_FULLMUTEX, nullptr);
  std::unique_ptr<sqlite3, CloseDatabase> owned(raw);
  if (rc != SQLITE_OK) {
    return make_error(Errc::storage, "cannot open " + path + ": " + (raw != nullptr ? sqlite3_errmsg(raw) : "out of memory"));
  }
  sqlite3_busy_timeout(raw, 10000);
  return Database(std::make_unique<SqliteConnection>(owned.release(), path));
}

}  // namespace

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

}  // namespace usher::sql
