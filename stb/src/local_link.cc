#include "usher/stb/local_link.h"
#include "usher/core/clock.h"

#include <chrono>
#include <filesystem>
#include <stdexcept>

#include "usher/core/bytes.h"
#include "usher/core/home.h"
#include "usher/entitlement/link_auth.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/request_auth.h"
#include "usher/entitlement/settlement.h"
#include "usher/stb/shown_code.h"

namespace usher::stb {
namespace fs = std::filesystem;
using entitlement::LinkMessage;

namespace {
sql::Database open_link_db(const std::string& home) {
  // The keys it holds are public; private to the owner all the same.
  auto db = open_private_database(home, LocalLink::kDatabaseName, IfMissing::create);
  if (!db) throw std::runtime_error(db.error().message);
  const auto path = (fs::path(home) / LocalLink::kDatabaseName).string();
  if (auto migrated = LocalLink::schema().migrate(*db, path); !migrated) throw std::runtime_error(migrated.error().message);
  return std::move(*db);
}
}  // namespace

// Step 1 is the schema of the files written before versions were kept (user_version 0), in an
// IF NOT EXISTS statement so that such a file is recognised as schema 1 and kept as it is.
// Add a step at the end to change the schema; never edit one that has shipped.
const sql::Schema& LocalLink::schema() {
  static const sql::Schema kSchema("STB local link", {{1, "the paired handsets", sql::sql_steps(R"(
    CREATE TABLE IF NOT EXISTS paired_handsets (
      ed25519_public BLOB PRIMARY KEY,
      paired INTEGER NOT NULL);
  )")}});
  return kSchema;
}

LocalLink::LocalLink(SecureElement& se, const std::string& home) : se_(se), home_(home), db_(open_link_db(home)) { show_new_code(); }

void LocalLink::show_new_code() {
  code_ = entitlement::new_pairing_code();
  failed_attempts_ = 0;
  if (auto written = write_shown_code(home_, kPairingCodeName, code_); !written) log_.warn("local link: ", written.error().message);
  log_.info("local link: pairing code ", code_, " (enter it in the handset: usher wallet pair)");
}

std::size_t LocalLink::paired_handsets() {
  auto st = db_.prepare("SELECT COUNT(*) FROM paired_handsets");
  st.step();
  return static_cast<std::size_t>(st.column_int(0));
}

std::vector<std::uint8_t> LocalLink::pair(const entitlement::Frame& frame) {
  auto q = entitlement::decode_pair_request(frame.body);
  if (!q) return entitlement::encode_error(frame.id, q.error());
  const auto expected = entitlement::pairing_tag(code_, q->nonce, q->handset_public);
  if (!constant_time_equal(expected, q->tag)) {
    if (++failed_attempts_ >= entitlement::kPairingAttempts) {
      log_.warn("local link: ", failed_attempts_, " wrong pairing codes; showing a new one");
      show_new_code();
    }
    return entitlement::encode_error(frame.id, make_error(Errc::auth_failed, "wrong pairing code"));
  }
  auto st = db_.prepare("INSERT OR IGNORE INTO paired_handsets VALUES (?, ?)");
  st.bind(1, q->handset_public).bind(2, static_cast<std::int64_t>(unix_now()));
  st.run();
  ByteWriter w;
  w.u32(se_.stb_id());
  w.bytes(entitlement::pairing_proof(code_, q->nonce, q->handset_public, se_.stb_id()));
  log_.info("local link: a handset paired");
  show_new_code();  // one code, one pairing
  return entitlement::encode_ok(frame.id, w.data());
}

std::vector<std::uint8_t> LocalLink::signed_request(const entitlement::Frame& frame) {
  auto s = entitlement::split_link_signed(frame.body);
  if (!s) return entitlement::encode_error(frame.id, s.error());
  const auto now = unix_now();
  crypto::PublicKey key{};
  bool known = false;
  std::span<const std::uint8_t> billing_signer;  // billing's certificate, when billing itself asks
  if (s->signer.size() == key.size()) {
    std::copy(s->signer.begin(), s->signer.end(), key.begin());
    auto st = db_.prepare("SELECT 1 FROM paired_handsets WHERE ed25519_public = ?");
    st.bind(1, key);
    known = st.step();
  } else if (auto cert = entitlement::BillingCertificate::decode(s->signer); cert && cert->verify(se_.issuer_public())) {
    key = cert->billing_public;
    known = true;
    billing_signer = s->signer;
  }
  if (!known || !s->verify(frame.type_or_status, frame.id, se_.stb_id(), key)) {
    log_.warn("local link: refused an unpaired or forged request (type ", static_cast<int>(frame.type_or_status), ")");
    return entitlement::encode_error(frame.id, make_error(Errc::auth_failed, "this STB serves that only to a paired handset (usher wallet pair) or to billing"));
  }
  if (auto fresh = entitlement::check_request_time(s->time, now); !fresh) return entitlement::encode_error(frame.id, fresh.error());
  // Answered once: the same request again gets the same reply (a retry, or a replay that learns
  // nothing new and changes nothing).
  std::erase_if(answered_, [&](const auto& e) { return e.second.first + 2 * entitlement::kRequestWindowSeconds < now; });
  const auto replay_key = s->replay_key();
  if (auto seen = answered_.find(replay_key); seen != answered_.end()) return seen->second.second;
  auto reply = serve(frame, s->body, billing_signer);
  if (!reply.empty() && reply.size() > 1 && reply[1] == 0) answered_[replay_key] = {s->time, reply};
  return reply;
}

std::vector<std::uint8_t> LocalLink::handle(std::span<const std::uint8_t> request) {
  auto frame = entitlement::decode_frame(request);
  if (!frame) return entitlement::encode_error(entitlement::RequestId{}, frame.error());
  try {
    switch (static_cast<LinkMessage>(frame->type_or_status)) {
      case LinkMessage::pair:
        return pair(*frame);
      case LinkMessage::collect_acks:
      case LinkMessage::acks_relayed:
      case LinkMessage::collect_history:
      case LinkMessage::apply_receipt:
        return signed_request(*frame);
      case LinkMessage::deliver_emm:
      case LinkMessage::room_state:
        return serve(*frame, frame->body);
    }
  } catch (const std::exception& e) {
    log_.error("local link: ", e.what());
    return entitlement::encode_error(frame->id, make_error(Errc::storage, "the STB could not store that"));
  }
  return entitlement::encode_error(frame->id, make_error(Errc::invalid_argument, "unknown local-link message"));
}

std::vector<std::uint8_t> LocalLink::serve(const entitlement::Frame& frame, std::span<const std::uint8_t> body,
                                           std::span<const std::uint8_t> billing_signer) {
  const auto* f = &frame;
  switch (static_cast<LinkMessage>(f->type_or_status)) {
    case LinkMessage::deliver_emm: {
      auto outcome = se_.apply_emm(body);
      if (!outcome) {
        log_.warn("local link: EMM refused: ", outcome.error().message);
        return entitlement::encode_error(f->id, outcome.error());
      }
      if (*outcome == EmmOutcome::not_addressed) {
        return entitlement::encode_error(f->id, make_error(Errc::not_entitled, "that ticket is for another STB"));
      }
      if (*outcome == EmmOutcome::nothing_for_this_stb) {
        return entitlement::encode_error(f->id, make_error(Errc::not_entitled, "nothing in that EMM is for this STB"));
      }
      log_.info("local link: ticket EMM ", *outcome == EmmOutcome::applied ? "stored" : "already held");
      return entitlement::encode_ok(f->id, {});
    }
    case LinkMessage::collect_acks: {
      std::vector<std::vector<std::uint8_t>> acks;
      for (const auto& a : se_.pending_acks()) acks.push_back(a.encode());
      return entitlement::encode_ok(f->id, entitlement::encode_blobs(acks));
    }
    case LinkMessage::collect_history: {
      // The history is sealed for billing's key: the billing certificate the handset relays with
      // the request (or billing's own, when billing asks), checked against the operator's key and
      // kept; with neither, the one the STB holds from before.
      const auto certificate = !body.empty() ? body : billing_signer;
      if (!certificate.empty()) {
        if (auto accepted = se_.accept_billing_certificate(certificate); !accepted) {
          log_.warn("local link: billing certificate refused: ", accepted.error().message);
          return entitlement::encode_error(f->id, accepted.error());
        }
      }
      auto sealed = se_.sealed_unsettled_history();
      if (!sealed) {
        log_.warn("local link: history not sealed: ", sealed.error().message);
        return entitlement::encode_error(f->id, sealed.error());
      }
      return entitlement::encode_ok(f->id, *sealed);
    }
    case LinkMessage::apply_receipt: {
      auto applied = se_.apply_receipt(body, unix_now());
      if (!applied) {
        log_.warn("local link: receipt refused: ", applied.error().message);
        return entitlement::encode_error(f->id, applied.error());
      }
      log_.info("local link: receipt ", applied->receipt.receipt_id, " (", entitlement::to_string(applied->receipt.kind), ", ",
                entitlement::format_money(applied->receipt.amount), ") applied, ", applied->records_settled, " records settled");
      ByteWriter w;
      w.u64(applied->records_settled);
      return entitlement::encode_ok(f->id, w.data());
    }
    case LinkMessage::room_state: {
      if (auto ok = se_.apply_room_state(body); !ok) {
        log_.warn("local link: room state refused: ", ok.error().message);
        return entitlement::encode_error(f->id, ok.error());
      }
      log_.info("local link: room state applied");
      return entitlement::encode_ok(f->id, {});
    }
    case LinkMessage::acks_relayed: {
      auto ids = entitlement::decode_ids(body);
      if (!ids) return entitlement::encode_error(f->id, ids.error());
      se_.acks_relayed(*ids);
      return entitlement::encode_ok(f->id, {});
    }
    case LinkMessage::pair:
      break;
  }
  return entitlement::encode_error(f->id, make_error(Errc::invalid_argument, "unknown local-link message"));
}

}  // namespace usher::stb
