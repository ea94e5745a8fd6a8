// The headend's scrambler on arbitrary packets: PAT/PMT/CAT parsing and rewriting, the stream
// clock on arbitrary PCRs, ECM/CAT/EMM insertion and CSA batches.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "packets.h"
#include "usher/headend/scrambler.h"

namespace {
class FixedKeys final : public usher::headend::KeySource {
 public:
  usher::Result<usher::entitlement::ServiceKey> service_key(std::uint16_t id) override {
    if (id % 3 == 0) return usher::make_error(usher::Errc::not_found, "no key");
    return usher::entitlement::ServiceKey{1, usher::Key256{}};
  }
  usher::headend::EmmChanges emm_changes(std::uint64_t version) override {
    usher::headend::EmmChanges changes;
    changes.version = 1;
    if (version != 0) return changes;
    changes.restart = true;
    changes.added.push_back({1, usher::entitlement::EmmPriority::urgent, 0, ~std::uint64_t{0} >> 1,
                             std::make_shared<const std::vector<std::uint8_t>>(
                                 usher::streams::build_short_section(0x82, std::vector<std::uint8_t>(40, 1)))});
    return changes;
  }
  std::optional<usher::entitlement::EventKey> current_event(std::uint16_t service_id, std::uint64_t time) override {
    if ((service_id + time) % 5 != 0) return std::nullopt;
    return usher::entitlement::EventKey{7, usher::Key256{}, 12};
  }
  std::vector<usher::entitlement::EventInfo> schedule(std::uint16_t service_id, std::uint64_t time, std::size_t) override {
    usher::entitlement::EventInfo e;
    e.event_id = 7;
    e.service_id = service_id;
    e.start = time - time % 5;
    e.duration = 5;
    e.title = "fuzz";
    return {e};
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace usher;
  const auto in = fuzz_packets(data, size);
  FixedKeys keys;
  headend::ScramblerConfig config;
  config.start_unix = 1'900'000'000;
  config.crypto_period_ms = 200;
  config.pass_scrambled = size > 0 && (data[0] & 1) != 0;
  if (size > 0) {
    const int policy = (data[0] >> 1) % 3;
    config.insert_policy = policy == 0 ? headend::InsertPolicy::automatic
                                       : (policy == 1 ? headend::InsertPolicy::replace_nulls : headend::InsertPolicy::add);
    if ((data[0] & 0x08) != 0) config.original_network_id = 0x2001;
  }
  headend::Scrambler s(std::move(config), keys);
  std::vector<streams::TsPacket> out;
  s.process(in, out);
  s.finish(out);
  // A refusal comes before anything is output, or stops the output there.
  if (s.refusal() && s.stats().packets_in == 0 && !out.empty()) __builtin_trap();
  // replace_nulls: one packet out per packet in, apart from packets sent ahead and slots given back.
  const auto st = s.stats();
  if (!s.refusal() && st.replacing_nulls && out.size() + st.nulls_given_back != st.packets_in + st.packets_borrowed) __builtin_trap();
  return 0;
}
