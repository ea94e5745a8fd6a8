// The broadcast path in memory: headend Scrambler -> STB Descrambler, with the real entitlement
// store, secure elements, libdvbcsa and OpenSSL.
#include "usher/headend/scrambler.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <random>

#include "broadcast_fixture.h"
#include "synthetic_stream.h"
#include "usher/headend/store_key_source.h"
#include "usher/stb/descrambler.h"
#include "usher/streams/generator.h"
#include "usher/streams/io.h"

namespace usher {
using testing::on_pid;
using testing::sections_on;
namespace {

using streams::Scrambling;
using streams::TsPacket;

constexpr std::uint64_t kStart = 1'900'000'000;

// Feeds a transform (Scrambler or Descrambler) in chunks, as a reader would, then finishes it.
template <typename Transform>
std::vector<TsPacket> run_chunked(Transform& t, const std::vector<TsPacket>& in, std::size_t chunk) {
  std::vector<TsPacket> out;
  for (std::size_t i = 0; i < in.size(); i += chunk) {
    t.process(std::span(in).subspan(i, std::min(chunk, in.size() - i)), out);
  }
  t.finish(out);
  return out;
}
std::vector<TsPacket> scramble(headend::Scrambler& s, const std::vector<TsPacket>& in, std::size_t chunk = 1000) {
  return run_chunked(s, in, chunk);
}
std::vector<TsPacket> descramble(stb::Descrambler& d, const std::vector<TsPacket>& in, std::size_t chunk = 777) {
  return run_chunked(d, in, chunk);  // a chunk size unlike the scrambler's, to cross batch boundaries differently
}

class BroadcastTest : public ::testing::Test {
 protected:
  headend::ScramblerConfig config() {
    headend::ScramblerConfig c;
    c.start_unix = kStart;
    c.crypto_period_ms = 1000;
    return c;
  }
  // A synthetic one-service multiplex of `seconds`, scrambled with the store's keys.
  std::vector<TsPacket> scrambled_mux(double seconds, std::vector<TsPacket>* clear_out = nullptr) {
    testing::SyntheticMuxOptions o;
    o.seconds = seconds;
    const auto clear = testing::make_synthetic_mux(o);
    headend::StoreKeySource keys(world.store());
    headend::Scrambler scrambler(config(), keys);
    auto scrambled = scramble(scrambler, clear);
    if (clear_out != nullptr) *clear_out = clear;
    return scrambled;
  }
  testing::BroadcastWorld world;
};

TEST_F(BroadcastTest, ScramblesChosenServiceSignalsItAndEntitledStbRestoresIt) {
  world.add_service(1);
  world.add_service(2);
  auto& viewer = world.add_stb(1001);
  ASSERT_TRUE(world.store().grant(1001, 2, kStart - 10, kStart + 3600).ok());
  testing::SyntheticMuxOptions o;
  o.services = {1, 2};
  o.seconds = 3.5;
  const auto clear = testing::make_synthetic_mux(o);

  headend::StoreKeySource keys(world.store());
  auto cfg = config();
  cfg.services = {2};
  headend::Scrambler scrambler(std::move(cfg), keys);
  const auto scrambled = scramble(scrambler, clear);
  const auto stats = scrambler.stats();
  EXPECT_EQ(stats.services_scrambled, 1u);
  EXPECT_GE(stats.crypto_periods, 4u);
  EXPECT_EQ(stats.packets_out, scrambled.size());
  EXPECT_EQ(scrambled.size(), clear.size() + stats.packets_added - on_pid(clear, 0x101).size());

  // Service 1 untouched, service 2's elementary streams scrambled with both parities, no clear payload.
  EXPECT_EQ(on_pid(scrambled, testing::synthetic_video_pid(0)).size(), on_pid(clear, testing::synthetic_video_pid(0)).size());
  for (const auto& p : on_pid(scrambled, testing::synthetic_video_pid(0))) ASSERT_EQ(p.scrambling(), Scrambling::clear);
  std::map<Scrambling, int> parities;
  for (auto pid : {testing::synthetic_video_pid(1), testing::synthetic_audio_pid(1)}) {
    const auto in = on_pid(clear, pid);
    const auto out = on_pid(scrambled, pid);
    ASSERT_EQ(in.size(), out.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
      ++parities[out[i].scrambling()];
      if (!out[i].payload().empty()) {
        ASSERT_NE(in[i].bytes, out[i].bytes);
      }
    }
  }
  EXPECT_GT(parities[Scrambling::even], 0);
  EXPECT_GT(parities[Scrambling::odd], 0);
  EXPECT_EQ(parities[Scrambling::clear], 0);

  // Signalling: PMT of service 2 has our CA_descriptor, with a new version; the CAT points at EMMs.
  const auto pmts = sections_on(scrambled, 0x101);
  ASSERT_FALSE(pmts.empty());
  auto pmt = streams::Pmt::parse(pmts.back()).value();
  EXPECT_EQ(pmt.version, 1);
  auto ca = streams::find_ca_descriptors(pmt.descriptors);
  ASSERT_EQ(ca.size(), 1u);
  EXPECT_EQ(ca[0].ca_system_id, 0x4AFF);
  const auto cats = sections_on(scrambled, streams::kCatPid);
  ASSERT_FALSE(cats.empty());
  auto cat = streams::Cat::parse(cats.front()).value();
  EXPECT_EQ(streams::find_ca_descriptors(cat.descriptors).at(0).ca_pid, scrambler.emm_pid());
  // ECMs about every 100 ms of stream time.
  const auto ecms = sections_on(scrambled, ca[0].ca_pid);
  EXPECT_GE(ecms.size(), 30u);
  EXPECT_LE(ecms.size(), 45u);

  // No continuity errors introduced.
  streams::ContinuityChecker cc;
  for (const auto& p : scrambled) cc.check(p);
  EXPECT_EQ(cc.errors(), 0u);

  // The entitled STB gets the elementary streams back bit for bit.
  stb::Descrambler d(&viewer, {});
  const auto restored = descramble(d, scrambled);
  ASSERT_EQ(restored.size(), scrambled.size());
  for (auto pid : {testing::synthetic_video_pid(1), testing::synthetic_audio_pid(1)}) {
    const auto in = on_pid(clear, pid);
    const auto out = on_pid(restored, pid);
    ASSERT_EQ(in.size(), out.size());
    for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(in[i].bytes, out[i].bytes) << "pid " << pid << " packet " << i;
  }
  const auto ds = d.stats();
  EXPECT_EQ(ds.packets_left_scrambled, 0u);
  EXPECT_EQ(ds.emm_taken, 2u);  // its key EMM (group and global keys) and its grant
  EXPECT_EQ(ds.cc_errors, 0u);
  EXPECT_GE(ds.ecm_accepted, 4u);
}

TEST_F(BroadcastTest, UnentitledExpiredAndRevokedStbsCannotDescrambleAndSayWhy) {
  world.add_service(1);
  auto& stranger = world.add_stb(2001);
  auto& expired = world.add_stb(2002);
  ASSERT_TRUE(world.store().grant(2002, 1, kStart - 7200, kStart - 3600).ok());
  // It received the EMM while the grant was current; the headend no longer carousels it.
  ASSERT_EQ(*expired.apply_emm(testing::box_emm_sections(world.store(), kStart - 7200).at(0)), stb::EmmOutcome::applied);
  const auto scrambled = scrambled_mux(1.5);
  for (auto* se : {&stranger, &expired}) {
    stb::Descrambler d(se, {});
    const auto out = descramble(d, scrambled);
    EXPECT_EQ(d.stats().packets_descrambled, 0u);
    EXPECT_GT(d.stats().packets_left_scrambled, 0u);
    const auto services = d.services();
    ASSERT_EQ(services.size(), 1u);
    EXPECT_FALSE(services[0].descrambling);
    EXPECT_NE(services[0].reason.find(se == &stranger ? "no entitlement" : "ended at"), std::string::npos) << services[0].reason;
  }
}

TEST_F(BroadcastTest, ServiceWithoutKeyIsDroppedNotSentInClear) {
  testing::SyntheticMuxOptions o;
  o.seconds = 0.5;
  const auto clear = testing::make_synthetic_mux(o);
  headend::StoreKeySource keys(world.store());  // empty catalogue
  headend::Scrambler scrambler(config(), keys);
  const auto out = scramble(scrambler, clear);
  EXPECT_EQ(scrambler.stats().services_scrambled, 0u);
  EXPECT_TRUE(on_pid(out, testing::synthetic_video_pid(0)).empty());
}

TEST_F(BroadcastTest, NullPacketsAreReplacedByInsertedPackets) {
  world.add_service(1);
  testing::SyntheticMuxOptions o;
  o.seconds = 2;
  o.null_fraction = 0.2;
  const auto clear = testing::make_synthetic_mux(o);
  headend::StoreKeySource keys(world.store());
  auto cfg = config();
  cfg.insert_policy = headend::InsertPolicy::add;  // nulls replaced where at hand, else added
  headend::Scrambler scrambler(std::move(cfg), keys);
  const auto out = scramble(scrambler, clear);
  const auto s = scrambler.stats();
  EXPECT_GT(s.nulls_replaced, 20u);
  EXPECT_EQ(out.size(), clear.size() - on_pid(clear, 0x100).size() + s.packets_added);
}

TEST_F(BroadcastTest, FixedControlWordModeInteroperatesWithoutEcms) {
  world.add_service(1);
  testing::SyntheticMuxOptions o;
  o.seconds = 2.5;
  const auto clear = testing::make_synthetic_mux(o);
  std::ofstream(world.dir().file("cw.txt")) << "0102030604050611\n1112134614151650\n";
  auto cfg = config();
  cfg.fixed_cws = read_cw_file(world.dir().file("cw.txt")).value();
  headend::StoreKeySource keys(world.store());
  headend::Scrambler scrambler(std::move(cfg), keys);
  const auto scrambled = scramble(scrambler, clear);
  stb::DescramblerConfig dc;
  dc.fixed_cws = read_cw_file(world.dir().file("cw.txt")).value();
  stb::Descrambler d(nullptr, std::move(dc));
  const auto restored = descramble(d, scrambled);
  const auto in = on_pid(clear, testing::synthetic_video_pid(0));
  const auto back = on_pid(restored, testing::synthetic_video_pid(0));
  ASSERT_EQ(in.size(), back.size());
  for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(in[i].bytes, back[i].bytes) << i;
}

TEST_F(BroadcastTest, BadInputNeverCrashesAndIsCounted) {
  world.add_service(1);
  auto& viewer = world.add_stb(1001);
  ASSERT_TRUE(world.store().grant(1001, 1, kStart - 10, kStart + 3600).ok());
  testing::SyntheticMuxOptions o;
  o.seconds = 1;
  auto packets = testing::make_synthetic_mux(o);
  std::mt19937 rng(5);
  for (std::size_t i = 0; i < packets.size(); i += 37) {
    auto& p = packets[i];
    switch (rng() % 4) {
      case 0: for (auto& b : p.bytes) b = static_cast<std::uint8_t>(rng()); p.bytes[0] = 0x47; break;  // garbage
      case 1: p.set_cc(static_cast<std::uint8_t>(p.cc() + 5)); break;                                   // CC jump
      case 2: p.bytes[4 + rng() % 184] ^= 0xFF; break;                                                  // corrupt
      default: p.set_adaptation_payload(true, true); p.bytes[4] = 0xFF; break;                          // bad AF length
    }
  }
  headend::StoreKeySource keys(world.store());
  headend::Scrambler scrambler(config(), keys);
  const auto scrambled = scramble(scrambler, packets);
  stb::Descrambler d(&viewer, {});
  const auto out = descramble(d, scrambled);
  EXPECT_EQ(out.size(), scrambled.size());
  EXPECT_GT(d.stats().cc_errors, 0u);
}

TEST_F(BroadcastTest, TamperedEcmsAreDeniedAndKeysKept) {
  world.add_service(1);
  auto& viewer = world.add_stb(1001);
  ASSERT_TRUE(world.store().grant(1001, 1, kStart - 10, kStart + 3600).ok());
  std::vector<TsPacket> clear;
  auto scrambled = scrambled_mux(1, &clear);
  const std::uint16_t ecm_pid = 0x1FE0;
  int flipped = 0;
  for (auto& p : scrambled) {
    if (p.pid() == ecm_pid && ++flipped % 2 == 0) p.bytes[40] ^= 0x01;  // every other ECM forged
  }
  stb::Descrambler d(&viewer, {});
  const auto restored = descramble(d, scrambled);
  EXPECT_GT(d.stats().ecm_denied, 0u);
  EXPECT_EQ(d.stats().packets_left_scrambled, 0u);  // the good ECMs carried the keys
  const auto in = on_pid(clear, testing::synthetic_video_pid(0));
  const auto back = on_pid(restored, testing::synthetic_video_pid(0));
  ASSERT_EQ(in.size(), back.size());
  for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(in[i].bytes, back[i].bytes);
}

TEST_F(BroadcastTest, RealGeneratedStreamRoundTripsBitForBit) {
  world.add_service(1);
  auto& viewer = world.add_stb(1001);
  ASSERT_TRUE(world.store().grant(1001, 1, kStart - 10, kStart + 3600).ok());
  streams::GeneratorOptions g;
  g.seconds = 3;
  streams::generate_test_stream(world.dir().file("source.ts"), g);
  const auto clear = streams::read_ts_file(world.dir().file("source.ts"));
  ASSERT_GT(clear.size(), 1000u);
  headend::StoreKeySource keys(world.store());
  headend::Scrambler scrambler(config(), keys);
  const auto scrambled = scramble(scrambler, clear, 4096);
  EXPECT_TRUE(scrambler.clock().bitrate_measured());
  stb::Descrambler d(&viewer, {});
  const auto restored = descramble(d, scrambled, 4096);
  // Every packet of the source comes back unchanged apart from the PMT, which now carries our CA
  // descriptor, the packets the headend added, and null packets, which it may use for them (the
  // muxer pads its output with a few).
  std::map<std::uint16_t, std::vector<TsPacket>> by_pid;
  for (const auto& p : restored) by_pid[p.pid()].push_back(p);
  std::map<std::uint16_t, std::size_t> next;
  std::size_t compared = 0;
  for (const auto& p : clear) {
    if (p.pid() == 0x20 || p.pid() == 0 || p.pid() == streams::kNullPid) continue;  // PMT rewritten; PAT checked elsewhere
    auto& list = by_pid[p.pid()];
    const auto i = next[p.pid()]++;
    ASSERT_LT(i, list.size());
    ASSERT_EQ(list[i].bytes, p.bytes) << "pid " << p.pid() << " #" << i;
    ++compared;
  }
  EXPECT_GT(compared, clear.size() * 9 / 10);
}

}  // namespace
}  // namespace usher

namespace usher {
namespace {

// A hostile multiplex points the PMT at PID 0, the EMMs at the CAT's PID and the ECMs at the
// PMT's own PID: the STB must ignore those roles rather than replace a running assembler.
TEST(HostileSignalling, PidCollisionsAreIgnored) {
  testing::BroadcastWorld world;
  world.add_service(1);
  auto& viewer = world.add_stb(1001);
  std::vector<TsPacket> mux;
  streams::Pat pat;
  pat.programs = {{1, 0x0000}, {2, 0x0100}};
  streams::Pmt pmt;
  pmt.program_number = 2;
  pmt.pcr_pid = 0x200;
  pmt.streams = {{0x1B, 0x0100, {}}};
  streams::append_ca_descriptor(pmt.descriptors, {0x4AFF, 0x0100, {}});
  streams::Cat cat;
  streams::append_ca_descriptor(cat.descriptors, {0x4AFF, 0x0001, {}});
  streams::SectionPacketizer pat_pz(0), pmt_pz(0x100), cat_pz(1);
  for (int i = 0; i < 3; ++i) {
    pat_pz.packetize(pat.serialize(), mux);
    cat_pz.packetize(cat.serialize(), mux);
    pmt_pz.packetize(pmt.serialize(), mux);
  }
  stb::Descrambler d(&viewer, {});
  const auto out = descramble(d, mux, 1);
  EXPECT_EQ(out.size(), mux.size());
}

}  // namespace
}  // namespace usher

namespace usher {
namespace {

TEST_F(BroadcastTest, RatedPpvEventNeedsTheParentalPin) {
  world.add_service(1);
  auto& kid = world.add_stb(1001);
  const auto e = world.add_event(9, 1, kStart - 60, 3600, 300, "Late Film", 16);
  auto handset = crypto::Ed25519KeyPair::generate();
  auto card = world.store().register_handset("parent", handset.public_key, {'E', 'U', 'R'}).value();
  entitlement::TestAcquirer acquirer;
  ASSERT_TRUE(world.store().top_up(card.card_id, 1000, "visa", acquirer).ok());
  entitlement::SpendAuthorization spend;
  spend.card_id = card.card_id;
  spend.amount = e.price;
  spend.payee = entitlement::payee_for(9, 1001);
  crypto::random_bytes(spend.nonce);
  spend.sign(handset.private_key);
  ASSERT_TRUE(world.store().buy_ticket(9, 1001, spend, kStart - 120).ok());
  EXPECT_EQ(kid.set_parental("123", 12, "").error().code, Errc::invalid_argument);
  ASSERT_TRUE(kid.set_parental("4321", 12, "").ok());
  EXPECT_EQ(kid.set_parental("9999", 18, "0000").error().code, Errc::auth_failed);
  EXPECT_FALSE(kid.verify_pin("0000"));
  EXPECT_TRUE(kid.verify_pin("4321"));

  const auto scrambled = scrambled_mux(1.5);
  {
    stb::Descrambler locked(&kid, {});
    descramble(locked, scrambled);
    EXPECT_EQ(locked.stats().packets_descrambled, 0u);
    EXPECT_NE(locked.services().at(0).reason.find("parental limit of 12"), std::string::npos) << locked.services().at(0).reason;
  }
  stb::DescramblerConfig unlocked;
  unlocked.parental_unlocked = true;
  stb::Descrambler d(&kid, std::move(unlocked));
  descramble(d, scrambled);
  EXPECT_EQ(d.stats().packets_left_scrambled, 0u);
}

}  // namespace
}  // namespace usher

namespace usher {
namespace {

TEST_F(BroadcastTest, EitSignalsThePpvEventWithTheEcmsEventId) {
  world.add_service(1);
  auto e = world.add_event(4242, 1, kStart - 30, 600, 499, "Derby");
  e.event_id = 70000;
  e.start = kStart + 3600;
  EXPECT_EQ(world.store().add_event(e).error().code, Errc::invalid_argument);  // EIT ids are 16 bits
  e.event_id = 4243;
  e.title = "Late Show";
  ASSERT_TRUE(world.store().add_event(e).ok());
  const auto scrambled = scrambled_mux(2.5);
  const auto eits = sections_on(scrambled, streams::kEitPid);
  ASSERT_GE(eits.size(), 2u);
  auto present = streams::Eit::parse(eits[0]).value();
  auto following = streams::Eit::parse(eits[1]).value();
  ASSERT_EQ(present.events.size(), 1u);
  EXPECT_EQ(present.events[0].event_id, 4242);
  EXPECT_EQ(present.events[0].running_status, 4);
  EXPECT_EQ(streams::short_event_name(present.events[0].descriptors), "Derby");
  ASSERT_EQ(following.events.size(), 1u);
  EXPECT_EQ(following.events[0].event_id, 4243);
  const auto ecms = sections_on(scrambled, 0x1FE0);
  ASSERT_FALSE(ecms.empty());
  EXPECT_EQ(entitlement::peek_ecm(ecms[0])->event_id, 4242u);
  // ffmpeg's demuxer still reads the multiplex.
  streams::ContinuityChecker cc;
  for (const auto& p : scrambled) cc.check(p);
  EXPECT_EQ(cc.errors(), 0u);
}

}  // namespace
}  // namespace usher

namespace usher {
namespace {

// Issue 8: the ECM before a PPV event carried the event's first control word under the service key,
// so every subscriber watched the event's first crypto period without a ticket (and the symmetric
// leaks at its end and between events back to back). Two events back to back between free
// programmes; four boxes; with crypto periods that fall on the events' edges (1 s) and that do not
// (0.7 s, and 2.5 s: longer than an event). Every elementary-stream packet is checked: a box
// restores it bit for bit exactly when it may watch it at that packet's stream time.
TEST(PpvBoundaries, NoControlWordOfAnEventReachesItsNonBuyersAndTicketHoldersMissNothing) {
  constexpr std::uint64_t kEventA_start = kStart + 2, kEventB_start = kStart + 4, kEventB_end = kStart + 6;
  for (const std::uint32_t period_ms : {1000u, 700u, 2500u}) {
    SCOPED_TRACE("crypto period " + std::to_string(period_ms) + " ms");
    testing::BroadcastWorld world;
    world.add_service(1);
    const auto a = world.add_event(41, 1, kEventA_start, 2, 500, "A");
    const auto b = world.add_event(42, 1, kEventB_start, 2, 500, "B");
    testing::TestCard card(world.store(), "buyer", 10'000);
    enum Box : std::uint32_t { kSubscriber = 1001, kBuyerA = 1002, kBuyerB = 1003, kTicketOnlyA = 1004 };
    for (auto id : {kSubscriber, kBuyerA, kBuyerB, kTicketOnlyA}) world.add_stb(id);
    for (auto id : {kSubscriber, kBuyerA, kBuyerB}) ASSERT_TRUE(world.store().grant(id, 1, kStart - 10, kStart + 3600).ok());
    for (auto [event, box] : {std::pair{&a, kBuyerA}, {&b, kBuyerB}, {&a, kTicketOnlyA}}) {
      ASSERT_TRUE(world.store().buy_ticket(event->event_id, box, card.spend(event->price, entitlement::payee_for(event->event_id, box)), kStart - 60).ok());
    }
    auto may_watch = [&](std::uint32_t box, std::uint64_t time) {
      if (time >= kEventA_start && time < kEventB_start) return box == kBuyerA || box == kTicketOnlyA;
      if (time >= kEventB_start && time < kEventB_end) return box == kBuyerB;
      return box != kTicketOnlyA;
    };

    testing::SyntheticMuxOptions o;
    o.seconds = 8;
    const auto clear = testing::make_synthetic_mux(o);
    headend::StoreKeySource keys(world.store());
    headend::ScramblerConfig cfg;
    cfg.start_unix = kStart;
    cfg.crypto_period_ms = period_ms;
    headend::Scrambler scrambler(std::move(cfg), keys);
    const auto scrambled = scramble(scrambler, clear);
    EXPECT_GE(scrambler.stats().crypto_periods, 8000u / period_ms);

    // Each packet's broadcast time, as the scrambler reckons it: stream time from the PCRs.
    std::vector<std::uint64_t> time_of;
    streams::StreamClock clock;
    for (const auto& p : clear) {
      clock.observe(p);
      time_of.push_back(kStart + clock.now() / streams::kPcrHz);
    }

    for (auto box : {kSubscriber, kBuyerA, kBuyerB, kTicketOnlyA}) {
      SCOPED_TRACE("STB " + std::to_string(box));
      stb::Descrambler d(&world.stb(box), {});
      const auto restored = descramble(d, scrambled);
      for (auto pid : {testing::synthetic_video_pid(0), testing::synthetic_audio_pid(0)}) {
        std::size_t i = 0;
        std::size_t leaked = 0, missed = 0, first_wrong = 0;
        const std::vector<TsPacket> out = on_pid(restored, pid);
        for (std::size_t n = 0; n < clear.size(); ++n) {
          if (clear[n].pid() != pid) continue;
          ASSERT_LT(i, out.size());
          const auto& got = out[i++];
          if (clear[n].payload().empty()) continue;
          const bool allowed = may_watch(box, time_of[n]);
          const bool descrambled = got.bytes == clear[n].bytes;
          if (descrambled == allowed) continue;
          if (leaked + missed == 0) first_wrong = n;
          ++(descrambled ? leaked : missed);
        }
        EXPECT_EQ(leaked, 0u) << "pid " << pid << ": packets descrambled without the right, first #" << first_wrong
                              << " at broadcast second +" << time_of[first_wrong] - kStart;
        EXPECT_EQ(missed, 0u) << "pid " << pid << ": packets not descrambled, first #" << first_wrong
                              << " at broadcast second +" << time_of[first_wrong] - kStart;
      }
    }
  }
}

}  // namespace
}  // namespace usher

namespace usher {
namespace {

// The crypto period an ECM packet (one section in one packet) carries, opened with the service key.
std::uint32_t ecm_period(const TsPacket& p, const Key256& service_key) {
  const auto payload = p.payload();
  const auto section = payload.subspan(1 + payload[0]);
  const auto length = 3u + (((section[1] & 0x0F) << 8) | section[2]);
  return entitlement::decode_ecm_part(section.first(length), entitlement::EcmPart::current, service_key).value().crypto_period;
}

// Issue 8: an ECM of an earlier crypto period replayed later was taken; the STB said "descrambling:
// true" while its output was garbage. Every ECM of period 3 after its first is replaced by the first
// ECM of period 1 (the same parity), keeping the continuity counters.
TEST_F(BroadcastTest, ReplayedEcmOfAnEarlierPeriodIsRefusedCountedAndChangesNothing) {
  world.add_service(1);
  auto& viewer = world.add_stb(1001);
  ASSERT_TRUE(world.store().grant(1001, 1, kStart - 10, kStart + 3600).ok());
  std::vector<TsPacket> clear;
  auto scrambled = scrambled_mux(5, &clear);
  const auto key = world.store().service_key(1).value();
  const std::uint16_t ecm_pid = 0x1FE0;
  std::optional<TsPacket> old_ecm;
  bool first_of_period_3 = true;
  int replayed = 0;
  for (auto& p : scrambled) {
    if (p.pid() != ecm_pid) continue;
    const auto period = ecm_period(p, key.key);
    if (period == 1 && !old_ecm) old_ecm = p;
    if (period != 3) continue;
    if (first_of_period_3) {
      first_of_period_3 = false;
      continue;
    }
    const auto cc = p.cc();
    p = *old_ecm;
    p.set_cc(cc);
    ++replayed;
  }
  ASSERT_GT(replayed, 5);
  stb::Descrambler d(&viewer, {});
  const auto restored = descramble(d, scrambled);
  EXPECT_EQ(d.stats().ecm_stale, 1u);  // distinct ECMs: the replay repeats, and is opened once
  EXPECT_EQ(d.stats().packets_left_scrambled, 0u);
  EXPECT_TRUE(d.services().at(0).descrambling);
  for (auto pid : {testing::synthetic_video_pid(0), testing::synthetic_audio_pid(0)}) {
    const auto in = on_pid(clear, pid);
    const auto back = on_pid(restored, pid);
    ASSERT_EQ(in.size(), back.size());
    for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(in[i].bytes, back[i].bytes) << "pid " << pid << " packet " << i;
  }
}

// A restarted headend counts crypto periods from 0 again, later in broadcast time: the STB follows.
TEST_F(BroadcastTest, RestartedHeadendIsFollowedThoughItsPeriodsCountFromZero) {
  world.add_service(1);
  auto& viewer = world.add_stb(1001);
  ASSERT_TRUE(world.store().grant(1001, 1, kStart - 10, kStart + 3600).ok());
  testing::SyntheticMuxOptions o;
  o.seconds = 3;
  const auto clear = testing::make_synthetic_mux(o);
  headend::StoreKeySource keys(world.store());
  headend::Scrambler first(config(), keys);
  auto scrambled = scramble(first, clear);
  auto cfg = config();
  cfg.start_unix = kStart + 60;
  headend::Scrambler second(std::move(cfg), keys);
  const auto again = scramble(second, clear);
  scrambled.insert(scrambled.end(), again.begin(), again.end());
  stb::Descrambler d(&viewer, {});
  const auto restored = descramble(d, scrambled);
  EXPECT_EQ(d.stats().ecm_stale, 0u);
  EXPECT_EQ(d.stats().packets_left_scrambled, 0u);
  const auto in = on_pid(clear, testing::synthetic_video_pid(0));
  const auto back = on_pid(restored, testing::synthetic_video_pid(0));
  ASSERT_EQ(back.size(), 2 * in.size());
  for (std::size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i].bytes, in[i % in.size()].bytes) << i;
}

}  // namespace
}  // namespace usher

namespace usher {
namespace {

// An event added while the headend runs, starting inside a crypto period already announced: the
// period is cut at the event's start and the next control word replaced, sealed for its buyers.
TEST(PpvBoundaries, EventAddedWhileOnAirIsKeptFromNonBuyersToo) {
  testing::BroadcastWorld world;
  world.add_service(1);
  testing::TestCard card(world.store(), "buyer", 10'000);
  constexpr std::uint32_t kSubscriber = 1001, kBuyer = 1002;
  for (auto id : {kSubscriber, kBuyer}) {
    world.add_stb(id);
    ASSERT_TRUE(world.store().grant(id, 1, kStart - 10, kStart + 3600).ok());
  }
  testing::SyntheticMuxOptions o;
  o.seconds = 7;
  const auto clear = testing::make_synthetic_mux(o);
  headend::StoreKeySource keys(world.store());
  headend::ScramblerConfig cfg;
  cfg.start_unix = kStart;
  cfg.crypto_period_ms = 10'000;  // one period would cover the whole event
  headend::Scrambler scrambler(std::move(cfg), keys);
  std::vector<TsPacket> scrambled;
  const std::size_t first_second = clear.size() / 7;
  scrambler.process(std::span(clear).first(first_second), scrambled);
  const auto e = world.add_event(43, 1, kStart + 3, 2, 500, "Late addition");
  ASSERT_TRUE(world.store().buy_ticket(43, kBuyer, card.spend(e.price, entitlement::payee_for(43, kBuyer)), kStart).ok());
  scrambler.refresh_emms();
  scrambler.process(std::span(clear).subspan(first_second), scrambled);
  scrambler.finish(scrambled);

  std::vector<std::uint64_t> time_of;
  streams::StreamClock clock;
  for (const auto& p : clear) {
    clock.observe(p);
    time_of.push_back(kStart + clock.now() / streams::kPcrHz);
  }
  for (auto box : {kSubscriber, kBuyer}) {
    SCOPED_TRACE("STB " + std::to_string(box));
    stb::Descrambler d(&world.stb(box), {});
    const auto restored = descramble(d, scrambled);
    const auto pid = testing::synthetic_video_pid(0);
    const auto out = on_pid(restored, pid);
    std::size_t i = 0, leaked = 0, missed = 0;
    for (std::size_t n = 0; n < clear.size(); ++n) {
      if (clear[n].pid() != pid) continue;
      const auto& got = out.at(i++);
      if (clear[n].payload().empty()) continue;
      const bool in_event = time_of[n] >= kStart + 3 && time_of[n] < kStart + 5;
      const bool allowed = box == kBuyer || !in_event;
      const bool descrambled = got.bytes == clear[n].bytes;
      if (descrambled && !allowed) ++leaked;
      if (!descrambled && allowed) ++missed;
    }
    EXPECT_EQ(leaked, 0u);
    EXPECT_EQ(missed, 0u);
  }
}

}  // namespace
}  // namespace usher

namespace usher {
namespace {

// What status lines and metrics show: each service of the PAT with its state, and the input's
// continuity errors (one packet of the video taken out of the input is one error).
TEST_F(BroadcastTest, ServiceStatesAndInputContinuityErrorsAreReported) {
  world.add_service(1);
  world.add_service(2);
  testing::SyntheticMuxOptions o;
  o.services = {1, 2};
  o.seconds = 2.5;
  auto clear = testing::make_synthetic_mux(o);
  std::size_t video = 0;
  for (std::size_t i = 0; i < clear.size(); ++i) {
    if (clear[i].pid() == testing::synthetic_video_pid(1) && ++video == 100) {
      clear.erase(clear.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  headend::StoreKeySource keys(world.store());
  auto cfg = config();
  cfg.services = {2};
  headend::Scrambler scrambler(std::move(cfg), keys);
  EXPECT_TRUE(scrambler.service_states().empty());  // no PAT seen yet
  (void)scramble(scrambler, clear);
  const auto states = scrambler.service_states();
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0].service_id, 1);
  EXPECT_EQ(states[0].mode, headend::ServiceState::Mode::clear);
  EXPECT_EQ(states[1].service_id, 2);
  EXPECT_EQ(states[1].mode, headend::ServiceState::Mode::scrambled);
  EXPECT_GE(states[1].crypto_period, 1u);  // 1 s periods over 2.5 s
  EXPECT_NE(states[1].ecm_pid, 0);
  EXPECT_STREQ(headend::to_string(states[1].mode), "scrambled");
  EXPECT_EQ(scrambler.stats().input_cc_errors, 1u);
}

}  // namespace
}  // namespace usher
