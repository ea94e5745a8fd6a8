#include "usher/core/csa.h"

#include <gtest/gtest.h>

extern "C" {
#include <dvbcsa/dvbcsa.h>
}

#include <fstream>
#include <random>
#include <sstream>

#include "temp_dir.h"
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

TEST(Csa, RandomControlWordsHaveDvbChecksums) {
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(ControlWord::random().checksums_ok());
  std::array<std::uint8_t, 8> b{1, 2, 3, 7, 4, 5, 6, 0};
  EXPECT_FALSE(ControlWord(std::span<const std::uint8_t, 8>(b)).checksums_ok());
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

TEST(CwFile, ReadsEvenOddAndRefusesGarbage) {
  testing::TempDir dir;
  {
    std::ofstream f(dir.file("cw.txt"));
    f << "# test\n0102030604050611\n1112134614151650\n";
  }
  auto cws = read_cw_file(dir.file("cw.txt"));
  ASSERT_TRUE(cws.ok());
  EXPECT_EQ(to_hex(cws->even.bytes()), "0102030604050611");
  EXPECT_EQ(to_hex(cws->odd.bytes()), "1112134614151650");
  {
    std::ofstream f(dir.file("bad.txt"));
    f << "0102\n";
  }
  auto bad = read_cw_file(dir.file("bad.txt"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("bad.txt:1"), std::string::npos);
  EXPECT_FALSE(read_cw_file(dir.file("missing.txt")).ok());
}

}  // namespace
}  // namespace usher
