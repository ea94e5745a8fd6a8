// The small public identity files parts hand each other by hand (key=value lines): an STB's
// (`usher stb init` writes it, the operator imports it), the operator's operator.pub (every STB,
// headend, handset and billing reads it to trust the operator), billing's billing.pub and the
// certificate the operator makes of it. Only public keys: no part of usher_formats holds a private
// one.
#pragma once

#include <cstdint>
#include <string>

#include "usher/core/crypto.h"
#include "usher/core/result.h"
#include "usher/entitlement/settlement.h"

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
  static constexpr const char* kFileName = "operator.pub";  // in the operator's home
  std::uint16_t ca_system_id = 0;
  crypto::PublicKey x25519_public{};
  crypto::PublicKey ed25519_public{};  // verifies tickets
  static Result<OperatorPublicFile> read(const std::string& path);
};

// The public file `usher billing init` writes (billing.pub in billing's home): billing's id and its
// two public keys, for the operator to certify (`usher entitlement billing add --public-file`).
struct BillingPublicFile {
  std::uint32_t billing_id = 0;
  crypto::PublicKey ed25519_public{};
  crypto::PublicKey x25519_public{};
  static Result<BillingPublicFile> read(const std::string& path);
  Status write(const std::string& path) const;
};

// The file the operator gives billing: its certificate (billing_id=, certificate=<hex>), which
// `usher billing certify --certificate` installs.
Result<BillingCertificate> read_billing_certificate(const std::string& path);
Status write_billing_certificate(const BillingCertificate& certificate, const std::string& path);

}  // namespace usher::entitlement
