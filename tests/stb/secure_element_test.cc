#include "usher/stb/secure_element.h"

#include <gtest/gtest.h>

#include "broadcast_fixture.h"

namespace usher::stb {
namespace {

constexpr std::uint64_t kT0 = 1'900'000'000;

entitlement::EcmContent ecm_at(std::uint16_t service, std::uint64_t time) {
  entitlement::EcmContent e;
  e.service_id = service;
  e.key_version = 1;
  e.current.crypto_period = 2;
  e.next.crypto_period = 3;
  e.current.time_unix = time;
  e.next.time_unix = time;
  e.current.cw = ControlWord::random();
  e.next.cw = ControlWord::random();
  return e;
}

class SecureElementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_service(2);
    world.add_stb(1001);
    world.add_stb(1002);
  }
  std::vector<std::uint8_t> ecm(std::uint16_t service, std::uint64_t time) {
    const auto key = world.store().service_key(service).value();
    return entitlement::encode_ecm(ecm_at(service, time), key.key, key.key);
  }
  testing::BroadcastWorld world;
};

TEST_F(SecureElementTest, GrantByEmmThenEcmOpensOnlyInsideTheWindow) {
  auto& se = world.stb(1001);
  EXPECT_EQ(se.open_ecm(ecm(1, kT0)).error().code, Errc::not_entitled);
  ASSERT_TRUE(world.store().grant(1001, 1, kT0, kT0 + 3600).ok());
  const auto emms = testing::box_emm_sections(world.store(), kT0);
  ASSERT_EQ(emms.size(), 1u);
  EXPECT_EQ(*se.apply_emm(emms[0]), EmmOutcome::applied);
  EXPECT_EQ(*se.apply_emm(emms[0]), EmmOutcome::duplicate);  // carousel repetition
  EXPECT_EQ(*world.stb(1002).apply_emm(emms[0]), EmmOutcome::not_addressed);

  EXPECT_TRUE(se.open_ecm(ecm(1, kT0 + 10)).ok());
  auto before = se.open_ecm(ecm(1, kT0 - 1));
  ASSERT_FALSE(before.ok());
  EXPECT_NE(before.error().message.find("starts at"), std::string::npos);
  auto after = se.open_ecm(ecm(1, kT0 + 3601));
  ASSERT_FALSE(after.ok());
  EXPECT_NE(after.error().message.find("ended at"), std::string::npos);
  auto other = se.open_ecm(ecm(2, kT0 + 10));
  EXPECT_EQ(other.error().code, Errc::not_entitled);
  EXPECT_EQ(world.stb(1002).open_ecm(ecm(1, kT0 + 10)).error().code, Errc::not_entitled);
}

TEST_F(SecureElementTest, ForgedAndTamperedEmmsChangeNothing) {
  ASSERT_TRUE(world.store().grant(1001, 1, kT0, kT0 + 3600).ok());
  auto emm = testing::box_emm_sections(world.store(), kT0).at(0);
  emm[emm.size() - 1] ^= 1;
  auto r = world.stb(1001).apply_emm(emm);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::auth_failed);
  EXPECT_TRUE(world.stb(1001).entitlements().empty());

  // An EMM sealed by somebody else (a forger's own operator key) for the same STB.
  auto forger = crypto::X25519KeyPair::generate();
  auto key = entitlement::derive_emm_key(forger.private_key, world.stb(1001).public_identity().x25519_public, 0x4AFF, 1001).value();
  entitlement::EmmContent forged{1001, 99, kT0, {}};
  Key256 fake;
  forged.items.emplace_back(entitlement::EmmGrant{1, 1, std::move(fake), 0, kT0 * 2});
  EXPECT_EQ(world.stb(1001).apply_emm(entitlement::encode_emm(forged, key)).error().code, Errc::auth_failed);
  EXPECT_TRUE(world.stb(1001).entitlements().empty());
  // Garbage.
  EXPECT_EQ(world.stb(1001).apply_emm(std::vector<std::uint8_t>{0x82, 0x70, 0x01, 0x01}).error().code, Errc::malformed);
}

TEST_F(SecureElementTest, RevokeThenReplayedOldGrantIsStale) {
  ASSERT_TRUE(world.store().grant(1001, 1, kT0, kT0 + 3600).ok());
  const auto grant = testing::box_emm_sections(world.store(), kT0).at(0);
  ASSERT_TRUE(world.store().revoke(1001, 1).ok());
  const auto revoke = testing::box_emm_sections(world.store(), 0).at(0);
  auto& se = world.stb(1001);
  // Arrives out of order: the revoke first, then the older grant (a recorded EMM replayed).
  ASSERT_EQ(*se.apply_emm(revoke), EmmOutcome::applied);
  auto late = se.apply_emm(grant);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, Errc::stale);
  auto denied = se.open_ecm(ecm(1, kT0 + 10));
  ASSERT_FALSE(denied.ok());
  EXPECT_NE(denied.error().message.find("revoked"), std::string::npos);
}

TEST_F(SecureElementTest, StatePersistsAcrossRestart) {
  ASSERT_TRUE(world.store().grant(1001, 1, kT0, kT0 + 3600).ok());
  const auto emm = testing::box_emm_sections(world.store(), kT0).at(0);
  ASSERT_EQ(*world.stb(1001).apply_emm(emm), EmmOutcome::applied);
  auto& again = world.reopen(1001);
  EXPECT_EQ(*again.apply_emm(emm), EmmOutcome::duplicate);  // a replay after restart is still known
  EXPECT_TRUE(again.open_ecm(ecm(1, kT0 + 1)).ok());
  EXPECT_EQ(again.entitlements().size(), 1u);
}

TEST_F(SecureElementTest, InitTwiceAndOpenMissingAreExplained) {
  auto op = entitlement::OperatorPublicFile::read(world.dir().file("operator/operator.pub")).value();
  EXPECT_EQ(SecureElement::init(world.stb_home(1001), 1001, op).error().code, Errc::already_exists);
  auto missing = SecureElement::open(world.dir().file("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("usher stb init"), std::string::npos);
}

}  // namespace
}  // namespace usher::stb
