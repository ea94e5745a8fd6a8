#include "usher/headend/engine_link.h"

#include <gtest/gtest.h>

#include <thread>

#include "broadcast_fixture.h"
#include "synthetic_stream.h"
#include "running_engine.h"
#include "usher/core/zmq.h"
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
