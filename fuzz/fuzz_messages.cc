// ECM and EMM (unique, group, global) decoding as the STB sees them: peek at the clear header, then open with a key.
// A fixed key lets the fuzzer reach the decoding of authentic-looking messages when seeded with
// messages sealed under it (fuzz_seeds writes some).
#include <cstddef>
#include <cstdint>

#include "usher/entitlement/messages.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace usher;
  static const Key256 key = [] {
    Key256 k;
    for (std::size_t i = 0; i < 32; ++i) k.mutable_bytes()[i] = static_cast<std::uint8_t>(i);
    return k;
  }();
  const std::span<const std::uint8_t> in(data, size);
  if (auto h = entitlement::peek_ecm(in)) {
    (void)entitlement::decode_ecm_part(in, entitlement::EcmPart::current, key);
    (void)entitlement::decode_ecm_part(in, entitlement::EcmPart::next, key);
    (void)entitlement::decode_ecm(in, key, key);
  }
  if (auto h = entitlement::peek_emm(in)) (void)entitlement::decode_emm(in, key);
  if (auto h = entitlement::peek_any_emm(in)) {
    if (h->address.type != entitlement::EmmAddressType::unique) (void)entitlement::decode_shared_emm(in, key);
  }
  return 0;
}
