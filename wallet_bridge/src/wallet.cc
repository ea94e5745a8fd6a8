#include "usher/wallet_bridge/wallet.h"

#include <chrono>
#include <filesystem>

#include "usher/core/home.h"
#include "usher/entitlement/history.h"

namespace usher::wallet {
namespace fs = std::filesystem;
using entitlement::MessageType;

EngineClient::EngineClient(const std::string& endpoint, net::ClientOptions options) : client_(endpoint, options) {}

Result<std::vector<std::uint8_t>> EngineClient::call(MessageType type, std::span<const std::uint8_t> body) {
  return entitlement::call_framed(client_, static_cast<std::uint8_t>(type), body);
}

Result<std::vector<std::uint8_t>> EngineClient::call(MessageType type, std::span<const std::uint8_t> body,
                                                     const entitlement::RequestSigner& signer) {
  return entitlement::call_signed(client_, static_cast<std::uint8_t>(type), body, signer);
}

Result<std::vector<entitlement::EventInfo>> EngineClient::events() {
  auto body = call(MessageType::list_events, {});
  if (!body) return body.error();
  return entitlement::decode_events(*body);
}

Result<entitlement::PrepaidCardCertificate> EngineClient::register_handset(const entitlement::RegisterHandsetRequest& r,
                                                                                     const Secret<32>& handset_private) {
  auto body = call(MessageType::register_handset, entitlement::encode(r), {0, &handset_private});
  if (!body) return body.error();
  auto reply = entitlement::decode_register_handset_reply(*body);
  if (!reply) return reply.error();
  if (reply->certificate.card_id != reply->card_id) return make_error(Errc::malformed, "card certificate names another card");
  return reply->certificate;
}

Result<entitlement::Money> EngineClient::top_up(const entitlement::TopUpRequest& r, const entitlement::RequestSigner& signer) {
  auto body = call(MessageType::top_up, entitlement::encode(r), signer);
  if (!body) return body.error();
  auto card = entitlement::decode_card(*body);
  if (!card) return card.error();
  return card->second;
}

Result<entitlement::Money> EngineClient::balance(const entitlement::RequestSigner& signer) {
  ByteWriter b;
  b.u64(signer.card_id);
  auto body = call(MessageType::balance, b.data(), signer);
  if (!body) return body.error();
  auto card = entitlement::decode_card(*body);
  if (!card) return card.error();
  return card->second;
}

Result<entitlement::BuyTicketReply> EngineClient::buy_by_code(const entitlement::BuyByCodeRequest& r) {
  auto body = call(MessageType::buy_by_code, entitlement::encode(r));
  if (!body) return body.error();
  return entitlement::decode_buy_ticket_reply(*body);
}

Result<std::vector<std::uint64_t>> EngineClient::delivery_acks(const std::vector<entitlement::DeliveryAck>& acks) {
  std::vector<std::vector<std::uint8_t>> blobs;
  for (const auto& a : acks) blobs.push_back(a.encode());
  auto body = call(MessageType::delivery_acks, entitlement::encode_blobs(blobs));
  if (!body) return body.error();
  return entitlement::decode_ids(*body);
}

Result<std::vector<std::optional<std::uint64_t>>> EngineClient::delivered(const std::vector<std::uint64_t>& ids,
                                                                          const entitlement::RequestSigner& signer) {
  auto body = call(MessageType::ticket_status, entitlement::encode_ids(ids), signer);
  if (!body) return body.error();
  ByteReader r(*body);
  std::uint16_t n = 0;
  std::vector<std::optional<std::uint64_t>> out;
  if (!r.u16(n) || n != ids.size()) return make_error(Errc::malformed, "ticket_status reply: malformed");
  for (int i = 0; i < n; ++i) {
    std::uint8_t status = 0;
    std::uint64_t when = 0;
    if (!r.u8(status) || !r.u64(when)) return make_error(Errc::malformed, "ticket_status reply: malformed");
    out.push_back(status == 2 ? std::nullopt : std::optional<std::uint64_t>(when));
  }
  return out;
}

Result<std::vector<std::uint32_t>> EngineClient::account_stbs(const std::string& account, const entitlement::RequestSigner& signer) {
  ByteWriter w;
  w.u16(static_cast<std::uint16_t>(account.size()));
  w.bytes({reinterpret_cast<const std::uint8_t*>(account.data()), account.size()});
  auto body = call(MessageType::account_stbs, w.data(), signer);
  if (!body) return body.error();
  ByteReader r(*body);
  std::uint16_t n = 0;
  std::vector<std::uint32_t> out;
  if (!r.u16(n)) return make_error(Errc::malformed, "account_stbs reply: malformed");
  for (int i = 0; i < n; ++i) {
    if (!r.u32(out.emplace_back())) return make_error(Errc::malformed, "account_stbs reply: malformed");
  }
  return out;
}

Result<entitlement::BuyTicketReply> EngineClient::buy_pass(const entitlement::BuyPassRequest& r) {
  auto body = call(MessageType::buy_pass, entitlement::encode(r));
  if (!body) return body.error();
  return entitlement::decode_buy_ticket_reply(*body);
}

Result<entitlement::Money> EngineClient::pass_price(std::uint16_t service_id) {
  const std::vector<std::uint8_t> b{static_cast<std::uint8_t>(service_id >> 8), static_cast<std::uint8_t>(service_id & 0xFF)};
  auto body = call(MessageType::pass_price, b);
  if (!body) return body.error();
  return entitlement::decode_money(*body);
}

Result<entitlement::BuyTicketReply> EngineClient::buy_ticket(const entitlement::BuyTicketRequest& r) {
  auto body = call(MessageType::buy_ticket, entitlement::encode(r));
  if (!body) return body.error();
  return entitlement::decode_buy_ticket_reply(*body);
}

namespace {
// The STB's link on the home network: 2 s, 4 s, then 8 s (a box busy decoding answers slowly).
const net::ClientOptions kLinkOptions{std::chrono::milliseconds(2000), 3, 2};

}  // namespace

// Step 1 is the schema of the wallets written before versions were kept (user_version 0), in
// IF NOT EXISTS statements so that such a file is recognised as schema 1 and kept as it is.
// Add a step at the end to change the schema; never edit one that has shipped.
const sql::Schema& Wallet::schema() {
  static const sql::Schema kSchema("wallet", {{1, "the wallet's tables", sql::sql_steps(R"(
    CREATE TABLE IF NOT EXISTS identity (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      account TEXT NOT NULL,
      currency TEXT NOT NULL,
      engine TEXT NOT NULL,
      card_id INTEGER NOT NULL,
      ed25519_private BLOB NOT NULL,
      ed25519_public BLOB NOT NULL,
      issuer_ed25519 BLOB NOT NULL,
      card_certificate BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS tickets (
      ticket_id INTEGER PRIMARY KEY,
      ticket BLOB NOT NULL,
      emm_section BLOB NOT NULL,
      gift INTEGER NOT NULL,
      delivered INTEGER NOT NULL DEFAULT 0,
      deliver_at INTEGER NOT NULL DEFAULT 0);
    -- The local links of the viewer's STBs (paired once).
    CREATE TABLE IF NOT EXISTS stb_links (
      stb_id INTEGER PRIMARY KEY,
      link TEXT NOT NULL);
    -- Billing's receipts (F4 settlements, prepayments), kept until the STB has taken them.
    CREATE TABLE IF NOT EXISTS receipts (
      receipt_id INTEGER PRIMARY KEY,
      stb_id INTEGER NOT NULL,
      kind INTEGER NOT NULL,
      amount_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      receipt BLOB NOT NULL,
      delivered INTEGER NOT NULL DEFAULT 0);
  )")}});
  return kSchema;
}

namespace {
crypto::PublicKey blob32(const std::vector<std::uint8_t>& b) {
  crypto::PublicKey k{};
  if (b.size() == 32) std::copy(b.begin(), b.end(), k.begin());
  return k;
}
}  // namespace

Wallet::Wallet(sql::Database db, std::string engine, std::uint64_t card_id, std::string account,
               entitlement::Currency currency, crypto::PublicKey issuer)
    : db_(std::move(db)), engine_(std::move(engine)), card_id_(card_id), account_(std::move(account)),
      currency_(currency), issuer_(issuer), client_(std::make_unique<EngineClient>(engine_)) {}

Result<Wallet> Wallet::init(const std::string& home, const std::string& account, const entitlement::Currency& currency,
                            const std::string& engine, const entitlement::OperatorPublicFile& op) {
  const auto path = (fs::path(home) / kDatabaseName).string();
  if (fs::exists(path)) return make_error(Errc::already_exists, "a wallet already exists in " + home);
  auto keys = crypto::Ed25519KeyPair::generate();
  EngineClient client(engine);
  auto card = client.register_handset({keys.public_key, account, currency}, keys.private_key);
  if (!card) return make_error(card.error().code, "registering with the engine at " + engine + ": " + card.error().message);
  if (!card->verify(op.ed25519_public) || card->holder_public != keys.public_key || card->currency != currency) {
    return make_error(Errc::auth_failed, "the engine's card certificate does not verify against the operator's key");
  }
  auto db = open_private_database(home, kDatabaseName, IfMissing::create);
  if (!db) return db.error();
  if (auto migrated = schema().migrate(*db, path); !migrated) return migrated.error();
  auto st = db->prepare("INSERT INTO identity VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, account).bind(2, entitlement::to_string(currency)).bind(3, engine).bind(4, static_cast<std::int64_t>(card->card_id))
      .bind(5, keys.private_key.bytes()).bind(6, keys.public_key).bind(7, op.ed25519_public).bind(8, card->encode());
  st.run();
  return Wallet(std::move(*db), engine, card->card_id, account, currency, op.ed25519_public);
}

Result<Wallet> Wallet::open(const std::string& home) {
  const auto path = (fs::path(home) / kDatabaseName).string();
  if (!fs::exists(path)) return make_error(Errc::not_found, "no wallet in " + home + " (run `usher wallet init` first)");
  auto db = open_private_database(home, kDatabaseName, IfMissing::refuse);
  if (!db) return db.error();
  if (auto migrated = schema().migrate(*db, path); !migrated) return migrated.error();
  auto st = db->prepare("SELECT account, currency, engine, card_id, issuer_ed25519 FROM identity WHERE id = 1");
  if (!st.step()) return make_error(Errc::storage, path + " has no identity");
  const auto cur = st.column_text(1);
  auto currency = entitlement::parse_currency(cur);
  if (!currency) return currency.error();
  Wallet w(std::move(*db), st.column_text(2), static_cast<std::uint64_t>(st.column_int(3)), st.column_text(0), *currency,
           blob32(st.column_blob(4)));
  return w;
}

Result<entitlement::PrepaidCardCertificate> Wallet::card_certificate() {
  auto st = db_.prepare("SELECT card_certificate, ed25519_public FROM identity WHERE id = 1");
  if (!st.step()) return make_error(Errc::storage, "wallet has no identity");
  auto cert = entitlement::PrepaidCardCertificate::decode(st.column_blob(0));
  if (!cert) return cert.error();
  if (!cert->verify(issuer_) || cert->holder_public != blob32(st.column_blob(1))) {
    return make_error(Errc::auth_failed, "the card certificate does not verify");
  }
  return cert;
}

Secret<32> Wallet::handset_private() {
  auto st = db_.prepare("SELECT ed25519_private FROM identity WHERE id = 1");
  st.step();
  return st.column_key(0);
}

Result<entitlement::Money> Wallet::balance() {
  const auto key = handset_private();
  return client_->balance({card_id_, &key});
}

Result<entitlement::Money> Wallet::top_up(std::int64_t amount_minor, const std::string& reference) {
  const auto key = handset_private();
  return client_->top_up({card_id_, amount_minor, reference}, {card_id_, &key});
}

Result<std::vector<std::uint32_t>> Wallet::account_stbs(const std::string& account) {
  const auto key = handset_private();
  return client_->account_stbs(account, {card_id_, &key});
}

Result<std::vector<entitlement::EventInfo>> Wallet::events() { return client_->events(); }

Result<OwnedTicket> Wallet::buy(std::uint32_t event_id, std::uint32_t stb_id, bool gift, std::uint64_t deliver_at) {
  auto events = client_->events();
  if (!events) return events.error();
  const entitlement::EventInfo* ev = nullptr;
  for (const auto& e : *events) {
    if (e.event_id == event_id) ev = &e;
  }
  if (ev == nullptr) return make_error(Errc::not_found, "the engine has no event " + std::to_string(event_id));
  entitlement::SpendAuthorization spend;
  spend.card_id = card_id_;
  spend.amount = ev->price;
  spend.payee = entitlement::payee_for(event_id, stb_id);
  crypto::random_bytes(spend.nonce);
  spend.sign(handset_private());
  auto reply = client_->buy_ticket({event_id, stb_id, spend, deliver_at});
  if (!reply) return reply.error();
  return keep(*reply, event_id, stb_id, gift, deliver_at);
}

Result<OwnedTicket> Wallet::buy_pass(std::uint16_t service_id, std::uint16_t days, std::uint32_t stb_id, bool gift) {
  auto per_day = client_->pass_price(service_id);
  if (!per_day) return per_day.error();
  entitlement::SpendAuthorization spend;
  spend.card_id = card_id_;
  spend.amount = {per_day->minor * days, per_day->currency};
  spend.payee = entitlement::pass_payee_for(service_id, days, stb_id);
  crypto::random_bytes(spend.nonce);
  spend.sign(handset_private());
  auto reply = client_->buy_pass({service_id, days, stb_id, spend});
  if (!reply) return reply.error();
  return keep(*reply, 0, stb_id, gift, 0);
}

Result<std::pair<entitlement::RequestCode, entitlement::EventInfo>> Wallet::describe_code(const std::string& code) {
  auto request = entitlement::read_request_code(code);
  if (!request) return request.error();
  auto events = client_->events();
  if (!events) return events.error();
  for (const auto& e : *events) {
    if (e.event_id == request->event_id) return std::make_pair(*request, e);
  }
  return make_error(Errc::not_found, "the engine has no event " + std::to_string(request->event_id));
}

Result<OwnedTicket> Wallet::approve(const std::string& code) {
  auto described = describe_code(code);
  if (!described) return described.error();
  const auto& [request, ev] = *described;
  entitlement::SpendAuthorization spend;
  spend.card_id = card_id_;
  spend.amount = ev.price;
  spend.payee = entitlement::payee_for(ev.event_id, request.stb_id);
  crypto::random_bytes(spend.nonce);
  spend.sign(handset_private());
  auto reply = client_->buy_by_code({code, spend});
  if (!reply) return reply.error();
  return keep(*reply, ev.event_id, request.stb_id, false, 0);
}

Result<OwnedTicket> Wallet::keep(const entitlement::BuyTicketReply& reply_value, std::uint32_t event_id, std::uint32_t stb_id,
                                 bool gift, std::uint64_t deliver_at) {
  const auto* reply = &reply_value;
  auto ticket = entitlement::Ticket::decode(reply->ticket);
  if (!ticket) return ticket.error();
  if (!ticket->verify(issuer_) || ticket->stb_id != stb_id || ticket->event_id != event_id) {
    return make_error(Errc::auth_failed, "the engine's ticket does not verify against the operator's key");
  }
  auto st = db_.prepare("INSERT OR REPLACE INTO tickets VALUES (?, ?, ?, ?, 0, ?)");
  st.bind(1, static_cast<std::int64_t>(ticket->ticket_id)).bind(2, reply->ticket).bind(3, reply->emm_section)
      .bind(4, gift ? 1 : 0).bind(5, static_cast<std::int64_t>(deliver_at));
  st.run();
  return OwnedTicket{std::move(ticket.value()), reply->emm_section, gift, false, deliver_at};
}

Status Wallet::deliver(std::uint64_t ticket_id, const std::string& link_endpoint, std::uint64_t now) {
  std::vector<std::uint8_t> section;
  {
    auto st = db_.prepare("SELECT emm_section, deliver_at FROM tickets WHERE ticket_id = ?");
    st.bind(1, static_cast<std::int64_t>(ticket_id));
    if (!st.step()) return make_error(Errc::not_found, "this wallet has no ticket " + std::to_string(ticket_id));
    if (static_cast<std::uint64_t>(st.column_int(1)) > now) {
      return make_error(Errc::not_entitled, "ticket " + std::to_string(ticket_id) + " is scheduled for delivery at unix time " +
                                                std::to_string(st.column_int(1)));
    }
    section = st.column_blob(0);
  }
  net::RequestClient link(link_endpoint, kLinkOptions);
  auto body = entitlement::call_framed(link, static_cast<std::uint8_t>(entitlement::LinkMessage::deliver_emm), section);
  if (!body) return body.error();
  auto up = db_.prepare("UPDATE tickets SET delivered = 1 WHERE ticket_id = ?");
  up.bind(1, static_cast<std::int64_t>(ticket_id));
  up.run();
  return ok_status();
}

Result<std::vector<std::pair<std::uint64_t, std::uint64_t>>> Wallet::confirmed_deliveries() {
  std::vector<std::uint64_t> ids;
  for (const auto& t : tickets()) ids.push_back(t.ticket.ticket_id);
  const auto key = handset_private();
  auto states = client_->delivered(ids, {card_id_, &key});
  if (!states) return states.error();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if ((*states)[i] && *(*states)[i] != 0) out.emplace_back(ids[i], *(*states)[i]);
  }
  return out;
}

Result<std::size_t> Wallet::relay_acks(const std::string& link_endpoint) {
  const auto key = handset_private();
  auto signer = link_signer(link_endpoint, key);
  if (!signer) return signer.error();
  net::RequestClient link(link_endpoint, kLinkOptions);
  auto link_call = [&](entitlement::LinkMessage type, std::span<const std::uint8_t> body) {
    return entitlement::call_link_signed(link, type, body, *signer);
  };
  auto body = link_call(entitlement::LinkMessage::collect_acks, {});
  if (!body) return body.error();
  auto blobs = entitlement::decode_blobs(*body);
  if (!blobs) return blobs.error();
  std::vector<entitlement::DeliveryAck> acks;
  for (const auto& b : *blobs) {
    auto a = entitlement::DeliveryAck::decode(b);
    if (a) acks.push_back(*a);  // the handset cannot check the STB's signature; the engine does
  }
  if (acks.empty()) return std::size_t{0};
  auto confirmed = client_->delivery_acks(acks);
  if (!confirmed) return confirmed.error();
  if (auto done = link_call(entitlement::LinkMessage::acks_relayed, entitlement::encode_ids(*confirmed)); !done) {
    return done.error();
  }
  return confirmed->size();
}

std::vector<OwnedTicket> Wallet::tickets() {
  std::vector<OwnedTicket> out;
  auto st = db_.prepare("SELECT ticket, emm_section, gift, delivered, deliver_at FROM tickets ORDER BY ticket_id");
  while (st.step()) {
    auto t = entitlement::Ticket::decode(st.column_blob(0));
    if (!t) continue;
    out.push_back({std::move(t.value()), st.column_blob(1), st.column_int(2) != 0, st.column_int(3) != 0,
                   static_cast<std::uint64_t>(st.column_int(4))});
  }
  return out;
}

BillingClient::BillingClient(const std::string& endpoint, net::ClientOptions options) : client_(endpoint, options) {}

Result<entitlement::RelayReply> BillingClient::relay(const entitlement::RelayRequest& r, const entitlement::RequestSigner& signer) {
  auto body = entitlement::call_signed(client_, static_cast<std::uint8_t>(entitlement::BillingMessage::relay), entitlement::encode(r), signer);
  if (!body) return body.error();
  return entitlement::decode_relay_reply(*body);
}

Result<std::vector<std::uint8_t>> BillingClient::certificate() {
  return entitlement::call_framed(client_, static_cast<std::uint8_t>(entitlement::BillingMessage::certificate), {});
}

Result<std::vector<std::uint8_t>> BillingClient::pay(const entitlement::PayRequest& r) {
  return entitlement::call_framed(client_, static_cast<std::uint8_t>(entitlement::BillingMessage::pay), entitlement::encode(r));
}

Result<entitlement::RelayReply> BillingClient::prepay(const entitlement::PrepayRequest& r, const entitlement::RequestSigner& signer) {
  auto body = entitlement::call_signed(client_, static_cast<std::uint8_t>(entitlement::BillingMessage::prepay), entitlement::encode(r), signer);
  if (!body) return body.error();
  return entitlement::decode_relay_reply(*body);
}

Status Wallet::keep_receipt(const entitlement::Receipt& r, std::span<const std::uint8_t> bytes) {
  if (!r.verify(issuer_)) return make_error(Errc::auth_failed, "billing's receipt does not verify against the operator's key");
  auto st = db_.prepare("INSERT OR IGNORE INTO receipts (receipt_id, stb_id, kind, amount_minor, currency, receipt) VALUES (?, ?, ?, ?, ?, ?)");
  st.bind(1, static_cast<std::int64_t>(r.receipt_id)).bind(2, r.stb_id).bind(3, static_cast<std::int64_t>(r.kind)).bind(4, r.amount.minor)
      .bind(5, entitlement::to_string(r.amount.currency)).bind(6, bytes);
  st.run();
  return ok_status();
}

Result<entitlement::Receipt> Wallet::pay_quote(BillingClient& billing, const entitlement::Quote& quote) {
  if (quote.payee != entitlement::settlement_payee(quote.settlement_id, quote.stb_id)) {
    return make_error(Errc::auth_failed, "billing's quote names an unexpected payee '" + quote.payee + "'");
  }
  entitlement::SpendAuthorization spend;
  spend.card_id = card_id_;
  spend.amount = quote.amount;
  spend.payee = quote.payee;
  crypto::random_bytes(spend.nonce);
  spend.sign(handset_private());
  auto bytes = billing.pay({quote.settlement_id, spend});
  if (!bytes) return bytes.error();
  auto rc = entitlement::Receipt::decode(*bytes);
  if (!rc) return rc.error();
  if (rc->receipt_id != quote.settlement_id || rc->stb_id != quote.stb_id || rc->first_sequence != quote.first_sequence ||
      rc->last_sequence != quote.last_sequence) {
    return make_error(Errc::auth_failed, "billing's receipt does not cover what was quoted");
  }
  if (auto kept = keep_receipt(*rc, *bytes); !kept) return kept.error();
  return rc;
}

Result<std::uint64_t> Wallet::deliver_receipts(net::RequestClient& link, const entitlement::LinkSigner& signer,
                                               std::vector<entitlement::Receipt>& delivered) {
  const auto stb_id = signer.stb_id;
  std::vector<std::pair<std::uint64_t, std::vector<std::uint8_t>>> pending;
  {
    auto st = db_.prepare("SELECT receipt_id, receipt FROM receipts WHERE stb_id = ? AND delivered = 0 ORDER BY receipt_id");
    st.bind(1, stb_id);
    while (st.step()) pending.emplace_back(static_cast<std::uint64_t>(st.column_int(0)), st.column_blob(1));
  }
  std::uint64_t settled = 0;
  for (const auto& [id, bytes] : pending) {
    auto body = entitlement::call_link_signed(link, entitlement::LinkMessage::apply_receipt, bytes, signer);
    if (!body && body.error().code != Errc::replayed) return body.error();
    if (body) {
      ByteReader r(*body);
      std::uint64_t n = 0;
      r.u64(n);
      settled += n;
      if (auto rc = entitlement::Receipt::decode(bytes); rc) delivered.push_back(*rc);
    }
    auto up = db_.prepare("UPDATE receipts SET delivered = 1 WHERE receipt_id = ?");
    up.bind(1, static_cast<std::int64_t>(id));
    up.run();
  }
  return settled;
}

Result<std::uint32_t> Wallet::pair(const std::string& link_endpoint, const std::string& code) {
  entitlement::PairRequest q;
  {
    auto st = db_.prepare("SELECT ed25519_public FROM identity WHERE id = 1");
    if (!st.step()) return make_error(Errc::storage, "wallet has no identity");
    q.handset_public = blob32(st.column_blob(0));
  }
  crypto::random_bytes(q.nonce);
  q.tag = entitlement::pairing_tag(code, q.nonce, q.handset_public);
  net::RequestClient link(link_endpoint, kLinkOptions);
  auto body = entitlement::call_framed(link, static_cast<std::uint8_t>(entitlement::LinkMessage::pair), entitlement::encode(q));
  if (!body) return make_error(body.error().code, "pairing with the STB at " + link_endpoint + ": " + body.error().message);
  ByteReader r(*body);
  std::uint32_t stb_id = 0;
  entitlement::PairingTag proof{};
  r.u32(stb_id);
  r.bytes(proof);
  if (r.failed() || r.remaining() != 0) return make_error(Errc::malformed, "pair reply: wrong length");
  if (!constant_time_equal(proof, entitlement::pairing_proof(code, q.nonce, q.handset_public, stb_id))) {
    return make_error(Errc::auth_failed, "the device at " + link_endpoint + " does not know that code: not the STB showing it");
  }
  if (auto kept = remember_link(stb_id, link_endpoint); !kept) return kept.error();
  return stb_id;
}

Result<entitlement::LinkSigner> Wallet::link_signer(const std::string& link_endpoint, const Secret<32>& key) {
  auto st = db_.prepare("SELECT l.stb_id, i.ed25519_public FROM stb_links l, identity i WHERE l.link = ? AND i.id = 1");
  st.bind(1, link_endpoint);
  if (!st.step()) {
    return make_error(Errc::not_found, "this handset is not paired with the STB at " + link_endpoint + ": run `usher wallet pair --link " +
                                           link_endpoint + " --code <the code the STB shows>` first");
  }
  return entitlement::LinkSigner{static_cast<std::uint32_t>(st.column_int(0)), st.column_blob(1), &key};
}

Status Wallet::remember_link(std::uint32_t stb_id, const std::string& link_endpoint) {
  auto st = db_.prepare("INSERT OR REPLACE INTO stb_links VALUES (?, ?)");
  st.bind(1, stb_id).bind(2, link_endpoint);
  st.run();
  return ok_status();
}

Result<std::string> Wallet::link_of(std::uint32_t stb_id) {
  auto st = db_.prepare("SELECT link FROM stb_links WHERE stb_id = ?");
  st.bind(1, stb_id);
  if (!st.step()) {
    return make_error(Errc::not_found, "this handset has no link to STB " + std::to_string(stb_id) +
                                           " yet: pair with it first (usher wallet pair --link ENDPOINT --code <the code the STB shows>)");
  }
  return st.column_text(0);
}

Result<RelayOutcome> Wallet::relay_history(const std::string& link_endpoint, const std::string& billing_endpoint,
                                           std::uint32_t expected_stb) {
  const auto key = handset_private();
  auto signer = link_signer(link_endpoint, key);
  if (!signer) return signer.error();
  if (expected_stb != 0 && signer->stb_id != expected_stb) {
    return make_error(Errc::invalid_argument, "the STB at " + link_endpoint + " is STB " + std::to_string(signer->stb_id) + ", not STB " +
                                                  std::to_string(expected_stb));
  }
  net::RequestClient link(link_endpoint, kLinkOptions);
  BillingClient billing(billing_endpoint);
  RelayOutcome out;
  out.paid.currency = currency_;
  // The STB seals its history for billing's X25519 key: billing hands out its certificate (public),
  // the handset passes it on with its request and the STB checks it against the operator's key.
  auto certificate = billing.certificate();
  if (!certificate) return make_error(certificate.error().code, "billing's certificate: " + certificate.error().message);
  if (auto cert = entitlement::BillingCertificate::decode(*certificate); !cert || !cert->verify(issuer_)) {
    return make_error(Errc::auth_failed, "the billing service at " + billing_endpoint + " shows a certificate the operator did not sign");
  }
  auto collect = [&]() {
    return entitlement::call_link_signed(link, entitlement::LinkMessage::collect_history, *certificate, *signer);
  };
  auto sealed = collect();
  if (!sealed) return make_error(sealed.error().code, "collecting the STB's history: " + sealed.error().message);
  auto stb = entitlement::sealed_history_stb(*sealed);
  if (!stb) return stb.error();
  if (expected_stb != 0 && *stb != expected_stb) {
    return make_error(Errc::invalid_argument, "the STB at " + link_endpoint + " is STB " + std::to_string(*stb) + ", not STB " +
                                                  std::to_string(expected_stb));
  }
  out.stb_id = *stb;
  // Receipts this wallet holds from an earlier round that did not reach the STB go first.
  auto earlier = deliver_receipts(link, *signer, out.receipts);
  if (!earlier) return earlier.error();
  out.records_settled += *earlier;
  if (*earlier > 0) {
    sealed = collect();
    if (!sealed) return sealed.error();
  }
  auto reply = billing.relay({*sealed, card_id_}, {card_id_, &key});
  if (!reply) return make_error(reply.error().code, "billing: " + reply.error().message);
  for (const auto& bytes : reply->receipts) {
    auto rc = entitlement::Receipt::decode(bytes);
    if (!rc) return rc.error();
    if (auto kept = keep_receipt(*rc, bytes); !kept) return kept.error();
  }
  if (reply->has_quote) {
    auto rc = pay_quote(billing, reply->quote);
    if (!rc) return make_error(rc.error().code, "paying " + entitlement::format_money(reply->quote.amount) + ": " + rc.error().message);
    out.paid.minor += rc->amount.minor;
  }
  auto settled = deliver_receipts(link, *signer, out.receipts);
  if (!settled) return settled.error();
  out.records_settled += *settled;
  return out;
}

Result<StoredReceipt> Wallet::prepay(std::uint32_t stb_id, std::int64_t amount_minor, const std::string& billing_endpoint,
                                     const std::string& link_endpoint) {
  BillingClient billing(billing_endpoint);
  const auto key = handset_private();
  auto reply = billing.prepay({stb_id, {amount_minor, currency_}, card_id_}, {card_id_, &key});
  if (!reply) return make_error(reply.error().code, "billing: " + reply.error().message);
  if (!reply->has_quote) return make_error(Errc::malformed, "billing sent no quote for the prepayment");
  auto rc = pay_quote(billing, reply->quote);
  if (!rc) return rc.error();
  StoredReceipt out{*rc, false};
  if (!link_endpoint.empty()) {
    auto signer = link_signer(link_endpoint, key);
    if (signer && signer->stb_id == stb_id) {
      net::RequestClient link(link_endpoint, kLinkOptions);
      std::vector<entitlement::Receipt> delivered;
      if (auto d = deliver_receipts(link, *signer, delivered); d) out.delivered = true;
    }
  }
  return out;
}

std::vector<StoredReceipt> Wallet::receipts() {
  std::vector<StoredReceipt> out;
  auto st = db_.prepare("SELECT receipt, delivered FROM receipts ORDER BY receipt_id");
  while (st.step()) {
    auto rc = entitlement::Receipt::decode(st.column_blob(0));
    if (rc) out.push_back({*rc, st.column_int(1) != 0});
  }
  return out;
}

}  // namespace usher::wallet
