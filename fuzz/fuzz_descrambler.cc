// The STB's descrambler on arbitrary packets: PAT/PMT/CAT demultiplexing, EMM and ECM sections into
// a real secure element (SQLite in a temporary directory), and CSA on whatever is flagged scrambled.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "packets.h"
#include "usher/core/crypto.h"
#include "usher/entitlement/messages.h"
#include "usher/stb/descrambler.h"

namespace {
usher::stb::SecureElement& secure_element() {
  static usher::stb::SecureElement* se = [] {
    char templ[] = "/tmp/usher-fuzz-XXXXXX";
    std::string dir = mkdtemp(templ);
    usher::entitlement::OperatorPublicFile op;
    op.ca_system_id = 0x4AFF;
    const auto op_x = usher::crypto::X25519KeyPair::generate();
    op.x25519_public = op_x.public_key;
    auto r = usher::stb::SecureElement::init(dir + "/stb", 1001, op);
    if (!r) std::abort();
    // In group 1 (position 0) with group key version 1, and holding global key version 1: group and
    // global EMMs of the input that name them get past the header filter to the decryption.
    const auto emm_key = usher::entitlement::derive_emm_key(op_x.private_key, r->public_identity().x25519_public, 0x4AFF, 1001);
    if (!emm_key) std::abort();
    usher::Key256 group_key;
    usher::crypto::random_bytes(group_key.mutable_bytes());
    usher::Key256 global_key;
    usher::crypto::random_bytes(global_key.mutable_bytes());
    usher::entitlement::EmmContent keys{1001, 1, 1'900'000'000, {}};
    keys.items.emplace_back(usher::entitlement::EmmGroupKey{1, 0, 1, std::move(group_key)});
    keys.items.emplace_back(usher::entitlement::EmmGlobalKey{1, std::move(global_key)});
    if (!r->apply_emm(usher::entitlement::encode_emm(keys, *emm_key))) std::abort();
    return new usher::stb::SecureElement(std::move(r.value()));
  }();
  return *se;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace usher;
  const auto in = fuzz_packets(data, size);
  std::vector<streams::TsPacket> out;
  stb::Descrambler d(&secure_element(), {});
  d.process(in, out);
  d.finish(out);
  if (out.size() != in.size()) __builtin_trap();
  // Each service's outcome comes from what the input said (PAT, PMTs, ECMs): every service of the
  // stream, and services asked for whether or not the PAT lists them.
  const auto all = d.services();
  const std::uint16_t asked[] = {1, 2, 0xFFFF};
  const auto some = d.services(asked);
  if (some.size() != 3) __builtin_trap();
  for (const auto& s : all) {
    if ((s.outcome == stb::ServiceOutcome::descrambled) != s.reason.empty()) __builtin_trap();  // a reason unless descrambled
  }
  return 0;
}
