#include "usher/entitlement/request_code.h"

#include <openssl/hmac.h>

#include <array>
#include <cctype>

#include "usher/core/bytes.h"
#include "usher/core/crypto.h"

namespace usher::entitlement {
namespace {

constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";  // Crockford: no I, L, O, U
constexpr std::uint64_t kEpoch = 1'735'689'600;                  // 2025-01-01T00:00:00Z
constexpr std::size_t kClearBytes = 4 + 2 + 3 + 2;
constexpr std::size_t kTagBytes = 4;
constexpr std::size_t kBytes = kClearBytes + kTagBytes;  // 15 bytes = 24 base32 characters

std::array<std::uint8_t, kTagBytes> tag_of(std::span<const std::uint8_t> clear, const Key256& key) {
  std::array<std::uint8_t, 32> mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.bytes().data(), 32, clear.data(), clear.size(), mac.data(), &len);
  std::array<std::uint8_t, kTagBytes> tag{};
  std::copy_n(mac.begin(), kTagBytes, tag.begin());
  return tag;
}

std::string base32(std::span<const std::uint8_t> bytes) {
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (auto b : bytes) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += kAlphabet[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kAlphabet[(buffer << (5 - bits)) & 31];
  return out;
}

Result<std::vector<std::uint8_t>> unbase32(const std::string& text) {
  std::vector<std::uint8_t> out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char c : canonical_request_code(text)) {
    int v = -1;
    for (int i = 0; i < 32; ++i) {
      if (kAlphabet[i] == c) v = i;
    }
    if (c == 'O') v = 0;  // Crockford reads the look-alikes leniently
    if (c == 'I' || c == 'L') v = 1;
    if (v < 0) return make_error(Errc::malformed, std::string("request code: '") + c + "' is not a code character");
    buffer = (buffer << 5) | static_cast<std::uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<std::uint8_t>(buffer >> (bits - 8)));
      bits -= 8;
    }
  }
  if (out.size() != kBytes) return make_error(Errc::malformed, "request code: should be 24 characters");
  return out;
}

}  // namespace

std::string canonical_request_code(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '-' || c == ' ') continue;
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

Key256 request_code_key(const Key256& emm_key) {
  static constexpr std::uint8_t kSalt[] = {'u', 's', 'h', 'e', 'r', '-', 'c', 'o', 'd', 'e', '-', 'v', '1'};
  return crypto::hkdf_sha256(emm_key.bytes(), kSalt, {});
}

std::string make_request_code(const RequestCode& code, const Key256& key) {
  ByteWriter w;
  w.u32(code.stb_id);
  w.u16(code.event_id);
  const std::uint64_t minutes = code.expires > kEpoch ? (code.expires - kEpoch) / 60 : 0;
  w.u8(static_cast<std::uint8_t>(minutes >> 16));
  w.u16(static_cast<std::uint16_t>(minutes & 0xFFFF));
  w.u16(code.nonce);
  const auto tag = tag_of(w.data(), key);
  w.bytes(tag);
  const auto text = base32(w.data());
  std::string grouped;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i > 0 && i % 4 == 0) grouped += '-';
    grouped += text[i];
  }
  return grouped;
}

Result<RequestCode> read_request_code(const std::string& text) {
  USHER_TRY(auto bytes, unbase32(text));
  ByteReader r(bytes);
  RequestCode c;
  std::uint8_t hi = 0;
  std::uint16_t lo = 0;
  r.u32(c.stb_id);
  r.u16(c.event_id);
  r.u8(hi);
  r.u16(lo);
  r.u16(c.nonce);
  c.expires = kEpoch + ((std::uint64_t{hi} << 16) | lo) * 60;
  return c;
}

Status verify_request_code(const std::string& text, const Key256& key) {
  USHER_TRY(auto bytes, unbase32(text));
  const auto expected = tag_of(std::span(bytes).first(kClearBytes), key);
  if (!constant_time_equal(expected, std::span(bytes).subspan(kClearBytes))) {
    return make_error(Errc::auth_failed, "request code does not check out (mistyped, or not made by that STB)");
  }
  return ok_status();
}

}  // namespace usher::entitlement
