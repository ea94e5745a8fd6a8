// Issue 9: what the Descrambler says became of each service (`usher stb run`'s outcomes and exit
// status), for the cases a real headend does not produce in the end-to-end tests: a service
// scrambled under another CA system only, scrambled with no ECM announced, an announced ECM that
// never comes, a PMT that never comes, a service the PAT does not list, and a clear service (which
// said "no ECM yet").
#include <gtest/gtest.h>

#include <optional>
#include <variant>

#include "broadcast_fixture.h"
#include "synthetic_stream.h"
#include "usher/stb/descrambler.h"
#include "usher/streams/psi.h"
#include "usher/streams/section.h"

namespace usher {
namespace {

using stb::ServiceOutcome;
using streams::Scrambling;
using streams::TsPacket;

constexpr std::uint16_t kPmtPid = 0x100;  // of service index 0 in a synthetic mux

// A one-service synthetic mux (service 1) with `ca` added to its PMT's program_info, its
// elementary-stream payloads marked scrambled when `scrambled` (their bytes are noise either way),
// and the packets of PID `drop` left out.
std::vector<TsPacket> mux_with(const std::vector<streams::CaDescriptor>& ca, bool scrambled, std::optional<std::uint16_t> drop = {}) {
  testing::SyntheticMuxOptions options;
  options.seconds = 1;
  const auto in = testing::make_synthetic_mux(options);
  const auto sections = testing::sections_on(in, kPmtPid);
  EXPECT_FALSE(sections.empty());
  auto pmt = streams::Pmt::parse(sections.front()).value();
  for (const auto& c : ca) streams::append_ca_descriptor(pmt.descriptors, c);
  const auto section = pmt.serialize();
  streams::SectionPacketizer pmt_packets(kPmtPid);
  std::vector<TsPacket> out;
  for (const auto& p : in) {
    if (drop && p.pid() == *drop) continue;
    if (p.pid() == kPmtPid) {
      pmt_packets.packetize(section, out);
      continue;
    }
    TsPacket q = p;
    const bool es = p.pid() == testing::synthetic_video_pid(0) || p.pid() == testing::synthetic_audio_pid(0);
    if (scrambled && es && p.has_payload()) q.set_scrambling(Scrambling::even);
    out.push_back(q);
  }
  return out;
}

class DescramblerOutcome : public ::testing::Test {
 protected:
  void SetUp() override {
    world.add_service(1);
    se = &world.add_stb(1001);
  }
  // Runs the stream through a Descrambler; the outcomes of `requested` (every service when empty).
  std::vector<stb::ServiceStatus> outcomes(const std::vector<TsPacket>& in, std::vector<std::uint16_t> requested = {}) {
    stb::Descrambler d(se, {});
    std::vector<TsPacket> out;
    d.process(in, out);
    d.finish(out);
    EXPECT_EQ(out.size(), in.size());
    return d.services(requested);
  }
  testing::BroadcastWorld world;
  stb::SecureElement* se = nullptr;
};

TEST_F(DescramblerOutcome, EachCaseHasItsOwnOutcomeAndReason) {
  struct Case {
    const char* name;
    std::vector<TsPacket> stream;
    ServiceOutcome outcome;
    const char* reason;
  };
  const std::vector<Case> cases{
      {"clear", mux_with({}, false), ServiceOutcome::not_scrambled, "service 1: not scrambled (clear in the stream"},
      {"clear, CA announced", mux_with({{0x4AFF, 0x1F00, {}}}, false), ServiceOutcome::not_scrambled, "not scrambled"},
      {"another CA system only", mux_with({{0x0B00, 0x1F00, {}}}, true), ServiceOutcome::other_ca_system,
       "service 1: scrambled for CA system 0x0B00 only, not this STB's (0x4AFF)"},
      {"no ECM announced", mux_with({}, true), ServiceOutcome::no_ecm,
       "service 1: scrambled, but its PMT announces no ECM for this STB's CA system (0x4AFF)"},
      {"announced ECM never comes", mux_with({{0x4AFF, 0x1F00, {}}}, true), ServiceOutcome::no_ecm,
       "service 1: scrambled, and no ECM seen on PID 7936"},
      {"PMT never comes", mux_with({}, true, kPmtPid), ServiceOutcome::no_pmt,
       "service 1: the PAT lists it, but its PMT (PID 256) never came"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto services = outcomes(c.stream);
    ASSERT_EQ(services.size(), 1u);
    EXPECT_EQ(services[0].service_id, 1);
    EXPECT_FALSE(services[0].descrambling);
    EXPECT_EQ(services[0].outcome, c.outcome) << stb::to_string(services[0].outcome) << ": " << services[0].reason;
    EXPECT_NE(services[0].reason.find(c.reason), std::string::npos) << services[0].reason;
    EXPECT_EQ(services[0].reason.find("no ECM yet"), std::string::npos) << services[0].reason;
    EXPECT_EQ(stb::watchable(c.outcome), c.outcome == ServiceOutcome::not_scrambled);
  }
}

TEST_F(DescramblerOutcome, ServicesAskedForComeInTheirOrderAndOnesNotInThePatSaySo) {
  const auto services = outcomes(mux_with({}, false), {9, 1});
  ASSERT_EQ(services.size(), 2u);
  EXPECT_EQ(services[0].service_id, 9);
  EXPECT_EQ(services[0].outcome, ServiceOutcome::not_in_stream);
  EXPECT_EQ(services[0].reason, "service 9 is not in the stream (its PAT lists service 1)");
  EXPECT_EQ(services[1].service_id, 1);
  EXPECT_EQ(services[1].outcome, ServiceOutcome::not_scrambled);

  // No PAT at all: nothing is listed.
  auto without_pat = mux_with({}, false, streams::kPatPid);
  const auto none = outcomes(without_pat, {1});
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].outcome, ServiceOutcome::not_in_stream);
  EXPECT_EQ(none[0].reason, "service 1 is not in the stream (no PAT seen)");
  EXPECT_TRUE(outcomes(without_pat).empty());
}

}  // namespace
}  // namespace usher
