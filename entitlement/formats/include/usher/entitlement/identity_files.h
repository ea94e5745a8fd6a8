// The small public identity files parts hand each other by hand (key=value lines): an STB's
// (`usher stb init` writes it, the operator imports it) and the operator's operator.pub (every STB,
// headend and handset reads it to trust the operator). Only public keys: no part of usher_formats
// holds a private one.
#pragma once

#include <cstdint>
#include <string>

#include "usher/core/crypto.h"
#include "usher/core/result.h"

namespace usher::entitlement {

// The public identity file an STB writes at `usher stb init` and the operator imports.
struct StbPublicFile {
  std::uint32_t stb_id = 0;
  crypto::PublicKey x25519_public{};
  crypto::PublicKey ed25519_public{};
  static Result<StbPublicFile> read(const std::string& path);
  Status write(const std::string& path) const;
};

// Reads an operator.pub file (hex X25519 public key and CA_system_id).
struct OperatorPublicFile {
  std::uint16_t ca_system_id = 0;
  crypto::PublicKey x25519_public{};
  crypto::PublicKey ed25519_public{};  // verifies tickets
  static Result<OperatorPublicFile> read(const std::string& path);
};

}  // namespace usher::entitlement
