#include "usher/entitlement/protocol.h"

#include <chrono>

#include "usher/core/bytes.h"
#include "usher/entitlement/wire.h"

namespace usher::entitlement {
namespace {
using namespace wire;

}  // namespace

Result<std::vector<std::uint8_t>> call_framed(net::RequestClient& client, std::uint8_t type, std::span<const std::uint8_t> body) {
  const auto id = new_request_id();
  USHER_TRY(auto reply, client.call(encode_request(static_cast<MessageType>(type), id, body)));
  return reply_body(reply, id);
}

RequestId new_request_id() {
  RequestId id{};
  crypto::random_bytes(id);
  return id;
}

std::vector<std::uint8_t> encode_request(MessageType type, const RequestId& id, std::span<const std::uint8_t> body) {
  ByteWriter w;
  w.u8(kProtocolVersion);
  w.u8(static_cast<std::uint8_t>(type));
  w.bytes(id);
  w.bytes(body);
  return w.take();
}

Result<Frame> decode_frame(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  std::uint8_t version = 0;
  Frame f;
  if (!r.u8(version) || !r.u8(f.type_or_status) || !r.bytes(f.id)) return make_error(Errc::malformed, "frame shorter than its header");
  if (version != kProtocolVersion) {
    return make_error(Errc::malformed, "unsupported protocol version " + std::to_string(version) + " (this engine speaks 1)");
  }
  const auto rest = r.rest();
  f.body.assign(rest.begin(), rest.end());
  return f;
}

std::vector<std::uint8_t> encode_ok(const RequestId& id, std::span<const std::uint8_t> body) {
  ByteWriter w;
  w.u8(kProtocolVersion);
  w.u8(0);
  w.bytes(id);
  w.bytes(body);
  return w.take();
}

std::vector<std::uint8_t> encode_error(const RequestId& id, const Error& error) {
  ByteWriter w;
  w.u8(kProtocolVersion);
  w.u8(static_cast<std::uint8_t>(1 + static_cast<int>(error.code)));
  w.bytes(id);
  put_text(w, error.message);
  return w.take();
}

Result<std::vector<std::uint8_t>> reply_body(std::span<const std::uint8_t> reply, const RequestId& expected_id) {
  USHER_TRY(auto f, decode_frame(reply));
  if (f.id != expected_id) return make_error(Errc::malformed, "reply is for another request");
  if (f.type_or_status == 0) return std::move(f.body);
  ByteReader r(f.body);
  std::string message;
  if (!get_text(r, message)) message = "(no message)";
  const int code = f.type_or_status - 1;
  if (code < 0 || code > static_cast<int>(Errc::busy)) return make_error(Errc::malformed, "unknown error status: " + message);
  return make_error(static_cast<Errc>(code), message);
}

std::vector<std::uint8_t> encode(const BuyTicketRequest& q) {
  ByteWriter w;
  w.u32(q.event_id);
  w.u32(q.stb_id);
  put_blob(w, q.spend.encode());
  w.u64(q.deliver_at);
  return w.take();
}
Result<BuyTicketRequest> decode_buy_ticket(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  BuyTicketRequest q;
  std::vector<std::uint8_t> spend;
  r.u32(q.event_id);
  r.u32(q.stb_id);
  if (!get_blob(r, spend) || !r.u64(q.deliver_at) || !finished(r)) return bad("buy_ticket");
  return with_spend(std::move(q), spend);
}
std::vector<std::uint8_t> encode(const BuyByCodeRequest& q) {
  ByteWriter w;
  put_text(w, q.code);
  put_blob(w, q.spend.encode());
  return w.take();
}
Result<BuyByCodeRequest> decode_buy_by_code(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  BuyByCodeRequest q;
  std::vector<std::uint8_t> spend;
  if (!get_text(r, q.code) || !get_blob(r, spend) || !finished(r)) return bad("buy_by_code");
  return with_spend(std::move(q), spend);
}

std::vector<std::uint8_t> encode(const BuyPassRequest& q) {
  ByteWriter w;
  w.u16(q.service_id);
  w.u16(q.days);
  w.u32(q.stb_id);
  put_blob(w, q.spend.encode());
  return w.take();
}
Result<BuyPassRequest> decode_buy_pass(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  BuyPassRequest q;
  std::vector<std::uint8_t> spend;
  r.u16(q.service_id);
  r.u16(q.days);
  r.u32(q.stb_id);
  if (!get_blob(r, spend) || !finished(r)) return bad("buy_pass");
  return with_spend(std::move(q), spend);
}
std::vector<std::uint8_t> encode_money(const Money& m) {
  ByteWriter w;
  put_money(w, m);
  return w.take();
}
Result<Money> decode_money(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  Money m;
  if (!get_money(r, m) || !finished(r)) return bad("money");
  return m;
}

std::vector<std::uint8_t> encode(const BuyTicketReply& a) {
  ByteWriter w;
  put_blob(w, a.ticket);
  put_blob(w, a.emm_section);
  put_money(w, a.balance);
  return w.take();
}
Result<BuyTicketReply> decode_buy_ticket_reply(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  BuyTicketReply a;
  if (!get_blob(r, a.ticket) || !get_blob(r, a.emm_section) || !get_money(r, a.balance) || !finished(r)) {
    return bad("buy_ticket reply");
  }
  return a;
}
std::vector<std::uint8_t> encode(const RegisterHandsetRequest& q) {
  ByteWriter w;
  w.bytes(q.handset_public);
  put_text(w, q.account);
  w.bytes({reinterpret_cast<const std::uint8_t*>(q.currency.data()), 3});
  return w.take();
}
Result<RegisterHandsetRequest> decode_register_handset(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  RegisterHandsetRequest q;
  std::array<std::uint8_t, 3> c{};
  if (!r.bytes(q.handset_public) || !get_text(r, q.account) || !r.bytes(c) || !finished(r)) return bad("register_handset");
  USHER_TRY(auto cur, parse_currency(std::string(c.begin(), c.end())));
  q.currency = cur;
  return q;
}
std::vector<std::uint8_t> encode(const RegisterHandsetReply& a) {
  ByteWriter w;
  w.u64(a.card_id);
  put_money(w, a.balance);
  put_blob(w, a.certificate.encode());
  return w.take();
}
Result<RegisterHandsetReply> decode_register_handset_reply(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  RegisterHandsetReply a;
  std::vector<std::uint8_t> cert;
  if (!r.u64(a.card_id) || !get_money(r, a.balance) || !get_blob(r, cert) || !finished(r)) return bad("register_handset reply");
  USHER_TRY(auto c, PrepaidCardCertificate::decode(cert));
  a.certificate = c;
  return a;
}

std::vector<std::uint8_t> encode(const TopUpRequest& q) {
  ByteWriter w;
  w.u64(q.card_id);
  w.u64(static_cast<std::uint64_t>(q.amount_minor));
  put_text(w, q.funding_reference);
  return w.take();
}
Result<TopUpRequest> decode_top_up(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  TopUpRequest q;
  std::uint64_t amount = 0;
  if (!r.u64(q.card_id) || !r.u64(amount) || !get_text(r, q.funding_reference) || !finished(r)) return bad("top_up");
  q.amount_minor = static_cast<std::int64_t>(amount);
  return q;
}
std::vector<std::uint8_t> encode_card(std::uint64_t card_id, const Money& balance) {
  ByteWriter w;
  w.u64(card_id);
  put_money(w, balance);
  return w.take();
}
Result<std::pair<std::uint64_t, Money>> decode_card(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  std::uint64_t id = 0;
  Money m;
  if (!r.u64(id) || !get_money(r, m) || !finished(r)) return bad("card");
  return std::make_pair(id, m);
}
std::vector<std::uint8_t> encode_events(const std::vector<EventInfo>& events) {
  ByteWriter w;
  w.u16(static_cast<std::uint16_t>(events.size()));
  for (const auto& e : events) {
    w.u32(e.event_id);
    w.u16(e.service_id);
    w.u64(e.start);
    w.u32(e.duration);
    put_text(w, e.title);
    w.u8(e.min_age);
    put_money(w, e.price);
  }
  return w.take();
}
Result<std::vector<EventInfo>> decode_events(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  std::uint16_t n = 0;
  std::vector<EventInfo> out;
  if (!r.u16(n)) return bad("events");
  for (int i = 0; i < n; ++i) {
    EventInfo e;
    if (!r.u32(e.event_id) || !r.u16(e.service_id) || !r.u64(e.start) || !r.u32(e.duration) || !get_text(r, e.title) ||
        !r.u8(e.min_age) || !get_money(r, e.price)) {
      return bad("events");
    }
    out.push_back(std::move(e));
  }
  if (!finished(r)) return bad("events");
  return out;
}

std::vector<std::uint8_t> encode_blobs(const std::vector<std::vector<std::uint8_t>>& blobs) {
  ByteWriter w;
  w.u16(static_cast<std::uint16_t>(blobs.size()));
  for (const auto& b : blobs) put_blob(w, b);
  return w.take();
}
Result<std::vector<std::vector<std::uint8_t>>> decode_blobs(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  std::uint16_t n = 0;
  std::vector<std::vector<std::uint8_t>> out;
  if (!r.u16(n)) return bad("blobs");
  for (int i = 0; i < n; ++i) {
    if (!get_blob(r, out.emplace_back())) return bad("blobs");
  }
  if (!finished(r)) return bad("blobs");
  return out;
}
std::vector<std::uint8_t> encode_ids(const std::vector<std::uint64_t>& ids) {
  ByteWriter w;
  w.u16(static_cast<std::uint16_t>(ids.size()));
  for (auto id : ids) w.u64(id);
  return w.take();
}
Result<std::vector<std::uint64_t>> decode_ids(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  std::uint16_t n = 0;
  std::vector<std::uint64_t> out;
  if (!r.u16(n)) return bad("ids");
  for (int i = 0; i < n; ++i) {
    if (!r.u64(out.emplace_back())) return bad("ids");
  }
  if (!finished(r)) return bad("ids");
  return out;
}

std::vector<std::uint8_t> encode_sections(const std::vector<std::vector<std::uint8_t>>& sections) {
  ByteWriter w;
  w.u32(static_cast<std::uint32_t>(sections.size()));
  for (const auto& s : sections) put_blob(w, s);
  return w.take();
}
Result<std::vector<std::vector<std::uint8_t>>> decode_sections(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  std::uint32_t n = 0;
  std::vector<std::vector<std::uint8_t>> out;
  if (!r.u32(n)) return bad("sections");
  for (std::uint32_t i = 0; i < n; ++i) {
    if (!get_blob(r, out.emplace_back())) return bad("sections");
  }
  if (!finished(r)) return bad("sections");
  return out;
}

std::vector<std::uint8_t> encode_emm_changes_request(std::uint64_t cursor) {
  ByteWriter w;
  w.u64(cursor);
  return w.take();
}

Result<std::uint64_t> decode_emm_changes_request(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  std::uint64_t cursor = 0;
  if (!r.u64(cursor) || !finished(r)) return make_error(Errc::malformed, "emm_changes: the body must be one u64 cursor (8 bytes)");
  return cursor;
}

namespace {
constexpr std::uint8_t kFeedMore = 1;
constexpr std::uint8_t kFeedRestart = 2;
}  // namespace

std::vector<std::uint8_t> encode(const EmmFeedPage& page) {
  ByteWriter w;
  w.u64(page.next_cursor);
  w.u8(static_cast<std::uint8_t>((page.more ? kFeedMore : 0) | (page.restart ? kFeedRestart : 0)));
  w.u32(static_cast<std::uint32_t>(page.added.size()));
  for (const auto& e : page.added) {
    w.u64(e.id);
    w.u8(static_cast<std::uint8_t>(e.priority));
    w.u64(e.carousel_from);
    w.u64(e.carousel_until);
    put_blob(w, e.section);
  }
  w.u32(static_cast<std::uint32_t>(page.removed.size()));
  for (const auto id : page.removed) w.u64(id);
  return w.take();
}

Result<EmmFeedPage> decode_emm_feed_page(std::span<const std::uint8_t> body) {
  ByteReader r(body);
  EmmFeedPage page;
  std::uint8_t flags = 0;
  std::uint32_t added = 0;
  if (!r.u64(page.next_cursor) || !r.u8(flags) || !r.u32(added)) return bad("emm_changes reply");
  if ((flags & ~(kFeedMore | kFeedRestart)) != 0) return make_error(Errc::malformed, "emm_changes reply: unknown flags");
  page.more = (flags & kFeedMore) != 0;
  page.restart = (flags & kFeedRestart) != 0;
  // Each entry takes at least 27 bytes: a count the body cannot hold is refused before reserving.
  if (added > r.remaining() / 27) return bad("emm_changes reply");
  page.added.reserve(added);
  for (std::uint32_t i = 0; i < added; ++i) {
    auto& e = page.added.emplace_back();
    std::uint8_t priority = 0;
    if (!r.u64(e.id) || !r.u8(priority) || !r.u64(e.carousel_from) || !r.u64(e.carousel_until) || !get_blob(r, e.section)) {
      return bad("emm_changes reply");
    }
    if (priority > kEmmPriorityLast) return make_error(Errc::malformed, "emm_changes reply: unknown priority " + std::to_string(priority));
    e.priority = static_cast<EmmPriority>(priority);
  }
  std::uint32_t removed = 0;
  if (!r.u32(removed) || removed > r.remaining() / 8) return bad("emm_changes reply");
  page.removed.resize(removed);
  for (auto& id : page.removed) r.u64(id);
  if (!finished(r)) return bad("emm_changes reply");
  return page;
}

}  // namespace usher::entitlement
