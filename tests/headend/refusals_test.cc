// Issue 8: the headend never sends a chosen service in clear. What it refuses before writing
// anything (a requested service missing or keyless, reserved or PSI CA PIDs, an input already
// scrambled, no free PID), where it puts its CA PIDs, and what it drops later (a service that leaves
// the PAT, packets before a service's first PMT, input packets on its CA PIDs).
#include <gtest/gtest.h>

#include <map>

#include "broadcast_fixture.h"
#include "synthetic_stream.h"
#include "usher/headend/scrambler.h"
#include "usher/headend/store_key_source.h"
#include "usher/stb/descrambler.h"
#include "usher/streams/io.h"

namespace usher {
namespace {

using streams::Scrambling;
using streams::TsPacket;

constexpr std::uint64_t kStart = 1'900'000'000;

struct Run {
  std::vector<TsPacket> out;
  std::optional<Error> refusal;
  headend::ScramblerStats stats;
  std::uint16_t emm_pid = 0;
};

Run scramble(testing::BroadcastWorld& world, const std::vector<TsPacket>& in, headend::ScramblerConfig config = {}) {
  config.start_unix = kStart;
  config.crypto_period_ms = 1000;
  headend::StoreKeySource keys(world.store());
  headend::Scrambler s(std::move(config), keys);
  Run r;
  for (std::size_t i = 0; i < in.size(); i += 1000) s.process(std::span(in).subspan(i, std::min<std::size_t>(1000, in.size() - i)), r.out);
  s.finish(r.out);
  r.refusal = s.refusal();
  r.stats = s.stats();
  r.emm_pid = s.emm_pid();
  return r;
}

std::size_t clear_payloads_on(const std::vector<TsPacket>& packets, std::initializer_list<std::uint16_t> pids) {
  std::size_t n = 0;
  for (const auto& p : packets) {
    if (std::find(pids.begin(), pids.end(), p.pid()) != pids.end() && !p.payload().empty() && p.scrambling() == Scrambling::clear) ++n;
  }
  return n;
}

// The PIDs of a synthetic mux moved (elementary streams and PCR), its PMT rewritten to match.
std::vector<TsPacket> remap(std::vector<TsPacket> mux, const std::map<std::uint16_t, std::uint16_t>& to) {
  streams::Pmt pmt;
  pmt.program_number = 1;
  pmt.pcr_pid = to.at(testing::synthetic_video_pid(0));
  pmt.streams.push_back({0x1B, to.at(testing::synthetic_video_pid(0)), {}});
  pmt.streams.push_back({0x0F, to.at(testing::synthetic_audio_pid(0)), {}});
  std::vector<TsPacket> pmt_packets;
  streams::SectionPacketizer pz(0x100);
  pz.packetize(pmt.serialize(), pmt_packets);
  for (auto& p : mux) {
    if (p.pid() == 0x100) {
      const auto cc = p.cc();
      p = pmt_packets.at(0);
      p.set_cc(cc);
    } else if (auto it = to.find(p.pid()); it != to.end()) {
      p.set_pid(it->second);
    }
  }
  return mux;
}

TEST(HeadendRefusals, RequestedServiceMissingOrKeylessAndReservedPidsAreRefusedBeforeAnyOutput) {
  testing::BroadcastWorld world;
  world.add_service(1);
  world.add_service(2);  // in the catalogue, not in the input
  testing::SyntheticMuxOptions o;
  o.seconds = 1;
  const auto clear = testing::make_synthetic_mux(o);
  struct Case {
    const char* name;
    std::set<std::uint16_t> services;
    std::uint16_t emm_pid;
    std::uint16_t ecm_pid;
    Errc code;
    const char* says;
  };
  const Case cases[] = {
      {"missing from the input", {2}, 0x1FF0, 0x1FE0, Errc::not_found, "service 2 is not in the input (its PAT lists 1)"},
      {"missing from both", {99}, 0x1FF0, 0x1FE0, Errc::not_found, "service 99 cannot be scrambled"},
      {"one of two missing", {1, 99}, 0x1FF0, 0x1FE0, Errc::not_found, "service 99"},
      {"EMM PID 0 (the PAT's)", {1}, 0x0000, 0x1FE0, Errc::invalid_argument, "--emm-pid 0x0000 is reserved"},
      {"EMM PID of the SDT", {1}, 0x0011, 0x1FE0, Errc::invalid_argument, "--emm-pid 0x0011 is reserved"},
      {"ECM PID of null packets", {1}, 0x1FF0, 0x1FFF, Errc::invalid_argument, "--ecm-pid 0x1FFF is reserved"},
      {"EMM PID of the input's PMT", {1}, 0x0100, 0x1FE0, Errc::invalid_argument, "--emm-pid 0x0100 is a PSI PID of the input"},
      {"ECM PID of the input's PMT", {}, 0x1FF0, 0x0100, Errc::invalid_argument, "--ecm-pid 0x0100 is a PSI PID of the input"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    headend::ScramblerConfig config;
    config.services = c.services;
    config.emm_pid = c.emm_pid;
    config.ecm_pid_base = c.ecm_pid;
    const auto r = scramble(world, clear, std::move(config));
    ASSERT_TRUE(r.refusal.has_value());
    EXPECT_EQ(r.refusal->code, c.code);
    EXPECT_NE(r.refusal->message.find(c.says), std::string::npos) << r.refusal->message;
    EXPECT_TRUE(r.out.empty()) << r.out.size() << " packets out";
  }
  // validate() says as much before the input is read, where it can.
  headend::StoreKeySource keys(world.store());
  headend::ScramblerConfig config;
  config.services = {99};
  EXPECT_EQ(headend::validate(config, keys).error().code, Errc::not_found);
  config.services = {1};
  EXPECT_TRUE(headend::validate(config, keys).ok());
  config.emm_pid = 0;
  EXPECT_EQ(headend::validate(config, keys).error().code, Errc::invalid_argument);
}

TEST(HeadendRefusals, InputWithoutPatIsRefusedNotCopied) {
  testing::BroadcastWorld world;
  world.add_service(1);
  testing::SyntheticMuxOptions o;
  o.seconds = 1;
  auto mux = testing::make_synthetic_mux(o);
  std::erase_if(mux, [](const TsPacket& p) { return p.pid() == streams::kPatPid; });
  const auto r = scramble(world, mux);
  ASSERT_TRUE(r.refusal.has_value());
  EXPECT_NE(r.refusal->message.find("no complete PAT"), std::string::npos) << r.refusal->message;
  EXPECT_TRUE(r.out.empty());
}

TEST(HeadendRefusals, AlreadyScrambledInputIsRefusedUnlessPassedThrough) {
  testing::BroadcastWorld world;
  world.add_service(1);
  testing::SyntheticMuxOptions o;
  o.seconds = 1;
  const auto once = scramble(world, testing::make_synthetic_mux(o));
  ASSERT_FALSE(once.refusal.has_value());
  const auto twice = scramble(world, once.out);
  ASSERT_TRUE(twice.refusal.has_value());
  EXPECT_NE(twice.refusal->message.find("already scrambled"), std::string::npos) << twice.refusal->message;
  EXPECT_TRUE(twice.out.empty());
  headend::ScramblerConfig pass;
  pass.pass_scrambled = true;
  const auto passed = scramble(world, once.out, std::move(pass));
  ASSERT_FALSE(passed.refusal.has_value()) << passed.refusal->message;
  EXPECT_GT(passed.stats.already_scrambled, 0u);
  EXPECT_EQ(clear_payloads_on(passed.out, {testing::synthetic_video_pid(0), testing::synthetic_audio_pid(0)}), 0u);
}

TEST(HeadendRefusals, CaPidsMoveOffPidsTheInputUsesWithoutContinuityErrors) {
  testing::BroadcastWorld world;
  world.add_service(1);
  auto& viewer = world.add_stb(1001);
  ASSERT_TRUE(world.store().grant(1001, 1, kStart - 10, kStart + 3600).ok());
  testing::SyntheticMuxOptions o;
  o.seconds = 2;
  // The elementary streams sit exactly on the default EMM and ECM PIDs.
  const auto clear = remap(testing::make_synthetic_mux(o), {{testing::synthetic_video_pid(0), 0x1FF0}, {testing::synthetic_audio_pid(0), 0x1FE0}});
  const auto r = scramble(world, clear);
  ASSERT_FALSE(r.refusal.has_value()) << r.refusal->message;
  EXPECT_NE(r.emm_pid, 0x1FF0);
  EXPECT_NE(r.emm_pid, 0x1FE0);
  streams::ContinuityChecker cc;
  for (const auto& p : r.out) cc.check(p);
  EXPECT_EQ(cc.errors(), 0u);
  stb::Descrambler d(&viewer, {});
  std::vector<TsPacket> restored;
  d.process(r.out, restored);
  d.finish(restored);
  EXPECT_EQ(d.stats().packets_left_scrambled, 0u);
  EXPECT_EQ(d.stats().cc_errors, 0u);
  for (const std::uint16_t pid : {std::uint16_t{0x1FF0}, std::uint16_t{0x1FE0}}) {
    std::size_t i = 0;
    std::vector<TsPacket> back;
    for (const auto& p : restored) {
      if (p.pid() == pid) back.push_back(p);
    }
    for (const auto& p : clear) {
      if (p.pid() != pid) continue;
      ASSERT_LT(i, back.size());
      ASSERT_EQ(p.bytes, back[i++].bytes) << "pid " << pid;
    }
    EXPECT_EQ(i, back.size());
  }
}

// Every PID from 0x0020 to 0x1FFE carries something in the input but `free_pids`: the CA PIDs
// take exactly those, and with one too few the run is refused (it fell back to a PID in use).
TEST(HeadendRefusals, PidAllocatorNeverHandsOutAPidInUse) {
  testing::BroadcastWorld world;
  world.add_service(1);
  world.add_service(2);
  testing::SyntheticMuxOptions o;
  o.services = {1, 2};
  o.seconds = 0.5;
  const auto mux = testing::make_synthetic_mux(o);
  for (const auto& free_pids : {std::vector<std::uint16_t>{0x0021, 0x0777, 0x1FFE}, std::vector<std::uint16_t>{0x0021, 0x0777}}) {
    SCOPED_TRACE(std::to_string(free_pids.size()) + " free PIDs");
    std::vector<TsPacket> in;
    for (std::uint16_t pid = 0x20; pid <= 0x1FFE; ++pid) {
      if (std::find(free_pids.begin(), free_pids.end(), pid) != free_pids.end()) continue;
      if (pid == 0x100 || pid == 0x101 || (pid >= 0x200 && pid <= 0x203)) continue;
      auto p = TsPacket::null_packet();
      p.set_pid(pid);
      in.push_back(p);
    }
    in.insert(in.end(), mux.begin(), mux.end());
    const auto r = scramble(world, in);
    if (free_pids.size() == 3) {
      ASSERT_FALSE(r.refusal.has_value()) << r.refusal->message;
      std::set<std::uint16_t> ca{r.emm_pid};
      for (auto pid : {std::uint16_t{0x100}, std::uint16_t{0x101}}) {
        std::vector<std::vector<std::uint8_t>> pmts;
        streams::SectionAssembler a([&](auto s) { pmts.emplace_back(s.begin(), s.end()); });
        for (const auto& p : r.out) {
          if (p.pid() == pid) a.feed(p);
        }
        ASSERT_FALSE(pmts.empty());
        const auto pmt = streams::Pmt::parse(pmts.back()).value();
        ca.insert(streams::find_ca_descriptors(pmt.descriptors).at(0).ca_pid);
      }
      EXPECT_EQ(ca, std::set<std::uint16_t>(free_pids.begin(), free_pids.end()));
    } else {
      ASSERT_TRUE(r.refusal.has_value());
      EXPECT_NE(r.refusal->message.find("no free PID left for the ECMs"), std::string::npos) << r.refusal->message;
      EXPECT_TRUE(r.out.empty());
    }
  }
}

// A service that leaves the PAT mid-stream, and packets that come before the first PMT (a receiver
// joining a live input): none of its packets goes out in clear.
TEST(HeadendRefusals, ChosenServiceIsNeverSentInClearBeforeItsPmtOrAfterItLeavesThePat) {
  testing::BroadcastWorld world;
  world.add_service(1);
  testing::SyntheticMuxOptions o;
  o.seconds = 3;
  auto mux = testing::make_synthetic_mux(o);
  // Joined mid-stream: the first PAT and PMT come 40 packets in.
  std::rotate(mux.begin(), mux.begin() + 40, mux.end());
  // From the middle on, the PAT lists no service 1 (the elementary streams go on).
  streams::Pat empty;
  empty.version = 1;
  empty.transport_stream_id = 1;
  std::vector<TsPacket> empty_pat;
  streams::SectionPacketizer pz(streams::kPatPid);
  pz.packetize(empty.serialize(), empty_pat);
  for (std::size_t i = mux.size() / 2; i < mux.size(); ++i) {
    if (mux[i].pid() != streams::kPatPid) continue;
    const auto cc = mux[i].cc();
    mux[i] = empty_pat.at(0);
    mux[i].set_cc(cc);
  }
  headend::ScramblerConfig config;
  config.services = {1};
  const auto r = scramble(world, mux, std::move(config));
  ASSERT_FALSE(r.refusal.has_value()) << r.refusal->message;
  EXPECT_GT(r.stats.packets_scrambled, 1000u);
  EXPECT_GT(r.stats.packets_dropped, 1000u);  // the second half, and the 40 packets before the PMT
  EXPECT_EQ(clear_payloads_on(r.out, {testing::synthetic_video_pid(0), testing::synthetic_audio_pid(0)}), 0u);
}

}  // namespace
}  // namespace usher
