#include "usher/headend/engine_link.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>

#include "broadcast_fixture.h"
#include "synthetic_stream.h"
#include "running_engine.h"
#include "usher/core/clock.h"
#include "usher/core/zmq.h"
#include "usher/headend/store_key_source.h"
#include "usher/entitlement/protocol.h"
#include "usher/stb/descrambler.h"

namespace usher::headend {
namespace {

using streams::TsPacket;
constexpr std::uint64_t kStart = 1'900'000'000;

using testing::RunningEngine;

class EngineLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(1001);
    ASSERT_TRUE(world.store().grant(1001, 1, kStart - 10, kStart + 86400).ok());
    auto op = entitlement::OperatorPublicFile::read(world.dir().file("operator/operator.pub")).value();
    identity.emplace(HeadendIdentity::init(world.dir().file("headend"), 5, op).value());
    auto pub = HeadendPublicFile::read(world.dir().file("headend/headend.pub")).value();
    ASSERT_TRUE(world.store().register_headend(pub.headend_id, pub.x25519_public).ok());
  }
  testing::BroadcastWorld world;
  std::optional<HeadendIdentity> identity;
};

TEST_F(EngineLinkTest, KeyBundleOpensOnlyForItsHeadend) {
  auto sealed = world.store().sealed_key_bundle(5, kStart);
  ASSERT_TRUE(sealed.ok());
  auto bundle = entitlement::open_key_bundle(*sealed, identity->bundle_key(), 5);
  ASSERT_TRUE(bundle.ok());
  ASSERT_EQ(bundle->services.size(), 1u);
  EXPECT_TRUE(bundle->services[0].key == world.store().service_key(1)->key);
  EXPECT_EQ(entitlement::open_key_bundle(*sealed, identity->bundle_key(), 6).error().code, Errc::auth_failed);
  auto tampered = *sealed;
  tampered[20] ^= 1;
  EXPECT_FALSE(entitlement::open_key_bundle(tampered, identity->bundle_key(), 5).ok());
  EXPECT_EQ(world.store().sealed_key_bundle(6, kStart).error().code, Errc::not_entitled);
}

TEST_F(EngineLinkTest, ScramblesWithEngineKeysAndCarriesOnWhenTheEngineGoesAway) {
  auto engine = std::make_unique<RunningEngine>(world.store(), "tcp://127.0.0.1:*");
  const auto endpoint = engine->endpoint();
  EngineKeySource keys(endpoint, *identity, std::chrono::milliseconds(50), std::chrono::milliseconds(100));
  ASSERT_TRUE(keys.fetch().ok());
  EXPECT_EQ(keys.carousel_entries(), 2u);  // the box's key EMM and its grant
  keys.start();

  testing::SyntheticMuxOptions o;
  o.seconds = 4;
  const auto clear = testing::make_synthetic_mux(o);
  ScramblerConfig cfg;
  cfg.start_unix = kStart;
  cfg.crypto_period_ms = 500;
  Scrambler scrambler(std::move(cfg), keys);
  std::vector<TsPacket> scrambled;
  const std::size_t half = clear.size() / 2;
  scrambler.process(std::span(clear).first(half), scrambled);
  engine.reset();  // the engine goes away mid-stream
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_FALSE(keys.engine_reachable());
  scrambler.refresh_emms();
  scrambler.process(std::span(clear).subspan(half), scrambled);
  scrambler.finish(scrambled);
  EXPECT_GE(scrambler.stats().crypto_periods, 8u);

  stb::Descrambler d(&world.stb(1001), {});
  std::vector<TsPacket> out;
  d.process(scrambled, out);
  d.finish(out);
  EXPECT_EQ(d.stats().packets_left_scrambled, 0u);  // no black screen
  EXPECT_EQ(d.stats().emm_taken, 2u);  // its key EMM and its grant

  // The engine comes back on the same endpoint: the link picks up again.
  RunningEngine again(world.store(), endpoint);
  for (int i = 0; i < 40 && !keys.engine_reachable(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(keys.engine_reachable());
}

// Rotation (issue 11): the headend learns the next key and its start from the engine's reply, and
// its ECMs switch to the new version exactly at that broadcast time, in the stream; the subscriber
// took the next key from the group EMM on the carousel and descrambles across the switch.
TEST_F(EngineLinkTest, TheHeadendSwitchesEcmsToTheNextKeyAtItsStartInStreamTime) {
  world.add_stb(1002);  // not a subscriber
  const std::uint64_t switch_at = kStart + 2;
  const auto next = world.store().rotate_service_key(1, switch_at, unix_now());
  ASSERT_TRUE(next.ok()) << next.error().message;
  RunningEngine engine(world.store(), "tcp://127.0.0.1:*");
  EngineKeySource keys(engine.endpoint(), *identity, std::chrono::milliseconds(50), std::chrono::milliseconds(500));
  ASSERT_TRUE(keys.fetch().ok());
  {
    const auto before = keys.service_keys(1, switch_at - 1).value();
    EXPECT_EQ(before.current.key_version, 1);
    ASSERT_TRUE(before.next.has_value());
    EXPECT_EQ(before.next->key_version, 2);
    EXPECT_EQ(before.next->starts, switch_at);
    EXPECT_TRUE(before.next->key == next->key);
    const auto after = keys.service_keys(1, switch_at).value();
    EXPECT_EQ(after.current.key_version, 2);
    EXPECT_FALSE(after.next.has_value());
  }

  testing::SyntheticMuxOptions o;
  o.seconds = 4;
  const auto clear = testing::make_synthetic_mux(o);
  ScramblerConfig cfg;
  cfg.start_unix = kStart;
  cfg.crypto_period_ms = 1500;  // periods 0-1.5 s, then one cut at the switch (2 s)
  Scrambler scrambler(std::move(cfg), keys);
  std::vector<TsPacket> scrambled;
  scrambler.process(clear, scrambled);
  scrambler.finish(scrambled);

  // Each distinct ECM: its key version and its current period's start.
  const auto v1 = world.store().service_keys(1, kStart).value().current.key.clone();
  std::map<std::uint32_t, std::pair<std::uint16_t, std::uint64_t>> periods;  // period -> (version, time)
  for (const auto& section : testing::sections_on(scrambled, 0x1FE0)) {
    const auto header = entitlement::peek_ecm(section).value();
    const Key256& key = header.key_version == 2 ? next->key : v1;
    const auto both = entitlement::decode_ecm(section, key, key);
    ASSERT_TRUE(both.ok()) << "both blocks open with the key the header names: " << both.error().message;
    periods.emplace(both->current.crypto_period, std::pair{header.key_version, both->current.time_unix});
  }
  ASSERT_GE(periods.size(), 4u);
  bool switched = false;
  for (const auto& [period, seen] : periods) {
    SCOPED_TRACE("period " + std::to_string(period));
    const auto [version, time] = seen;
    if (version == 2 && !switched) {
      EXPECT_EQ(time, switch_at) << "the first period of the new key starts at the switch";
      switched = true;
    }
    EXPECT_EQ(version, time >= switch_at ? 2 : 1);
  }
  EXPECT_TRUE(switched);

  stb::Descrambler subscriber(&world.stb(1001), {});
  std::vector<TsPacket> out;
  subscriber.process(scrambled, out);
  subscriber.finish(out);
  EXPECT_EQ(subscriber.stats().packets_left_scrambled, 0u) << "no black screen at the switch";
  const auto held = world.stb(1001).entitlements();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].key_versions, (std::vector<std::uint16_t>{1, 2}));
  stb::Descrambler stranger(&world.stb(1002), {});
  std::vector<TsPacket> nothing;
  stranger.process(scrambled, nothing);
  stranger.finish(nothing);
  EXPECT_EQ(stranger.stats().packets_descrambled, 0u);
}

// A box switched off while a rotation was announced catches up from the group EMMs on the carousel
// alone, with no unique EMM sent for it: it then opens ECMs of either version. A box revoked before
// the announcement takes nothing from it.
TEST_F(EngineLinkTest, ABoxOffDuringTheAnnouncementCatchesUpFromTheGroupEmmAlone) {
  const auto now = unix_now();
  auto& store = world.store();
  world.add_stb(1003);
  ASSERT_TRUE(store.add_package(10, "Basic", {1}).ok());
  ASSERT_TRUE(store.grant_package(1003, 10, now - 10, kStart + 86400).ok());
  ASSERT_TRUE(store.revoke(1001, 1).ok());
  // Both boxes on: they take everything on the carousel now.
  for (auto id : {1001u, 1003u}) {
    for (const auto& section : store.emm_sections(now)) (void)world.stb(id).apply_emm(section);
  }
  ASSERT_EQ(world.stb(1003).entitlements().at(0).key_versions, (std::vector<std::uint16_t>{1}));
  std::set<std::uint64_t> before;
  for (const auto& q : store.queued_emms()) before.insert(q.sequence);
  // Off; the rotation is announced.
  const auto next = store.rotate_service_key(1, kStart, now);
  ASSERT_TRUE(next.ok()) << next.error().message;
  std::size_t new_unique = 0;
  std::vector<std::vector<std::uint8_t>> new_group;
  for (const auto& q : store.queued_emms()) {
    if (before.contains(q.sequence)) continue;
    if (q.address.type == entitlement::EmmAddressType::group) {
      new_group.push_back(q.section);
    } else {
      ++new_unique;
    }
  }
  EXPECT_EQ(new_unique, 0u) << "no unique EMM for the announcement";
  ASSERT_FALSE(new_group.empty());
  // On again: what the carousel has now, group EMMs only.
  for (auto id : {1001u, 1003u}) {
    for (const auto& section : store.emm_sections(now)) {
      if (entitlement::peek_any_emm(section)->address.type == entitlement::EmmAddressType::group) (void)world.stb(id).apply_emm(section);
    }
  }
  EXPECT_EQ(world.stb(1003).entitlements().at(0).key_versions, (std::vector<std::uint16_t>{1, 2}));
  const auto ecm_of = [&](std::uint16_t version, const Key256& key, std::uint64_t time) {
    entitlement::EcmContent ecm;
    ecm.service_id = 1;
    ecm.key_version = version;
    ecm.current.crypto_period = 0;
    ecm.current.time_unix = time;
    ecm.next.crypto_period = 1;
    ecm.next.time_unix = time + 10;
    return entitlement::encode_ecm(ecm, key, key);
  };
  const auto v1 = store.service_keys(1, now).value().current.key.clone();
  EXPECT_TRUE(world.stb(1003).open_ecm(ecm_of(1, v1, kStart - 5)).ok());
  const auto after = world.stb(1003).open_ecm(ecm_of(2, next->key, kStart + 5));
  EXPECT_TRUE(after.ok()) << after.error().message;
  // The revoked box: nothing of version 2.
  const auto revoked = world.stb(1001).open_ecm(ecm_of(2, next->key, kStart + 5));
  ASSERT_FALSE(revoked.ok());
  EXPECT_EQ(revoked.error().code, Errc::not_entitled);
  for (const auto& e : world.stb(1001).entitlements()) EXPECT_TRUE(e.key_versions.empty());
}

// A rotation the headend learns of only after its start in stream time (announced late, or the
// stream ahead of the engine's clock): the scrambler moves to the new version at its next look at
// the keys, with a control word nobody has seen, and never goes back.
TEST_F(EngineLinkTest, ARotationLearnedAfterItsStartSwitchesAtTheNextLookAtTheKeys) {
  StoreKeySource keys(world.store());
  testing::SyntheticMuxOptions o;
  o.seconds = 6;
  const auto clear = testing::make_synthetic_mux(o);
  ScramblerConfig cfg;
  cfg.start_unix = kStart;
  cfg.crypto_period_ms = 10'000;
  Scrambler scrambler(std::move(cfg), keys);
  std::vector<TsPacket> scrambled;
  const std::size_t third = clear.size() / 3;
  scrambler.process(std::span(clear).first(third), scrambled);  // about 2 s of stream, version 1
  const auto next = world.store().rotate_service_key(1, kStart + 1, unix_now());
  ASSERT_TRUE(next.ok()) << next.error().message;
  scrambler.process(std::span(clear).subspan(third), scrambled);
  scrambler.finish(scrambled);
  std::vector<std::uint16_t> versions;
  for (const auto& section : testing::sections_on(scrambled, 0x1FE0)) {
    const auto header = entitlement::peek_ecm(section).value();
    if (versions.empty() || versions.back() != header.key_version) versions.push_back(header.key_version);
  }
  EXPECT_EQ(versions, (std::vector<std::uint16_t>{1, 2}));
  EXPECT_GE(scrambler.stats().crypto_periods, 2u) << "a period cut at the late switch";
}

TEST_F(EngineLinkTest, UnregisteredHeadendCannotStart) {
  RunningEngine engine(world.store(), "tcp://127.0.0.1:*");
  auto op = entitlement::OperatorPublicFile::read(world.dir().file("operator/operator.pub")).value();
  auto stranger = HeadendIdentity::init(world.dir().file("stranger"), 9, op).value();
  EngineKeySource keys(engine.endpoint(), stranger);
  auto s = keys.fetch();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("not registered"), std::string::npos);
}

}  // namespace
}  // namespace usher::headend
