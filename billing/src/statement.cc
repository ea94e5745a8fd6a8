// Statements: what an account, an STB or a hotel stay was charged, as text, CSV and PDF.
#include <algorithm>
#include <cstdio>

#include "columns.h"
#include "usher/billing/billing_store.h"
#include "usher/core/clock.h"
#include "usher/core/text.h"

namespace usher::billing {
using entitlement::SettlementKind;

namespace {
// The names of the line kinds: shown in the text, CSV and PDF statements, and made by the line query.
constexpr StoredName<StatementLineKind> kStatementLineKinds[] = {
    {StatementLineKind::cash, "cash"},           {StatementLineKind::refund, "refund"},   {StatementLineKind::deferred, "deferred"},
    {StatementLineKind::prepayment, "prepayment"}, {StatementLineKind::prepaid, "prepaid"}, {StatementLineKind::folio, "folio"}};
}  // namespace

const char* to_string(StatementLineKind kind) { return stored_name(kStatementLineKinds, kind); }

namespace {

void add_total(std::vector<Money>& totals, const Money& m) {
  for (auto& t : totals) {
    if (t.currency == m.currency) {
      t.minor += m.minor;
      return;
    }
  }
  totals.push_back(m);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

constexpr const char* kStatementTime = "%Y-%m-%d %H:%M UTC";

std::string amount_only(const Money& m) {
  auto s = entitlement::format_money(m);
  return s.substr(0, s.size() - 4);
}

}  // namespace

std::string Statement::text() const {
  // Columns are counted in display width, not bytes, so UTF-8 kinds and titles line up.
  std::string out = title + "\n" + std::string(display_width(title), '=') + "\n";
  if (lines.empty()) out += "(nothing)\n";
  for (const auto& l : lines) {
    out += pad_right(format_utc(l.time, kStatementTime), 20) + "  STB " + pad_right(std::to_string(l.stb_id), 6) + "  " +
           pad_right(to_string(l.kind), 10) + "  " + pad_right(cut_to_width(l.description, 28), 28) + "  " + pad_left(entitlement::format_money(l.amount), 14) + "\n";
  }
  for (const auto& t : totals) out += pad_right("Total", 74) + "  " + pad_left(entitlement::format_money(t), 14) + "\n";
  return out;
}

std::string Statement::csv() const {
  std::string out = "time_utc,stb_id,kind,description,event_id,record,settlement,amount,currency\n";
  for (const auto& l : lines) {
    out += csv_field(format_utc(l.time, kStatementTime)) + "," + std::to_string(l.stb_id) + "," + to_string(l.kind) + "," + csv_field(l.description) + "," +
           std::to_string(l.event_id) + "," + std::to_string(l.sequence) + "," + std::to_string(l.settlement_id) + "," +
           amount_only(l.amount) + "," + entitlement::to_string(l.amount.currency) + "\n";
  }
  return out;
}

namespace {
// A history record's line kind is worked out in SQL: prepaid (the record was paid from credit bought
// ahead), folio (posted to a hotel guest's folio), else deferred (paid through the handset).
const std::string kLineQuery =
    "SELECT r.time, r.stb_id, CASE WHEN r.payment = " + std::to_string(entitlement::kPaymentPrepaid) + " THEN " +
    sql_literal(kStatementLineKinds, StatementLineKind::prepaid) + " WHEN s.kind = " + sql_value(SettlementKind::folio) + " THEN " +
    sql_literal(kStatementLineKinds, StatementLineKind::folio) + " ELSE " + sql_literal(kStatementLineKinds, StatementLineKind::deferred) +
    " END, r.title, "
    "r.event_id, r.sequence, r.settlement_id, r.price_minor, r.currency FROM records r JOIN settlements s USING (settlement_id) ";
StatementLine line_from(const sql::Statement& st) {
  StatementLine l;
  l.time = static_cast<std::uint64_t>(st.column_int(0));
  l.stb_id = static_cast<std::uint32_t>(st.column_int(1));
  const auto kind = from_stored_name(kStatementLineKinds, st.column_text(2));
  if (!kind) throw std::logic_error("a statement line of a kind the line query does not make");
  l.kind = *kind;
  l.description = st.column_text(3);
  l.event_id = static_cast<std::uint32_t>(st.column_int(4));
  l.sequence = static_cast<std::uint64_t>(st.column_int(5));
  l.settlement_id = static_cast<std::uint64_t>(st.column_int(6));
  l.amount = money_of(st, 7, 8);
  return l;
}
void finish_statement(Statement& s) {
  std::stable_sort(s.lines.begin(), s.lines.end(), [](const auto& a, const auto& b) { return a.time < b.time; });
  for (const auto& l : s.lines) {
    // Prepaid purchases were paid when the credit was bought: shown, not counted twice.
    if (l.kind != StatementLineKind::prepaid) add_total(s.totals, l.amount);
  }
}
}  // namespace

Result<Statement> BillingStore::stb_statement(std::uint32_t stb_id) {
  Statement s;
  s.title = "STB " + std::to_string(stb_id);
  {
    auto st = db_.prepare(std::string(kLineQuery) + "WHERE r.stb_id = ? ORDER BY r.sequence");
    st.bind(1, stb_id);
    while (st.step()) s.lines.push_back(line_from(st));
  }
  {
    auto st = db_.prepare("SELECT paid, settlement_id, amount_minor, currency FROM settlements WHERE stb_id = ? AND kind = " + sql_value(SettlementKind::prepayment) + " AND state = " + sql_value(SettlementState::paid));
    st.bind(1, stb_id);
    while (st.step()) {
      StatementLine l;
      l.time = static_cast<std::uint64_t>(st.column_int(0));
      l.stb_id = stb_id;
      l.kind = StatementLineKind::prepayment;
      l.description = "credit loaded into the STB";
      l.settlement_id = static_cast<std::uint64_t>(st.column_int(1));
      l.amount = money_of(st, 2, 3);
      s.lines.push_back(l);
    }
  }
  // Cash: tickets bought with a handset and paid at once (F1-F3, passes), and their refunds.
  USHER_TRY(auto payments, engine_.ticket_payments(stb_id));
  for (const auto& pay : payments) {
    StatementLine l;
    l.time = pay.time;
    l.stb_id = stb_id;
    l.kind = pay.kind == static_cast<std::uint8_t>(entitlement::LedgerEntryKind::refund) ? StatementLineKind::refund : StatementLineKind::cash;
    l.event_id = pay.event_id;
    l.description = pay.title.empty() ? "ticket " + std::to_string(pay.ticket_id) : pay.title;
    l.amount = pay.amount;
    s.lines.push_back(l);
  }
  finish_statement(s);
  return s;
}

Result<Statement> BillingStore::account_statement(const std::string& account) {
  Statement s;
  s.title = "Account " + account;
  USHER_TRY(auto stbs, engine_.account_stbs(account));
  for (auto stb : stbs) {
    USHER_TRY(auto part, stb_statement(stb));
    s.lines.insert(s.lines.end(), part.lines.begin(), part.lines.end());
  }
  finish_statement(s);
  return s;
}

Result<Statement> BillingStore::folio(std::uint64_t stay_id) {
  USHER_TRY(auto stay_info, stay(stay_id));
  Statement s;
  s.header = {{"Hotel", hotel_name()},
              {"Guest", stay_info.guest_name + " (guest " + stay_info.guest_id + ")"},
              {"Room", stay_info.room},
              {"Stay", std::to_string(stay_id) + ", in " + format_utc(stay_info.checkin, kStatementTime) +
                           (stay_info.checkout != 0 ? ", out " + format_utc(stay_info.checkout, kStatementTime) : std::string(", checked in"))}};
  s.title = "Folio " + std::to_string(stay_id) + ": " + stay_info.guest_name + " (guest " + stay_info.guest_id + "), room " +
            stay_info.room + ", in " + format_utc(stay_info.checkin, kStatementTime) +
            (stay_info.checkout != 0 ? ", out " + format_utc(stay_info.checkout, kStatementTime) : std::string(", checked in"));
  auto st = db_.prepare(std::string(kLineQuery) + "WHERE s.kind = " + sql_value(SettlementKind::folio) + " AND s.stay_id = ? ORDER BY r.time, r.sequence");
  st.bind(1, static_cast<std::int64_t>(stay_id));
  while (st.step()) s.lines.push_back(line_from(st));
  finish_statement(s);
  return s;
}

}  // namespace usher::billing
