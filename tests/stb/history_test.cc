// F4 groundwork: impulse purchases on the STB's credit, recorded in its signed, hash-chained
// viewing history.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <set>
#include <thread>

#include "broadcast_fixture.h"
#include "usher/core/sqlite.h"
#include "usher/entitlement/history.h"

namespace usher::stb {
namespace {

constexpr std::uint64_t kT0 = 1'900'000'000;

// A billing service's keys, certified by the world's operator (what `usher billing init` and `usher
// entitlement billing add` make).
struct TestBilling {
  TestBilling(entitlement::EntitlementStore& store, std::uint32_t billing_id) : id(billing_id) {
    certificate = store.certify_billing(id, signing.public_key, sealing.public_key, kT0);
  }
  std::uint32_t id;
  crypto::Ed25519KeyPair signing = crypto::Ed25519KeyPair::generate();
  crypto::X25519KeyPair sealing = crypto::X25519KeyPair::generate();
  entitlement::BillingCertificate certificate;
};

// What billing does first with a relayed history: open it with its own X25519 key, check the
// chain with the STB's signing key.
Result<std::vector<entitlement::HistoryRecord>> open_and_verify(const TestBilling& billing, entitlement::EntitlementStore& store,
                                                               std::span<const std::uint8_t> sealed, std::uint64_t after_sequence,
                                                               const crypto::Digest& after_hash) {
  auto records = entitlement::open_history(sealed, billing.id, billing.sealing.private_key);
  if (!records) return records.error();
  auto stb_public = store.stb_signing_public(entitlement::sealed_history_stb(sealed).value());
  if (!stb_public) return stb_public.error();
  if (auto ok = entitlement::verify_history(*records, *stb_public, after_sequence, after_hash); !ok) return ok.error();
  return records;
}
const entitlement::Currency kEur{'E', 'U', 'R'};

class ImpulseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(1001);
    for (std::uint32_t id = 1; id <= 3; ++id) add_event(id, 1250);
  }
  void add_event(std::uint32_t id, std::int64_t price) {
    world.add_event(id, 1, kT0 + id * 7200, 3600, price, "Event " + std::to_string(id));
  }
  void deliver_emms() {
    for (const auto& emm : world.store().emm_sections(0)) (void)world.stb(1001).apply_emm(emm);
  }
  testing::BroadcastWorld world;
};

TEST_F(ImpulseTest, BuysOnCreditUntilTheLimitAndKeepsASignedChain) {
  auto& se = world.stb(1001);
  EXPECT_NE(se.impulse_buy(1, kT0).error().message.find("not offered"), std::string::npos);
  ASSERT_TRUE(world.store().set_credit(1001, {2000, kEur}, kT0).ok());
  deliver_emms();
  ASSERT_TRUE(se.credit_limit().ok());
  EXPECT_EQ(se.credit_limit()->minor, 2000);

  auto first = se.impulse_buy(1, kT0);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->sequence, 1u);
  EXPECT_EQ(se.impulse_buy(1, kT0).error().code, Errc::already_exists);  // bought once
  auto over = se.impulse_buy(2, kT0);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.error().message.find("credit limit 20.00 EUR reached (12.50 EUR"), std::string::npos) << over.error().message;

  // The bought event's ECMs open with the offered key, inside its window.
  auto key = world.store().current_event(1, kT0 + 7200 + 10).value();
  entitlement::EcmContent e;
  e.service_id = 1;
  e.key_version = 1;
  e.current.event_id = 1;
  e.next.event_id = 1;
  e.current.time_unix = kT0 + 7200 + 10;
  e.next.time_unix = kT0 + 7200 + 10;
  e.current.cw = ControlWord::random();
  e.next.cw = ControlWord::random();
  EXPECT_TRUE(se.open_ecm(entitlement::encode_ecm(e, key.key, key.key)).ok());

  // An event added later is offered to the STB by EMM, and a bigger credit line lets it through.
  add_event(4, 500);
  ASSERT_TRUE(world.store().set_credit(1001, {5000, kEur}, kT0).ok());
  deliver_emms();
  ASSERT_TRUE(se.impulse_buy(4, kT0).ok());
  ASSERT_TRUE(se.impulse_buy(2, kT0).ok());

  const auto pub = se.public_identity().ed25519_public;
  const auto history = world.reopen(1001).history();  // survives a restart
  ASSERT_EQ(history.size(), 3u);
  EXPECT_TRUE(entitlement::verify_history(history, pub, 0, {}).ok());
}

TEST(HistoryChain, TamperGapReorderAndWrongKeyAreRefused) {
  auto stb = crypto::Ed25519KeyPair::generate();
  std::vector<entitlement::HistoryRecord> chain;
  crypto::Digest previous{};
  for (std::uint64_t i = 1; i <= 4; ++i) {
    entitlement::HistoryRecord r;
    r.stb_id = 7;
    r.sequence = i;
    r.time = kT0 + i;
    r.event_id = static_cast<std::uint32_t>(i);
    r.price = {100, kEur};
    r.previous = previous;
    r.sign(stb.private_key);
    previous = r.hash();
    chain.push_back(r);
  }
  EXPECT_TRUE(entitlement::verify_history(chain, stb.public_key, 0, {}).ok());
  EXPECT_TRUE(entitlement::verify_history(std::span(chain).subspan(2), stb.public_key, 2, chain[1].hash()).ok());
  auto tampered = chain;
  tampered[1].price.minor = 1;  // cheaper after the fact
  EXPECT_EQ(entitlement::verify_history(tampered, stb.public_key, 0, {}).error().code, Errc::auth_failed);
  auto gap = chain;
  gap.erase(gap.begin() + 1);
  EXPECT_EQ(entitlement::verify_history(gap, stb.public_key, 0, {}).error().code, Errc::stale);
  auto reordered = chain;
  std::swap(reordered[1], reordered[2]);
  EXPECT_EQ(entitlement::verify_history(reordered, stb.public_key, 0, {}).error().code, Errc::stale);
  EXPECT_EQ(entitlement::verify_history(chain, crypto::Ed25519KeyPair::generate().public_key, 0, {}).error().code,
            Errc::auth_failed);
  // A record re-signed by a forger who dropped one: the chain breaks at the hash.
  auto forged = chain;
  forged.erase(forged.begin() + 1);
  for (std::size_t i = 1; i < forged.size(); ++i) {
    forged[i].sequence = i + 1;
    forged[i].sign(stb.private_key);
  }
  EXPECT_EQ(entitlement::verify_history(forged, stb.public_key, 0, {}).error().code, Errc::auth_failed);
  for (const auto& r : chain) EXPECT_EQ(entitlement::HistoryRecord::decode(r.encode())->hash(), r.hash());
}

// kill -9 at random moments while `usher stb buy` records purchases: afterwards the chain verifies,
// sequence numbers are contiguous and no purchase is recorded twice.
TEST(ImpulseDurability, KillNineNeverLosesOrDuplicatesARecord) {
  testing::BroadcastWorld world;
  world.add_service(1);
  world.add_stb(1001);
  for (std::uint32_t id = 1; id <= 24; ++id) {
    world.add_event(id, 1, 4'000'000'000 + id * 7200, 3600, 100);
  }
  ASSERT_TRUE(world.store().set_credit(1001, {100'000, kEur}, 0).ok());
  for (const auto& emm : world.store().emm_sections(0)) (void)world.stb(1001).apply_emm(emm);
  const std::string home = world.stb_home(1001);
  std::mt19937 rng(42);
  int killed = 0;
  for (std::uint32_t id = 1; id <= 24; ++id) {
    const std::string event = std::to_string(id);  // not in the child: nothing but exec after fork
    const pid_t pid = fork();
    if (pid == 0) {
      execl(USHER_BINARY, USHER_BINARY, "stb", "buy", "--home", home.c_str(), "--event", event.c_str(),
            "--log-level", "off", static_cast<char*>(nullptr));
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 40'000));
    if (kill(pid, SIGKILL) == 0) ++killed;
    int status = 0;
    waitpid(pid, &status, 0);
  }
  auto& se = world.reopen(1001);
  const auto history = se.history();
  EXPECT_TRUE(entitlement::verify_history(history, se.public_identity().ed25519_public, 0, {}).ok());
  std::set<std::uint32_t> events;
  for (const auto& r : history) EXPECT_TRUE(events.insert(r.event_id).second) << "event " << r.event_id << " twice";
  // Every recorded purchase has its ticket; buying again what was recorded says so.
  EXPECT_EQ(se.tickets().size(), history.size());
  for (const auto& r : history) EXPECT_EQ(se.impulse_buy(r.event_id, 0).error().code, Errc::already_exists);
  RecordProperty("killed", killed);
  RecordProperty("recorded", static_cast<int>(history.size()));
}

}  // namespace
}  // namespace usher::stb

#include "usher/entitlement/protocol.h"
#include "link_handset.h"
#include "usher/stb/local_link.h"

namespace usher::stb {
namespace {

TEST_F(ImpulseTest, HistoryLeavesOverTheLocalLinkSealedForBillingOnly) {
  ASSERT_TRUE(world.store().set_credit(1001, {5000, kEur}, kT0).ok());
  deliver_emms();
  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  ASSERT_TRUE(se.impulse_buy(2, kT0).ok());
  const TestBilling billing(world.store(), 1);
  const TestBilling other_billing(world.store(), 2);

  // The handset asks over the local link, as the wallet does, relaying billing's certificate.
  LocalLink link(se, world.stb_home(1001));
  testing::LinkHandset handset;
  ASSERT_TRUE(handset.pair(link));
  EXPECT_EQ(handset.stb_id, 1001u);
  const auto id = entitlement::new_request_id();
  auto reply = link.handle(handset.request(entitlement::LinkMessage::collect_history, billing.certificate.encode(), id));
  auto sealed = entitlement::reply_body(reply, id);
  ASSERT_TRUE(sealed.ok()) << sealed.error().message;
  EXPECT_EQ(*entitlement::sealed_history_stb(*sealed), 1001u);
  EXPECT_EQ(entitlement::sealed_history_header(*sealed)->billing_id, 1u);

  // Billing opens it with its own key and checks the chain from the start.
  auto records = open_and_verify(billing, world.store(), *sealed, 0, {});
  ASSERT_TRUE(records.ok()) << records.error().message;
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[1].price.minor, 1250);
  // Resuming after record 1 is refused (a replay of a settled part would start at 1 again).
  EXPECT_EQ(open_and_verify(billing, world.store(), *sealed, 1, (*records)[0].hash()).error().code, Errc::stale);

  // Another billing, certified by the same operator, cannot open it: refused by the header, and
  // with the header relabelled for it, by the key.
  EXPECT_EQ(open_and_verify(other_billing, world.store(), *sealed, 0, {}).error().code, Errc::not_entitled);
  auto for_other = *sealed;
  for_other[8] = 2;
  EXPECT_EQ(open_and_verify(other_billing, world.store(), for_other, 0, {}).error().code, Errc::auth_failed);

  // The handset cannot change a byte of it without billing noticing: every byte of the clear
  // header (version, STB, billing, ephemeral key, nonce) and the sealed part.
  constexpr std::size_t kHeader = 1 + 4 + 4 + 32 + crypto::kGcmNonceSize;
  for (std::size_t i = 0; i < sealed->size(); i += (i < kHeader ? 1 : 7)) {
    auto t = *sealed;
    t[i] ^= 0x01;
    EXPECT_FALSE(open_and_verify(billing, world.store(), t, 0, {}).ok()) << i;
  }
  // Relabelled as another STB's: the authenticated header does not fit.
  world.add_stb(1002);
  auto relabelled = *sealed;
  relabelled[4] = static_cast<std::uint8_t>(1002 & 0xFF);
  relabelled[3] = static_cast<std::uint8_t>(1002 >> 8);
  EXPECT_EQ(open_and_verify(billing, world.store(), relabelled, 0, {}).error().code, Errc::auth_failed);

  // Each seal has its own ephemeral key.
  auto again = se.sealed_unsettled_history();
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_NE(entitlement::sealed_history_header(*again)->ephemeral, entitlement::sealed_history_header(*sealed)->ephemeral);
}

// The STB seals only for a billing the operator certified, with an X25519 key: a forged certificate
// and a version 1 one are refused, and a box that holds none says how it gets one.
TEST_F(ImpulseTest, TheStbSealsOnlyForABillingTheOperatorCertified) {
  ASSERT_TRUE(world.store().set_credit(1001, {5000, kEur}, kT0).ok());
  deliver_emms();
  auto& se = world.stb(1001);
  ASSERT_TRUE(se.impulse_buy(1, kT0).ok());
  LocalLink link(se, world.stb_home(1001));
  testing::LinkHandset handset;
  ASSERT_TRUE(handset.pair(link));
  auto collect = [&](std::span<const std::uint8_t> certificate) {
    const auto id = entitlement::new_request_id();
    return entitlement::reply_body(link.handle(handset.request(entitlement::LinkMessage::collect_history, certificate, id)), id);
  };

  auto none = collect({});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, Errc::not_found);
  EXPECT_NE(none.error().message.find("holds no billing certificate"), std::string::npos) << none.error().message;

  const TestBilling billing(world.store(), 1);
  auto forged = billing.certificate;
  forged.billing_x25519 = crypto::X25519KeyPair::generate().public_key;  // someone's key under the operator's signature
  auto refused = collect(forged.encode());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::auth_failed);
  EXPECT_NE(refused.error().message.find("not signed by the operator"), std::string::npos) << refused.error().message;
  forged.sign(billing.signing.private_key);  // self-signed
  EXPECT_EQ(collect(forged.encode()).error().code, Errc::auth_failed);
  EXPECT_FALSE(se.billing_certificate().ok());  // nothing kept

  // A version 1 certificate (signing key only) verifies but gives no key to seal for.
  auto v1 = billing.certificate;
  v1.version = entitlement::BillingCertificate::kVersionSigningOnly;
  {
    auto db = sql::Database::open(world.dir().file("operator") + "/" + entitlement::EntitlementStore::kDatabaseName).value();
    auto st = db.prepare("SELECT ed25519_private FROM signing WHERE id = 1");
    ASSERT_TRUE(st.step());
    v1.sign(st.column_key(0));  // the operator's issuing key
  }
  ASSERT_TRUE(v1.verify(se.issuer_public()));
  auto old = collect(v1.encode());
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.error().code, Errc::not_entitled);
  EXPECT_NE(old.error().message.find("version 1"), std::string::npos) << old.error().message;

  // The genuine one is kept: later requests without it seal for it too, also after a restart.
  ASSERT_TRUE(collect(billing.certificate.encode()).ok());
  auto& reopened = world.reopen(1001);
  ASSERT_TRUE(reopened.billing_certificate().ok());
  EXPECT_EQ(reopened.billing_certificate()->billing_id, 1u);
  auto sealed = reopened.sealed_unsettled_history();
  ASSERT_TRUE(sealed.ok()) << sealed.error().message;
  EXPECT_TRUE(open_and_verify(billing, world.store(), *sealed, 0, {}).ok());
}

}  // namespace
}  // namespace usher::stb
