// The storage interface of Usher's stores: a Database (one connection) and its prepared Statements,
// whatever keeps the data. Two implementations sit behind it, each wrapping its C library once:
//   - SQLite (sqlite.h, target usher_sqlite): a file in the service's home, the embedded default;
//   - PostgreSQL (postgres.h, target usher_postgres): a database server several processes share.
// A store is written once, in SQL both understand, against this interface; a Database says its
// Dialect for the few places where the two differ (docs/architecture.md, "Storage").
//
// What both implementations promise, and the stores rely on:
//   - A Transaction is a write transaction that holds the store's one write lock from its start
//     (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock on the store's
//     schema), so that the reads it makes see every commit before it and no other writer runs
//     until it ends: check-then-write inside one stays exactly once across processes.
//   - A statement outside a Transaction runs on its own (autocommit).
//   - Parameters are written `?` (or `?N`); integers are 64-bit; blobs are bytes; text is UTF-8.
//   - Errors in SQL or in the connection throw std::runtime_error, with a message that names the
//     database (never a password); Database::atomically() turns them into Errc::storage.
//
//   sql::Database db = sql::Database::open(path).value();     // SQLite
//   auto st = db.prepare("SELECT key FROM services WHERE id = ?");
//   st.bind(1, service_id);
//   if (st.step()) auto key = st.column_blob(0);
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "usher/core/result.h"
#include "usher/core/secret.h"

namespace usher::sql {

enum class Dialect { sqlite, postgresql };

// One prepared statement of a backend (what Statement forwards to).
class Cursor {
 public:
  virtual ~Cursor() = default;
  virtual void bind_int(int index, std::int64_t value) = 0;
  virtual void bind_text(int index, const std::string& value) = 0;
  virtual void bind_blob(int index, std::span<const std::uint8_t> blob) = 0;
  virtual void bind_null(int index) = 0;
  virtual bool step() = 0;
  virtual void reset() = 0;
  [[nodiscard]] virtual std::int64_t column_int(int col) const = 0;
  [[nodiscard]] virtual std::string column_text(int col) const = 0;
  [[nodiscard]] virtual std::vector<std::uint8_t> column_blob(int col) const = 0;
  [[nodiscard]] virtual bool column_is_null(int col) const = 0;
  // The column as a 32-byte key copied straight into a Secret; throws when it is anything else.
  [[nodiscard]] virtual Key256 column_key(int col) const = 0;
};

// One connection of a backend (what Database forwards to).
class Connection {
 public:
  virtual ~Connection() = default;
  [[nodiscard]] virtual Dialect dialect() const = 0;
  // Where the data is, for messages: a file's path or a server's URL without its password.
  [[nodiscard]] virtual std::string where() const = 0;
  virtual void exec(const std::string& sql) = 0;
  virtual std::unique_ptr<Cursor> prepare(const std::string& sql) = 0;
  [[nodiscard]] virtual int changes() const = 0;
  [[nodiscard]] virtual bool in_transaction() const = 0;
  // Opens a write transaction (a savepoint when one is open) / ends the innermost one.
  virtual void begin() = 0;
  virtual void commit() = 0;
  virtual void rollback() = 0;
  // The store's schema version (0: none kept yet), and whether it holds any table of its own.
  virtual int schema_version() = 0;
  virtual void set_schema_version(int version) = 0;
  virtual bool has_tables() = 0;
};

class Statement {
 public:
  explicit Statement(std::unique_ptr<Cursor> cursor) : cursor_(std::move(cursor)) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&&) noexcept = default;
  Statement& operator=(Statement&&) noexcept = default;
  ~Statement() = default;

  Statement& bind(int index, std::int64_t value) {
    cursor_->bind_int(index, value);
    return *this;
  }
  Statement& bind(int index, const std::string& value) {
    cursor_->bind_text(index, value);
    return *this;
  }
  Statement& bind(int index, std::span<const std::uint8_t> blob) {
    cursor_->bind_blob(index, blob);
    return *this;
  }
  Statement& bind_null(int index) {
    cursor_->bind_null(index);
    return *this;
  }
  // Steps once: true when a row is available. Throws std::runtime_error on a database error
  // (a broken invariant of the store, or a lost server: not a user error).
  bool step() { return cursor_->step(); }
  // Steps to completion (INSERT/UPDATE/DELETE).
  void run() {
    while (step()) {
    }
  }
  // Ready to run again, with no parameters bound.
  void reset() { cursor_->reset(); }

  [[nodiscard]] std::int64_t column_int(int col) const { return cursor_->column_int(col); }
  [[nodiscard]] std::string column_text(int col) const { return cursor_->column_text(col); }
  [[nodiscard]] std::vector<std::uint8_t> column_blob(int col) const { return cursor_->column_blob(col); }
  [[nodiscard]] bool column_is_null(int col) const { return cursor_->column_is_null(col); }
  [[nodiscard]] Key256 column_key(int col) const { return cursor_->column_key(col); }

 private:
  std::unique_ptr<Cursor> cursor_;
};

class Database {
 public:
  explicit Database(std::unique_ptr<Connection> connection) : connection_(std::move(connection)) {}

  // SQLite files (defined by usher_sqlite, sqlite.cc). Opens (creating if `create`) a database file
  // in WAL mode with synchronous=FULL, so that a committed change survives kill -9 and power loss.
  // Errc::storage with SQLite's message on failure.
  static Result<Database> open(const std::string& path, bool create = true);
  // Opens an existing file for reading only: nothing is written into it (no journal mode, no
  // schema), so a command that only shows a store cannot change it. Errc::storage on failure.
  static Result<Database> open_read_only(const std::string& path);
  // Opens an existing file for this connection alone (locking_mode EXCLUSIVE before the first
  // access), so that SQLite keeps the WAL index in memory instead of a -shm file: for when that file
  // cannot be made (a full disk). Other processes wait for the file until this one closes it.
  static Result<Database> open_exclusive(const std::string& path, bool read_only);

  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  Database(Database&&) noexcept = default;
  Database& operator=(Database&&) noexcept = default;
  ~Database() = default;

  [[nodiscard]] Dialect dialect() const { return connection_->dialect(); }
  [[nodiscard]] std::string where() const { return connection_->where(); }
  // Runs one or more statements without results. Throws on error.
  void exec(const std::string& sql) { connection_->exec(sql); }
  // Prepares a statement. Throws on error (SQL written by us that does not compile is a bug).
  Statement prepare(const std::string& sql) { return Statement(connection_->prepare(sql)); }
  // Rows changed by the last INSERT/UPDATE/DELETE.
  [[nodiscard]] int changes() const { return connection_->changes(); }
  [[nodiscard]] bool in_transaction() const { return connection_->in_transaction(); }
  // Runs `work` in one transaction (a savepoint inside another) and commits it; anything `work`
  // throws undoes all of it and comes back as Errc::storage, prefixed with `what`. For a group of
  // requests that share one disk sync.
  Status atomically(const std::function<void()>& work, const std::string& what);

  Connection& connection() { return *connection_; }

 private:
  std::unique_ptr<Connection> connection_;
};

// A write transaction (see above), rolled back if not committed before destruction. Inside another
// transaction it becomes a savepoint, so that operations compose.
class Transaction {
 public:
  explicit Transaction(Database& db) : db_(db) { db_.connection().begin(); }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  Database& db_;
  bool done_ = false;
};

}  // namespace usher::sql
