// The PostgreSQL wrapper (core/postgres.h) against a real server of the test's own
// (tests/support/postgres_server.h): URLs, connection failures as Errc codes with the password never
// shown, serializable transactions, and two connections charging one card at once: the loser of
// the conflict is run again and both purchases are applied exactly once. Also the test server's own
// promises: stopped, its port refuses and its directory is gone; a second one starts in the same
// process; and it does not outlive a process killed by Ctrl-C or kill -9.
#include <signal.h>
#include <unistd.h>

#include <array>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "postgres_server.h"
#include "usher/core/postgres.h"
#include "usher/core/tcp.h"

namespace usher {
namespace {

using testing::PostgresServer;

// An empty database on the process's shared server, connected.
#define USHER_FRESH_DATABASE(connection)                          \
  USHER_POSTGRES_OR_SKIP(server);                                 \
  auto connection##_url = server.create_database();               \
  ASSERT_TRUE(connection##_url) << connection##_url.error().message; \
  auto connection##_opened = pg::Connection::open(*connection##_url); \
  ASSERT_TRUE(connection##_opened) << connection##_opened.error().message; \
  pg::Connection& connection = *connection##_opened

Status exec(pg::Connection& db, const std::string& sql) {
  return db.serializable("test SQL", [&](pqxx::transaction_base& tx) -> Status {
    tx.exec(sql);
    return ok_status();
  });
}

Result<std::int64_t> scalar(pg::Connection& db, const std::string& sql) {
  return db.serializable("test query", [&](pqxx::transaction_base& tx) -> Result<std::int64_t> {
    return tx.exec1(sql)[0].as<std::int64_t>();
  });
}

// A port nothing listens on (the kernel's pick, released).
std::uint16_t closed_port() {
  auto l = net::TcpListener::bind("127.0.0.1", 0);
  return l ? l->port() : 1;
}

TEST(PostgresUrl, RefusesWhatIsNotAPostgresqlUrl) {
  const std::array<std::string, 5> urls = {
      "",
      "sqlite:///var/lib/usher/entitlement.db",
      "host=127.0.0.1 dbname=usher password=hunter2",
      "postgresql://usher:hunter2@[::1/usher",
      "postgresql://usher:hunter2@127.0.0.1/usher?no_such_option=1",
  };
  for (const auto& url : urls) {
    SCOPED_TRACE(url);
    auto parsed = pg::parse_url(url);
    ASSERT_FALSE(parsed);
    EXPECT_EQ(parsed.error().code, Errc::invalid_argument);
    EXPECT_EQ(parsed.error().message.find("hunter2"), std::string::npos) << parsed.error().message;
    auto opened = pg::Connection::open(url);
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error().code, Errc::invalid_argument);
  }
}

TEST(PostgresUrl, KeepsWhatTheUrlSaysAndAddsDefaults) {
  auto parsed = pg::parse_url("postgresql://engine:s3cret@db.example:6543/usher?sslmode=require");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->endpoint.to_string(), "postgresql://engine@db.example:6543/usher");
  EXPECT_NE(parsed->conninfo.find("sslmode='require'"), std::string::npos);
  EXPECT_NE(parsed->conninfo.find("connect_timeout='10'"), std::string::npos);
  EXPECT_NE(parsed->conninfo.find("password='s3cret'"), std::string::npos);

  auto with_timeout = pg::parse_url("postgres://db.example/usher?connect_timeout=3");
  ASSERT_TRUE(with_timeout) << with_timeout.error().message;
  EXPECT_NE(with_timeout->conninfo.find("connect_timeout='3'"), std::string::npos);
  EXPECT_EQ(with_timeout->conninfo.find("connect_timeout='10'"), std::string::npos);
}

TEST(PostgresConnection, NobodyListeningIsAnIoErrorNamingTheServer) {
  const std::uint16_t port = closed_port();
  auto opened = pg::Connection::open("postgresql://usher:hunter2@127.0.0.1:" + std::to_string(port) + "/usher");
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, Errc::io);
  EXPECT_NE(opened.error().message.find("postgresql://usher@127.0.0.1:" + std::to_string(port) + "/usher"), std::string::npos)
      << opened.error().message;
  EXPECT_NE(opened.error().message.find("refused"), std::string::npos) << opened.error().message;
  EXPECT_EQ(opened.error().message.find("hunter2"), std::string::npos) << opened.error().message;
}

TEST(PostgresConnection, WrongPasswordIsAuthFailedAndUnknownDatabaseNotFound) {
  USHER_POSTGRES_OR_SKIP(server);
  const std::string base = "postgresql://usher:hunter2@127.0.0.1:" + std::to_string(server.port());
  auto wrong_password = pg::Connection::open(base + "/usher");
  ASSERT_FALSE(wrong_password);
  EXPECT_EQ(wrong_password.error().code, Errc::auth_failed) << wrong_password.error().message;
  EXPECT_NE(wrong_password.error().message.find("password authentication failed"), std::string::npos)
      << wrong_password.error().message;
  EXPECT_EQ(wrong_password.error().message.find("hunter2"), std::string::npos) << wrong_password.error().message;

  auto no_database = pg::Connection::open(server.url("no_such_database"));
  ASSERT_FALSE(no_database);
  EXPECT_EQ(no_database.error().code, Errc::not_found) << no_database.error().message;
  EXPECT_NE(no_database.error().message.find("no_such_database"), std::string::npos) << no_database.error().message;
}

TEST(PostgresConnection, SerializableTransactionCommitsAndAnErrorFromWorkRollsBack) {
  USHER_FRESH_DATABASE(db);
  ASSERT_TRUE(exec(db, "CREATE TABLE cards (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL)"));
  auto inserted = db.serializable("open card", [&](pqxx::transaction_base& tx) -> Result<std::int64_t> {
    const auto row = tx.exec_params1("INSERT INTO cards VALUES ($1, $2) RETURNING balance", 7, 1500);
    EXPECT_EQ(tx.exec1("SHOW transaction_isolation")[0].as<std::string>(), "serializable");
    return row[0].as<std::int64_t>();
  });
  ASSERT_TRUE(inserted) << inserted.error().message;
  EXPECT_EQ(*inserted, 1500);
  EXPECT_EQ(db.last_attempts(), 1);

  // The work refuses after writing: nothing it wrote stays, and its own error comes back as is.
  auto refused = db.serializable("charge card", [&](pqxx::transaction_base& tx) -> Status {
    tx.exec_params0("UPDATE cards SET balance = balance - $1 WHERE id = $2", 2000, 7);
    return make_error(Errc::not_entitled, "balance too low");
  });
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::not_entitled);
  EXPECT_EQ(refused.error().message, "balance too low");
  EXPECT_EQ(*scalar(db, "SELECT balance FROM cards WHERE id = 7"), 1500);
}

TEST(PostgresConnection, SqlFailuresMapToErrcAndLeaveTheConnectionUsable) {
  USHER_FRESH_DATABASE(db);
  ASSERT_TRUE(exec(db, "CREATE TABLE purchases (request_id TEXT PRIMARY KEY)"));
  ASSERT_TRUE(exec(db, "INSERT INTO purchases VALUES ('r1')"));
  auto again = exec(db, "INSERT INTO purchases VALUES ('r1')");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::already_exists) << again.error().message;
  EXPECT_NE(again.error().message.find("test SQL: PostgreSQL at "), std::string::npos) << again.error().message;
  EXPECT_NE(again.error().message.find("23505"), std::string::npos) << again.error().message;

  auto bad_sql = exec(db, "SELEC 1");
  ASSERT_FALSE(bad_sql);
  EXPECT_EQ(bad_sql.error().code, Errc::storage) << bad_sql.error().message;
  EXPECT_EQ(*scalar(db, "SELECT count(*) FROM purchases"), 1);
}

// Two engines charge the same card at the same time, each for its own purchase. Both read the
// balance before either writes (a barrier holds them on their first run), so one must lose: without
// the retry its purchase would fail, and computing the new balance from a stale read would lose the
// other's charge. The loser is run again, reads the winner's balance, and both are charged once.
struct ChargeOutcome {
  Status status = ok_status();
  int attempts = 0;
};

void charge_at_once(pg::Connection& a, pg::Connection& b, std::array<ChargeOutcome, 2>& outcomes) {
  std::barrier both_read(2);
  auto charge = [&](pg::Connection& db, const std::string& request_id, ChargeOutcome& outcome) {
    int runs = 0;
    outcome.status = db.serializable("charge card", [&](pqxx::transaction_base& tx) -> Status {
      const auto balance = tx.exec_params1("SELECT balance FROM cards WHERE id = $1", 1)[0].as<std::int64_t>();
      if (++runs == 1) both_read.arrive_and_wait();
      if (balance < 300) return make_error(Errc::not_entitled, "balance too low");
      tx.exec_params0("UPDATE cards SET balance = $1 WHERE id = $2", balance - 300, 1);
      tx.exec_params0("INSERT INTO purchases VALUES ($1, $2)", request_id, 300);
      return ok_status();
    });
    outcome.attempts = db.last_attempts();
  };
  std::thread first([&] { charge(a, "request-a", outcomes[0]); });
  std::thread second([&] { charge(b, "request-b", outcomes[1]); });
  first.join();
  second.join();
}

TEST(PostgresConnection, ConflictingSerializableTransactionsAreRetriedAndAppliedOnce) {
  USHER_FRESH_DATABASE(db);
  ASSERT_TRUE(exec(db, "CREATE TABLE cards (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL);"
                       "CREATE TABLE purchases (request_id TEXT PRIMARY KEY, price BIGINT NOT NULL);"
                       "INSERT INTO cards VALUES (1, 1000)"));
  auto a = pg::Connection::open(*db_url);
  auto b = pg::Connection::open(*db_url);
  ASSERT_TRUE(a && b);
  std::array<ChargeOutcome, 2> outcomes;
  charge_at_once(*a, *b, outcomes);
  ASSERT_TRUE(outcomes[0].status) << outcomes[0].status.error().message;
  ASSERT_TRUE(outcomes[1].status) << outcomes[1].status.error().message;
  // One ran once, the other lost the conflict once and ran again.
  EXPECT_EQ(std::min(outcomes[0].attempts, outcomes[1].attempts), 1);
  EXPECT_EQ(std::max(outcomes[0].attempts, outcomes[1].attempts), 2);
  EXPECT_EQ(*scalar(db, "SELECT balance FROM cards WHERE id = 1"), 400);
  EXPECT_EQ(*scalar(db, "SELECT count(*) FROM purchases"), 2);
}

TEST(PostgresConnection, WithoutRetriesTheLoserIsBusyAndChangesNothing) {
  USHER_FRESH_DATABASE(db);
  ASSERT_TRUE(exec(db, "CREATE TABLE cards (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL);"
                       "CREATE TABLE purchases (request_id TEXT PRIMARY KEY, price BIGINT NOT NULL);"
                       "INSERT INTO cards VALUES (1, 1000)"));
  const pg::RetryPolicy once{.max_attempts = 1};
  auto a = pg::Connection::open(*db_url, once);
  auto b = pg::Connection::open(*db_url, once);
  ASSERT_TRUE(a && b);
  std::array<ChargeOutcome, 2> outcomes;
  charge_at_once(*a, *b, outcomes);
  EXPECT_NE(static_cast<bool>(outcomes[0].status), static_cast<bool>(outcomes[1].status));
  const Status& lost = outcomes[0].status ? outcomes[1].status : outcomes[0].status;
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, Errc::busy) << lost.error().message;
  EXPECT_NE(lost.error().message.find("gave up after 1 attempt"), std::string::npos) << lost.error().message;
  EXPECT_EQ(*scalar(db, "SELECT balance FROM cards WHERE id = 1"), 700);
  EXPECT_EQ(*scalar(db, "SELECT count(*) FROM purchases"), 1);
}

// Whether a process has exited: no longer listed, or a zombie nobody reaped (a container's PID 1
// may not reap orphans).
bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  return text.empty() || paren == std::string::npos || paren + 2 >= text.size() || text[paren + 2] == 'Z' ||
         text[paren + 2] == 'X';
}

// Polls until the server at `url` refuses connections (Errc::io), up to 30 s; the last error seen.
Error wait_refused(const std::string& url) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    auto opened = pg::Connection::open(url);
    if (!opened && opened.error().code == Errc::io) return opened.error();
    if (std::chrono::steady_clock::now() >= until) {
      return opened ? make_error(Errc::invalid_argument, "still accepting connections") : opened.error();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The benchmarks compare PostgreSQL with SQLite at synchronous=FULL: their server syncs its commits.
TEST(PostgresServerLifetime, ADurableServerSyncsItsCommits) {
  auto server = PostgresServer::start(testing::Durability::durable);
  if (!server) {
    if (testing::postgres_required()) FAIL() << server.error().message;
    GTEST_SKIP() << "PostgreSQL cannot be started here: " << server.error().message;
  }
  auto db = pg::Connection::open((*server)->url());
  ASSERT_TRUE(db.ok()) << db.error().message;
  auto settings = db->serializable("read settings", [](pqxx::transaction_base& tx) -> Result<std::string> {
    auto row = tx.exec1("SELECT current_setting('fsync') || current_setting('synchronous_commit') || current_setting('full_page_writes')");
    return std::string(row[0].c_str());
  });
  ASSERT_TRUE(settings.ok()) << settings.error().message;
  EXPECT_EQ(*settings, "ononon");
}

TEST(PostgresServerLifetime, StoppedItRefusesAndIsGoneAndASecondStartsInTheSameProcess) {
  std::string url;
  std::string directory;
  pid_t postmaster = 0;
  {
    auto first = PostgresServer::start();
    if (!first) {
      if (testing::postgres_required()) FAIL() << first.error().message;
      GTEST_SKIP() << "PostgreSQL cannot be started here: " << first.error().message;
    }
    url = (*first)->url();
    directory = (*first)->directory();
    postmaster = (*first)->pid();
    auto db = pg::Connection::open(url);
    ASSERT_TRUE(db) << db.error().message;
    EXPECT_EQ(*scalar(*db, "SELECT 41 + 1"), 42);
    // A session still open when the server stops: the fast shutdown cuts it off, the next use of it
    // is a clear I/O error, not a crash or a hang.
    ASSERT_TRUE((*first)->stop());
    auto after = scalar(*db, "SELECT 1");
    ASSERT_FALSE(after);
    EXPECT_EQ(after.error().code, Errc::io) << after.error().message;
  }
  EXPECT_TRUE(process_gone(postmaster));
  EXPECT_FALSE(std::filesystem::exists(directory)) << directory;
  auto refused = pg::Connection::open(url);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::io) << refused.error().message;
  EXPECT_NE(refused.error().message.find("refused"), std::string::npos) << refused.error().message;

  auto second = PostgresServer::start();
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_NE((*second)->directory(), directory);
  auto db = pg::Connection::open((*second)->url());
  ASSERT_TRUE(db) << db.error().message;
  EXPECT_EQ(*scalar(*db, "SELECT 6 * 7"), 42);
}

// The server is a child of the process that started it and goes when that process goes, even when
// no destructor runs: Ctrl-C (SIGINT's default action) and kill -9.
TEST(PostgresServerLifetime, DiesWithTheProcessThatStartedIt) {
  for (const int signal : {SIGINT, SIGKILL}) {
    SCOPED_TRACE(signal == SIGINT ? "SIGINT" : "SIGKILL");
    FILE* holder = popen("exec " POSTGRES_HOLDER, "r");
    ASSERT_NE(holder, nullptr);
    std::array<char, 1024> line{};
    const bool read = std::fgets(line.data(), line.size(), holder) != nullptr;
    std::istringstream fields(read ? line.data() : "");
    std::string first;
    fields >> first;
    if (first == "error" || !read) {
      pclose(holder);
      const std::string why = read ? std::string(line.data()).substr(first.size() + 1) : "the holder printed nothing";
      if (testing::postgres_required()) FAIL() << why;
      GTEST_SKIP() << "PostgreSQL cannot be started here: " << why;
    }
    const pid_t holder_pid = std::stoi(first);
    pid_t postmaster = 0;
    std::string url;
    std::string directory;
    fields >> postmaster >> url >> directory;
    auto db = pg::Connection::open(url);
    ASSERT_TRUE(db) << db.error().message;

    ASSERT_EQ(::kill(holder_pid, signal), 0);
    const auto holder_until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!process_gone(holder_pid) && std::chrono::steady_clock::now() < holder_until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(process_gone(holder_pid)) << "the holder outlived its signal";
    ::kill(holder_pid, SIGKILL);  // so that pclose cannot wait forever
    pclose(holder);
    const Error refused = wait_refused(url);
    EXPECT_EQ(refused.code, Errc::io) << refused.message;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!process_gone(postmaster) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(process_gone(postmaster)) << "postmaster " << postmaster << " outlived its test process";
    // Nothing ran the holder's destructor: its directory is left, and removed here.
    std::error_code ec;
    std::filesystem::remove_all(directory, ec);
  }
}

// The storage interface's PostgreSQL backend (sql.h, open_postgres): what the stores rely on.
TEST(PostgresStorage, StoreSqlIsTranslatedOutsideQuotedText) {
  EXPECT_EQ(sql::postgres_sql("SELECT a FROM t WHERE b = ? AND c = ?"), "SELECT a FROM t WHERE b = $1 AND c = $2");
  EXPECT_EQ(sql::postgres_sql("SELECT 1 WHERE ?2 > ?1 AND '?' = '?'"), "SELECT 1 WHERE $2 > $1 AND '?' = '?'");
  EXPECT_EQ(sql::postgres_sql("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, k BLOB, n INTEGER NOT NULL, s TEXT)"),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, k BYTEA, n BIGINT NOT NULL, s TEXT)");
  EXPECT_EQ(sql::postgres_sql("CREATE TABLE x (integer_part INTEGER)"), "CREATE TABLE x (integer_part BIGINT)");
}

TEST(PostgresStorage, TransactionsSavepointsBlobsAndChangesBehaveAsOnSqlite) {
  USHER_POSTGRES_OR_SKIP(server);
  auto url = server.create_database();
  ASSERT_TRUE(url.ok()) << url.error().message;
  auto db = sql::open_postgres(*url, "store");
  ASSERT_TRUE(db.ok()) << db.error().message;
  EXPECT_EQ(db->dialect(), sql::Dialect::postgresql);
  EXPECT_EQ(db->where().find("usher:"), std::string::npos) << "no password in " << db->where();
  db->exec("CREATE TABLE t (id INTEGER PRIMARY KEY, k BLOB, n INTEGER, s TEXT)");
  const std::vector<std::uint8_t> bytes{0, 1, 0xfe, 0xff, '\\', '\''};
  {
    sql::Transaction tx(*db);
    auto ins = db->prepare("INSERT INTO t (k, n, s) VALUES (?, ?, ?) RETURNING id");
    ins.bind(1, bytes).bind(2, std::int64_t{1} << 40).bind(3, std::string("it's"));
    ASSERT_TRUE(ins.step());
    EXPECT_EQ(ins.column_int(0), 1);
    ins.run();
    {
      sql::Transaction inner(*db);  // a savepoint: rolled back alone
      db->exec("INSERT INTO t (n) VALUES (2)");
    }
    tx.commit();
  }
  {
    sql::Transaction abandoned(*db);
    db->exec("INSERT INTO t (n) VALUES (3)");
  }
  auto st = db->prepare("SELECT k, n, s, id FROM t ORDER BY id");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_blob(0), bytes);
  EXPECT_EQ(st.column_int(1), std::int64_t{1} << 40);
  EXPECT_EQ(st.column_text(2), "it's");
  EXPECT_FALSE(st.step()) << "the savepoint's and the abandoned transaction's rows were kept";
  auto upd = db->prepare("UPDATE t SET n = n + 1 WHERE id = ?");
  upd.bind(1, 1);
  upd.run();
  EXPECT_EQ(db->changes(), 1);
  upd.reset();
  upd.bind(1, 99);
  upd.run();
  EXPECT_EQ(db->changes(), 0);
  // A failing statement inside a transaction fails that transaction only.
  EXPECT_THROW(
      {
        sql::Transaction tx(*db);
        db->exec("INSERT INTO t (id) VALUES (1)");
      },
      std::runtime_error);
  EXPECT_FALSE(db->in_transaction());
  EXPECT_TRUE(db->atomically([&] { db->exec("INSERT INTO t (n) VALUES (5)"); }, "insert").ok());
  // Two stores' schemas in one database do not see each other's tables.
  auto other = sql::open_postgres(*url, "other_store");
  ASSERT_TRUE(other.ok()) << other.error().message;
  EXPECT_FALSE(other->connection().has_tables());
  EXPECT_TRUE(db->connection().has_tables());
  EXPECT_EQ(sql::open_postgres(*url, "Bad-Name").error().code, Errc::invalid_argument);
}

TEST(PostgresStorage, ALostConnectionFailsOneStatementAndTheNextOneReconnects) {
  USHER_POSTGRES_OR_SKIP(server);
  auto url = server.create_database();
  ASSERT_TRUE(url.ok()) << url.error().message;
  auto db = sql::open_postgres(*url, "store");
  ASSERT_TRUE(db.ok()) << db.error().message;
  db->exec("CREATE TABLE t (n INTEGER)");
  auto admin = pg::Connection::open(*url).value();
  ASSERT_TRUE(admin.run_outside_transaction("cut", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                                   "WHERE datname = current_database() AND pid <> pg_backend_pid()").ok());
  try {
    db->exec("INSERT INTO t VALUES (1)");
    ADD_FAILURE() << "a statement on a cut connection succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).find(server.url().substr(server.url().find(':', 13) + 1, 10)), std::string::npos)
        << "the password is in: " << e.what();
  }
  db->exec("INSERT INTO t VALUES (2)");  // reconnected, in the store's schema
  auto st = db->prepare("SELECT COUNT(*) FROM t");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int(0), 1);
}

}  // namespace
}  // namespace usher
