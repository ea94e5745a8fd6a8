#include <gtest/gtest.h>

#include "temp_dir.h"
#include "usher/core/bytes.h"
#include "usher/core/hex.h"
#include "usher/core/result.h"
#include "usher/core/secret.h"
#include "usher/core/sqlite.h"

namespace usher {
namespace {

TEST(Hex, RoundTripAndRejects) {
  const std::vector<std::uint8_t> b = {0x00, 0xAB, 0xFF};
  EXPECT_EQ(to_hex(b), "00abff");
  EXPECT_EQ(*from_hex("00 AB ff"), b);
  EXPECT_FALSE(from_hex("abc").has_value());
  EXPECT_FALSE(from_hex("zz").has_value());
}

TEST(ByteReader, NeverReadsPastTheEnd) {
  const std::vector<std::uint8_t> data = {1, 2, 3};
  ByteReader r(data);
  std::uint16_t a = 0;
  std::uint32_t b = 0;
  EXPECT_TRUE(r.u16(a));
  EXPECT_EQ(a, 0x0102);
  EXPECT_FALSE(r.u32(b));
  EXPECT_TRUE(r.failed());
  std::uint8_t c = 0;
  EXPECT_FALSE(r.u8(c));  // latched
}

TEST(Secret, MovedFromIsZeroed) {
  Key256 k;
  k.mutable_bytes()[0] = 42;
  Key256 m = std::move(k);
  EXPECT_EQ(m.bytes()[0], 42);
  EXPECT_EQ(k.bytes()[0], 0);  // NOLINT(bugprone-use-after-move)
}

TEST(Result, CarriesValueOrError) {
  Result<int> ok = 5;
  Result<int> bad = make_error(Errc::replayed, "seen");
  EXPECT_TRUE(ok);
  EXPECT_EQ(*ok, 5);
  EXPECT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::replayed);
  EXPECT_STREQ(to_string(Errc::auth_failed), "authentication failed");
}

TEST(Sqlite, TransactionRollsBackUnlessCommitted) {
  testing::TempDir dir;
  auto db = sql::Database::open(dir.file("t.db"));
  ASSERT_TRUE(db.ok());
  db->exec("CREATE TABLE t (x INTEGER)");
  {
    sql::Transaction tx(*db);
    db->prepare("INSERT INTO t VALUES (1)").run();
  }
  {
    sql::Transaction tx(*db);
    db->prepare("INSERT INTO t VALUES (2)").run();
    tx.commit();
  }
  auto st = db->prepare("SELECT group_concat(x) FROM t");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_text(0), "2");
  EXPECT_FALSE(sql::Database::open(dir.file("missing/t.db"), false).ok());
}

TEST(Sqlite, AtomicallyKeepsAllOrNothingAndKeysMustBe32Bytes) {
  testing::TempDir dir;
  auto db = sql::Database::open(dir.file("t.db"));
  ASSERT_TRUE(db.ok());
  db->exec("CREATE TABLE k (id INTEGER PRIMARY KEY, key BLOB NOT NULL)");
  const std::vector<std::uint8_t> good(32, 7);
  const std::vector<std::uint8_t> short_key(31, 7);
  ASSERT_TRUE(db->atomically([&] { db->prepare("INSERT INTO k VALUES (1, ?)").bind(1, good).run(); }, "store").ok());
  const auto failed = db->atomically([&] {
    db->prepare("INSERT INTO k VALUES (2, ?)").bind(1, short_key).run();
    db->prepare("INSERT INTO k VALUES (1, ?)").bind(1, good).run();  // a duplicate key: throws
  }, "store");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, Errc::storage);
  EXPECT_EQ(failed.error().message.rfind("store: ", 0), 0u);
  auto count = db->prepare("SELECT COUNT(*) FROM k");
  ASSERT_TRUE(count.step());
  EXPECT_EQ(count.column_int(0), 1);  // row 2 went with the failure

  db->exec("INSERT INTO k VALUES (3, x'0102')");
  auto st = db->prepare("SELECT key FROM k WHERE id = ?");
  st.bind(1, 1);
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_key(0), Key256(std::span<const std::uint8_t, 32>(good.data(), 32)));
  st.reset();
  st.bind(1, 3);
  ASSERT_TRUE(st.step());
  EXPECT_THROW((void)st.column_key(0), std::runtime_error);
}

}  // namespace
}  // namespace usher

#include "usher/core/rate_limit.h"

namespace usher {
namespace {

// A burst, then the refill by elapsed time, per caller; no caller takes another's tokens.
TEST(RateLimiter, BurstThenRefillPerCaller) {
  RateLimiter limiter({3, 2});
  const auto t0 = RateLimiter::Clock::time_point{} + std::chrono::hours(1);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.admit(7, t0));
  EXPECT_FALSE(limiter.admit(7, t0));
  EXPECT_TRUE(limiter.admit(8, t0));  // another caller
  EXPECT_FALSE(limiter.admit(7, t0 + std::chrono::milliseconds(499)));
  EXPECT_TRUE(limiter.admit(7, t0 + std::chrono::milliseconds(500)));  // 2 per second: one after 500 ms
  EXPECT_FALSE(limiter.admit(7, t0 + std::chrono::milliseconds(500)));
  // Never more than the burst, however long the caller waited.
  const auto later = t0 + std::chrono::hours(5);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.admit(7, later));
  EXPECT_FALSE(limiter.admit(7, later));
}

}  // namespace
}  // namespace usher
