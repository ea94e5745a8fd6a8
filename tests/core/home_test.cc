// Private homes: the directory 0700 and the database files 0600 whatever the process's umask, an
// existing home left open to others tightened, a home that is a file refused with a clear error;
// and every store (engine, STB and its local link, headend, billing, wallet) made that way.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "broadcast_fixture.h"
#include "certified_billing.h"
#include "temp_dir.h"
#include "usher/billing/billing_store.h"
#include "usher/core/home.h"
#include "running_engine.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"
#include "usher/headend/engine_link.h"
#include "usher/stb/local_link.h"
#include "usher/wallet_bridge/wallet.h"

namespace usher {
namespace {
namespace fs = std::filesystem;

// Sets the process's umask for one test and puts the old one back.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;
  ~ScopedUmask() { ::umask(old_); }

 private:
  mode_t old_;
};

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 07777;  // no such file: never a mode a test expects
  return st.st_mode & 07777;
}

TEST(PrivateHome, NewHomeAndDatabaseAreOwnerOnlyWhateverTheUmask) {
  for (const mode_t mask : {mode_t{0}, mode_t{022}, mode_t{077}}) {
    SCOPED_TRACE(mask);
    testing::TempDir dir;
    const auto home = dir.file("a/b/home");
    {
      ScopedUmask umask(mask);
      auto db = open_private_database(home, "t.db", IfMissing::create);
      ASSERT_TRUE(db.ok()) << db.error().message;
      db->exec("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);");
      EXPECT_EQ(mode_of(home), 0700u);
      EXPECT_EQ(mode_of(home + "/t.db"), 0600u);
      EXPECT_EQ(mode_of(home + "/t.db-wal"), 0600u);  // SQLite gives its side files the database's mode
      EXPECT_EQ(mode_of(home + "/t.db-shm"), 0600u);
    }
  }
}

TEST(PrivateHome, AnExistingHomeOpenToOthersIsTightened) {
  testing::TempDir dir;
  const auto home = dir.file("home");
  ASSERT_TRUE(open_private_database(home, "t.db", IfMissing::create).ok());
  ASSERT_EQ(::chmod(home.c_str(), 0755), 0);
  ASSERT_EQ(::chmod((home + "/t.db").c_str(), 0644), 0);
  auto again = open_private_database(home, "t.db", IfMissing::refuse);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(mode_of(home), 0700u);
  EXPECT_EQ(mode_of(home + "/t.db"), 0600u);
  // The owner's own bits are kept: only group and others lose theirs.
  ASSERT_EQ(::chmod((home + "/t.db").c_str(), 0444), 0);
  ASSERT_TRUE(make_private_file(home + "/t.db", false).ok());
  EXPECT_EQ(mode_of(home + "/t.db"), 0400u);
}

TEST(PrivateHome, AHomeThatIsAFileIsRefusedClearly) {
  testing::TempDir dir;
  const auto home = dir.file("home");
  ASSERT_TRUE(testing::write_file(home, "not a directory\n"));
  auto db = open_private_database(home, "t.db", IfMissing::create);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.error().code, Errc::storage);
  EXPECT_NE(db.error().message.find("not a directory"), std::string::npos) << db.error().message;
  // A parent that is a file, too.
  auto below = open_private_database(home + "/sub", "t.db", IfMissing::create);
  ASSERT_FALSE(below.ok());
  EXPECT_EQ(below.error().code, Errc::storage);
  std::ifstream in(home);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "not a directory");
}

TEST(PrivateHome, AMissingStoreIsNotFoundAndNothingIsMade) {
  testing::TempDir dir;
  const auto home = dir.file("home");
  auto db = open_private_database(home, "t.db", IfMissing::refuse);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.error().code, Errc::not_found);
  EXPECT_FALSE(fs::exists(home));
}

TEST(PrivateHome, ADatabaseNameThatIsADirectoryIsRefused) {
  testing::TempDir dir;
  const auto home = dir.file("home");
  fs::create_directories(home + "/t.db");
  auto db = open_private_database(home, "t.db", IfMissing::create);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.error().code, Errc::storage);
  EXPECT_NE(db.error().message.find("not a regular file"), std::string::npos) << db.error().message;
}

// The POSIX locks this process holds on the file at `path` (from /proc/locks).
int locks_held_on(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  std::ifstream in("/proc/locks");
  const std::string pid = std::to_string(::getpid());
  const std::string inode = ":" + std::to_string(st.st_ino) + " ";
  int held = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find(" " + pid + " ") != std::string::npos && line.find(inode) != std::string::npos) ++held;
  }
  return held;
}

// Billing opens the engine's store while the process already has it open. Opening a second time
// must not drop the first connection's SQLite locks (closing any descriptor of a file drops all of
// a process's POSIX locks on it), or the two connections corrupt the file.
TEST(PrivateHome, OpeningAgainKeepsTheLocksOfTheFirstConnection) {
  testing::TempDir dir;
  const auto home = dir.file("home");
  auto first = open_private_database(home, "t.db", IfMissing::create);
  ASSERT_TRUE(first.ok()) << first.error().message;
  first->exec("CREATE TABLE t (x INTEGER)");
  first->exec("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);");
  const int db_locks = locks_held_on(home + "/t.db");
  const int shm_locks = locks_held_on(home + "/t.db-shm");
  ASSERT_GT(db_locks + shm_locks, 0) << "SQLite holds locks while writing";
  ASSERT_EQ(::chmod((home + "/t.db-shm").c_str(), 0644), 0);  // something to tighten, too
  {
    auto second = open_private_database(home, "t.db", IfMissing::refuse);
    ASSERT_TRUE(second.ok()) << second.error().message;
    EXPECT_EQ(locks_held_on(home + "/t.db"), db_locks);
    EXPECT_EQ(locks_held_on(home + "/t.db-shm"), shm_locks);
  }
  EXPECT_EQ(mode_of(home + "/t.db-shm"), 0600u);
  first->exec("COMMIT");
}

using testing::RunningEngine;

TEST(PrivateHome, EveryStoreMakesItsHomeAndDatabaseOwnerOnly) {
  ScopedUmask umask(0);  // the loosest a caller can run with
  testing::BroadcastWorld world;  // the engine's store, in world.dir()/operator
  world.add_service(1);
  world.add_stb(1001);
  auto op = entitlement::OperatorPublicFile::read(world.dir().file("operator/operator.pub")).value();
  ASSERT_TRUE(headend::HeadendIdentity::init(world.dir().file("headend"), 5, op).ok());
  ASSERT_TRUE(testing::certified_billing(world.store(), world.dir().file("operator"), world.dir().file("billing"), 1, world.engine_endpoint()).ok());
  {
    stb::LocalLink link(world.stb(1001), world.stb_home(1001));
  }
  {
    RunningEngine engine(world.store());
    auto wallet = wallet::Wallet::init(world.dir().file("wallet"), "viewer", {'E', 'U', 'R'}, engine.endpoint(), op);
    ASSERT_TRUE(wallet.ok()) << wallet.error().message;
  }
  const std::vector<std::pair<std::string, std::string>> stores = {
      {"operator", entitlement::EntitlementStore::kDatabaseName}, {world.stb_home(1001), stb::SecureElement::kDatabaseName},
      {world.stb_home(1001), stb::LocalLink::kDatabaseName},     {"headend", headend::HeadendIdentity::kDatabaseName},
      {"billing", billing::BillingStore::kDatabaseName},         {"wallet", wallet::Wallet::kDatabaseName}};
  for (const auto& [where, name] : stores) {
    const auto home = where.front() == '/' ? where : world.dir().file(where);
    SCOPED_TRACE(home + "/" + name);
    EXPECT_EQ(mode_of(home), 0700u);
    EXPECT_EQ(mode_of(home + "/" + name), 0600u);
  }
}

}  // namespace
}  // namespace usher
