// LocalLink: the STB's side of the short-range link to a handset (Bluetooth, NFC or a QR code in a
// product; ZeroMQ on ipc:// or loopback here, served by `usher stb link`). It answers framed
// requests (entitlement::LinkMessage): a ticket's EMM handed over by the buyer's handset, and the
// STB's signed delivery acks collected for relay to the engine.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "usher/core/log.h"
#include "usher/stb/secure_element.h"

namespace usher::stb {

class LocalLink {
 public:
  explicit LocalLink(SecureElement& se) : se_(se) {}
  // Never throws for bad input: every failure becomes an error reply.
  std::vector<std::uint8_t> handle(std::span<const std::uint8_t> request);

 private:
  SecureElement& se_;
  Logger log_{"stb"};
};

}  // namespace usher::stb
