// RequestCode (flow F3): an STB that wants an event shows a short code (and a QR code holding it);
// the viewer's handset sends it to the engine with a payment. The STB has no return line, so the
// code carries the request itself: STB id, event id, expiry and a nonce, authenticated with a key
// only that STB and the operator share (derived from their EMM key). The engine accepts each code
// once and before it expires.
//
// Text form: 24 characters of Crockford base32 in groups of four, e.g. "0R9K-2XQ1-...".
#pragma once

#include <cstdint>
#include <string>

#include "usher/core/result.h"
#include "usher/core/secret.h"

namespace usher::entitlement {

struct RequestCode {
  std::uint32_t stb_id = 0;
  std::uint16_t event_id = 0;
  std::uint64_t expires = 0;  // unix seconds, rounded down to the minute
  std::uint16_t nonce = 0;
};

// The key for request codes, from the STB's EMM key.
Key256 request_code_key(const Key256& emm_key);
std::string make_request_code(const RequestCode& code, const Key256& code_key);
// Reads the clear fields (no key needed: the handset shows the event and price from them).
Result<RequestCode> read_request_code(const std::string& text);
// Checks the tag. Errc::auth_failed when the code was altered or not made by that STB.
Status verify_request_code(const std::string& text, const Key256& code_key);
// The canonical form (upper case, no dashes), used to remember which codes were used.
std::string canonical_request_code(const std::string& text);

}  // namespace usher::entitlement
