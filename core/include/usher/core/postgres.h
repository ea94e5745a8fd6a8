// The one place Usher calls PostgreSQL (through libpqxx, Debian's C++ client): a Connection opened
// from a postgresql:// URL, serializable transactions that are run again when PostgreSQL aborts them
// for a conflict with another transaction, and libpqxx's exceptions mapped once to our Errc codes
// with messages that name the server but never the password.
//
// For the operator's stores when they outgrow one SQLite file (issue 10): several engine processes
// on one database keep purchases exactly once because every transaction is SERIALIZABLE and the
// loser of a conflict is retried from the start. It is its own CMake target (usher_postgres), so the
// STB and the wallet, which stay on embedded SQLite, do not link libpq.
//
//   // A failure is passed up: Errc::io: refused, Errc::auth_failed: wrong password, ...
//   USHER_TRY(auto db, pg::Connection::open("postgresql://engine:secret@db.example:5432/usher"));
//   Result<std::int64_t> balance = db.serializable("charge card", [&](pqxx::transaction_base& tx)
//                                                      -> Result<std::int64_t> {
//     auto row = tx.exec_params1("SELECT balance FROM cards WHERE id = $1", card_id);
//     ...
//     return row[0].as<std::int64_t>();
//   });
//
// A Connection is one server session: use it from one thread at a time (one per thread).
#pragma once

#include <pqxx/pqxx>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "usher/core/result.h"
#include "usher/core/sql.h"

namespace usher::pg {

// Where a URL points, without its password: what error messages and logs may show.
struct Endpoint {
  std::string user;      // empty: libpq's default (the operating-system user)
  std::string host;      // empty: libpq's default (the local Unix socket)
  std::string port;      // empty: 5432
  std::string database;  // empty: the user's name
  // "postgresql://user@host:port/database", leaving out what the URL left out.
  [[nodiscard]] std::string to_string() const;
};

// A postgresql:// (or postgres://) URL checked by libpq's own parser and turned into the connection
// string libpq is given, with Usher's defaults for what the URL does not say (connect_timeout=10,
// application_name=usher).
struct ConnectionSettings {
  std::string conninfo;  // holds the password: never log it
  Endpoint endpoint;
};
// Errc::invalid_argument when `url` is not a postgresql:// URL libpq accepts; the message quotes
// the URL without its password.
Result<ConnectionSettings> parse_url(const std::string& url);

// How the loser of a serialization conflict is run again: up to `max_attempts` runs in all, waiting
// a random time up to `first_backoff` * 2^(attempt-1) (at most `max_backoff`) between them so that
// the same transactions do not collide again in step.
struct RetryPolicy {
  int max_attempts = 10;
  std::chrono::milliseconds first_backoff{2};
  std::chrono::milliseconds max_backoff{100};
};

class Connection {
 public:
  // Connects to the server `url` names. Errc::invalid_argument for a bad URL, Errc::io when the
  // server cannot be reached (refused, unknown host, timeout, shutting down), Errc::auth_failed when
  // it refuses the user or password, Errc::not_found when the database does not exist, Errc::busy
  // when it has no connection slot left. Messages name the endpoint, never the password.
  static Result<Connection> open(const std::string& url, RetryPolicy policy = {});

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  Connection(Connection&&) noexcept = default;
  Connection& operator=(Connection&&) noexcept = default;
  ~Connection() = default;

  [[nodiscard]] const Endpoint& endpoint() const { return endpoint_; }

  // Runs `work(tx)` in one SERIALIZABLE transaction and commits it when `work` returns a value
  // (work returns a Result<T> or Status). When PostgreSQL aborts the transaction for a conflict with
  // another one (serialization failure or deadlock, while working or at COMMIT), it is rolled back
  // and `work` runs again from the start, at most policy.max_attempts times in all; so `work` reads
  // and writes only through `tx` and leaves nothing behind outside it until it returns. An error
  // that `work` returns rolls the transaction back and comes back unchanged. Other failures come back
  // prefixed with `what`: Errc::busy after the last attempt lost, Errc::already_exists for a unique
  // key taken, Errc::io when the connection is lost (when lost during COMMIT the message says the
  // outcome is unknown), Errc::storage otherwise.
  template <typename Work>
  auto serializable(std::string_view what, Work&& work) -> std::invoke_result_t<Work&, pqxx::transaction_base&>;

  // Runs SQL that cannot run inside a transaction (CREATE DATABASE, VACUUM); failures mapped as
  // above, prefixed with `what`. Not retried.
  Status run_outside_transaction(std::string_view what, const std::string& sql);

  // How many times the last serializable() ran its work (1 when no conflict made it run again).
  [[nodiscard]] int last_attempts() const { return last_attempts_; }

  // The libpqxx connection itself, for what this wrapper does not cover (prepared statements).
  pqxx::connection& raw() { return *connection_; }

 private:
  Connection(std::unique_ptr<pqxx::connection> connection, Endpoint endpoint, RetryPolicy policy)
      : connection_(std::move(connection)), endpoint_(std::move(endpoint)), policy_(policy) {}
  // The retry loop behind serializable(): `body` is `work` with its value kept by the caller.
  Status run_serializable(std::string_view what, const std::function<Status(pqxx::transaction_base&)>& body);

  std::unique_ptr<pqxx::connection> connection_;  // pqxx::connection cannot move: held by pointer
  Endpoint endpoint_;
  RetryPolicy policy_;
  int last_attempts_ = 0;
};

// The Error for the exception being handled (call it inside a catch block): libpqxx's exception
// classes and SQLSTATEs mapped to Errc, the message prefixed with `what` and naming `where`.
Error error_from_current_exception(std::string_view what, const Endpoint& where);

template <typename Work>
auto Connection::serializable(std::string_view what, Work&& work)
    -> std::invoke_result_t<Work&, pqxx::transaction_base&> {
  using Returned = std::invoke_result_t<Work&, pqxx::transaction_base&>;
  std::optional<Returned> returned;
  Status status = run_serializable(what, [&](pqxx::transaction_base& tx) -> Status {
    returned.reset();
    returned.emplace(work(tx));
    if (!*returned) return returned->error();
    return ok_status();
  });
  if (!status) return Returned(status.error());
  return std::move(*returned);
}

}  // namespace usher::pg

namespace usher::sql {

// A store on a PostgreSQL server, behind the storage interface (sql.h). Its tables live in the
// PostgreSQL schema `store_schema` ("engine", "billing": lower-case letters and '_'), created on
// first use, so that the engine and billing can share one database without sharing a table. The
// store's schema version is kept in its table usher_schema_version.
//
// Store SQL is written for SQLite and PostgreSQL both; this backend turns `?`/`?N` into `$N` and, in
// statements that make tables, SQLite's type names into PostgreSQL's (INTEGER: BIGINT, BLOB: BYTEA,
// INTEGER PRIMARY KEY: an identity column). A write Transaction takes a transaction-scoped advisory
// lock on the store's schema first, so that writers on every process queue for it as they do for a
// SQLite file's lock: a purchase checked and written inside one stays exactly once however many
// engines serve the database. A connection lost outside a transaction is opened again at the next
// statement; lost inside one, the transaction fails (Errc::storage) and its work is not done.
//
// Errc::invalid_argument for a bad URL or schema name; what pg::Connection::open refuses.
Result<Database> open_postgres(const std::string& url, const std::string& store_schema);

// SQL as the PostgreSQL backend runs it (exposed for its tests).
std::string postgres_sql(const std::string& sqlite_sql);

}  // namespace usher::sql
