// The stored values of the engine store's state and kind columns, mapped here once (internal to
// this library). SQL that compares with one splices sql_value(...) (our own constants, never input);
// a value read back that none of these names is a damaged store: an error, never a default.
#pragma once

#include <stdexcept>
#include <string>

#include "usher/core/sqlite.h"
#include "usher/core/stored_enum.h"
#include "usher/entitlement/store.h"

namespace usher::entitlement {

inline constexpr StoredName<TicketStatus> kTicketStatuses[] = {{TicketStatus::valid, "valid"}, {TicketStatus::revoked, "revoked"}};
inline constexpr StoredName<LedgerEntryKind> kLedgerEntryKinds[] = {
    {LedgerEntryKind::top_up, "top-up"},         {LedgerEntryKind::ppv, "ppv"},
    {LedgerEntryKind::pass, "pass"},             {LedgerEntryKind::refund, "refund"},
    {LedgerEntryKind::settlement, "settlement"}, {LedgerEntryKind::settlement_refund, "settlement-refund"}};

// 'valid', for a statement's text.
inline std::string sql_value(TicketStatus status) { return sql_literal(kTicketStatuses, status); }

// Columns read back. The readers of these return no Result: a damaged store is a broken invariant
// (std::runtime_error, as for any other database error).
inline TicketStatus ticket_status_of(const sql::Statement& st, int col) {
  return stored_value(kTicketStatuses, st.column_text(col), "entitlement.db holds a ticket in an unknown state");
}
inline LedgerEntryKind ledger_entry_kind_of(const sql::Statement& st, int col) {
  return stored_value(kLedgerEntryKinds, st.column_text(col), "entitlement.db holds a ledger entry of an unknown kind");
}

}  // namespace usher::entitlement
