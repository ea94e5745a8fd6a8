// The STB's local link on arbitrary bytes (what any device in radio range could send), over a real
// secure element in a temporary directory.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "usher/core/crypto.h"
#include "usher/stb/local_link.h"

namespace {
usher::stb::LocalLink& link() {
  static usher::stb::LocalLink* l = [] {
    char templ[] = "/tmp/usher-fuzz-link-XXXXXX";
    std::string dir = mkdtemp(templ);
    usher::entitlement::OperatorPublicFile op;
    op.ca_system_id = 0x4AFF;
    op.x25519_public = usher::crypto::X25519KeyPair::generate().public_key;
    op.ed25519_public = usher::crypto::Ed25519KeyPair::generate().public_key;
    auto se = usher::stb::SecureElement::init(dir + "/stb", 1001, op);
    if (!se) std::abort();
    return new usher::stb::LocalLink(*new usher::stb::SecureElement(std::move(se.value())), dir + "/stb");
  }();
  return *l;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto reply = link().handle({data, size});
  if (reply.size() < 18) __builtin_trap();
  return 0;
}
