// End-to-end, the STB's store under an owner's hands: `usher stb run` on a full disk, and the
// commands that only show the store given a damaged one.
#include <gtest/gtest.h>

#include <sys/mount.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cli_process.h"
#include "temp_dir.h"
#include "usher/core/sqlite.h"

namespace usher {
namespace {

using testing::run;
using testing::usher;
using testing::frames;


std::vector<char> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

class StbStoreE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = run(usher("streams generate --seconds 4 --out " + dir.file("source.ts")));
    ASSERT_EQ(r.status, 0) << r.output;
    must("entitlement init --home " + ent());
    must("entitlement service add --home " + ent() + " --id 1 --name News");
  }
  void TearDown() override {
    if (mounted) ::umount2(disk().c_str(), MNT_DETACH);
  }
  std::string must(const std::string& args) {
    auto r = run(usher(args));
    EXPECT_EQ(r.status, 0) << "usher " << args << "\n" << r.output;
    return r.output;
  }
  void add_stb(const std::string& home, const std::string& id) {
    must("stb init --home " + home + " --id " + id + " --operator " + ent() + "/operator.pub");
    must("entitlement device add --home " + ent() + " --stb-file " + home + "/stb.pub");
  }
  // `stb run` for the EMMs alone (a credit line, offers) on a box without a subscription: the
  // service stays scrambled for it, and the run says so with exit status 3.
  void take_emms(const std::string& home, const std::string& in) {
    auto r = run(usher("stb run --home " + home + " --in " + in + " --out " + dir.file("o.ts")));
    EXPECT_EQ(r.status, 3) << r.output;
    EXPECT_NE(r.output.find("\"outcome\":\"no entitlement\""), std::string::npos) << r.output;
  }
  std::string scramble(const std::string& name) {
    const auto out = dir.file(name);
    must("headend run --entitlement-home " + ent() + " --in " + dir.file("source.ts") + " --out " + out + " --crypto-period 1");
    return out;
  }
  std::string ent() const { return dir.file("ent"); }
  std::string disk() const { return dir.file("small-disk"); }

  testing::TempDir dir;
  bool mounted = false;
};

// Today's failure: `stb run` aborted at the first EMM it could not store. Now it descrambles every
// frame with the entitlement it holds, and its counters say how often it could not store.
TEST_F(StbStoreE2e, StbRunOnAFullDiskKeepsDescramblingWhatItHolds) {
  std::filesystem::create_directories(disk());
  if (::mount("tmpfs", disk().c_str(), "tmpfs", 0, "size=1m") != 0) GTEST_SKIP() << "cannot mount a tmpfs (errno " << errno << "): needs root";
  mounted = true;
  const auto home = disk() + "/stb-1001";
  add_stb(home, "1001");
  must("entitlement grant --home " + ent() + " --stb 1001 --service 1 --days 1");
  const auto first = scramble("first.ts");
  must("stb run --home " + home + " --in " + first + " --out " + dir.file("out-first.ts"));

  // New EMMs on the air (a credit line with it), and no room left on the box's disk.
  must("entitlement credit --home " + ent() + " --stb 1001 --limit 20.00 --currency EUR");
  const auto second = scramble("second.ts");
  {
    std::FILE* f = std::fopen((disk() + "/filler").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::vector<char> block(4096, 1);
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size() && std::fflush(f) == 0) {
    }
    std::fclose(f);
  }
  auto r = run(usher("stb run --home " + home + " --in " + second + " --out " + dir.file("out-second.ts")));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("for this process alone"), std::string::npos) << r.output;  // no room for stb.db-shm
  EXPECT_NE(r.output.find("cannot store"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("\"store_failures\":0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"descrambling\":true"), std::string::npos) << r.output;
  EXPECT_EQ(frames(dir.file("out-second.ts")), 100);
}

TEST_F(StbStoreE2e, ReadOnlyCommandsWriteNothingAndRefuseADamagedStore) {
  const auto home = dir.file("stb-1001");
  add_stb(home, "1001");
  must("entitlement credit --home " + ent() + " --stb 1001 --limit 20.00 --currency EUR");
  take_emms(home, scramble("s.ts"));
  const auto db_path = home + "/stb.db";
  {
    auto db = sql::Database::open(db_path, false);
    ASSERT_TRUE(db.ok());
    db->exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  const auto before = read_all(db_path);
  must("stb history --home " + home);
  must("stb tickets --home " + home);
  must("stb entitlements --home " + home);
  EXPECT_EQ(read_all(db_path), before);

  // A dropped history table came back silently empty: now every command refuses the store.
  {
    auto db = sql::Database::open(db_path, false);
    ASSERT_TRUE(db.ok());
    db->exec("DROP TABLE history");
  }
  for (const char* command : {"history", "tickets", "entitlements", "buy 1", "link --bind tcp://127.0.0.1:0"}) {
    auto r = run(usher(std::string("stb ") + command + " --home " + home));
    EXPECT_EQ(r.status, 1) << command << ": " << r.output;
    EXPECT_NE(r.output.find("table 'history' is missing"), std::string::npos) << command << ": " << r.output;
  }
  auto r = run(usher("stb run --home " + home + " --in " + dir.file("s.ts") + " --out " + dir.file("o2.ts")));
  EXPECT_EQ(r.status, 1) << r.output;
  auto db = sql::Database::open(db_path, false);
  ASSERT_TRUE(db.ok());
  auto st = db->prepare("SELECT COUNT(*) FROM sqlite_master WHERE name = 'history'");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int(0), 0);
}

// The collection deadline through the CLI: set with the credit line, carried by EMM, shown by the STB.
TEST_F(StbStoreE2e, TheCollectionDeadlineTravelsByEmmAndTheStbShowsIt) {
  const auto home = dir.file("stb-1001");
  add_stb(home, "1001");
  const auto start = std::to_string(std::time(nullptr) + 3600);
  must("entitlement event add --home " + ent() + " --id 7 --service 1 --start " + start +
       " --duration 60 --title Final --price 12.50 --currency EUR");
  must("entitlement credit --home " + ent() + " --stb 1001 --limit 20.00 --currency EUR --collect-within 168h");
  take_emms(home, scramble("s.ts"));
  EXPECT_EQ(must("stb history --home " + home).find("must be relayed by"), std::string::npos);  // nothing bought yet
  must("stb buy 7 --home " + home);
  const auto shown = must("stb history --home " + home);
  EXPECT_NE(shown.find("purchases must be relayed by"), std::string::npos) << shown;
}

}  // namespace
}  // namespace usher
