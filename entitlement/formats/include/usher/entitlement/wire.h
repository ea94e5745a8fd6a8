// Field encodings shared by the wire formats of the engine, billing and the local link (the codecs
// in usher_formats and EngineService in usher_engine):
// u16-length text and blobs, money as i64 minor units + ISO 4217 code.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "usher/core/bytes.h"
#include "usher/core/result.h"
#include "usher/entitlement/assets.h"

namespace usher::entitlement::wire {

inline void put_text(ByteWriter& w, const std::string& s) {
  const auto n = std::min<std::size_t>(s.size(), 0xFFFF);
  w.u16(static_cast<std::uint16_t>(n));
  w.bytes({reinterpret_cast<const std::uint8_t*>(s.data()), n});
}
inline bool get_text(ByteReader& r, std::string& s) {
  std::uint16_t n = 0;
  std::span<const std::uint8_t> v;
  if (!r.u16(n) || !r.view(n, v)) return false;
  s.assign(v.begin(), v.end());
  return true;
}
inline void put_blob(ByteWriter& w, std::span<const std::uint8_t> b) {
  w.u16(static_cast<std::uint16_t>(b.size()));
  w.bytes(b);
}
inline bool get_blob(ByteReader& r, std::vector<std::uint8_t>& b) {
  std::uint16_t n = 0;
  std::span<const std::uint8_t> v;
  if (!r.u16(n) || !r.view(n, v)) return false;
  b.assign(v.begin(), v.end());
  return true;
}
inline void put_money(ByteWriter& w, const Money& m) {
  w.u64(static_cast<std::uint64_t>(m.minor));
  w.bytes({reinterpret_cast<const std::uint8_t*>(m.currency.data()), 3});
}
inline bool get_money(ByteReader& r, Money& m) {
  std::uint64_t v = 0;
  std::array<std::uint8_t, 3> c{};
  if (!r.u64(v) || !r.bytes(c)) return false;
  auto cur = parse_currency(std::string(c.begin(), c.end()));
  if (!cur) return false;
  m = {static_cast<std::int64_t>(v), *cur};
  return true;
}
// Finishes decoding a request that carries a spend authorization as a blob: its own error when the
// authorization does not decode.
template <typename Request>
Result<Request> with_spend(Request q, std::span<const std::uint8_t> spend) {
  auto s = SpendAuthorization::decode(spend);
  if (!s) return s.error();
  q.spend = std::move(s.value());
  return q;
}
inline Error bad(const char* what) { return make_error(Errc::malformed, std::string(what) + ": malformed body"); }
inline bool finished(const ByteReader& r) { return !r.failed() && r.remaining() == 0; }

}  // namespace usher::entitlement::wire
