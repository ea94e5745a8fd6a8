// PostgresServer: a real PostgreSQL server of the test's own, for tests of what runs on PostgreSQL.
// Debian's server binaries (/usr/lib/postgresql/<highest version>/bin, or $USHER_POSTGRES_BIN)
// initdb a cluster into a fresh temporary directory and serve it on 127.0.0.1 on a free port, with
// its Unix socket in that directory too; the destructor stops it (a fast shutdown, what `pg_ctl stop
// -m fast` sends) and removes the directory, also when the test failed.
//
// PostgreSQL refuses to run as root, so when the tests run as root (CI does) the server runs as the
// `postgres` user Debian's package creates (else `nobody`), and owns its directory. The postmaster is
// the test process's own child (not daemonized by pg_ctl) and is told to shut down when that process
// dies, however it dies (Ctrl-C, a ctest timeout, kill -9): no server outlives its test. It is
// therefore started from a thread that lives as long as it (the test's main thread).
//
// Each server costs an initdb (about two seconds): tests share the process's server through
// shared() and take a database each with create_database(). Several test processes (ctest -j) each
// get their own server, directory and port.
//
//   TEST(Store, OnPostgres) {
//     USHER_POSTGRES_OR_SKIP(server);
//     auto url = server.create_database();
//     ASSERT_TRUE(url) << url.error().message;
//     auto db = pg::Connection::open(*url);
//   }
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "usher/core/result.h"
#include "store_backend.h"

namespace usher::testing {

// How a PostgresServer keeps what is committed.
enum class Durability {
  // For tests: fsync, synchronous_commit and full_page_writes off and a small buffer pool. A commit
  // returns before its WAL is written, so a crash of the server or the machine may lose the last
  // ones; killing its clients (the engines a kill -9 trial kills) loses nothing. Fast.
  fast,
  // As a production server: PostgreSQL's defaults (fsync, synchronous_commit and full_page_writes
  // on, 128 MB of shared buffers); a commit returns once its WAL is flushed to disk. For benchmarks
  // against SQLite with synchronous=FULL, which syncs every commit too.
  durable,
};

class PostgresServer {
 public:
  // initdb, start, wait until it accepts connections, create the database "usher". The error says
  // why it could not (no server binaries, no unprivileged user, initdb or the server failing: with
  // the end of its log).
  static Result<std::unique_ptr<PostgresServer>> start(Durability durability = Durability::fast);
  // The process's shared server, started on the first call and stopped when the process exits;
  // the same error on every call when it could not start.
  static Result<PostgresServer*> shared();

  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;
  ~PostgresServer();

  // postgresql://usher:<password>@127.0.0.1:<port>/<database>
  [[nodiscard]] std::string url(const std::string& database = "usher") const;
  // A new empty database, for one test: its URL.
  Result<std::string> create_database();

  [[nodiscard]] Durability durability() const { return durability_; }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] const std::string& directory() const { return directory_; }
  // The postmaster's process id (0 once stopped).
  [[nodiscard]] pid_t pid() const { return pid_; }
  // Stops the server now (fast shutdown), waiting until it has exited; the directory stays until
  // destruction. Errc::io when it had to be killed.
  Status stop();

 private:
  PostgresServer() = default;

  Durability durability_ = Durability::fast;
  std::string directory_;
  std::string password_;
  std::uint16_t port_ = 0;
  pid_t pid_ = 0;
  int databases_ = 0;
};

// Whether PostgreSQL tests must run rather than skip: USHER_REQUIRE_POSTGRES=1 (.ci/run sets it,
// so that CI cannot pass by skipping them).
bool postgres_required();

}  // namespace usher::testing

// In a test body or SetUp(): `var` becomes the process's shared PostgresServer&, or the test is
// skipped saying why it could not start (failed instead when postgres_required()).
#define USHER_POSTGRES_OR_SKIP(var)                                                                 \
  auto var##_shared = ::usher::testing::PostgresServer::shared();                                  \
  if (!var##_shared) {                                                                             \
    if (::usher::testing::postgres_required()) {                                                   \
      FAIL() << "PostgreSQL is required (USHER_REQUIRE_POSTGRES=1): " << var##_shared.error().message; \
    }                                                                                              \
    GTEST_SKIP() << "PostgreSQL cannot be started here: " << var##_shared.error().message;         \
  }                                                                                                \
  ::usher::testing::PostgresServer& var = *var##_shared.value()

