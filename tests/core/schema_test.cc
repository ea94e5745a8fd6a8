// The schema-version mechanism on real SQLite files: steps applied one transaction each, files from
// before versions recognised, newer files refused untouched, a failing or killed step leaving the
// file at the version before it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <stdexcept>

#include "temp_dir.h"
#include "usher/core/schema.h"
#include "usher/core/sqlite.h"

namespace usher::sql {
namespace {

constexpr const char* kTablesV1 = R"(
  CREATE TABLE IF NOT EXISTS boxes (box_id INTEGER PRIMARY KEY, name TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS sales (sale_id INTEGER PRIMARY KEY, box_id INTEGER NOT NULL, amount INTEGER NOT NULL);
)";

Schema two_steps() {
  return Schema("test store", {{1, "boxes and sales", sql_steps(kTablesV1)},
                               {2, "boxes get a room", sql_steps("ALTER TABLE boxes ADD COLUMN room TEXT NOT NULL DEFAULT ''")}});
}

std::string bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::int64_t count(Database& db, const std::string& sql) {
  auto st = db.prepare(sql);
  st.step();
  return st.column_int(0);
}

bool has_table(Database& db, const std::string& name) {
  auto st = db.prepare("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?");
  st.bind(1, name);
  st.step();
  return st.column_int(0) == 1;
}

// A file at schema 1 holding two boxes and a sale, made with the steps' own SQL.
void write_v1(const std::string& path, int version = 1) {
  auto db = Database::open(path).value();
  db.exec(kTablesV1);
  db.exec("INSERT INTO boxes VALUES (1, 'lounge'), (2, 'kitchen'); INSERT INTO sales VALUES (1, 1, 1250);");
  db.exec("PRAGMA user_version = " + std::to_string(version));
}

TEST(SchemaVersions, ANewFileGetsEveryStepAndTheLatestVersion) {
  testing::TempDir dir;
  auto db = Database::open(dir.file("new.db")).value();
  ASSERT_TRUE(two_steps().migrate(db, dir.file("new.db")).ok());
  EXPECT_EQ(user_version(db), 2);
  db.exec("INSERT INTO boxes (box_id, name, room) VALUES (1, 'lounge', '101')");
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM boxes WHERE room = '101'"), 1);
  // Opening again at the latest version changes nothing.
  ASSERT_TRUE(two_steps().migrate(db, dir.file("new.db")).ok());
  EXPECT_EQ(user_version(db), 2);
}

TEST(SchemaVersions, AFileFromBeforeVersionsIsSchemaOneAndKeepsItsRows) {
  testing::TempDir dir;
  const auto path = dir.file("old.db");
  write_v1(path, 0);  // today's stores: the tables, user_version 0
  auto db = Database::open(path, false).value();
  ASSERT_TRUE(two_steps().migrate(db, path).ok());
  EXPECT_EQ(user_version(db), 2);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM boxes"), 2);
  EXPECT_EQ(count(db, "SELECT amount FROM sales WHERE sale_id = 1"), 1250);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM boxes WHERE room = ''"), 2);  // step 2 ran on the old rows
}

TEST(SchemaVersions, AFileOfTheLastVersionIsBroughtForwardStepByStep) {
  testing::TempDir dir;
  const auto path = dir.file("v1.db");
  write_v1(path);
  auto db = Database::open(path, false).value();
  ASSERT_TRUE(two_steps().migrate(db, path).ok());
  EXPECT_EQ(user_version(db), 2);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM boxes"), 2);
  db.exec("UPDATE boxes SET room = '102' WHERE box_id = 2");
  EXPECT_EQ(count(db, "SELECT box_id FROM boxes WHERE room = '102'"), 2);
}

TEST(SchemaVersions, AFileFromANewerUsherIsRefusedAndLeftByteForByte) {
  testing::TempDir dir;
  const auto path = dir.file("newer.db");
  write_v1(path, 3);
  const auto before = bytes_of(path);
  ASSERT_FALSE(before.empty());
  {
    auto db = Database::open(path, false).value();
    auto refused = two_steps().migrate(db, path);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, Errc::storage);
    EXPECT_EQ(refused.error().message, path + " was written by a newer Usher (schema 3, this one knows up to 2): refused, nothing changed");
    auto checked = two_steps().check(db, path);
    ASSERT_FALSE(checked.ok());
    EXPECT_EQ(checked.error().message, refused.error().message);
  }
  EXPECT_EQ(bytes_of(path), before);
}

TEST(SchemaVersions, AStepThatFailsHalfwayLeavesTheVersionAndTheData) {
  testing::TempDir dir;
  const auto path = dir.file("v1.db");
  write_v1(path);
  // Step 2 changes rows, adds a table and a column, then fails on its last statement.
  const Schema bad("test store", {{1, "boxes and sales", sql_steps(kTablesV1)},
                                  {2, "a step with a mistake", sql_steps(R"(
                                     UPDATE sales SET amount = 0;
                                     DELETE FROM boxes WHERE box_id = 2;
                                     CREATE TABLE rooms (room TEXT PRIMARY KEY);
                                     ALTER TABLE boxes ADD COLUMN room TEXT;
                                     INSERT INTO no_such_table VALUES (1);)")}});
  auto db = Database::open(path, false).value();
  auto failed = bad.migrate(db, path);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, Errc::storage);
  EXPECT_NE(failed.error().message.find("cannot bring " + path + " from schema 1 to 2 (a step with a mistake)"), std::string::npos)
      << failed.error().message;
  EXPECT_NE(failed.error().message.find("no_such_table"), std::string::npos) << failed.error().message;
  EXPECT_NE(failed.error().message.find("it is left at schema 1"), std::string::npos) << failed.error().message;
  EXPECT_EQ(user_version(db), 1);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM boxes"), 2);
  EXPECT_EQ(count(db, "SELECT amount FROM sales WHERE sale_id = 1"), 1250);
  EXPECT_FALSE(has_table(db, "rooms"));
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM pragma_table_info('boxes') WHERE name = 'room'"), 0);
  // The corrected step then applies.
  ASSERT_TRUE(two_steps().migrate(db, path).ok());
  EXPECT_EQ(user_version(db), 2);
}

TEST(SchemaVersions, AStepThatThrowsIsUndoneToo) {
  testing::TempDir dir;
  const auto path = dir.file("v1.db");
  write_v1(path);
  const Schema throwing("test store", {{1, "boxes and sales", sql_steps(kTablesV1)},
                                       {2, "copies rows then finds a problem", [](Database& db) {
                                          db.exec("CREATE TABLE archive AS SELECT * FROM sales; DELETE FROM sales;");
                                          throw std::runtime_error("sale 1 has no box");
                                        }}});
  auto db = Database::open(path, false).value();
  auto failed = throwing.migrate(db, path);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().message.find("sale 1 has no box"), std::string::npos) << failed.error().message;
  EXPECT_EQ(user_version(db), 1);
  EXPECT_FALSE(has_table(db, "archive"));
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM sales"), 1);
}

// A process killed in the middle of a step (kill -9 after its statements ran, before the commit):
// the file is at the old version with the old data, and the next opening applies the step.
TEST(SchemaVersions, AProcessKilledInsideAStepLeavesTheOldVersion) {
  testing::TempDir dir;
  const auto path = dir.file("v1.db");
  write_v1(path);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto db = Database::open(path, false);
    if (!db) _exit(2);
    const Schema dying("test store", {{1, "boxes and sales", sql_steps(kTablesV1)},
                                      {2, "dies halfway", [](Database& d) {
                                         d.exec("ALTER TABLE boxes ADD COLUMN room TEXT NOT NULL DEFAULT ''; DELETE FROM sales;");
                                         raise(SIGKILL);
                                       }}});
    (void)dying.migrate(*db, path);
    _exit(3);  // not reached
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
  auto db = Database::open(path, false).value();
  EXPECT_EQ(user_version(db), 1);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM sales"), 1);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM pragma_table_info('boxes') WHERE name = 'room'"), 0);
  ASSERT_TRUE(two_steps().migrate(db, path).ok());
  EXPECT_EQ(user_version(db), 2);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM sales"), 1);
}

TEST(SchemaVersions, FilesBelowTheFirstStepAreRefusedUnchanged) {
  testing::TempDir dir;
  // A store whose list starts at 2: its version-1 files and its unversioned files are not brought forward.
  const Schema from_two("secure store", {{2, "everything", sql_steps(kTablesV1)}});
  for (int version : {1, 0}) {
    const auto path = dir.file("old" + std::to_string(version) + ".db");
    write_v1(path, version);
    const auto before = bytes_of(path);
    {
      auto db = Database::open(path, false).value();
      auto refused = from_two.migrate(db, path);
      ASSERT_FALSE(refused.ok());
      EXPECT_EQ(refused.error().message, path + " has schema version " + std::to_string(version) +
                                             ", older than this Usher's secure store can bring forward (from 2 on): refused, nothing changed");
    }
    EXPECT_EQ(bytes_of(path), before);
  }
  // An empty file is new: it gets the schema at version 2.
  auto db = Database::open(dir.file("new.db")).value();
  ASSERT_TRUE(from_two.migrate(db, dir.file("new.db")).ok());
  EXPECT_EQ(user_version(db), 2);
}

TEST(SchemaVersions, CheckingReadsOnlyAndAsksForAWritableOpeningToMigrate) {
  testing::TempDir dir;
  const auto path = dir.file("v1.db");
  write_v1(path);
  const auto before = bytes_of(path);
  {
    auto db = Database::open_read_only(path).value();
    auto old = two_steps().check(db, path);
    ASSERT_FALSE(old.ok());
    EXPECT_EQ(old.error().message, path + " has schema version 1 and this Usher reads 2: open it once for writing to bring it forward");
    EXPECT_TRUE(Schema("test store", {{1, "boxes and sales", sql_steps(kTablesV1)}}).check(db, path).ok());
  }
  EXPECT_EQ(bytes_of(path), before);
}

TEST(SchemaVersions, AnotherConnectionThatMigratedFirstIsRespected) {
  testing::TempDir dir;
  const auto path = dir.file("v1.db");
  write_v1(path);
  auto first = Database::open(path, false).value();
  auto second = Database::open(path, false).value();
  ASSERT_TRUE(two_steps().migrate(first, path).ok());
  // The second connection read nothing yet; it finds version 2 and applies no step twice (the
  // ALTER TABLE of step 2 would fail on a duplicate column).
  ASSERT_TRUE(two_steps().migrate(second, path).ok());
  EXPECT_EQ(user_version(second), 2);
}

TEST(SchemaVersions, StepsOutOfOrderAreAMistakeInTheCode) {
  EXPECT_THROW(Schema("s", {}), std::logic_error);
  EXPECT_THROW(Schema("s", {{1, "a", sql_steps("")}, {3, "b", sql_steps("")}}), std::logic_error);
  EXPECT_THROW(Schema("s", {{0, "a", sql_steps("")}}), std::logic_error);
}

}  // namespace
}  // namespace usher::sql
