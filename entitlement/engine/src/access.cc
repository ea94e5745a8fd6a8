// The engine's side of signed requests (request_auth.h): replies kept for replays, ownership checks.
#include "usher/entitlement/request_auth.h"
#include "usher/entitlement/store.h"

namespace usher::entitlement {

Result<std::vector<std::uint8_t>> EntitlementStore::once_signed(std::span<const std::uint8_t> replay_key, std::uint64_t card_id,
                                                                std::uint64_t time, std::uint64_t now,
                                                                const std::function<Result<std::vector<std::uint8_t>>()>& work) {
  sql::Transaction tx(db_);
  auto seen = db_.prepare("SELECT reply FROM signed_requests WHERE replay_key = ?");
  seen.bind(1, replay_key);
  if (seen.step()) return seen.column_blob(0);
  USHER_TRY(auto reply, work());  // refused: nothing kept, a retry is judged again
  if (now > 2 * kRequestWindowSeconds) {
    auto prune = db_.prepare("DELETE FROM signed_requests WHERE time < ?");
    prune.bind(1, static_cast<std::int64_t>(now - 2 * kRequestWindowSeconds));
    prune.run();
  }
  auto st = db_.prepare("INSERT INTO signed_requests VALUES (?, ?, ?, ?)");
  st.bind(1, replay_key).bind(2, static_cast<std::int64_t>(card_id)).bind(3, static_cast<std::int64_t>(time)).bind(4, reply);
  st.run();
  tx.commit();
  return reply;
}

std::optional<std::uint64_t> EntitlementStore::ticket_card(std::uint64_t ticket_id) {
  auto st = db_.prepare("SELECT card_id FROM tickets WHERE ticket_id = ?");
  st.bind(1, static_cast<std::int64_t>(ticket_id));
  if (!st.step()) return std::nullopt;
  return static_cast<std::uint64_t>(st.column_int(0));
}

}  // namespace usher::entitlement
