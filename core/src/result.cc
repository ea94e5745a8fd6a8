#include "usher/core/result.h"

namespace usher {

const char* to_string(Errc code) {
  switch (code) {
    case Errc::invalid_argument: return "invalid argument";
    case Errc::malformed: return "malformed";
    case Errc::auth_failed: return "authentication failed";
    case Errc::replayed: return "replayed";
    case Errc::stale: return "stale";
    case Errc::not_entitled: return "not entitled";
    case Errc::not_found: return "not found";
    case Errc::already_exists: return "already exists";
    case Errc::storage: return "storage";
    case Errc::crypto: return "crypto";
    case Errc::io: return "I/O";
    case Errc::busy: return "busy";
  }
  return "unknown";
}

}  // namespace usher
