// The STB's local link as an attacker in radio range meets it: pairing by the code the STB shows,
// and what it serves only to a paired handset or to billing.
#include "usher/stb/local_link.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "broadcast_fixture.h"
#include "link_handset.h"
#include "usher/core/clock.h"
#include "usher/entitlement/link_auth.h"
#include "usher/entitlement/settlement.h"

namespace usher::stb {
namespace {
using entitlement::LinkMessage;
using entitlement::RequestId;

class LocalLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    world.add_stb(1001);
    world.add_stb(1002);
    world.add_event(7, 1, unix_now() + 3600, 3600, 1250, "Gift");
    // A gift for STB 1001, stored: its signed delivery ack waits to be relayed.
    testing::TestCard buyer(world.store(), "friend", 5000);
    auto bought = world.store().buy_ticket(7, 1001, buyer.spend({1250, {'E', 'U', 'R'}}, entitlement::payee_for(7, 1001)), unix_now());
    ASSERT_TRUE(bought.ok()) << bought.error().message;
    ticket_id = bought->ticket.ticket_id;
    ASSERT_TRUE(world.stb(1001).apply_emm(bought->emm_section).ok());
    ASSERT_EQ(world.stb(1001).pending_acks().size(), 1u);
  }
  // An unsigned request, as anyone may send.
  static std::vector<std::uint8_t> plain(LinkMessage type, std::span<const std::uint8_t> body, const RequestId& id) {
    return entitlement::encode_request(static_cast<entitlement::MessageType>(type), id, body);
  }
  Result<std::vector<std::uint8_t>> call(LocalLink& link, const std::vector<std::uint8_t>& request) {
    return entitlement::reply_body(link.handle(request), entitlement::decode_frame(request)->id);
  }

  testing::BroadcastWorld world;
  std::uint64_t ticket_id = 0;
};

// Before pairing, nobody collects the history or the acks, or says the acks were relayed; a
// forged acks_relayed no longer suppresses the gift's delivery confirmation.
TEST_F(LocalLinkTest, UnpairedCallersGetNothingAndChangeNothing) {
  LocalLink link(world.stb(1001), world.stb_home(1001));
  testing::LinkHandset stranger;  // never paired
  stranger.stb_id = 1001;
  const auto ids = entitlement::encode_ids({ticket_id});
  for (auto type : {LinkMessage::collect_acks, LinkMessage::collect_history, LinkMessage::acks_relayed, LinkMessage::apply_receipt}) {
    SCOPED_TRACE(static_cast<int>(type));
    const auto body = type == LinkMessage::acks_relayed ? ids : std::vector<std::uint8_t>{};
    for (const auto& request : {plain(type, body, entitlement::new_request_id()), stranger.request(type, body, entitlement::new_request_id())}) {
      auto reply = call(link, request);
      ASSERT_FALSE(reply.ok());
      EXPECT_EQ(reply.error().code, Errc::auth_failed) << reply.error().message;
    }
  }
  EXPECT_EQ(world.stb(1001).pending_acks().size(), 1u);  // still there for the owner's handset to relay
  EXPECT_EQ(link.paired_handsets(), 0u);
}

TEST_F(LocalLinkTest, PairsWithTheShownCodeOnlyAndChangesItAfterEachPairingOrThreeWrongTries) {
  LocalLink link(world.stb(1001), world.stb_home(1001));
  const auto shown = link.pairing_code();
  ASSERT_EQ(shown.size(), entitlement::kPairingCodeDigits);
  std::ifstream file(std::filesystem::path(world.stb_home(1001)) / LocalLink::kPairingCodeName);
  std::string in_file;
  file >> in_file;
  EXPECT_EQ(in_file, shown);
  EXPECT_EQ(std::filesystem::status(std::filesystem::path(world.stb_home(1001)) / LocalLink::kPairingCodeName).permissions() &
                std::filesystem::perms::others_read,
            std::filesystem::perms::none);

  // Wrong codes: refused; after three, the STB shows another code (so guessing does not add up).
  auto wrong = [&](const std::string& code) {
    testing::LinkHandset guesser;
    entitlement::PairRequest q;
    q.handset_public = guesser.keys.public_key;
    crypto::random_bytes(q.nonce);
    q.tag = entitlement::pairing_tag(code, q.nonce, q.handset_public);
    return call(link, plain(LinkMessage::pair, entitlement::encode(q), entitlement::new_request_id()));
  };
  const std::string not_it = shown == "000000" ? "000001" : "000000";
  for (int i = 0; i < entitlement::kPairingAttempts; ++i) {
    auto r = wrong(not_it);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::auth_failed);
  }
  EXPECT_NE(link.pairing_code(), shown);
  EXPECT_FALSE(wrong(shown).ok());  // the old code is gone
  EXPECT_EQ(link.paired_handsets(), 0u);

  // The right code pairs once; the code then changes, so it pairs nobody else.
  testing::LinkHandset owner;
  const auto code = link.pairing_code();
  ASSERT_TRUE(owner.pair(link));
  EXPECT_EQ(owner.stb_id, 1001u);
  EXPECT_NE(link.pairing_code(), code);
  EXPECT_FALSE(wrong(code).ok());
  EXPECT_EQ(link.paired_handsets(), 1u);
  // Remembered across a restart of the link.
  LocalLink again(world.stb(1001), world.stb_home(1001));
  auto acks = call(again, owner.request(LinkMessage::collect_acks, {}, entitlement::new_request_id()));
  ASSERT_TRUE(acks.ok()) << acks.error().message;
  EXPECT_EQ(entitlement::decode_blobs(*acks)->size(), 1u);
}

// A paired handset's requests: tampered, old, for another STB, or replayed, none does more than
// the genuine one did once.
TEST_F(LocalLinkTest, PairedRequestsAreBoundToTheirStbTimeAndBytes) {
  LocalLink link(world.stb(1001), world.stb_home(1001));
  LocalLink other(world.stb(1002), world.stb_home(1002));
  testing::LinkHandset owner;
  ASSERT_TRUE(owner.pair(link));
  ASSERT_TRUE(owner.pair(other));  // paired with both boxes; stb_id now 1002
  const auto ids = entitlement::encode_ids({ticket_id});

  // Signed for STB 1002, sent to 1001: refused.
  auto for_other = call(link, owner.request(LinkMessage::acks_relayed, ids, entitlement::new_request_id()));
  EXPECT_EQ(for_other.error().code, Errc::auth_failed);
  owner.stb_id = 1001;
  auto old = call(link, owner.request(LinkMessage::acks_relayed, ids, entitlement::new_request_id(), unix_now() - 3600));
  EXPECT_EQ(old.error().code, Errc::stale);
  auto tampered = owner.request(LinkMessage::acks_relayed, ids, entitlement::new_request_id());
  tampered[2 + 16 + 2 + 7] ^= 1;  // the ticket id, after signing
  EXPECT_EQ(call(link, tampered).error().code, Errc::auth_failed);
  EXPECT_EQ(world.stb(1001).pending_acks().size(), 1u);

  const auto genuine = owner.request(LinkMessage::acks_relayed, ids, entitlement::new_request_id());
  const auto first = link.handle(genuine);
  ASSERT_TRUE(entitlement::reply_body(first, entitlement::decode_frame(genuine)->id).ok());
  EXPECT_TRUE(world.stb(1001).pending_acks().empty());
  EXPECT_EQ(link.handle(genuine), first);  // a replay: the same answer, nothing more
}

// Billing (the hotel front desk) is recognised by its certificate from the operator, not paired;
// a certificate the operator did not sign is refused.
TEST_F(LocalLinkTest, BillingWithTheOperatorsCertificateIsServedAForgedOneIsNot) {
  LocalLink link(world.stb(1001), world.stb_home(1001));
  const auto billing = crypto::Ed25519KeyPair::generate();
  const auto certificate = world.store().certify_billing(1, billing.public_key, crypto::X25519KeyPair::generate().public_key, unix_now());
  auto forged = certificate;
  forged.sign(billing.private_key);  // self-signed
  for (const auto& [cert, expect_ok] : {std::pair{certificate, true}, {forged, false}}) {
    const auto id = entitlement::new_request_id();
    const auto t = static_cast<std::uint8_t>(LinkMessage::collect_history);
    const auto request = entitlement::encode_request(
        static_cast<entitlement::MessageType>(t), id,
        entitlement::sign_link_request(t, id, 1001, {}, cert.encode(), unix_now(), billing.private_key));
    EXPECT_EQ(call(link, request).ok(), expect_ok);
  }
}

}  // namespace
}  // namespace usher::stb
