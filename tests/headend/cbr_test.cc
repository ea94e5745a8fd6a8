// Issue 9 §1: a constant-bitrate input keeps its rate through the headend, and what the headend
// inserts keeps to its bandwidth. Real CBR multiplexes made by ffmpeg `-muxrate`, the real scrambler,
// entitlement store, secure elements and libdvbcsa.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "broadcast_fixture.h"
#include "synthetic_stream.h"
#include "usher/headend/scrambler.h"
#include "usher/headend/store_key_source.h"
#include "usher/stb/descrambler.h"
#include "usher/streams/io.h"
#include "usher/streams/psi.h"
#include "usher/streams/section.h"

namespace usher {
using testing::on_pid;
using testing::sections_on;
namespace {

using streams::TsPacket;

constexpr std::uint64_t kStart = 1'900'000'000;
constexpr std::uint16_t kEcmPid = 0x1FE0;
constexpr std::uint16_t kEmmPid = 0x1FF0;

template <typename Transform>
std::vector<TsPacket> run_chunked(Transform& t, const std::vector<TsPacket>& in, std::size_t chunk) {
  std::vector<TsPacket> out;
  for (std::size_t i = 0; i < in.size(); i += chunk) t.process(std::span(in).subspan(i, std::min(chunk, in.size() - i)), out);
  t.finish(out);
  return out;
}

std::vector<std::size_t> indexes_on(const std::vector<TsPacket>& packets, std::uint16_t pid) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < packets.size(); ++i) {
    if (packets[i].pid() == pid) out.push_back(i);
  }
  return out;
}

// Packets from one PCR to the next on the PCR PID, and the PCR values.
struct PcrIntervals {
  std::vector<std::size_t> packets;
  std::vector<std::uint64_t> pcrs;
};
PcrIntervals pcr_intervals(const std::vector<TsPacket>& packets, std::uint16_t pcr_pid) {
  PcrIntervals r;
  std::optional<std::size_t> last;
  for (std::size_t i = 0; i < packets.size(); ++i) {
    if (packets[i].pid() != pcr_pid) continue;
    const auto pcr = packets[i].pcr();
    if (!pcr) continue;
    if (last) r.packets.push_back(i - *last);
    r.pcrs.push_back(*pcr);
    last = i;
  }
  return r;
}

// A CBR multiplex by ffmpeg: MPEG-2 video at a constant 1.5 Mbit/s and MP2 audio in a 3 Mbit/s
// mux, so about 40 % of it is null packets. Service 1, PMT PID 0x1000, video 0x100, audio 0x101.
std::vector<TsPacket> ffmpeg_cbr(const testing::BroadcastWorld& world, int seconds, const std::string& muxrate) {
  const auto path = world.dir().file("cbr-" + muxrate + ".ts");
  const std::string command =
      "ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i "
      "sine=frequency=440:sample_rate=48000 -t " +
      std::to_string(seconds) +
      " -c:v mpeg2video -b:v 1500k -minrate 1500k -maxrate 1500k -bufsize 500k -c:a mp2 -b:a 128k -f mpegts -muxrate " + muxrate +
      " " + path;
  if (std::system(command.c_str()) != 0) throw std::runtime_error("ffmpeg failed: " + command);
  return streams::read_ts_file(path);
}

headend::ScramblerConfig config() {
  headend::ScramblerConfig c;
  c.start_unix = kStart;
  c.crypto_period_ms = 1000;
  return c;
}

// Issue 9: a 3 Mbit/s CBR input with 41 % nulls came out at 3.000-3.375 Mbit/s between PCRs,
// packets being added although nulls were there.
TEST(ConstantBitrate, InsertedPacketsReplaceNullsPacketForPacketAndThePcrRateIsKept) {
  testing::BroadcastWorld world;
  world.add_service(1);
  auto& viewer = world.add_stb(1001);
  ASSERT_TRUE(world.store().grant(1001, 1, kStart - 10, kStart + 3600).ok());
  const auto clear = ffmpeg_cbr(world, 6, "3000000");
  const auto nulls = on_pid(clear, streams::kNullPid).size();
  ASSERT_GT(nulls * 100, clear.size() * 35) << "the input should be about 40 % stuffing";

  headend::StoreKeySource keys(world.store());
  headend::Scrambler scrambler(config(), keys);
  const auto scrambled = run_chunked(scrambler, clear, 1000);
  const auto s = scrambler.stats();
  EXPECT_TRUE(s.replacing_nulls);
  EXPECT_EQ(s.packets_added, 0u);
  EXPECT_EQ(s.inserts_late, 0u);
  EXPECT_LE(s.inserts_unsent, 3u);  // the last repetitions, still waiting for a null at the end
  EXPECT_EQ(s.services_scrambled, 1u);

  // Packet count in = out. Every PCR lies where the input's constant rate puts it (27 MHz ticks per
  // packet at 3 Mbit/s: 13536): the rate from PCR to PCR is the input's, with no jitter, including
  // where a packet that had to go at once went ahead of the null given back for it.
  ASSERT_EQ(scrambled.size(), clear.size());
  constexpr std::uint64_t kTicksPerPacket = 188 * 8 * streams::kPcrHz / 3'000'000;
  const auto first_pcr = [](const std::vector<TsPacket>& packets) {
    for (std::size_t i = 0; i < packets.size(); ++i) {
      if (packets[i].pid() == 0x100 && packets[i].pcr()) return std::pair{i, *packets[i].pcr()};
    }
    throw std::runtime_error("no PCR");
  };
  const auto [i0, pcr0] = first_pcr(clear);
  std::size_t pcrs = 0;
  for (const auto* packets : {&clear, &scrambled}) {
    for (std::size_t i = 0; i < packets->size(); ++i) {
      const auto pcr = (*packets)[i].pcr();
      if ((*packets)[i].pid() != 0x100 || !pcr) continue;
      const double expected = static_cast<double>(pcr0) + (static_cast<double>(i) - static_cast<double>(i0)) * kTicksPerPacket;
      ASSERT_NEAR(static_cast<double>(*pcr), expected, 27.0) << (packets == &clear ? "input" : "output") << " packet " << i;
      ++pcrs;
    }
  }
  const auto in = pcr_intervals(clear, 0x100);
  const auto out = pcr_intervals(scrambled, 0x100);
  ASSERT_GT(in.packets.size(), 100u);
  ASSERT_EQ(out.packets.size(), in.packets.size());
  for (std::size_t i = 0; i + 1 < out.pcrs.size(); ++i) {
    const auto bits = std::uint64_t{out.packets[i]} * 188 * 8;
    const auto rate = bits * streams::kPcrHz / (out.pcrs[i + 1] - out.pcrs[i]);
    ASSERT_NEAR(static_cast<double>(rate), 3'000'000.0, 1.0) << "PCR interval " << i;
  }

  // What was inserted is there, in place of nulls; no continuity error.
  EXPECT_GE(on_pid(scrambled, kEcmPid).size(), 55u);  // 6 s at 100 ms
  EXPECT_GE(on_pid(scrambled, streams::kCatPid).size(), 11u);
  EXPECT_FALSE(on_pid(scrambled, kEmmPid).empty());
  EXPECT_GT(s.nulls_replaced, 70u);
  EXPECT_LT(on_pid(scrambled, streams::kNullPid).size() + 70, nulls);
  streams::ContinuityChecker cc;
  for (const auto& p : scrambled) cc.check(p);
  EXPECT_EQ(cc.errors(), 0u);

  // ffmpeg's own SDT is kept (its names, its network id), in place, with free_CA_mode now set.
  const auto sdts = sections_on(scrambled, streams::kSdtPid);
  ASSERT_FALSE(sdts.empty());
  EXPECT_EQ(sdts.size(), sections_on(clear, streams::kSdtPid).size());
  const auto input_sdt = streams::Sdt::parse(sections_on(clear, streams::kSdtPid).front()).value();
  for (const auto& section : sdts) {
    const auto sdt = streams::Sdt::parse(section).value();
    EXPECT_EQ(sdt.original_network_id, input_sdt.original_network_id);
    ASSERT_EQ(sdt.services.size(), 1u);
    EXPECT_TRUE(sdt.services[0].free_ca_mode);
    EXPECT_FALSE(input_sdt.services[0].free_ca_mode);
    EXPECT_EQ(streams::service_descriptor_name(sdt.services[0].descriptors), "Service01");
  }

  // The entitled box restores every elementary-stream packet bit for bit.
  stb::Descrambler d(&viewer, {});
  const auto restored = run_chunked(d, scrambled, 777);
  for (const std::uint16_t pid : {std::uint16_t{0x100}, std::uint16_t{0x101}}) {
    const auto a = on_pid(clear, pid);
    const auto b = on_pid(restored, pid);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      // A PCR moved on (while a packet sent ahead was not given back) is the only change.
      const auto pa = a[i].payload();
      const auto pb = b[i].payload();
      ASSERT_TRUE(std::equal(pa.begin(), pa.end(), pb.begin(), pb.end())) << "pid " << pid << " packet " << i;
      if (a[i].pcr() == b[i].pcr()) {
        ASSERT_EQ(a[i].bytes, b[i].bytes) << "pid " << pid << " packet " << i;
      }
    }
  }
  EXPECT_EQ(d.stats().packets_left_scrambled, 0u);
  EXPECT_EQ(d.stats().cc_errors, 0u);
}

// Too little stuffing: automatic adds (and says how much is missing); replace-nulls never adds
// (repetitions wait or are skipped, counted); add adds.
TEST(ConstantBitrate, TooLittleStuffingIsCountedAndAddedOnlyWhereAllowed) {
  testing::BroadcastWorld world;
  world.add_service(1);
  auto& viewer = world.add_stb(1001);
  ASSERT_TRUE(world.store().grant(1001, 1, kStart - 10, kStart + 3600).ok());
  testing::SyntheticMuxOptions o;
  o.seconds = 3;
  o.null_fraction = 0.004;  // 16 kbit/s of stuffing at 4 Mbit/s: far too little for ECMs and EMMs
  const auto clear = testing::make_synthetic_mux(o);
  for (const auto policy : {headend::InsertPolicy::automatic, headend::InsertPolicy::replace_nulls, headend::InsertPolicy::add}) {
    SCOPED_TRACE(static_cast<int>(policy));
    auto cfg = config();
    cfg.insert_policy = policy;
    headend::StoreKeySource keys(world.store());
    headend::Scrambler scrambler(std::move(cfg), keys);
    const auto scrambled = run_chunked(scrambler, clear, 1000);
    const auto s = scrambler.stats();
    streams::ContinuityChecker cc;
    for (const auto& p : scrambled) cc.check(p);
    EXPECT_EQ(cc.errors(), 0u);
    if (policy == headend::InsertPolicy::replace_nulls) {
      EXPECT_TRUE(s.replacing_nulls);
      EXPECT_EQ(s.packets_added, 0u);
      EXPECT_GT(s.inserts_late + s.repetitions_skipped, 0u);
      // Every packet in gives one out, except what was sent ahead and not given back by the end.
      EXPECT_EQ(scrambled.size() + s.nulls_given_back, clear.size() + s.packets_borrowed);
    } else {
      EXPECT_FALSE(s.replacing_nulls);
      EXPECT_GT(s.packets_added, 0u);
      EXPECT_GT(scrambled.size(), clear.size());
    }
    // Whatever the policy, the entitled box restores the service (every payload).
    stb::Descrambler d(&viewer, {});
    const auto restored = run_chunked(d, scrambled, 777);
    const auto a = on_pid(clear, testing::synthetic_video_pid(0));
    const auto b = on_pid(restored, testing::synthetic_video_pid(0));
    ASSERT_EQ(a.size(), b.size());
    std::size_t same = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const auto pa = a[i].payload();
      const auto pb = b[i].payload();
      same += std::equal(pa.begin(), pa.end(), pb.begin(), pb.end()) ? 1 : 0;  // PCRs may have moved on
    }
    EXPECT_EQ(same, a.size());
  }
}

// Issue 9: at start every queued EMM went out twice at once, the first copy before the CAT (2N
// packets for N boxes). Now: the first EMM after the first CAT, and in any window of stream time
// no more EMM packets than the share allows (its burst included), at start and when a batch of
// new EMMs is handed over mid-run.
TEST(EmmBandwidth, EmmsKeepToTheirShareAtStartAndForAHandedOverBatchAndFollowTheCat) {
  testing::BroadcastWorld world;
  world.add_service(1);
  constexpr std::uint32_t kBoxes = 40;
  for (std::uint32_t id = 1; id <= kBoxes; ++id) {
    world.add_stb(1000 + id);
    ASSERT_TRUE(world.store().grant(1000 + id, 1, kStart - 10, kStart + 3600).ok());
  }
  testing::SyntheticMuxOptions o;
  o.seconds = 8;
  o.bitrate = 4'000'000;
  o.null_fraction = 0.2;
  const auto clear = testing::make_synthetic_mux(o);
  auto cfg = config();
  cfg.emm_bitrate = 32'000;  // about 21 packets a second
  headend::StoreKeySource keys(world.store());
  headend::Scrambler scrambler(std::move(cfg), keys);
  std::vector<TsPacket> scrambled;
  const std::size_t half = clear.size() / 2;
  for (std::size_t i = 0; i < clear.size(); i += 1000) {
    if (i == half - half % 1000) {
      // The engine hands over a batch: 40 more boxes' EMMs at once.
      for (std::uint32_t id = kBoxes + 1; id <= 2 * kBoxes; ++id) {
        world.add_stb(1000 + id);
        ASSERT_TRUE(world.store().grant(1000 + id, 1, kStart - 10, kStart + 3600).ok());
      }
      scrambler.refresh_emms();
    }
    scrambler.process(std::span(clear).subspan(i, std::min<std::size_t>(1000, clear.size() - i)), scrambled);
  }
  scrambler.finish(scrambled);
  ASSERT_TRUE(scrambler.stats().replacing_nulls);
  ASSERT_EQ(scrambled.size(), clear.size());  // so a packet's index is its stream time

  const auto emm = indexes_on(scrambled, kEmmPid);
  const auto cat = indexes_on(scrambled, streams::kCatPid);
  ASSERT_FALSE(emm.empty());
  ASSERT_FALSE(cat.empty());
  EXPECT_LT(cat.front(), emm.front());
  // Packets per second at 4 Mbit/s; the share's packets in a window of w packets.
  const double packets_per_second = 4'000'000.0 / (188 * 8);
  const double share_per_second = 32'000.0 / (188 * 8);
  for (const double window_s : {0.1, 0.5, 1.0, 2.0}) {
    const auto w = static_cast<std::size_t>(window_s * packets_per_second);
    const auto allowed = static_cast<std::size_t>((window_s + headend::Scrambler::kEmmBurstMs / 1000.0) * share_per_second) + 2;
    std::size_t most = 0;
    for (std::size_t first = 0, last = 0; last < emm.size(); ++last) {
      while (emm[last] - emm[first] >= w) ++first;
      most = std::max(most, last - first + 1);
    }
    EXPECT_LE(most, allowed) << "window " << window_s << " s";
  }
  // The share is used: the carousel goes round (80 boxes at about 21 packets a second in 8 s).
  EXPECT_GT(emm.size(), 120u);
  EXPECT_LE(emm.size(), static_cast<std::size_t>((8 + headend::Scrambler::kEmmBurstMs / 1000.0) * share_per_second) + 2);
}

// With the EMMs at their share, a box whose EMM comes round after the first ECM was refused that
// ECM. It used to skip the ECM's repetitions as already seen, so it stayed dark until the next
// crypto period; now new rights make it look again, and it descrambles from the next repetition.
TEST(EmmBandwidth, BoxWhoseEmmComesAfterTheFirstEcmDescramblesFromTheNextRepetition) {
  testing::BroadcastWorld world;
  world.add_service(1);
  constexpr std::uint32_t kBoxes = 30;
  for (std::uint32_t id = 1; id <= kBoxes; ++id) {
    world.add_stb(1000 + id);
    ASSERT_TRUE(world.store().grant(1000 + id, 1, kStart - 10, kStart + 3600).ok());
  }
  testing::SyntheticMuxOptions o;
  o.seconds = 4;
  o.null_fraction = 0.2;
  const auto clear = testing::make_synthetic_mux(o);
  auto cfg = config();
  cfg.crypto_period_ms = 10'000;  // one crypto period for the whole stream
  cfg.emm_bitrate = 48'000;       // 32 packets a second: the carousel (a key EMM and a grant per box) takes about 2 s
  headend::StoreKeySource keys(world.store());
  headend::Scrambler scrambler(std::move(cfg), keys);
  const auto scrambled = run_chunked(scrambler, clear, 1000);
  std::size_t late_boxes = 0;
  for (std::uint32_t id = 1; id <= kBoxes; ++id) {
    stb::Descrambler d(&world.stb(1000 + id), {});
    const auto restored = run_chunked(d, scrambled, 777);
    const auto a = on_pid(clear, testing::synthetic_video_pid(0));
    const auto b = on_pid(restored, testing::synthetic_video_pid(0));
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(d.stats().emm_taken, 2u);  // its key EMM (group and global keys) and its grant
    late_boxes += d.stats().ecm_denied > 0 ? 1 : 0;
    // Every box has its EMM within the carousel's first pass (about 2 s): the last third is clear.
    for (std::size_t i = a.size() * 2 / 3; i < a.size(); ++i) ASSERT_EQ(a[i].bytes, b[i].bytes) << "STB " << 1000 + id << " packet " << i;
  }
  EXPECT_GT(late_boxes, 10u);  // most boxes' EMMs came after the first ECM
}

// Damaged input (garbage, CC jumps, corrupt sections, bad adaptation fields) with stuffing: the
// count still holds, one packet out per packet in apart from what was sent ahead and given back.
TEST(ConstantBitrate, DamagedInputKeepsThePacketCountUnderReplaceNulls) {
  testing::BroadcastWorld world;
  world.add_service(1);
  testing::SyntheticMuxOptions o;
  o.seconds = 2;
  o.null_fraction = 0.3;
  auto packets = testing::make_synthetic_mux(o);
  std::uint32_t seed = 7;
  auto next = [&seed] { return seed = seed * 1664525u + 1013904223u; };
  for (std::size_t i = 0; i < packets.size(); i += 29) {
    auto& p = packets[i];
    switch (next() % 4) {
      case 0: for (auto& b : p.bytes) b = static_cast<std::uint8_t>(next() >> 24); p.bytes[0] = 0x47; break;
      case 1: p.set_cc(static_cast<std::uint8_t>(p.cc() + 5)); break;
      case 2: p.bytes[4 + next() % 184] ^= 0xFF; break;
      default: p.set_adaptation_payload(true, true); p.bytes[4] = 0xFF; break;
    }
  }
  auto cfg = config();
  cfg.insert_policy = headend::InsertPolicy::replace_nulls;
  headend::StoreKeySource keys(world.store());
  headend::Scrambler scrambler(std::move(cfg), keys);
  const auto out = run_chunked(scrambler, packets, 1000);
  ASSERT_FALSE(scrambler.refusal().has_value());
  const auto s = scrambler.stats();
  EXPECT_TRUE(s.replacing_nulls);
  EXPECT_EQ(out.size() + s.nulls_given_back, s.packets_in + s.packets_borrowed);
  EXPECT_EQ(s.packets_in, packets.size());
}

// Issue 9: the EIT said transport stream 0, network 0, and there was no SDT, so players showed no
// service name. Now the SDT names each scrambled service from the catalogue with free_CA_mode set,
// and the EIT carries the PAT's transport_stream_id and the network id (configurable).
TEST(ServiceInformation, SdtNamesTheScrambledServicesAndEitCarriesTheTransportStreamAndNetworkIds) {
  testing::BroadcastWorld world;
  world.add_service(1);  // named "svc1"
  world.add_service(2);  // named "svc2"
  world.add_event(4242, 1, kStart - 60, 3600, 500, "Derby");
  testing::SyntheticMuxOptions o;
  o.services = {1, 2};
  o.seconds = 2.5;
  o.null_fraction = 0.1;
  const auto clear = testing::make_synthetic_mux(o);
  const auto pat = streams::Pat::parse(sections_on(clear, streams::kPatPid).front()).value();
  ASSERT_TRUE(sections_on(clear, streams::kSdtPid).empty());
  for (const std::optional<std::uint16_t> onid : {std::optional<std::uint16_t>{}, std::optional<std::uint16_t>{0x2001}}) {
    SCOPED_TRACE(onid.value_or(0));
    auto cfg = config();
    cfg.original_network_id = onid;
    headend::StoreKeySource keys(world.store());
    headend::Scrambler scrambler(std::move(cfg), keys);
    const auto scrambled = run_chunked(scrambler, clear, 1000);
    const std::uint16_t expected_onid = onid.value_or(headend::Scrambler::kPrivateOriginalNetworkId);

    const auto sdts = sections_on(scrambled, streams::kSdtPid);
    ASSERT_GE(sdts.size(), 2u);  // every 2 s
    const auto sdt = streams::Sdt::parse(sdts.back()).value();
    EXPECT_EQ(sdt.transport_stream_id, pat.transport_stream_id);
    EXPECT_EQ(sdt.original_network_id, expected_onid);
    ASSERT_EQ(sdt.services.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(sdt.services[i].service_id, i + 1);
      EXPECT_TRUE(sdt.services[i].free_ca_mode);
      EXPECT_EQ(sdt.services[i].running_status, 4);
      EXPECT_EQ(streams::service_descriptor_name(sdt.services[i].descriptors), "svc" + std::to_string(i + 1));
    }
    const auto eits = sections_on(scrambled, streams::kEitPid);
    ASSERT_FALSE(eits.empty());
    for (const auto& section : eits) {
      const auto eit = streams::Eit::parse(section).value();
      EXPECT_EQ(eit.transport_stream_id, pat.transport_stream_id);
      EXPECT_EQ(eit.original_network_id, expected_onid);
    }
    streams::ContinuityChecker cc;
    for (const auto& p : scrambled) cc.check(p);
    EXPECT_EQ(cc.errors(), 0u);
    EXPECT_EQ(scrambled.size(), clear.size());  // the SDT took nulls' places too
  }
}

}  // namespace
}  // namespace usher
