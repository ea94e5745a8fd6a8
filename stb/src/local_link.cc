#include "usher/stb/local_link.h"
#include "usher/core/clock.h"

#include <chrono>

#include "usher/core/bytes.h"
#include "usher/entitlement/protocol.h"

namespace usher::stb {

std::vector<std::uint8_t> LocalLink::handle(std::span<const std::uint8_t> request) {
  using entitlement::LinkMessage;
  auto frame = entitlement::decode_frame(request);
  if (!frame) return entitlement::encode_error(entitlement::RequestId{}, frame.error());
  try {
    switch (static_cast<LinkMessage>(frame->type_or_status)) {
      case LinkMessage::deliver_emm: {
        auto outcome = se_.apply_emm(frame->body);
        if (!outcome) {
          log_.warn("local link: EMM refused: ", outcome.error().message);
          return entitlement::encode_error(frame->id, outcome.error());
        }
        if (*outcome == EmmOutcome::not_addressed) {
          return entitlement::encode_error(frame->id, make_error(Errc::not_entitled, "that ticket is for another STB"));
        }
        log_.info("local link: ticket EMM ", *outcome == EmmOutcome::applied ? "stored" : "already held");
        return entitlement::encode_ok(frame->id, {});
      }
      case LinkMessage::collect_acks: {
        std::vector<std::vector<std::uint8_t>> acks;
        for (const auto& a : se_.pending_acks()) acks.push_back(a.encode());
        return entitlement::encode_ok(frame->id, entitlement::encode_blobs(acks));
      }
      case LinkMessage::collect_history:
        return entitlement::encode_ok(frame->id, se_.sealed_unsettled_history());
      case LinkMessage::apply_receipt: {
        auto applied = se_.apply_receipt(frame->body, unix_now());
        if (!applied) {
          log_.warn("local link: receipt refused: ", applied.error().message);
          return entitlement::encode_error(frame->id, applied.error());
        }
        log_.info("local link: receipt ", applied->receipt.receipt_id, " (", entitlement::to_string(applied->receipt.kind), ", ",
                  entitlement::format_money(applied->receipt.amount), ") applied, ", applied->records_settled, " records settled");
        ByteWriter w;
        w.u64(applied->records_settled);
        return entitlement::encode_ok(frame->id, w.data());
      }
      case LinkMessage::room_state: {
        if (auto ok = se_.apply_room_state(frame->body); !ok) {
          log_.warn("local link: room state refused: ", ok.error().message);
          return entitlement::encode_error(frame->id, ok.error());
        }
        log_.info("local link: room state applied");
        return entitlement::encode_ok(frame->id, {});
      }
      case LinkMessage::acks_relayed: {
        auto ids = entitlement::decode_ids(frame->body);
        if (!ids) return entitlement::encode_error(frame->id, ids.error());
        se_.acks_relayed(*ids);
        return entitlement::encode_ok(frame->id, {});
      }
    }
  } catch (const std::exception& e) {
    log_.error("local link: ", e.what());
    return entitlement::encode_error(frame->id, make_error(Errc::storage, "the STB could not store that"));
  }
  return entitlement::encode_error(frame->id, make_error(Errc::invalid_argument, "unknown local-link message"));
}

}  // namespace usher::stb
