#include "usher/streams/csa.h"

#include <gtest/gtest.h>

extern "C" {
#include <dvbcsa/dvbcsa.h>
}

#include <algorithm>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "usher/core/hex.h"

namespace usher {
namespace {

using streams::Scrambling;
using streams::TsPacket;

struct Vector {
  std::vector<std::uint8_t> cw, plain, cipher;
};

std::vector<Vector> load_vectors() {
  std::ifstream in(std::string(USHER_TEST_DATA) + "/csa2_vectors.txt");
  std::vector<Vector> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string key, value;
    ss >> key >> value;
    if (key == "cw") out.emplace_back().cw = *from_hex(value);
    if (key == "plain") out.back().plain = *from_hex(value);
    if (key == "cipher") out.back().cipher = *from_hex(value);
  }
  return out;
}

ControlWord cw_of(const std::vector<std::uint8_t>& b) { return ControlWord(std::span<const std::uint8_t, 8>(b.data(), 8)); }

TEST(Csa, KnownAnswerVectorsBitsliceAndSingle) {
  const auto vectors = load_vectors();
  ASSERT_EQ(vectors.size(), 2u);
  for (const auto& v : vectors) {
    SCOPED_TRACE(to_hex(v.plain).substr(0, 16));
    const auto cw = cw_of(v.cw);
    EXPECT_TRUE(cw.checksums_ok());
    // Bitslice, the path the headend and STB use.
    CsaBitsliceKey key;
    key.set(cw);
    auto data = v.plain;
    dvbcsa_bs_batch_s batch[2] = {{data.data(), static_cast<unsigned>(data.size())}, {nullptr, 0}};
    key.encrypt(batch);
    EXPECT_EQ(data, v.cipher);
    key.decrypt(batch);
    EXPECT_EQ(data, v.plain);
    // The single-packet implementation agrees.
    CsaSingleKey single(cw);
    data = v.cipher;
    single.decrypt(data);
    EXPECT_EQ(data, v.plain);
  }
}

std::vector<TsPacket> random_packets(std::size_t n, std::uint32_t seed, bool adaptation = true) {
  std::mt19937 rng(seed);
  std::vector<TsPacket> out(n, TsPacket::null_packet());
  for (std::size_t i = 0; i < n; ++i) {
    out[i].set_pid(static_cast<std::uint16_t>(0x100 + i % 3));
    if (adaptation && i % 5 == 0) {  // some with an adaptation field, to vary payload sizes
      out[i].set_adaptation_payload(true, true);
      out[i].bytes[4] = static_cast<std::uint8_t>(rng() % 180);
      out[i].bytes[5] = 0;
    }
    for (auto& b : out[i].payload()) b = static_cast<std::uint8_t>(rng());
  }
  return out;
}

TEST(CsaPipeline, KeepsOrderAndMatchesSinglePacketCsa) {
  const auto cw_a = ControlWord::random();
  const auto cw_b = ControlWord::random();
  const auto clear = random_packets(1000, 7);
  CsaPipeline pipe(CsaDirection::encrypt);
  const auto a = pipe.add_slot();
  const auto b = pipe.add_slot();
  pipe.set_key(a, cw_a);
  pipe.set_key(b, cw_b);
  std::vector<TsPacket> out;
  for (std::size_t i = 0; i < clear.size(); ++i) {
    // PID 0x100 with key A, 0x101 with key B, 0x102 passes clear.
    pipe.push(clear[i], i % 3 == 0 ? a : i % 3 == 1 ? b : CsaPipeline::kNoSlot);
    if (i % 100 == 0) pipe.take_ready(out);
  }
  pipe.flush(out);
  ASSERT_EQ(out.size(), clear.size());
  CsaSingleKey ka(cw_a), kb(cw_b);
  for (std::size_t i = 0; i < clear.size(); ++i) {
    TsPacket expected = clear[i];
    if (i % 3 == 0) ka.encrypt(expected.payload());
    if (i % 3 == 1) kb.encrypt(expected.payload());
    ASSERT_EQ(out[i].bytes, expected.bytes) << i;
  }
  EXPECT_GT(pipe.stats().full_batches, 0u);
}

// A short batch (a low-rate service's, cut by the hold) is run packet by packet, a longer one
// bitsliced: either way the same bytes as libdvbcsa's one-packet path, both directions.
TEST(CsaPipeline, ShortAndLongPartialBatchesGiveTheSameBytes) {
  const auto cw = ControlWord::random();
  CsaSingleKey single(cw);
  for (const std::size_t n : {std::size_t{1}, std::size_t{2}, csa_batch_size() / 10, csa_batch_size() / 10 + 1, csa_batch_size() - 1}) {
    SCOPED_TRACE(n);
    const auto clear = random_packets(n, static_cast<unsigned>(n));
    CsaPipeline enc(CsaDirection::encrypt);
    const auto e = enc.add_slot();
    enc.set_key(e, cw);
    for (const auto& p : clear) enc.push(p, e);
    std::vector<TsPacket> scrambled;
    enc.flush(scrambled);
    ASSERT_EQ(scrambled.size(), n);
    EXPECT_EQ(enc.stats().partial_batches, 1u);
    for (std::size_t i = 0; i < n; ++i) {
      TsPacket expected = clear[i];
      single.encrypt(expected.payload());
      ASSERT_EQ(scrambled[i].bytes, expected.bytes) << i;
    }
    CsaPipeline dec(CsaDirection::decrypt);
    const auto d = dec.add_slot();
    dec.set_key(d, cw);
    for (const auto& p : scrambled) dec.push(p, d);
    std::vector<TsPacket> back;
    dec.flush(back);
    ASSERT_EQ(back.size(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(back[i].bytes, clear[i].bytes) << i;
  }
}

TEST(CsaPipeline, BatchesAreFullOnASteadyStream) {
  CsaPipeline pipe(CsaDirection::decrypt);
  const auto s = pipe.add_slot();
  pipe.set_key(s, ControlWord::random());
  const auto packets = random_packets(csa_batch_size() * 20, 3, false);
  std::vector<TsPacket> out;
  for (const auto& p : packets) pipe.push(p, s);
  pipe.take_ready(out);
  EXPECT_EQ(out.size(), packets.size());
  EXPECT_EQ(pipe.stats().full_batches, 20u);
  EXPECT_EQ(pipe.stats().partial_batches, 0u);
}

TEST(CsaPipeline, KeyChangeRunsQueuedPacketsWithTheOldKey) {
  const auto k1 = ControlWord::random();
  const auto k2 = ControlWord::random();
  CsaPipeline pipe(CsaDirection::encrypt);
  const auto s = pipe.add_slot();
  pipe.set_key(s, k1);
  const auto packets = random_packets(10, 9);
  for (std::size_t i = 0; i < 5; ++i) pipe.push(packets[i], s);
  pipe.set_key(s, k2);
  for (std::size_t i = 5; i < 10; ++i) pipe.push(packets[i], s);
  std::vector<TsPacket> out;
  pipe.flush(out);
  ASSERT_EQ(out.size(), 10u);
  CsaSingleKey s1(k1), s2(k2);
  for (std::size_t i = 0; i < 10; ++i) {
    TsPacket e = packets[i];
    (i < 5 ? s1 : s2).encrypt(e.payload());
    EXPECT_EQ(out[i].bytes, e.bytes) << i;
  }
}

TEST(CsaPipeline, HoldingMoreThanItsRingKeepsQueuedBatchesRight) {
  // A small buffer (twice max_held: 128 packets) and no take_ready for 3,000 packets: the buffer
  // grows while batches are queued, which must still encrypt the packets they were queued for.
  const auto cw_a = ControlWord::random();
  const auto cw_b = ControlWord::random();
  const auto clear = random_packets(3000, 5);
  CsaPipeline pipe(CsaDirection::encrypt, CsaPipeline::kDefaultMaxHold, 64);
  const auto a = pipe.add_slot();
  const auto b = pipe.add_slot();
  pipe.set_key(a, cw_a);
  pipe.set_key(b, cw_b);
  for (std::size_t i = 0; i < clear.size(); ++i) pipe.push(clear[i], i % 3 == 0 ? a : i % 3 == 1 ? b : CsaPipeline::kNoSlot);
  EXPECT_EQ(pipe.held(), clear.size());
  std::vector<TsPacket> out;
  pipe.flush(out);
  ASSERT_EQ(out.size(), clear.size());
  CsaSingleKey ka(cw_a), kb(cw_b);
  for (std::size_t i = 0; i < clear.size(); ++i) {
    TsPacket expected = clear[i];
    if (i % 3 == 0) ka.encrypt(expected.payload());
    if (i % 3 == 1) kb.encrypt(expected.payload());
    ASSERT_EQ(out[i].bytes, expected.bytes) << i;
  }
  EXPECT_EQ(pipe.held(), 0u);
}

TEST(CsaPipeline, WritingStraightIntoTheCallersOutputKeepsOrderAndBytes) {
  // output_to: packets are written into the caller's vector and encrypted there. Chunks of odd
  // sizes into vectors that already hold packets, with no room reserved (each grows while batches
  // are queued in it), then a second vector: what is held at each take_ready moves back and on,
  // and every packet comes out once, in order, encrypted with its own slot's key.
  const auto cw_a = ControlWord::random();
  const auto cw_b = ControlWord::random();
  const auto clear = random_packets(2500, 9);
  CsaPipeline pipe(CsaDirection::encrypt);
  const auto a = pipe.add_slot();
  const auto b = pipe.add_slot();
  pipe.set_key(a, cw_a);
  pipe.set_key(b, cw_b);
  const auto slot_of = [&](std::size_t i) { return i % 5 == 4 ? CsaPipeline::kNoSlot : i % 2 == 0 ? a : b; };
  std::vector<TsPacket> first{TsPacket::null_packet()}, second{TsPacket::null_packet(), TsPacket::null_packet()};
  std::vector<TsPacket> all;
  std::size_t at = 0;
  for (std::size_t chunk : {1, 300, 7, 999, 64, 1129}) {
    auto& out = chunk % 2 == 0 ? first : second;
    const std::size_t before = out.size();
    pipe.output_to(out);
    for (std::size_t i = at; i < at + chunk; ++i) pipe.push(clear[i], slot_of(i));
    pipe.take_ready(out);
    EXPECT_EQ(out.size() - before + pipe.held(), at + chunk - all.size()) << chunk;
    all.insert(all.end(), out.begin() + static_cast<std::ptrdiff_t>(before), out.end());
    out.resize(before);  // the caller sends what was ready and keeps its first packets
    at += chunk;
  }
  ASSERT_EQ(at, clear.size());
  std::vector<TsPacket> last;
  pipe.flush(last);
  all.insert(all.end(), last.begin(), last.end());
  EXPECT_EQ(first.size(), 1u);
  EXPECT_EQ(second.size(), 2u);
  ASSERT_EQ(all.size(), clear.size());
  CsaSingleKey ka(cw_a), kb(cw_b);
  for (std::size_t i = 0; i < clear.size(); ++i) {
    TsPacket expected = clear[i];
    if (slot_of(i) == a) ka.encrypt(expected.payload());
    if (slot_of(i) == b) kb.encrypt(expected.payload());
    ASSERT_EQ(all[i].bytes, expected.bytes) << i;
  }
  EXPECT_EQ(pipe.held(), 0u);
}

// A 128 kbit/s service next to a 20 Mbit/s one, each with its own key, and clear packets between:
// packets evenly spaced in stream time (2,000 ticks of 27 MHz apart, a 20.3 Mbit/s multiplex).
struct TwoRateMux {
  static constexpr std::uint64_t kSpacing = 2000;
  static constexpr std::size_t kSlowEvery = 157;  // 128 kbit/s of 20.3 Mbit/s
  std::vector<TsPacket> packets;
  std::vector<int> role;  // 0 fast slot, 1 slow slot, 2 clear
  explicit TwoRateMux(std::size_t n) : packets(random_packets(n, 11, false)), role(n) {
    for (std::size_t i = 0; i < n; ++i) role[i] = i % kSlowEvery == 0 ? 1 : i % 50 == 1 ? 2 : 0;
  }
  static std::uint64_t time(std::size_t i) { return i * kSpacing; }
};

// Pushes the mux one packet at a time, taking what is ready after each, and returns the output with
// each packet's wait: the stream time of the last packet pushed before it came out minus its own.
std::vector<TsPacket> run_timed(CsaPipeline& pipe, const TwoRateMux& mux, const std::vector<TsPacket>& in,
                                CsaPipeline::Slot fast, CsaPipeline::Slot slow, std::vector<std::uint64_t>* waits) {
  std::vector<TsPacket> out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    pipe.advance_to(TwoRateMux::time(i));
    pipe.push(in[i], mux.role[i] == 0 ? fast : mux.role[i] == 1 ? slow : CsaPipeline::kNoSlot);
    const auto before = out.size();
    pipe.take_ready(out);
    for (auto k = before; k < out.size() && waits != nullptr; ++k) waits->push_back(TwoRateMux::time(i) - TwoRateMux::time(k));
  }
  pipe.flush(out);
  return out;
}

TEST(CsaPipeline, SlowSlotWaitsNoLongerThanMaxHoldNextToAFastOne) {
  const TwoRateMux mux(40'000);  // 3 s
  const auto cw_fast = ControlWord::random();
  const auto cw_slow = ControlWord::random();
  CsaPipeline bounded(CsaDirection::encrypt);
  ASSERT_EQ(bounded.max_hold(), 20u * 27'000);
  const auto fast = bounded.add_slot();
  const auto slow = bounded.add_slot();
  bounded.set_key(fast, cw_fast);
  bounded.set_key(slow, cw_slow);
  std::vector<std::uint64_t> waits;
  const auto out = run_timed(bounded, mux, mux.packets, fast, slow, &waits);
  ASSERT_EQ(out.size(), mux.packets.size());

  // Every packet that came out before the flush waited at most max_hold of stream time; the old
  // count bound (2,048 packets) let the slow slot's packets wait 150 ms here.
  ASSERT_GT(waits.size(), mux.packets.size() - csa_batch_size() * 2);
  std::uint64_t slow_max = 0;
  for (std::size_t k = 0; k < waits.size(); ++k) {
    ASSERT_LE(waits[k], bounded.max_hold()) << "packet " << k;
    if (mux.role[k] == 1) slow_max = std::max(slow_max, waits[k]);
  }
  EXPECT_GT(slow_max, bounded.max_hold() / 2);  // the slow slot does batch up, only not for long

  // The fast slot fills its batches within the bound: all full but the last.
  std::size_t fast_count = 0;
  for (int r : mux.role) fast_count += r == 0;
  EXPECT_EQ(bounded.stats().full_batches, fast_count / csa_batch_size());

  // Same bytes, same order as one pipeline that waits for full batches however long it takes.
  CsaPipeline unbounded(CsaDirection::encrypt, std::uint64_t{1} << 62, std::numeric_limits<std::size_t>::max());
  const auto f2 = unbounded.add_slot();
  const auto s2 = unbounded.add_slot();
  unbounded.set_key(f2, cw_fast);
  unbounded.set_key(s2, cw_slow);
  const auto reference = run_timed(unbounded, mux, mux.packets, f2, s2, nullptr);
  ASSERT_EQ(reference.size(), out.size());
  for (std::size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i].bytes, reference[i].bytes) << i;
  EXPECT_LE(unbounded.stats().partial_batches, 2u);

  // And the decrypting side, under the same bound, gives back the clear packets.
  CsaPipeline back(CsaDirection::decrypt);
  const auto f3 = back.add_slot();
  const auto s3 = back.add_slot();
  back.set_key(f3, cw_fast);
  back.set_key(s3, cw_slow);
  std::vector<std::uint64_t> back_waits;
  const auto clear = run_timed(back, mux, out, f3, s3, &back_waits);
  ASSERT_EQ(clear.size(), mux.packets.size());
  for (std::size_t i = 0; i < clear.size(); ++i) ASSERT_EQ(clear[i].bytes, mux.packets[i].bytes) << i;
  for (auto w : back_waits) ASSERT_LE(w, back.max_hold());
  std::size_t encrypted_differ = 0;
  for (std::size_t i = 0; i < out.size(); ++i) encrypted_differ += out[i].bytes != mux.packets[i].bytes;
  EXPECT_GT(encrypted_differ, mux.packets.size() * 9 / 10);
}

TEST(CsaPipeline, LongestWaitFollowsMaxHold) {
  const TwoRateMux mux(20'000);
  for (std::uint64_t ms : {1u, 5u, 50u}) {
    CsaPipeline pipe(CsaDirection::encrypt, ms * 27'000);
    const auto fast = pipe.add_slot();
    const auto slow = pipe.add_slot();
    pipe.set_key(fast, ControlWord::random());
    pipe.set_key(slow, ControlWord::random());
    std::vector<std::uint64_t> waits;
    run_timed(pipe, mux, mux.packets, fast, slow, &waits);
    std::uint64_t most = 0;
    for (auto w : waits) most = std::max(most, w);
    EXPECT_LE(most, ms * 27'000) << ms << " ms";
    EXPECT_GE(most + 2 * TwoRateMux::kSpacing, std::min<std::uint64_t>(ms * 27'000, 128 * TwoRateMux::kSpacing)) << ms << " ms";
  }
}

TEST(CsaPipeline, CountBoundStillHoldsWhenStreamTimeStandsStill) {
  // No advance_to at all (a stream without time): the packet count is the safety net.
  CsaPipeline pipe(CsaDirection::encrypt, CsaPipeline::kDefaultMaxHold, 300);
  const auto fast = pipe.add_slot();
  const auto slow = pipe.add_slot();
  pipe.set_key(fast, ControlWord::random());
  pipe.set_key(slow, ControlWord::random());
  const TwoRateMux mux(5'000);
  std::vector<TsPacket> out;
  for (std::size_t i = 0; i < mux.packets.size(); ++i) {
    pipe.push(mux.packets[i], mux.role[i] == 0 ? fast : mux.role[i] == 1 ? slow : CsaPipeline::kNoSlot);
    pipe.take_ready(out);
    ASSERT_LE(i + 1 - out.size(), 300u + 1) << i;
  }
}

}  // namespace
}  // namespace usher
