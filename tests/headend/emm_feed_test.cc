// Issue 11 §2: the headend follows the engine's EMM queue by a cursor (emm_changes), never the whole
// queue, and its scheduler fills the EMM budget (never above it) by priority. Real engine over real
// ZeroMQ, real stores, the real scrambler over a real MPEG-TS.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "broadcast_fixture.h"
#include "running_engine.h"
#include "synthetic_stream.h"
#include "usher/core/clock.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/protocol.h"
#include "usher/headend/engine_link.h"
#include "usher/headend/scrambler.h"
#include "usher/headend/store_key_source.h"

namespace usher::headend {
namespace {

using streams::TsPacket;
using testing::RunningEngine;
constexpr std::uint64_t kStart = 1'900'000'000;
constexpr std::uint16_t kEmmPid = 0x1FF0;

class EmmFeedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_service(2);
    auto op = entitlement::OperatorPublicFile::read(world.dir().file("operator/operator.pub")).value();
    identity.emplace(HeadendIdentity::init(world.dir().file("headend"), 5, op).value());
    auto pub = HeadendPublicFile::read(world.dir().file("headend/headend.pub")).value();
    ASSERT_TRUE(world.store().register_headend(pub.headend_id, pub.x25519_public).ok());
  }
  // What the engine's old whole-queue answer says, against what the headend holds now.
  void expect_same_carousel(EngineKeySource& keys) {
    const auto now = unix_now();
    EXPECT_EQ(keys.carousel(now), world.store().emm_sections(now));
  }
  testing::BroadcastWorld world;
  std::optional<HeadendIdentity> identity;
};

TEST_F(EmmFeedTest, TheHeadendsCarouselIsTheEnginesAfterGrantsRevokesAndExpiry) {
  RunningEngine engine(world.store());
  EngineKeySource keys(engine.endpoint(), *identity);
  const auto now = unix_now();
  ASSERT_TRUE(keys.fetch().ok());
  EXPECT_EQ(keys.carousel_entries(), 0u);

  for (std::uint32_t id = 1001; id <= 1006; ++id) {
    world.add_stb(id);
    ASSERT_TRUE(world.store().grant(id, 1, now - 10, now + 86400).ok());
  }
  ASSERT_TRUE(keys.fetch().ok());
  // Each box's key EMM from its registration (issue 11) and its grant.
  EXPECT_EQ(keys.carousel_entries(), 6u + 6u);
  EXPECT_EQ(testing::box_emm_sections(world.store(), now).size(), 6u);
  expect_same_carousel(keys);
  const auto cursor = keys.cursor();

  // A revoke replaces the service's grant on the carousel: a removal and an addition.
  ASSERT_TRUE(world.store().revoke(1003, 1).ok());
  ASSERT_TRUE(world.store().grant(1004, 2, now - 10, now + 86400).ok());
  ASSERT_TRUE(keys.fetch().ok());
  EXPECT_GT(keys.cursor(), cursor);
  EXPECT_EQ(keys.carousel_entries(), 6u + 7u);
  EXPECT_EQ(testing::box_emm_sections(world.store(), now).size(), 7u);
  expect_same_carousel(keys);

  // A grant whose time ended hours ago: purged by the engine as a removal, gone from the headend.
  ASSERT_TRUE(world.store().grant(1005, 2, now - 3 * 86400, now - 2 * 3600).ok());
  auto added = world.store().emm_changes(keys.cursor());
  ASSERT_EQ(added.added.size(), 1u);
  ASSERT_TRUE(keys.fetch().ok());
  EXPECT_EQ(keys.carousel_entries(), 6u + 7u);
  expect_same_carousel(keys);
  const auto after_purge = world.store().emm_changes(added.next_cursor);
  EXPECT_EQ(after_purge.removed, std::vector<std::uint64_t>{added.added[0].id});

  // Nothing changed: nothing comes, the cursor stays.
  const auto held = keys.cursor();
  ASSERT_TRUE(keys.fetch().ok());
  EXPECT_EQ(keys.cursor(), held);
  expect_same_carousel(keys);

  // A restarted headend catches up from cursor 0 to the same carousel.
  EngineKeySource restarted(engine.endpoint(), *identity);
  ASSERT_TRUE(restarted.fetch().ok());
  EXPECT_EQ(restarted.carousel(unix_now()), keys.carousel(unix_now()));
  EXPECT_EQ(restarted.cursor(), keys.cursor());
}

// The operator's EMM budget (`entitlement config --emm-kbps`) reaches the headend with its keys.
TEST_F(EmmFeedTest, TheEnginesEmmBudgetReachesTheHeadend) {
  RunningEngine engine(world.store());
  EngineKeySource keys(engine.endpoint(), *identity);
  ASSERT_TRUE(keys.fetch().ok());
  EXPECT_EQ(keys.engine_emm_bitrate(), 0u);  // none set: the headend's own default
  ASSERT_TRUE(world.store().set_emm_kbps(1000).ok());
  ASSERT_TRUE(keys.fetch().ok());
  EXPECT_EQ(keys.engine_emm_bitrate(), 1'000'000u);
}

TEST_F(EmmFeedTest, TheScramblerTakesOnlyWhatChangedAfterTheFirstWholeCarousel) {
  RunningEngine engine(world.store());
  const auto now = unix_now();
  for (std::uint32_t id = 1001; id <= 1003; ++id) {
    world.add_stb(id);
    ASSERT_TRUE(world.store().grant(id, 1, now - 10, now + 86400).ok());
  }
  EngineKeySource keys(engine.endpoint(), *identity);
  ASSERT_TRUE(keys.fetch().ok());
  auto first = keys.emm_changes(0);
  EXPECT_TRUE(first.restart);
  EXPECT_EQ(first.added.size(), 3u + 3u);  // each box's key EMM (issue 11) and its grant
  // The grant of 1002 among them, by its section.
  const auto grants = testing::box_emm_sections(world.store(), now);
  ASSERT_EQ(grants.size(), 3u);
  const auto grant_1002 = std::find_if(first.added.begin(), first.added.end(), [&](const auto& e) { return *e.section == grants[1]; });
  ASSERT_NE(grant_1002, first.added.end());
  auto none = keys.emm_changes(first.version);
  EXPECT_FALSE(none.restart);
  EXPECT_TRUE(none.added.empty());
  EXPECT_TRUE(none.removed.empty());

  ASSERT_TRUE(world.store().revoke(1002, 1).ok());
  ASSERT_TRUE(keys.fetch().ok());
  auto next = keys.emm_changes(none.version);
  EXPECT_FALSE(next.restart);
  ASSERT_EQ(next.added.size(), 1u);  // the revoke
  EXPECT_EQ(next.added[0].priority, entitlement::EmmPriority::urgent);
  ASSERT_EQ(next.removed.size(), 1u);  // the grant it replaces
  EXPECT_EQ(next.removed[0], grant_1002->id);
  // The sections are shared with the key source's carousel, not copied.
  auto again = keys.emm_changes(0);
  ASSERT_EQ(again.added.size(), 3u + 3u);
  EXPECT_EQ(again.added[0].section.get(), first.added[0].section.get());
}

TEST_F(EmmFeedTest, PagesAreBoundedOrderedAndAddUpToTheQueue) {
  const auto now = unix_now();
  for (std::uint32_t id = 1001; id <= 1012; ++id) {
    world.add_stb(id);
    ASSERT_TRUE(world.store().grant(id, 1, now - 10, now + 86400).ok());
  }
  for (std::uint32_t id = 1001; id <= 1012; id += 3) ASSERT_TRUE(world.store().revoke(id, 1).ok());
  for (std::uint32_t id = 1002; id <= 1012; id += 4) ASSERT_TRUE(world.store().grant(id, 1, now - 10, now + 2 * 86400).ok());
  // Followed three entries at a time, from the start, the feed gives the queue.
  std::map<std::uint64_t, std::vector<std::uint8_t>> held;
  std::uint64_t cursor = 0;
  std::size_t pages = 0;
  for (;;) {
    auto page = world.store().emm_changes(cursor, 3);
    ASSERT_LE(page.added.size() + page.removed.size(), 6u);
    EXPECT_GE(page.next_cursor, cursor);
    EXPECT_TRUE(std::is_sorted(page.added.begin(), page.added.end(), [](const auto& a, const auto& b) { return a.id < b.id; }));
    if (page.restart) held.clear();
    for (const auto id : page.removed) held.erase(id);
    for (auto& e : page.added) held[e.id] = e.section;
    cursor = page.next_cursor;
    ++pages;
    if (!page.more) break;
  }
  EXPECT_GT(pages, 4u);
  std::vector<std::vector<std::uint8_t>> sections;
  for (auto& [id, s] : held) sections.push_back(s);
  EXPECT_EQ(sections, world.store().emm_sections(now));
  // Renewals are queued behind new rights.
  auto all = world.store().emm_changes(0);
  const auto renewals = std::count_if(all.added.begin(), all.added.end(),
                                      [](const auto& e) { return e.priority == entitlement::EmmPriority::renewal; });
  EXPECT_EQ(renewals, 2);  // 1002 and 1006 held their grant; 1010 was revoked first, so granted anew
}

TEST_F(EmmFeedTest, AMalformedRequestIsRefusedWithAClearErrorAndAStrangeCursorStartsOver) {
  RunningEngine engine(world.store());
  world.add_stb(1001);
  ASSERT_TRUE(world.store().grant(1001, 1, unix_now(), unix_now() + 86400).ok());
  net::RequestClient client(engine.endpoint(), {std::chrono::milliseconds(2000), 1});
  const auto call = [&](std::vector<std::uint8_t> body) {
    return entitlement::call_framed(client, static_cast<std::uint8_t>(entitlement::MessageType::emm_changes), body);
  };
  for (const auto& body : {std::vector<std::uint8_t>{}, std::vector<std::uint8_t>(7, 0), std::vector<std::uint8_t>(9, 0)}) {
    auto reply = call(body);
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code, Errc::malformed);
    EXPECT_NE(reply.error().message.find("emm_changes"), std::string::npos) << reply.error().message;
  }
  auto far = call(entitlement::encode_emm_changes_request(1'000'000));
  ASSERT_TRUE(far.ok());
  auto page = entitlement::decode_emm_feed_page(*far);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->restart);
  EXPECT_EQ(page->added.size(), 2u);  // the box's key EMM (issue 11) and its grant
  // A reply cut short or padded does not decode.
  auto cut = *far;
  cut.pop_back();
  EXPECT_FALSE(entitlement::decode_emm_feed_page(cut).ok());
  auto padded = *far;
  padded.push_back(0);
  EXPECT_FALSE(entitlement::decode_emm_feed_page(padded).ok());
}

// The EMM PID's rate measured PCR to PCR on the output: at most the budget (within the burst the
// token bucket allows), and at least 90 % of it all along, since the carousel always has something.
TEST(EmmBudget, TheBudgetIsUsedToTheFullAndNeverExceededPcrToPcr) {
  testing::BroadcastWorld world;
  world.add_service(1);
  for (std::uint32_t id = 1001; id <= 1020; ++id) {
    world.add_stb(id);
    ASSERT_TRUE(world.store().grant(id, 1, kStart - 10, kStart + 86400).ok());
  }
  testing::SyntheticMuxOptions o;
  o.seconds = 6;
  o.bitrate = 4'000'000;
  o.null_fraction = 0.2;
  const auto clear = testing::make_synthetic_mux(o);
  for (const std::uint64_t budget : {100'000u, 400'000u}) {
    SCOPED_TRACE(budget);
    ScramblerConfig cfg;
    cfg.start_unix = kStart;
    cfg.crypto_period_ms = 1000;
    cfg.emm_bitrate = budget;
    StoreKeySource keys(world.store());
    Scrambler scrambler(std::move(cfg), keys);
    std::vector<TsPacket> out;
    for (std::size_t i = 0; i < clear.size(); i += 1000) {
      scrambler.process(std::span(clear).subspan(i, std::min<std::size_t>(1000, clear.size() - i)), out);
    }
    scrambler.finish(out);
    // PCRs on the output (video PID of the synthetic mux), then windows of at least a second.
    std::vector<std::pair<std::size_t, std::uint64_t>> pcrs;
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (out[i].pid() == testing::synthetic_video_pid(0)) {
        if (auto pcr = out[i].pcr()) pcrs.emplace_back(i, *pcr);
      }
    }
    ASSERT_GT(pcrs.size(), 20u);
    std::vector<std::size_t> emm_before(out.size() + 1, 0);
    for (std::size_t i = 0; i < out.size(); ++i) emm_before[i + 1] = emm_before[i] + (out[i].pid() == kEmmPid ? 1 : 0);
    std::size_t windows = 0;
    double lowest = 1e18;
    double highest = 0;
    for (std::size_t a = 0; a < pcrs.size(); ++a) {
      std::size_t b = a + 1;
      while (b < pcrs.size() && pcrs[b].second - pcrs[a].second < streams::kPcrHz) ++b;
      if (b == pcrs.size()) break;
      const double seconds = static_cast<double>(pcrs[b].second - pcrs[a].second) / streams::kPcrHz;
      const double bits = static_cast<double>(emm_before[pcrs[b].first] - emm_before[pcrs[a].first]) * 188 * 8;
      const double allowed = (seconds + Scrambler::kEmmBurstMs / 1000.0) * static_cast<double>(budget) + 2 * 188 * 8;
      EXPECT_LE(bits, allowed) << "window from PCR " << a << " of " << seconds << " s";
      if (pcrs[a].second - pcrs.front().second >= streams::kPcrHz / 2) {
        lowest = std::min(lowest, bits / seconds);
        highest = std::max(highest, bits / seconds);
      }
      ++windows;
    }
    EXPECT_GT(windows, 10u);
    EXPECT_GE(lowest, 0.9 * static_cast<double>(budget));
    EXPECT_LE(highest, 1.01 * static_cast<double>(budget) + 2 * 188 * 8);
    // The bound a box switched on waits: the carousel's packets at the budget.
    const auto s = scrambler.stats();
    EXPECT_EQ(s.emm_carousel_entries, 20u + 20u);  // each box's key EMM (issue 11) and its grant
    EXPECT_NEAR(scrambler.emm_carousel_cycle_seconds(), static_cast<double>(s.emm_carousel_bytes) * 8 / static_cast<double>(budget), 1e-9);
  }
}

// New EMMs go before the carousel, urgent ones (a new grant) before renewals, whatever the order
// they were queued in.
TEST(EmmBudget, NewUrgentEmmsGoFirstThenRenewalsThenTheCarousel) {
  testing::BroadcastWorld world;
  world.add_service(1);
  for (std::uint32_t id = 1001; id <= 1030; ++id) {
    world.add_stb(id);
    ASSERT_TRUE(world.store().grant(id, 1, kStart - 10, kStart + 86400).ok());
  }
  world.add_stb(2001);
  testing::SyntheticMuxOptions o;
  o.seconds = 4;
  o.null_fraction = 0.2;
  const auto clear = testing::make_synthetic_mux(o);
  ScramblerConfig cfg;
  cfg.start_unix = kStart;
  cfg.emm_bitrate = 40'000;
  StoreKeySource keys(world.store());
  Scrambler scrambler(std::move(cfg), keys);
  std::vector<TsPacket> out;
  std::size_t refreshed_at = 0;
  std::vector<std::uint8_t> renewal;
  std::vector<std::uint8_t> fresh_grant;
  for (std::size_t i = 0; i < clear.size(); i += 500) {
    if (refreshed_at == 0 && i >= clear.size() / 2) {
      const auto cursor = world.store().emm_changes(0).next_cursor;
      ASSERT_TRUE(world.store().grant(1005, 1, kStart - 10, kStart + 2 * 86400).ok());  // queued first
      ASSERT_TRUE(world.store().grant(2001, 1, kStart - 10, kStart + 86400).ok());
      auto page = world.store().emm_changes(cursor);
      ASSERT_EQ(page.added.size(), 2u);
      renewal = page.added[0].section;
      fresh_grant = page.added[1].section;
      EXPECT_EQ(page.added[0].priority, entitlement::EmmPriority::renewal);
      EXPECT_EQ(page.added[1].priority, entitlement::EmmPriority::urgent);
      scrambler.refresh_emms();
      refreshed_at = out.size();
    }
    scrambler.process(std::span(clear).subspan(i, std::min<std::size_t>(500, clear.size() - i)), out);
  }
  scrambler.finish(out);
  const auto sections = testing::sections_on(std::vector<TsPacket>(out.begin() + static_cast<std::ptrdiff_t>(refreshed_at), out.end()), kEmmPid);
  const auto at = [&](const std::vector<std::uint8_t>& s) { return std::find(sections.begin(), sections.end(), s) - sections.begin(); };
  ASSERT_LT(at(fresh_grant), static_cast<std::ptrdiff_t>(sections.size()));
  ASSERT_LT(at(renewal), static_cast<std::ptrdiff_t>(sections.size()));
  EXPECT_LT(at(fresh_grant), at(renewal));
  EXPECT_LE(at(renewal), 10);  // right after what was already on its way, ahead of the carousel's 30
}

// Group and global EMMs (a renewal of 256 boxes each) take turns with the unique ones (one box's key
// each) and get at least half of the carousel: with 300 boxes' key EMMs and 2 member grants, each
// member grant goes about every fourth section, not once per 302.
TEST(EmmBudget, GroupEmmsGetHalfTheCarouselHoweverManyUniqueEmmsThereAre) {
  testing::BroadcastWorld world;
  world.add_service(1);
  std::vector<std::uint32_t> ids;
  for (std::uint32_t id = 1001; id <= 1300; ++id) {
    world.add_stb(id);
    ids.push_back(id);
  }
  const std::vector<std::uint16_t> services{1};
  ASSERT_TRUE(world.store().grant_many(ids, services, kStart - 10, kStart + 86400).ok());
  testing::SyntheticMuxOptions o;
  o.seconds = 6;
  o.null_fraction = 0.2;
  const auto clear = testing::make_synthetic_mux(o);
  ScramblerConfig cfg;
  cfg.start_unix = kStart;
  cfg.emm_bitrate = 60'000;
  StoreKeySource keys(world.store());
  Scrambler scrambler(std::move(cfg), keys);
  std::vector<TsPacket> out;
  for (std::size_t i = 0; i < clear.size(); i += 500) {
    scrambler.process(std::span(clear).subspan(i, std::min<std::size_t>(500, clear.size() - i)), out);
  }
  scrambler.finish(out);
  std::map<std::uint32_t, int> group_sent;
  std::size_t shared_packets = 0;
  std::size_t unique_packets = 0;
  std::set<std::uint32_t> unique_boxes;
  for (const auto& section : testing::sections_on(out, kEmmPid)) {
    const auto header = entitlement::peek_any_emm(section);
    ASSERT_TRUE(header.ok());
    const auto packets = (section.size() + 1 + 183) / 184;
    if (header->address.type == entitlement::EmmAddressType::group) {
      ++group_sent[header->address.id];
      shared_packets += packets;
    } else {
      unique_boxes.insert(header->address.id);
      unique_packets += packets;
    }
  }
  ASSERT_EQ(group_sent.size(), 2u);
  ASSERT_GT(unique_boxes.size(), 20u);
  ASSERT_LT(unique_boxes.size(), 300u) << "the budget is meant to be short of one unique pass";
  // Half the carousel's packets each way, to within a section or two.
  EXPECT_NEAR(static_cast<double>(shared_packets), static_cast<double>(unique_packets), 4.0);
  for (const auto& [group, n] : group_sent) EXPECT_GE(n, static_cast<int>(shared_packets / 2 / 2) - 2) << "group " << group;
  // The bounds the headend reports: each kind's bytes at its share (a half each here).
  const auto s = scrambler.stats();
  const auto passes = scrambler.emm_carousel_passes();
  EXPECT_GT(passes.unique_seconds, 10 * passes.shared_seconds);
  EXPECT_NEAR(scrambler.emm_carousel_cycle_seconds(), passes.shared_seconds + passes.unique_seconds, 1e-9);
  EXPECT_NEAR(passes.shared_seconds + passes.unique_seconds, 2.0 * static_cast<double>(s.emm_carousel_bytes) * 8 / 60'000, 1e-6);
}

}  // namespace
}  // namespace usher::headend
