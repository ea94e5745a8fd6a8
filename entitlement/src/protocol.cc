#include "usher/entitlement/protocol.h"
#include "usher/core/clock.h"

#include <chrono>

#include "usher/core/bytes.h"
#include "usher/core/log.h"
#include "usher/entitlement/request_auth.h"
#include "wire.h"

namespace usher::entitlement {
namespace {
using namespace wire;

}  // namespace

Result<std::vector<std::uint8_t>> call_framed(net::RequestClient& client, std::uint8_t type, std::span<const std::uint8_t> body) {
  const auto id = new_request_id();
  auto reply = client.call(encode_request(static_cast<MessageType>(type), id, body));
  if (!reply) return reply.error();
  return reply_body(*reply, id);
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
  auto f = decode_frame(reply);
  if (!f) return f.error();
  if (f->id != expected_id) return make_error(Errc::malformed, "reply is for another request");
  if (f->type_or_status == 0) return std::move(f->body);
  ByteReader r(f->body);
  std::string message;
  if (!get_text(r, message)) message = "(no message)";
  const int code = f->type_or_status - 1;
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
  auto cur = parse_currency(std::string(c.begin(), c.end()));
  if (!cur) return cur.error();
  q.currency = *cur;
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
  auto c = PrepaidCardCertificate::decode(cert);
  if (!c) return c.error();
  a.certificate = *c;
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

std::vector<std::uint8_t> EngineService::handle(std::span<const std::uint8_t> request) {
  auto frame = decode_frame(request);
  if (!frame) {
    RequestId id{};  // echo the id when there is one, so that even a version mismatch reaches its caller
    if (request.size() >= 2 + id.size()) std::copy_n(request.begin() + 2, id.size(), id.begin());
    return encode_error(id, frame.error());
  }
  try {
    auto reply = dispatch(*frame);
    if (!reply) return encode_error(frame->id, reply.error());
    return encode_ok(frame->id, *reply);
  } catch (const std::exception& e) {
    Logger("entitlement").error("request failed: ", e.what());
    return encode_error(frame->id, make_error(Errc::storage, "internal error; the request had no effect"));
  }
}

std::vector<std::vector<std::uint8_t>> EngineService::handle_batch(const std::vector<std::span<const std::uint8_t>>& requests) {
  std::vector<std::vector<std::uint8_t>> replies;
  replies.reserve(requests.size());
  auto committed = store_.batch([&] {
    for (const auto& r : requests) replies.push_back(handle(r));
  });
  if (!committed) {
    // Nothing of the group is durable: every request is answered with the failure.
    for (std::size_t i = 0; i < requests.size(); ++i) {
      RequestId id{};
      if (requests[i].size() >= 2 + id.size()) std::copy_n(requests[i].begin() + 2, id.size(), id.begin());
      replies[i] = encode_error(id, committed.error());
    }
  }
  return replies;
}

Status EngineService::admit_spend(const SpendAuthorization& spend) {
  // Unverified spends are refused by the store with their reason; they take nothing from a bucket.
  auto card = store_.card(spend.card_id);
  if (!card || !spend.verify(card->handset_public)) return ok_status();
  if (!per_card_.admit(spend.card_id, RateLimiter::Clock::now())) {
    return make_error(Errc::busy, "too many requests from card " + std::to_string(spend.card_id) + ": try again in a few seconds");
  }
  return ok_status();
}

Result<std::vector<std::uint8_t>> EngineService::dispatch_signed(const Frame& f) {
  const auto type = static_cast<MessageType>(f.type_or_status);
  auto s = split_signed(f.body);
  if (!s) return s.error();
  const auto now = unix_now();
  std::optional<CardInfo> signer;
  if (type == MessageType::register_handset) {
    auto q = decode_register_handset(s->body);
    if (!q) return q.error();
    if (s->card_id != 0 || !s->verify(f.type_or_status, f.id, q->handset_public)) {
      return make_error(Errc::auth_failed, "register_handset must be signed by the key it registers");
    }
    if (!registrations_.admit(0, RateLimiter::Clock::now())) {
      return make_error(Errc::busy, "too many new handsets at once: try again in a minute");
    }
  } else {
    auto card = store_.card(s->card_id);
    // One answer whether the card is unknown or the key is wrong: nobody learns which cards exist.
    if (!card || !s->verify(f.type_or_status, f.id, card->handset_public)) {
      return make_error(Errc::auth_failed, "the request is not signed by the handset holding card " + std::to_string(s->card_id));
    }
    if (!per_card_.admit(s->card_id, RateLimiter::Clock::now())) {
      return make_error(Errc::busy, "too many requests from card " + std::to_string(s->card_id) + ": try again in a few seconds");
    }
    signer = std::move(*card);
  }
  // After the signature: only the signer hears about its clock.
  if (auto fresh = check_request_time(s->time, now); !fresh) return fresh.error();
  const auto body = s->body;
  return store_.once_signed(s->replay_key(), s->card_id, s->time, now, [&]() -> Result<std::vector<std::uint8_t>> {
    switch (type) {
      case MessageType::register_handset: {
        auto q = decode_register_handset(body);
        if (!q) return q.error();
        auto c = store_.register_handset(q->account, q->handset_public, q->currency);
        if (!c) return c.error();
        return encode(RegisterHandsetReply{c->card_id, {0, c->currency}, c->certificate});
      }
      case MessageType::balance: {
        ByteReader r(body);
        std::uint64_t card_id = 0;
        if (!r.u64(card_id) || !finished(r)) return bad("balance");
        if (card_id != signer->card_id) return make_error(Errc::not_entitled, "a handset reads its own card's balance only");
        auto b = store_.balance(card_id);
        if (!b) return b.error();
        return encode_card(card_id, *b);
      }
      case MessageType::top_up: {
        auto q = decode_top_up(body);
        if (!q) return q.error();
        if (q->card_id != signer->card_id) return make_error(Errc::not_entitled, "a handset tops up its own card only");
        auto b = store_.top_up(q->card_id, q->amount_minor, q->funding_reference, funding_);
        if (!b) return b.error();
        return encode_card(q->card_id, *b);
      }
      case MessageType::ticket_status: {
        auto ids = decode_ids(body);
        if (!ids) return ids.error();
        ByteWriter w;
        w.u16(static_cast<std::uint16_t>(ids->size()));
        for (auto id : *ids) {
          // Another card's ticket is reported as unknown: its state is its buyer's to know.
          const bool mine = store_.ticket_card(id) == signer->card_id;
          auto st = mine ? store_.ticket_state(id) : Result<EntitlementStore::TicketState>(make_error(Errc::not_found, ""));
          w.u8(!st ? 2 : st->status == TicketStatus::revoked ? 1 : 0);
          w.u64(st ? st->delivered : 0);
        }
        return w.take();
      }
      case MessageType::account_stbs: {
        ByteReader r(body);
        std::string account;
        if (!get_text(r, account) || !finished(r)) return bad("account_stbs");
        ByteWriter w;
        const auto ids = store_.account_stbs(account);
        w.u16(static_cast<std::uint16_t>(ids.size()));
        for (auto id : ids) w.u32(id);
        return w.take();
      }
      default:
        break;
    }
    return make_error(Errc::invalid_argument, "not a signed request type");
  });
}

Result<std::vector<std::uint8_t>> EngineService::dispatch(const Frame& f) {
  switch (static_cast<MessageType>(f.type_or_status)) {
    case MessageType::list_events:
      return encode_events(store_.events());
    case MessageType::balance:
    case MessageType::register_handset:
    case MessageType::top_up:
    case MessageType::ticket_status:
    case MessageType::account_stbs:
      return dispatch_signed(f);
    case MessageType::buy_ticket: {
      auto q = decode_buy_ticket(f.body);
      if (!q) return q.error();
      if (auto admitted = admit_spend(q->spend); !admitted) return admitted.error();
      return store_.once(f.id, [&]() -> Result<std::vector<std::uint8_t>> {
        auto p = store_.buy_ticket(q->event_id, q->stb_id, q->spend, unix_now(), q->deliver_at);
        if (!p) return p.error();
        return encode(BuyTicketReply{p->ticket.encode(), p->emm_section, p->balance});
      });
    }
    case MessageType::buy_by_code: {
      auto q = decode_buy_by_code(f.body);
      if (!q) return q.error();
      if (auto admitted = admit_spend(q->spend); !admitted) return admitted.error();
      return store_.once(f.id, [&]() -> Result<std::vector<std::uint8_t>> {
        auto p = store_.buy_by_code(q->code, q->spend, unix_now());
        if (!p) return p.error();
        return encode(BuyTicketReply{p->ticket.encode(), p->emm_section, p->balance});
      });
    }
    case MessageType::delivery_acks: {
      auto blobs = decode_blobs(f.body);
      if (!blobs) return blobs.error();
      std::vector<DeliveryAck> acks;
      for (const auto& b : *blobs) {
        auto a = DeliveryAck::decode(b);
        if (!a) return a.error();
        acks.push_back(*a);
      }
      return store_.once(f.id, [&]() -> Result<std::vector<std::uint8_t>> {
        auto confirmed = store_.record_delivery_acks(acks);
        if (!confirmed) return confirmed.error();
        return encode_ids(*confirmed);
      });
    }
    case MessageType::buy_pass: {
      auto q = decode_buy_pass(f.body);
      if (!q) return q.error();
      if (auto admitted = admit_spend(q->spend); !admitted) return admitted.error();
      return store_.once(f.id, [&]() -> Result<std::vector<std::uint8_t>> {
        auto p = store_.buy_pass(q->service_id, q->days, q->stb_id, q->spend, unix_now());
        if (!p) return p.error();
        return encode(BuyTicketReply{p->ticket.encode(), p->emm_section, p->balance});
      });
    }
    case MessageType::pass_price: {
      ByteReader r(f.body);
      std::uint16_t service = 0;
      if (!r.u16(service) || !finished(r)) return bad("pass_price");
      auto price = store_.pass_price(service);
      if (!price) return price.error();
      return encode_money(*price);
    }
    case MessageType::headend_keys: {
      ByteReader r(f.body);
      std::uint32_t headend_id = 0;
      if (!r.u32(headend_id) || !finished(r)) return bad("headend_keys");
      auto sealed = store_.sealed_key_bundle(headend_id, unix_now());
      if (!sealed) return sealed.error();
      ByteWriter w;
      put_blob(w, *sealed);
      return w.take();
    }
    case MessageType::emm_carousel:
      return encode_sections(store_.emm_sections(unix_now()));
    case MessageType::billing_event:
    case MessageType::billing_stb_key:
    case MessageType::billing_card:
    case MessageType::billing_holding:
    case MessageType::billing_impulse_purchases:
    case MessageType::billing_charge:
    case MessageType::billing_refund:
    case MessageType::billing_ticket_payments:
    case MessageType::billing_account_stbs:
    case MessageType::billing_open_history:
      return dispatch_billing(f);
  }
  return make_error(Errc::invalid_argument, "unknown message type " + std::to_string(f.type_or_status));
}

}  // namespace usher::entitlement
