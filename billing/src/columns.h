// SQLite column helpers shared by billing's store files (internal to this library).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "usher/billing/billing_store.h"
#include "usher/core/sqlite.h"
#include "usher/core/stored_enum.h"

namespace usher::billing {

// Money kept as an integer minor-units column and an ISO 4217 text column.
inline Money money_of(const sql::Statement& st, int minor_col, int currency_col) {
  const auto c = st.column_text(currency_col);
  Money m{st.column_int(minor_col), {'X', 'X', 'X'}};
  if (c.size() == 3) m.currency = {c[0], c[1], c[2]};
  return m;
}

inline crypto::Digest digest_of(const std::vector<std::uint8_t>& b) {
  crypto::Digest d{};
  if (b.size() == d.size()) std::copy(b.begin(), b.end(), d.begin());
  return d;
}

// The stored values of billing's state and kind columns, mapped here once. SQL that compares with
// one splices sql_value(...) into the statement (our own constants, never input); a value read back
// that none of these names is a damaged store: an error, never a default.
inline constexpr StoredName<SettlementState> kSettlementStates[] = {
    {SettlementState::quoted, "quoted"}, {SettlementState::charging, "charging"}, {SettlementState::paid, "paid"}};
inline constexpr StoredName<PmsPostingState> kPmsPostingStates[] = {
    {PmsPostingState::pending, "pending"}, {PmsPostingState::ok, "ok"}, {PmsPostingState::refused, "refused"}};
inline constexpr StoredName<PmsLinkCondition> kPmsLinkConditions[] = {
    {PmsLinkCondition::up, "up"}, {PmsLinkCondition::down, "down"}, {PmsLinkCondition::stopped, "stopped"}};

// 'charging', for a statement's text.
inline std::string sql_value(SettlementState state) { return sql_literal(kSettlementStates, state); }
inline std::string sql_value(PmsPostingState state) { return sql_literal(kPmsPostingStates, state); }
// A settlement kind is stored as its wire number.
inline std::string sql_value(entitlement::SettlementKind kind) { return std::to_string(static_cast<int>(kind)); }

// A state column read back; Errc::storage naming the value when it is none of ours.
inline Result<SettlementState> settlement_state_of(const sql::Statement& st, int col) {
  const auto text = st.column_text(col);
  if (auto state = from_stored_name(kSettlementStates, text)) return *state;
  return make_error(Errc::storage, "billing.db holds a settlement in an unknown state '" + text + "'");
}
inline Result<entitlement::SettlementKind> settlement_kind_of(const sql::Statement& st, int col) {
  const auto number = st.column_int(col);
  for (const auto kind : {entitlement::SettlementKind::deferred, entitlement::SettlementKind::prepayment, entitlement::SettlementKind::folio}) {
    if (number == static_cast<int>(kind)) return kind;
  }
  return make_error(Errc::storage, "billing.db holds a settlement of an unknown kind " + std::to_string(number));
}
// For readers that return no Result: a damaged store is a broken invariant (std::runtime_error).
inline PmsPostingState pms_posting_state_of(const sql::Statement& st, int col) {
  return stored_value(kPmsPostingStates, st.column_text(col), "billing.db holds a PMS posting in an unknown state");
}
inline PmsLinkCondition pms_link_condition_of(const sql::Statement& st, int col) {
  return stored_value(kPmsLinkConditions, st.column_text(col), "billing.db holds an unknown PMS link condition");
}

}  // namespace usher::billing
