#include "usher/entitlement/history.h"

#include "usher/core/bytes.h"

namespace usher::entitlement {
namespace {
constexpr std::array<std::uint8_t, 13> kDomain = {'u', 's', 'h', 'e', 'r', '-', 'h', 'i', 's', 't', '-', 'v', '1'};
}

std::vector<std::uint8_t> HistoryRecord::signed_part() const {
  ByteWriter w;
  w.bytes(kDomain);
  w.u32(stb_id);
  w.u64(sequence);
  w.u64(time);
  w.u32(event_id);
  w.u16(service_id);
  w.u64(static_cast<std::uint64_t>(price.minor));
  w.bytes({reinterpret_cast<const std::uint8_t*>(price.currency.data()), 3});
  w.bytes(previous);
  return w.take();
}

std::vector<std::uint8_t> HistoryRecord::encode() const {
  auto b = signed_part();
  b.insert(b.end(), signature.begin(), signature.end());
  return b;
}

Result<HistoryRecord> HistoryRecord::decode(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  std::array<std::uint8_t, 13> domain{};
  std::array<std::uint8_t, 3> cur{};
  std::uint64_t price = 0;
  HistoryRecord h;
  r.bytes(domain);
  r.u32(h.stb_id);
  r.u64(h.sequence);
  r.u64(h.time);
  r.u32(h.event_id);
  r.u16(h.service_id);
  r.u64(price);
  r.bytes(cur);
  r.bytes(h.previous);
  r.bytes(h.signature);
  if (r.failed() || r.remaining() != 0) return make_error(Errc::malformed, "history record: wrong length");
  if (domain != kDomain) return make_error(Errc::malformed, "not a history record");
  auto c = parse_currency(std::string(cur.begin(), cur.end()));
  if (!c) return make_error(Errc::malformed, "history record: " + c.error().message);
  h.price = {static_cast<std::int64_t>(price), *c};
  return h;
}

crypto::Digest HistoryRecord::hash() const { return crypto::sha256(encode()); }

void HistoryRecord::sign(const Secret<32>& stb_private) { signature = crypto::ed25519_sign(stb_private, signed_part()); }

Status verify_history(std::span<const HistoryRecord> records, const crypto::PublicKey& stb_public,
                      std::uint64_t after_sequence, const crypto::Digest& after_hash) {
  std::uint64_t expected = after_sequence + 1;
  crypto::Digest previous = after_hash;
  for (const auto& r : records) {
    if (r.sequence != expected) {
      return make_error(Errc::stale, "history record " + std::to_string(r.sequence) + " where " + std::to_string(expected) +
                                         " was expected (a gap, a reordering or a replay)");
    }
    if (!crypto::ed25519_verify(stb_public, r.signed_part(), r.signature)) {
      return make_error(Errc::auth_failed, "history record " + std::to_string(r.sequence) + " is not signed by STB " +
                                               std::to_string(r.stb_id));
    }
    if (r.previous != previous) {
      return make_error(Errc::auth_failed, "history record " + std::to_string(r.sequence) + " does not follow the one before");
    }
    previous = r.hash();
    ++expected;
  }
  return ok_status();
}

}  // namespace usher::entitlement
