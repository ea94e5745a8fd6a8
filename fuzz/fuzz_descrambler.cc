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
#include "usher/stb/descrambler.h"

namespace {
usher::stb::SecureElement& secure_element() {
  static usher::stb::SecureElement* se = [] {
    char templ[] = "/tmp/usher-fuzz-XXXXXX";
    std::string dir = mkdtemp(templ);
    usher::entitlement::OperatorPublicFile op;
    op.ca_system_id = 0x4AFF;
    op.x25519_public = usher::crypto::X25519KeyPair::generate().public_key;
    auto r = usher::stb::SecureElement::init(dir + "/stb", 1001, op);
    if (!r) std::abort();
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
