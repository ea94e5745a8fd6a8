// The one place Usher calls SQLite: a Database connection and prepared Statements as RAII types.
// Files are opened in WAL mode with synchronous=FULL so that a committed change survives kill -9
// and power loss; busy waits are bounded by a timeout instead of failing at once.
//
//   Database db = Database::open(path).value();
//   auto st = db.prepare("SELECT key FROM services WHERE id = ?").value();
//   st.bind(1, service_id);
//   if (st.step()) auto key = st.column_blob(0);
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "usher/core/result.h"
#include "usher/core/secret.h"

namespace usher::sql {

class Statement {
 public:
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&&) noexcept = default;
  Statement& operator=(Statement&&) noexcept = default;

  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, const std::string& value);
  Statement& bind(int index, std::span<const std::uint8_t> blob);
  Statement& bind_null(int index);
  // Steps once: true when a row is available. Throws std::runtime_error on a database error
  // (a broken invariant of the store, not a user error).
  bool step();
  // Steps to completion (INSERT/UPDATE/DELETE).
  void run();
  void reset();

  [[nodiscard]] std::int64_t column_int(int col) const;
  [[nodiscard]] std::string column_text(int col) const;
  [[nodiscard]] std::vector<std::uint8_t> column_blob(int col) const;
  [[nodiscard]] bool column_is_null(int col) const;
  // A 32-byte key column, copied straight into a Secret (no copy left behind to wipe). Throws
  // std::runtime_error when the column holds anything else: the file is damaged.
  [[nodiscard]] Key256 column_key(int col) const;

 private:
  friend class Database;
  struct Finalize {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  explicit Statement(sqlite3_stmt* s) : stmt_(s) {}
  std::unique_ptr<sqlite3_stmt, Finalize> stmt_;
};

class Database {
 public:
  // Opens (creating if `create`) a database file. Errc::storage with SQLite's message on failure.
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

  // Runs one or more statements without results. Throws on error.
  void exec(const std::string& sql);
  // Prepares a statement. Throws on error (SQL written by us that does not compile is a bug).
  Statement prepare(const std::string& sql);
  [[nodiscard]] std::int64_t last_insert_rowid() const;
  [[nodiscard]] int changes() const;
  [[nodiscard]] bool in_transaction() const;
  // Runs `work` in one transaction (a savepoint inside another) and commits it; anything `work`
  // throws undoes all of it and comes back as Errc::storage, prefixed with `what`. For a group of
  // requests that share one disk sync.
  Status atomically(const std::function<void()>& work, const std::string& what);

 private:
  struct Close {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  explicit Database(sqlite3* db) : db_(db) {}
  static Result<Database> connect(const std::string& path, int flags);
  std::unique_ptr<sqlite3, Close> db_;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back if not committed before destruction. Inside another
// transaction it becomes a SAVEPOINT, so that operations compose.
class Transaction {
 public:
  explicit Transaction(Database& db);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  Database& db_;
  bool nested_;
  bool done_ = false;
};

}  // namespace usher::sql
