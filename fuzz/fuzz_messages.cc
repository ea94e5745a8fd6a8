// ECM and EMM (unique, group, global) decoding as the STB sees them: peek at the clear header, then open with a key.
// Also the headend's key bundle and the key versions after it in the headend_keys reply (rotation:
// each service's current and next key with its start), opened as headend 1 under the same key.
// A fixed key lets the fuzzer reach the decoding of authentic-looking messages when seeded with
// messages sealed under it (fuzz_seeds writes some).
#include <cstddef>
#include <cstdint>

#include "usher/entitlement/catalogue.h"
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
  (void)entitlement::open_key_bundle(in, key, 1);
  if (auto versions = entitlement::open_key_versions(in, key, 1)) {
    for (const auto& v : *versions) {
      entitlement::ServiceKeys keys{entitlement::ServiceKeyVersion{v.version.key_version, v.version.key.clone(), 0}, std::nullopt};
      keys.next = entitlement::ServiceKeyVersion{v.version.key_version, v.version.key.clone(), v.version.starts};
      (void)keys.at(v.version.starts);
    }
  }
  return 0;
}
