// SQLite column helpers shared by billing's store files (internal to this library).
#pragma once

#include <vector>

#include "usher/billing/billing_store.h"
#include "usher/core/sqlite.h"

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

}  // namespace usher::billing
