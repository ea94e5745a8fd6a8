#include "usher/entitlement/messages.h"

#include <stdexcept>
#include <string>

#include "usher/core/bytes.h"
#include "usher/streams/section.h"

namespace usher::entitlement {
namespace {

constexpr std::uint8_t kItemGrant = 1;
constexpr std::uint8_t kItemRevoke = 2;
constexpr std::uint8_t kItemTicket = 3;
constexpr std::uint8_t kItemTicketRevoke = 4;
constexpr std::uint8_t kItemCredit = 5;
constexpr std::uint8_t kItemOffer = 6;
constexpr std::uint8_t kItemCollection = 7;
// version, service_id, key_version, current event_id, next event_id, then the two blocks' nonces
constexpr std::size_t kEcmHeaderSize = 1 + 2 + 2 + 4 + 4 + 2 * crypto::kGcmNonceSize;
constexpr std::size_t kEcmPlainSize = 4 + 8 + 4 + 1 + 2 + 8;  // period, time, access criteria, control word
constexpr std::size_t kEcmBlockSize = kEcmPlainSize + crypto::kGcmTagSize;
constexpr std::size_t kEmmHeaderSize = 1 + 4 + 8;      // version, stb_id, sequence
constexpr std::size_t kMaxBody = 1021;                 // short private section limit we keep to

// The clear bytes of a message, as authenticated data: the 3-byte section header (table_id, flags,
// section_length) then the message header.
std::vector<std::uint8_t> aad_for(std::span<const std::uint8_t> section_header, std::span<const std::uint8_t> header) {
  std::vector<std::uint8_t> aad(section_header.begin(), section_header.end());
  aad.insert(aad.end(), header.begin(), header.end());
  return aad;
}

std::vector<std::uint8_t> seal_into_section(std::uint8_t table_id, const std::vector<std::uint8_t>& header,
                                            std::span<const std::uint8_t> plaintext, const Key256& key) {
  std::array<std::uint8_t, crypto::kGcmNonceSize> nonce{};
  crypto::random_bytes(nonce);
  const std::size_t body_size = header.size() + nonce.size() + plaintext.size() + crypto::kGcmTagSize;
  const auto prefix = streams::build_short_section(table_id, std::vector<std::uint8_t>(body_size));
  const auto sealed = crypto::aead_seal(key, nonce, aad_for(std::span(prefix).first(3), header), plaintext);
  ByteWriter body;
  body.bytes(header);
  body.bytes(nonce);
  body.bytes(sealed);
  return streams::build_short_section(table_id, body.data());
}

struct OpenedSection {
  std::span<const std::uint8_t> header;
  std::vector<std::uint8_t> plaintext;
};

Result<OpenedSection> open_section(std::span<const std::uint8_t> section, std::size_t header_size,
                                   const Key256& key, const char* what, std::uint8_t version) {
  const auto parsed = streams::parse_section(section);
  if (!parsed) return make_error(Errc::malformed, std::string(what) + ": section " + parsed.error().message);
  const auto body = parsed->body;
  if (body.size() < header_size + crypto::kGcmNonceSize + crypto::kGcmTagSize) {
    return make_error(Errc::malformed, std::string(what) + ": too short (" + std::to_string(body.size()) + " bytes)");
  }
  if (body[0] != version) {
    return make_error(Errc::malformed, std::string(what) + ": unsupported version " + std::to_string(body[0]));
  }
  const auto header = body.first(header_size);
  std::span<const std::uint8_t, crypto::kGcmNonceSize> nonce(body.data() + header_size, crypto::kGcmNonceSize);
  auto plain = crypto::aead_open(key, nonce, aad_for(section.first(3), header),
                                 body.subspan(header_size + crypto::kGcmNonceSize));
  if (!plain) return make_error(plain.error().code, std::string(what) + ": " + plain.error().message);
  return OpenedSection{header, std::move(plain.value())};
}

ControlWord read_cw(ByteReader& r) {
  std::array<std::uint8_t, 8> b{};
  r.bytes(b);
  ControlWord cw{std::span<const std::uint8_t, 8>(b)};
  secure_zero(b.data(), b.size());
  return cw;
}

}  // namespace

namespace {

std::vector<std::uint8_t> ecm_part_aad(std::span<const std::uint8_t> section_prefix, EcmPart part) {
  // The section header and the whole clear header, both nonces included, then the block's role: a
  // block cannot be moved to the other place or spliced into another ECM.
  std::vector<std::uint8_t> aad(section_prefix.begin(), section_prefix.end());
  aad.push_back(static_cast<std::uint8_t>(part));
  return aad;
}

std::vector<std::uint8_t> ecm_plaintext(const EcmPeriod& p) {
  ByteWriter plain;
  plain.u32(p.crypto_period);
  plain.u64(p.time_unix);
  plain.u32(p.access.tier_mask);
  plain.u8(p.access.min_age);
  plain.u16(p.access.region);
  plain.bytes(p.cw.bytes());
  return plain.take();
}

}  // namespace

std::vector<std::uint8_t> encode_ecm(const EcmContent& ecm, const Key256& current_key, const Key256& next_key) {
  std::array<std::uint8_t, crypto::kGcmNonceSize> nonces[2]{};
  crypto::random_bytes(nonces[0]);
  crypto::random_bytes(nonces[1]);
  ByteWriter header;
  header.u8(kEcmVersion);
  header.u16(ecm.service_id);
  header.u16(ecm.key_version);
  header.u32(ecm.current.event_id);
  header.u32(ecm.next.event_id);
  header.bytes(nonces[0]);
  header.bytes(nonces[1]);
  const std::uint8_t table = (ecm.current.crypto_period % 2 == 0) ? kTableEcmEven : kTableEcmOdd;
  // The section's first bytes are known before sealing: its length is fixed.
  auto section = streams::build_short_section(table, std::vector<std::uint8_t>(kEcmHeaderSize + 2 * kEcmBlockSize));
  std::copy(header.data().begin(), header.data().end(), section.begin() + 3);
  const std::span<const std::uint8_t> prefix = std::span(section).first(3 + kEcmHeaderSize);
  std::size_t at = prefix.size();
  for (const auto part : {EcmPart::current, EcmPart::next}) {
    const bool current = part == EcmPart::current;
    auto plain = ecm_plaintext(current ? ecm.current : ecm.next);
    const auto sealed = crypto::aead_seal(current ? current_key : next_key, nonces[current ? 0 : 1], ecm_part_aad(prefix, part), plain);
    secure_zero(plain.data(), plain.size());
    std::copy(sealed.begin(), sealed.end(), section.begin() + static_cast<std::ptrdiff_t>(at));
    at += sealed.size();
  }
  return section;
}

Result<EcmHeader> peek_ecm(std::span<const std::uint8_t> section) {
  const auto parsed = streams::parse_section(section);
  if (!parsed) return make_error(Errc::malformed, std::string("ECM: section ") + parsed.error().message);
  const auto t = parsed->header.table_id;
  if (t != kTableEcmEven && t != kTableEcmOdd) return make_error(Errc::malformed, "ECM: table_id is not 0x80/0x81");
  ByteReader r(parsed->body);
  std::uint8_t version = 0;
  EcmHeader h;
  h.table_id = t;
  if (!r.u8(version)) return make_error(Errc::malformed, "ECM: truncated header");
  if (version != kEcmVersion) return make_error(Errc::malformed, "ECM: unsupported version " + std::to_string(version));
  if (!r.u16(h.service_id) || !r.u16(h.key_version) || !r.u32(h.event_id) || !r.u32(h.next_event_id)) {
    return make_error(Errc::malformed, "ECM: truncated header");
  }
  if (parsed->body.size() != kEcmHeaderSize + 2 * kEcmBlockSize) {
    return make_error(Errc::malformed, "ECM: " + std::to_string(parsed->body.size()) + " bytes, expected " +
                                           std::to_string(kEcmHeaderSize + 2 * kEcmBlockSize));
  }
  return h;
}

Result<EcmPeriod> decode_ecm_part(std::span<const std::uint8_t> section, EcmPart part, const Key256& key) {
  USHER_TRY(auto header, peek_ecm(section));
  const bool current = part == EcmPart::current;
  const char* what = current ? "ECM (current control word)" : "ECM (next control word)";
  // peek_ecm checked the length: the section is 3 + kEcmHeaderSize + 2 blocks.
  const auto prefix = section.first(3 + kEcmHeaderSize);
  const std::size_t nonce_at = 3 + kEcmHeaderSize - 2 * crypto::kGcmNonceSize + (current ? 0 : crypto::kGcmNonceSize);
  std::span<const std::uint8_t, crypto::kGcmNonceSize> nonce(section.data() + nonce_at, crypto::kGcmNonceSize);
  const auto block = section.subspan(prefix.size() + (current ? 0 : kEcmBlockSize), kEcmBlockSize);
  auto plain = crypto::aead_open(key, nonce, ecm_part_aad(prefix, part), block);
  if (!plain) return make_error(plain.error().code, std::string(what) + ": " + plain.error().message);
  ByteReader r(plain.value());
  EcmPeriod p;
  p.event_id = header.audience(part);
  r.u32(p.crypto_period);
  r.u64(p.time_unix);
  r.u32(p.access.tier_mask);
  r.u8(p.access.min_age);
  r.u16(p.access.region);
  p.cw = read_cw(r);
  const bool failed = r.failed() || r.remaining() != 0;
  secure_zero(plain->data(), plain->size());
  if (failed) return make_error(Errc::malformed, std::string(what) + ": payload has the wrong length");
  // The table_id's parity is the current period's; the next period has the other.
  const bool even_table = header.table_id == kTableEcmEven;
  if (even_table != (p.crypto_period % 2 == (current ? 0u : 1u))) {
    return make_error(Errc::malformed, std::string(what) + ": table_id parity does not match the crypto period");
  }
  return p;
}

Result<EcmContent> decode_ecm(std::span<const std::uint8_t> section, const Key256& current_key, const Key256& next_key) {
  USHER_TRY(auto header, peek_ecm(section));
  USHER_TRY(auto current, decode_ecm_part(section, EcmPart::current, current_key));
  USHER_TRY(auto next, decode_ecm_part(section, EcmPart::next, next_key));
  if (next.crypto_period != current.crypto_period + 1 || next.time_unix < current.time_unix) {
    return make_error(Errc::malformed, "ECM: the next control word's period does not follow the current one");
  }
  EcmContent ecm;
  ecm.service_id = header.service_id;
  ecm.key_version = header.key_version;
  ecm.current = std::move(current);
  ecm.next = std::move(next);
  return ecm;
}

Result<Key256> derive_emm_key(const Secret<32>& own_private, const crypto::PublicKey& peer_public,
                              std::uint16_t ca_system_id, std::uint32_t stb_id) {
  return derive_emm_key(crypto::X25519Agreement(own_private), peer_public, ca_system_id, stb_id);
}

Result<Key256> derive_emm_key(const crypto::X25519Agreement& own, const crypto::PublicKey& peer_public, std::uint16_t ca_system_id,
                              std::uint32_t stb_id) {
  USHER_TRY(auto shared, own.agree(peer_public));
  static constexpr std::uint8_t kSalt[] = {'u', 's', 'h', 'e', 'r', '-', 'e', 'm', 'm', '-', 'v', '1'};
  ByteWriter info;
  info.u16(ca_system_id);
  info.u32(stb_id);
  return crypto::hkdf_sha256(shared.bytes(), kSalt, info.data());
}

namespace {

constexpr std::uint8_t kItemGroupKey = 8;
constexpr std::uint8_t kItemGlobalKey = 9;
constexpr std::uint8_t kItemMemberGrant = 10;
constexpr std::uint8_t kItemMemberRevoke = 11;
constexpr std::uint8_t kItemMessage = 12;
constexpr std::size_t kMaxOfferTitle = 200;
constexpr std::size_t kMaxMessageText = 200;
// Shared EMMs' clear header: version, group id (0 for global), key version, sequence.
constexpr std::size_t kSharedEmmHeaderSize = 1 + 4 + 4 + 8;
constexpr std::uint8_t kSharedEmmVersion = 1;

std::span<const std::uint8_t> chars(const std::string& s, std::size_t n) { return {reinterpret_cast<const std::uint8_t*>(s.data()), n}; }

void write_item(ByteWriter& plain, const EmmItem& item) {
  ByteWriter d;
  std::uint8_t type = 0;
  if (const auto* g = std::get_if<EmmGrant>(&item)) {
    type = kItemGrant;
    d.u16(g->service_id);
    d.u16(g->key_version);
    d.bytes(g->service_key.bytes());
    d.u64(g->not_before);
    d.u64(g->not_after);
  } else if (const auto* v = std::get_if<EmmRevoke>(&item)) {
    type = kItemRevoke;
    d.u16(v->service_id);
  } else if (const auto* t = std::get_if<EmmTicket>(&item)) {
    type = kItemTicket;
    d.bytes(t->ticket);
    d.bytes(t->event_key.bytes());
  } else if (const auto* r = std::get_if<EmmTicketRevoke>(&item)) {
    type = kItemTicketRevoke;
    d.u64(r->ticket_id);
  } else if (const auto* c = std::get_if<EmmCredit>(&item)) {
    type = kItemCredit;
    d.u64(static_cast<std::uint64_t>(c->limit_minor));
    d.bytes({reinterpret_cast<const std::uint8_t*>(c->currency.data()), 3});
  } else if (const auto* k = std::get_if<EmmCollection>(&item)) {
    type = kItemCollection;
    d.u64(k->within_seconds);
  } else if (const auto* o = std::get_if<EmmOffer>(&item)) {
    const auto n = std::min(o->title.size(), kMaxOfferTitle);
    type = kItemOffer;
    d.u32(o->event_id);
    d.u16(o->service_id);
    d.u64(o->start);
    d.u32(o->duration);
    d.u64(static_cast<std::uint64_t>(o->price_minor));
    d.bytes({reinterpret_cast<const std::uint8_t*>(o->currency.data()), 3});
    d.u8(o->min_age);
    d.bytes(o->event_key.bytes());
    d.u8(static_cast<std::uint8_t>(n));
    d.bytes(chars(o->title, n));
  } else if (const auto* gk = std::get_if<EmmGroupKey>(&item)) {
    type = kItemGroupKey;
    d.u32(gk->group_id);
    d.u8(gk->position);
    d.u32(gk->key_version);
    d.bytes(gk->key.bytes());
  } else if (const auto* xk = std::get_if<EmmGlobalKey>(&item)) {
    type = kItemGlobalKey;
    d.u32(xk->key_version);
    d.bytes(xk->key.bytes());
  } else if (const auto* mg = std::get_if<EmmMemberGrant>(&item)) {
    if (mg->services.size() > 255) throw std::length_error("EMM: a member grant names at most 255 services");
    type = kItemMemberGrant;
    d.bytes(mg->members.bits);
    d.u64(mg->not_before);
    d.u64(mg->not_after);
    d.u8(static_cast<std::uint8_t>(mg->services.size()));
    for (const auto& key_item : mg->services) {
      d.u16(key_item.service_id);
      d.u16(key_item.key_version);
      d.bytes(key_item.key.bytes());
    }
  } else if (const auto* mr = std::get_if<EmmMemberRevoke>(&item)) {
    if (mr->services.size() > 255) throw std::length_error("EMM: a member revoke names at most 255 services");
    type = kItemMemberRevoke;
    d.bytes(mr->members.bits);
    d.u8(static_cast<std::uint8_t>(mr->services.size()));
    for (const auto s : mr->services) d.u16(s);
  } else if (const auto* m = std::get_if<EmmMessage>(&item)) {
    const auto n = std::min(m->text.size(), kMaxMessageText);
    type = kItemMessage;
    d.u64(m->message_id);
    d.u8(static_cast<std::uint8_t>(n));
    d.bytes(chars(m->text, n));
  }
  auto data = d.take();
  plain.u8(type);
  plain.u16(static_cast<std::uint16_t>(data.size()));
  plain.bytes(data);
  secure_zero(data.data(), data.size());
}

std::vector<std::uint8_t> write_items(std::uint64_t issued_unix, const std::vector<EmmItem>& items) {
  if (items.size() > 255) throw std::length_error("EMM: at most 255 items");
  ByteWriter plain;
  plain.u64(issued_unix);
  plain.u8(static_cast<std::uint8_t>(items.size()));
  for (const auto& item : items) write_item(plain, item);
  return plain.take();
}

Status wrong_length(const char* item) { return make_error(Errc::malformed, std::string("EMM: ") + item + " item has the wrong length"); }

// Reads one item's data; unknown types are skipped (nothing appended): a newer engine may add some.
Status read_item(std::uint8_t type, std::span<const std::uint8_t> data, std::vector<EmmItem>& items) {
  ByteReader item(data);
  auto done = [&](const char* what) { return item.failed() || item.remaining() != 0 ? wrong_length(what) : ok_status(); };
  if (type == kItemGrant) {
    EmmGrant g;
    item.u16(g.service_id);
    item.u16(g.key_version);
    item.bytes(g.service_key.mutable_bytes());
    item.u64(g.not_before);
    item.u64(g.not_after);
    USHER_CHECK(done("grant"));
    items.emplace_back(std::move(g));
  } else if (type == kItemRevoke) {
    EmmRevoke v;
    item.u16(v.service_id);
    USHER_CHECK(done("revoke"));
    items.emplace_back(v);
  } else if (type == kItemTicket) {
    if (data.size() < 32) return make_error(Errc::malformed, "EMM: ticket item too short");
    EmmTicket t;
    t.ticket.assign(data.begin(), data.end() - 32);
    std::copy(data.end() - 32, data.end(), t.event_key.mutable_bytes().begin());
    items.emplace_back(std::move(t));
  } else if (type == kItemCredit) {
    EmmCredit c;
    std::uint64_t limit = 0;
    std::array<std::uint8_t, 3> cur{};
    item.u64(limit);
    item.bytes(cur);
    USHER_CHECK(done("credit"));
    c.limit_minor = static_cast<std::int64_t>(limit);
    std::copy(cur.begin(), cur.end(), c.currency.begin());
    items.emplace_back(c);
  } else if (type == kItemOffer) {
    EmmOffer o;
    std::uint64_t price = 0;
    std::array<std::uint8_t, 3> cur{};
    std::uint8_t n = 0;
    std::span<const std::uint8_t> title;
    item.u32(o.event_id);
    item.u16(o.service_id);
    item.u64(o.start);
    item.u32(o.duration);
    item.u64(price);
    item.bytes(cur);
    item.u8(o.min_age);
    item.bytes(o.event_key.mutable_bytes());
    item.u8(n);
    item.view(n, title);
    USHER_CHECK(done("offer"));
    o.price_minor = static_cast<std::int64_t>(price);
    std::copy(cur.begin(), cur.end(), o.currency.begin());
    o.title.assign(title.begin(), title.end());
    items.emplace_back(std::move(o));
  } else if (type == kItemCollection) {
    EmmCollection k;
    item.u64(k.within_seconds);
    USHER_CHECK(done("collection"));
    items.emplace_back(k);
  } else if (type == kItemTicketRevoke) {
    EmmTicketRevoke v;
    item.u64(v.ticket_id);
    USHER_CHECK(done("ticket revoke"));
    items.emplace_back(v);
  } else if (type == kItemGroupKey) {
    EmmGroupKey g;
    item.u32(g.group_id);
    item.u8(g.position);
    item.u32(g.key_version);
    item.bytes(g.key.mutable_bytes());
    USHER_CHECK(done("group key"));
    items.emplace_back(std::move(g));
  } else if (type == kItemGlobalKey) {
    EmmGlobalKey g;
    item.u32(g.key_version);
    item.bytes(g.key.mutable_bytes());
    USHER_CHECK(done("global key"));
    items.emplace_back(std::move(g));
  } else if (type == kItemMemberGrant) {
    EmmMemberGrant g;
    std::uint8_t n = 0;
    item.bytes(g.members.bits);
    item.u64(g.not_before);
    item.u64(g.not_after);
    item.u8(n);
    for (int i = 0; i < n && !item.failed(); ++i) {
      ServiceKeyItem k;
      item.u16(k.service_id);
      item.u16(k.key_version);
      item.bytes(k.key.mutable_bytes());
      g.services.push_back(std::move(k));
    }
    USHER_CHECK(done("member grant"));
    items.emplace_back(std::move(g));
  } else if (type == kItemMemberRevoke) {
    EmmMemberRevoke v;
    std::uint8_t n = 0;
    item.bytes(v.members.bits);
    item.u8(n);
    for (int i = 0; i < n && !item.failed(); ++i) {
      std::uint16_t s = 0;
      item.u16(s);
      v.services.push_back(s);
    }
    USHER_CHECK(done("member revoke"));
    items.emplace_back(std::move(v));
  } else if (type == kItemMessage) {
    EmmMessage m;
    std::uint8_t n = 0;
    std::span<const std::uint8_t> text;
    item.u64(m.message_id);
    item.u8(n);
    item.view(n, text);
    USHER_CHECK(done("message"));
    m.text.assign(text.begin(), text.end());
    items.emplace_back(std::move(m));
  }
  return ok_status();
}

// The plaintext after the clear header: issued time, item count, items.
Status read_items(std::vector<std::uint8_t>& plaintext, std::uint64_t& issued_unix, std::vector<EmmItem>& items) {
  ByteReader r(plaintext);
  std::uint8_t count = 0;
  r.u64(issued_unix);
  r.u8(count);
  Status status = ok_status();
  for (int i = 0; i < count && !r.failed() && status; ++i) {
    std::uint8_t type = 0;
    std::uint16_t len = 0;
    std::span<const std::uint8_t> data;
    if (!r.u8(type) || !r.u16(len) || !r.view(len, data)) break;
    status = read_item(type, data, items);
  }
  const bool failed = r.failed() || r.remaining() != 0;
  secure_zero(plaintext.data(), plaintext.size());
  USHER_CHECK(status);
  if (failed) return make_error(Errc::malformed, "EMM: payload has the wrong length");
  return ok_status();
}

std::vector<std::uint8_t> seal_emm(std::uint8_t table_id, const std::vector<std::uint8_t>& header, std::uint64_t issued_unix,
                                   const std::vector<EmmItem>& items, const Key256& key) {
  auto p = write_items(issued_unix, items);
  auto section = seal_into_section(table_id, header, p, key);
  secure_zero(p.data(), p.size());
  if (section.size() > 3 + kMaxBody) throw std::length_error("EMM too large for one section");
  return section;
}

}  // namespace

std::size_t MemberBitmap::count() const {
  std::size_t n = 0;
  for (const auto b : bits) n += static_cast<std::size_t>(__builtin_popcount(b));
  return n;
}

std::size_t emm_plaintext_size(const std::vector<EmmItem>& items) {
  auto p = write_items(0, items);
  secure_zero(p.data(), p.size());
  return p.size();
}

std::vector<std::uint8_t> encode_emm(const EmmContent& emm, const Key256& emm_key) {
  ByteWriter header;
  header.u8(kEmmVersion);
  header.u32(emm.stb_id);
  header.u64(emm.sequence);
  return seal_emm(kTableEmmUnique, header.data(), emm.issued_unix, emm.items, emm_key);
}

Result<EmmHeader> peek_emm(std::span<const std::uint8_t> section) {
  const auto parsed = streams::parse_section(section);
  if (!parsed) return make_error(Errc::malformed, std::string("EMM: section ") + parsed.error().message);
  if (parsed->header.table_id != kTableEmmUnique) return make_error(Errc::malformed, "EMM: table_id is not 0x82");
  ByteReader r(parsed->body);
  std::uint8_t version = 0;
  EmmHeader h;
  if (!r.u8(version) || !r.u32(h.stb_id) || !r.u64(h.sequence)) return make_error(Errc::malformed, "EMM: truncated header");
  if (version != kEmmVersion) return make_error(Errc::malformed, "EMM: unsupported version " + std::to_string(version));
  return h;
}

Result<EmmContent> decode_emm(std::span<const std::uint8_t> section, const Key256& emm_key) {
  USHER_TRY(auto header, peek_emm(section));
  USHER_TRY(auto opened, open_section(section, kEmmHeaderSize, emm_key, "EMM", kEmmVersion));
  EmmContent emm;
  emm.stb_id = header.stb_id;
  emm.sequence = header.sequence;
  USHER_CHECK(read_items(opened.plaintext, emm.issued_unix, emm.items));
  return emm;
}

Result<AnyEmmHeader> peek_any_emm(std::span<const std::uint8_t> section) {
  if (section.empty()) return make_error(Errc::malformed, "EMM: empty section");
  if (section[0] == kTableEmmUnique) {
    USHER_TRY(auto h, peek_emm(section));
    return AnyEmmHeader{{EmmAddressType::unique, h.stb_id, 0}, h.sequence};
  }
  if (section[0] != kTableEmmGroup && section[0] != kTableEmmGlobal) {
    return make_error(Errc::malformed, "EMM: table_id is not 0x82, 0x83 or 0x84");
  }
  const auto parsed = streams::parse_section(section);
  if (!parsed) return make_error(Errc::malformed, std::string("EMM: section ") + parsed.error().message);
  ByteReader r(parsed->body);
  std::uint8_t version = 0;
  AnyEmmHeader h;
  h.address.type = section[0] == kTableEmmGroup ? EmmAddressType::group : EmmAddressType::global;
  if (!r.u8(version) || !r.u32(h.address.id) || !r.u32(h.address.key_version) || !r.u64(h.sequence)) {
    return make_error(Errc::malformed, "EMM: truncated header");
  }
  if (version != kSharedEmmVersion) return make_error(Errc::malformed, "EMM: unsupported version " + std::to_string(version));
  if (h.address.type == EmmAddressType::global && h.address.id != 0) return make_error(Errc::malformed, "EMM: a global EMM names a group");
  return h;
}

std::vector<std::uint8_t> encode_shared_emm(const SharedEmmContent& emm, const Key256& key) {
  if (emm.address.type == EmmAddressType::unique) throw std::invalid_argument("encode_shared_emm: a unique address (use encode_emm)");
  if (emm.address.type == EmmAddressType::global && emm.address.id != 0) throw std::invalid_argument("encode_shared_emm: a global EMM names no group");
  ByteWriter header;
  header.u8(kSharedEmmVersion);
  header.u32(emm.address.id);
  header.u32(emm.address.key_version);
  header.u64(emm.sequence);
  const auto table = emm.address.type == EmmAddressType::group ? kTableEmmGroup : kTableEmmGlobal;
  return seal_emm(table, header.data(), emm.issued_unix, emm.items, key);
}

Result<SharedEmmContent> decode_shared_emm(std::span<const std::uint8_t> section, const Key256& key) {
  USHER_TRY(auto header, peek_any_emm(section));
  if (header.address.type == EmmAddressType::unique) return make_error(Errc::malformed, "EMM: a unique EMM, not a group or global one");
  USHER_TRY(auto opened, open_section(section, kSharedEmmHeaderSize, key, "EMM", kSharedEmmVersion));
  SharedEmmContent emm;
  emm.address = header.address;
  emm.sequence = header.sequence;
  USHER_CHECK(read_items(opened.plaintext, emm.issued_unix, emm.items));
  return emm;
}

}  // namespace usher::entitlement
