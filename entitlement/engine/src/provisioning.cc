// Bulk provisioning: box files (provisioning.h) and the engine store's bulk registration and bulk
// grants (store.h, "Bulk provisioning"). Each bulk operation checks everything it was given before
// it writes anything, then writes in transactions of many rows, each all or nothing, with its
// statements prepared once per transaction; a row already done is skipped, so running the same
// command again after an interruption finishes the work once.
#include "usher/entitlement/provisioning.h"

#include <algorithm>
#include <charconv>
#include <exception>
#include <thread>
#include <unordered_map>
#include <optional>
#include <map>

#include <nlohmann/json.hpp>

#include "usher/core/clock.h"
#include "usher/core/hex.h"

namespace usher::entitlement {
namespace {

constexpr std::size_t kListedInMessage = 20;

// The crypto of a bulk operation (an X25519 per box) runs on every core, up to this many threads;
// SQLite stays on the calling thread.
unsigned crypto_threads(std::size_t work_items) {
  if (work_items < 64) return 1;
  return std::clamp(std::thread::hardware_concurrency(), 1U, 8U);
}

// Calls work(thread, i) for every i in [0, n), spread over `threads` threads (thread in [0,
// threads)); the first exception a call throws is thrown here once all have stopped.
template <typename Work>
void in_parallel(std::size_t n, unsigned threads, const Work& work) {
  if (threads <= 1) {
    for (std::size_t i = 0; i < n; ++i) work(0U, i);
    return;
  }
  std::vector<std::exception_ptr> failures(threads);
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      try {
        for (std::size_t i = t; i < n; i += threads) work(t, i);
      } catch (...) {
        failures[t] = std::current_exception();
      }
    });
  }
  for (auto& w : workers) w.join();
  for (const auto& f : failures) {
    if (f) std::rethrow_exception(f);
  }
}

// One loaded operator key per thread.
std::vector<crypto::X25519Agreement> agreements(const Secret<32>& own_private, unsigned threads) {
  std::vector<crypto::X25519Agreement> out;
  for (unsigned t = 0; t < threads; ++t) out.emplace_back(own_private);
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A decimal box id: digits only, 1 to 4294967295.
Result<std::uint32_t> parse_stb_id(std::string_view text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos) {
    return make_error(Errc::invalid_argument, "the STB id must be a decimal number, got '" + std::string(text.substr(0, 40)) + "'");
  }
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 0xFFFFFFFFULL) {
    return make_error(Errc::invalid_argument, "the STB id must be from 1 to 4294967295, got " + std::string(text.substr(0, 40)));
  }
  return static_cast<std::uint32_t>(value);
}

Result<crypto::PublicKey> parse_public_key(std::string_view text, const char* name) {
  const auto bytes = from_hex(text);
  if (!bytes) return make_error(Errc::invalid_argument, std::string("the ") + name + " key is not hex");
  crypto::PublicKey key{};
  if (bytes->size() != key.size()) {
    return make_error(Errc::invalid_argument, std::string("the ") + name + " key must be 64 hex digits (32 bytes), got " +
                                                  std::to_string(bytes->size()) + " bytes");
  }
  std::copy(bytes->begin(), bytes->end(), key.begin());
  return key;
}

Status check_account(std::string_view account) {
  if (account.size() > 200) return make_error(Errc::invalid_argument, "the account name is longer than 200 bytes");
  for (const char c : account) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) return make_error(Errc::invalid_argument, "the account name holds a control character");
  }
  return ok_status();
}

// The fields of one CSV line: comma-separated, each trimmed of spaces; a field may be
// double-quoted (a quote inside written twice), as spreadsheets and SMS exports write them.
Result<std::vector<std::string>> split_csv(std::string_view line) {
  std::vector<std::string> fields;
  std::size_t i = 0;
  while (true) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    std::string field;
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          closed = true;
          ++i;
          break;
        }
        field += line[i++];
      }
      if (!closed) return make_error(Errc::invalid_argument, "a quoted field is not closed");
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      if (i < line.size() && line[i] != ',') return make_error(Errc::invalid_argument, "text after a quoted field");
    } else {
      const auto comma = line.find(',', i);
      field = std::string(trim(line.substr(i, comma == std::string_view::npos ? std::string_view::npos : comma - i)));
      i = comma == std::string_view::npos ? line.size() : comma;
    }
    fields.push_back(std::move(field));
    if (i >= line.size()) break;
    ++i;  // the comma
  }
  return fields;
}

enum class Column { stb_id, x25519, ed25519, account };

const std::vector<std::pair<std::string, Column>>& column_names() {
  static const std::vector<std::pair<std::string, Column>> names{
      {"stb_id", Column::stb_id}, {"x25519", Column::x25519}, {"ed25519", Column::ed25519}, {"account", Column::account}};
  return names;
}

// Reads a box file line by line, keeping rows and problems.
class StbFileParser {
 public:
  explicit StbFileParser(StbFileFormat format) : format_(format) {}

  void line(std::string_view text) {
    ++line_number_;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    const auto content = trim(text);
    if (content.empty() || content.front() == '#') return;
    if (header_failed_) return;
    auto row = format_ == StbFileFormat::csv ? csv_row(content) : json_row(content);
    if (!row) {
      problem(row.error().message);
      return;
    }
    if (!*row) return;  // the header
    StbRow& r = **row;
    r.line = line_number_;
    const auto [first, inserted] = first_line_.emplace(r.stb.stb_id, line_number_);
    if (!inserted) {
      problem("STB " + std::to_string(r.stb.stb_id) + " is given twice (first on line " + std::to_string(first->second) + ")");
      return;
    }
    file_.rows.push_back(std::move(r));
  }

  StbFile finish() {
    if (left_out_ > 0) file_.problems.push_back({line_number_, "and " + std::to_string(left_out_) + " more lines refused"});
    return std::move(file_);
  }

 private:
  void problem(std::string message) {
    if (file_.problems.size() < StbFile::kMaxProblems) {
      file_.problems.push_back({line_number_, std::move(message)});
    } else {
      ++left_out_;
    }
  }

  // nullopt for the header line.
  Result<std::optional<StbRow>> csv_row(std::string_view content) {
    USHER_TRY(auto fields, split_csv(content));
    const bool first = !seen_content_;
    seen_content_ = true;
    if (first && !fields[0].empty() && (fields[0][0] < '0' || fields[0][0] > '9')) {
      USHER_CHECK(read_header(fields));
      return std::optional<StbRow>{};
    }
    if (columns_.empty()) {
      if (fields.size() != 3 && fields.size() != 4) {
        return make_error(Errc::invalid_argument, "expected stb_id,x25519,ed25519[,account]: got " + std::to_string(fields.size()) + " fields");
      }
    } else if (fields.size() != columns_.size() && !(fields.size() + 1 == columns_.size() && columns_.back() == Column::account)) {
      return make_error(Errc::invalid_argument,
                        "expected " + std::to_string(columns_.size()) + " fields as the header says: got " + std::to_string(fields.size()));
    }
    StbRow row;
    for (std::size_t i = 0; i < fields.size(); ++i) {
      const Column column = columns_.empty() ? static_cast<Column>(i) : columns_[i];
      USHER_CHECK(set_field(row, column, fields[i]));
    }
    return std::optional<StbRow>(std::move(row));
  }

  Status read_header(const std::vector<std::string>& fields) {
    std::string expected;
    for (const auto& [name, column] : column_names()) expected += (expected.empty() ? "" : ",") + name;
    for (const auto& field : fields) {
      const auto known = std::find_if(column_names().begin(), column_names().end(), [&](const auto& n) { return n.first == field; });
      if (known == column_names().end()) {
        header_failed_ = true;
        return make_error(Errc::invalid_argument, "unknown column '" + field.substr(0, 40) + "' in the header (columns: " + expected + ")");
      }
      if (std::find(columns_.begin(), columns_.end(), known->second) != columns_.end()) {
        header_failed_ = true;
        return make_error(Errc::invalid_argument, "column '" + field + "' named twice in the header");
      }
      columns_.push_back(known->second);
    }
    for (const Column needed : {Column::stb_id, Column::x25519, Column::ed25519}) {
      if (std::find(columns_.begin(), columns_.end(), needed) == columns_.end()) {
        header_failed_ = true;
        return make_error(Errc::invalid_argument, "the header has no column " + column_names()[static_cast<std::size_t>(needed)].first +
                                                      " (columns: " + expected + ")");
      }
    }
    return ok_status();
  }

  static Status set_field(StbRow& row, Column column, std::string_view value) {
    switch (column) {
      case Column::stb_id: {
        USHER_TRY(row.stb.stb_id, parse_stb_id(value));
        break;
      }
      case Column::x25519: {
        USHER_TRY(row.stb.x25519_public, parse_public_key(value, "x25519"));
        break;
      }
      case Column::ed25519: {
        USHER_TRY(row.stb.ed25519_public, parse_public_key(value, "ed25519"));
        break;
      }
      case Column::account:
        USHER_CHECK(check_account(value));
        row.account = std::string(value);
        break;
    }
    return ok_status();
  }

  static Result<std::optional<StbRow>> json_row(std::string_view content) {
    const auto json = nlohmann::json::parse(content.begin(), content.end(), nullptr, false);
    if (json.is_discarded()) return make_error(Errc::invalid_argument, "not a JSON line");
    if (!json.is_object()) return make_error(Errc::invalid_argument, "a JSON line must be an object {\"stb_id\":N,\"x25519\":...}");
    StbRow row;
    bool has[4] = {false, false, false, false};
    for (const auto& item : json.items()) {
      const std::string& name = item.key();
      const auto& value = item.value();
      const auto known = std::find_if(column_names().begin(), column_names().end(), [&](const auto& n) { return n.first == name; });
      if (known == column_names().end()) {
        return make_error(Errc::invalid_argument, "unknown field \"" + name.substr(0, 40) + "\" (fields: stb_id, x25519, ed25519, account)");
      }
      has[static_cast<std::size_t>(known->second)] = true;
      if (known->second == Column::stb_id) {
        if (!value.is_number_integer() || value.is_number_float()) {
          return make_error(Errc::invalid_argument, "\"stb_id\" must be a whole number from 1 to 4294967295");
        }
        if (!value.is_number_unsigned() || value.get<std::uint64_t>() == 0 || value.get<std::uint64_t>() > 0xFFFFFFFFULL) {
          return make_error(Errc::invalid_argument, "\"stb_id\" must be from 1 to 4294967295, got " + value.dump());
        }
        row.stb.stb_id = static_cast<std::uint32_t>(value.get<std::uint64_t>());
        continue;
      }
      if (!value.is_string()) return make_error(Errc::invalid_argument, "\"" + name + "\" must be a string");
      USHER_CHECK(set_field(row, known->second, value.get_ref<const std::string&>()));
    }
    for (const Column needed : {Column::stb_id, Column::x25519, Column::ed25519}) {
      if (!has[static_cast<std::size_t>(needed)]) {
        return make_error(Errc::invalid_argument, "no \"" + column_names()[static_cast<std::size_t>(needed)].first + "\" field");
      }
    }
    return std::optional<StbRow>(std::move(row));
  }

  StbFileFormat format_;
  StbFile file_;
  std::size_t line_number_ = 0;
  std::size_t left_out_ = 0;
  bool seen_content_ = false;
  bool header_failed_ = false;
  std::vector<Column> columns_;  // from the header; empty: positional
  std::unordered_map<std::uint32_t, std::size_t> first_line_;
};

template <typename Visit>
void for_each_line(std::string_view text, Visit&& visit) {
  while (!text.empty()) {
    const auto end = text.find('\n');
    visit(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
}

std::string where_in_file(const StbRow& row, std::size_t index) {
  return row.line != 0 ? "line " + std::to_string(row.line) : "row " + std::to_string(index + 1);
}

std::string listed(const std::vector<std::string>& lines, std::size_t more) {
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  if (more > 0) out += "\n  and " + std::to_string(more) + " more";
  return out;
}

}  // namespace

std::optional<StbFileFormat> stb_file_format_for(std::string_view path) {
  const auto ends_with = [&](std::string_view suffix) {
    return path.size() >= suffix.size() && path.substr(path.size() - suffix.size()) == suffix;
  };
  if (ends_with(".csv")) return StbFileFormat::csv;
  if (ends_with(".jsonl") || ends_with(".ndjson") || ends_with(".json")) return StbFileFormat::jsonl;
  return std::nullopt;
}

std::optional<StbFileFormat> parse_stb_file_format(std::string_view name) {
  if (name == "csv") return StbFileFormat::csv;
  if (name == "jsonl") return StbFileFormat::jsonl;
  return std::nullopt;
}

StbFile parse_stb_file(std::string_view text, StbFileFormat format) {
  StbFileParser parser(format);
  for_each_line(text, [&](std::string_view line) { parser.line(line); });
  return parser.finish();
}

Result<std::vector<std::uint32_t>> parse_stb_id_list(std::string_view text) {
  std::vector<std::uint32_t> ids;
  std::size_t line_number = 0;
  bool seen_content = false;
  Status failed = ok_status();
  for_each_line(text, [&](std::string_view line) {
    ++line_number;
    if (!failed) return;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const auto content = trim(line);
    if (content.empty() || content.front() == '#') return;
    const bool first = !seen_content;
    seen_content = true;
    auto field = trim(content.substr(0, content.find(',')));
    if (field.size() >= 2 && field.front() == '"' && field.back() == '"') field = field.substr(1, field.size() - 2);
    if (first && field == "stb_id") return;  // a box file's header
    auto id = parse_stb_id(field);
    if (!id) {
      failed = make_error(Errc::invalid_argument, "line " + std::to_string(line_number) + ": " + id.error().message);
      return;
    }
    ids.push_back(*id);
  });
  USHER_CHECK(failed);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

Result<std::pair<std::uint32_t, std::uint32_t>> parse_stb_range(std::string_view text) {
  const auto dash = text.find('-');
  if (dash == std::string_view::npos) return make_error(Errc::invalid_argument, "a range of STB ids is written FIRST-LAST, as 1000-1999");
  USHER_TRY(const auto first, parse_stb_id(text.substr(0, dash)));
  USHER_TRY(const auto last, parse_stb_id(text.substr(dash + 1)));
  if (last < first) return make_error(Errc::invalid_argument, "the range " + std::string(text) + " ends before it starts");
  return std::pair{first, last};
}

// ---- The engine store's bulk operations ----

Result<EntitlementStore::BulkCounts> EntitlementStore::register_stbs(std::span<const StbRow> rows, std::size_t per_transaction,
                                                                     const BulkProgress& progress) {
  per_transaction = std::max<std::size_t>(per_transaction, 1);
  // Every row checked before anything is written: the file is refused whole, naming each bad row.
  std::vector<std::string> refused;
  std::size_t more = 0;
  const auto refuse = [&](std::size_t index, const std::string& why) {
    if (refused.size() < kListedInMessage) {
      refused.push_back(where_in_file(rows[index], index) + ": " + why);
    } else {
      ++more;
    }
  };
  std::vector<bool> registered(rows.size(), false);
  std::vector<std::size_t> unchecked;  // new boxes, whose X25519 key is checked below
  std::vector<std::optional<Key256>> emm_keys(rows.size());  // theirs, by row
  {
    std::unordered_map<std::uint32_t, std::size_t> seen;
    seen.reserve(rows.size());
    auto existing = db_.prepare("SELECT x25519_public, ed25519_public FROM stbs WHERE stb_id = ?");
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& stb = rows[i].stb;
      const std::string name = "STB " + std::to_string(stb.stb_id);
      if (stb.stb_id == 0) {
        refuse(i, "STB id 0 is not an id");
        continue;
      }
      if (const auto [first, inserted] = seen.emplace(stb.stb_id, i); !inserted) {
        refuse(i, name + " is given twice (first at " + where_in_file(rows[first->second], first->second) + ")");
        continue;
      }
      if (auto account = check_account(rows[i].account); !account) {
        refuse(i, account.error().message);
        continue;
      }
      existing.reset();
      existing.bind(1, stb.stb_id);
      if (existing.step()) {
        if (existing.column_blob(0) != std::vector<std::uint8_t>(stb.x25519_public.begin(), stb.x25519_public.end()) ||
            existing.column_blob(1) != std::vector<std::uint8_t>(stb.ed25519_public.begin(), stb.ed25519_public.end())) {
          refuse(i, name + " is already registered with other keys");
        } else {
          registered[i] = true;
        }
        continue;
      }
      unchecked.push_back(i);
    }
  }
  {
    // The check register_stb makes: a key whose shared secret with the operator is degenerate
    // could never open an EMM. The EMM key derived on the way is kept for the box's key EMM, which
    // registration queues next (one X25519 agreement per box, on every core, not two on one).
    const unsigned threads = crypto_threads(unchecked.size());
    const auto own = agreements(operator_private(), threads);
    std::vector<char> unusable(unchecked.size(), 0);
    in_parallel(unchecked.size(), threads, [&](unsigned t, std::size_t k) {
      const auto& stb = rows[unchecked[k]].stb;
      auto key = derive_emm_key(own[t], stb.x25519_public, ca_system_id_, stb.stb_id);
      if (key) {
        emm_keys[unchecked[k]] = std::move(*key);
      } else {
        unusable[k] = 1;
      }
    });
    for (std::size_t k = 0; k < unchecked.size(); ++k) {
      if (unusable[k] != 0) refuse(unchecked[k], "STB " + std::to_string(rows[unchecked[k]].stb.stb_id) + " has an unusable X25519 public key");
    }
  }
  if (!refused.empty()) {
    return make_error(Errc::invalid_argument, std::to_string(refused.size() + more) + " of " + std::to_string(rows.size()) +
                                                  " boxes refused, nothing registered:" + listed(refused, more));
  }

  BulkCounts counts;
  const auto now = static_cast<std::int64_t>(unix_now());
  for (std::size_t start = 0; start < rows.size(); start += per_transaction) {
    const std::size_t end = std::min(rows.size(), start + per_transaction);
    BulkCounts chunk;
    try {
      sql::Transaction tx(db_);
      auto insert = db_.prepare(
          "INSERT INTO stbs (stb_id, x25519_public, ed25519_public, registered, account) VALUES (?, ?, ?, ?, ?) "
          "ON CONFLICT (stb_id) DO NOTHING");
      auto existing = db_.prepare("SELECT x25519_public, ed25519_public FROM stbs WHERE stb_id = ?");
      for (std::size_t i = start; i < end; ++i) {
        const auto& row = rows[i];
        if (registered[i]) {
          ++chunk.skipped;
          continue;
        }
        insert.reset();
        insert.bind(1, row.stb.stb_id).bind(2, row.stb.x25519_public).bind(3, row.stb.ed25519_public).bind(4, now);
        if (row.account.empty()) {
          insert.bind_null(5);
        } else {
          insert.bind(5, row.account);
        }
        insert.run();
        if (db_.changes() == 1) {
          if (emm_keys[i]) emm_keys_.insert_or_assign(row.stb.stb_id, std::move(*emm_keys[i]));
          USHER_CHECK(on_stb_registered(row.stb.stb_id));
          ++chunk.added;
          continue;
        }
        // Registered since the check, by another command: the same keys are a skip, others refuse
        // this transaction (the ones before it stay).
        existing.reset();
        existing.bind(1, row.stb.stb_id);
        if (!existing.step() ||
            existing.column_blob(0) != std::vector<std::uint8_t>(row.stb.x25519_public.begin(), row.stb.x25519_public.end()) ||
            existing.column_blob(1) != std::vector<std::uint8_t>(row.stb.ed25519_public.begin(), row.stb.ed25519_public.end())) {
          return make_error(Errc::already_exists, where_in_file(row, i) + ": STB " + std::to_string(row.stb.stb_id) +
                                                      " was registered with other keys meanwhile; " + std::to_string(counts.added) +
                                                      " boxes registered before it");
        }
        ++chunk.skipped;
      }
      tx.commit();
    } catch (const std::exception& e) {
      return make_error(Errc::storage, std::string("registering boxes: ") + e.what() + " (" + std::to_string(counts.added) +
                                           " registered before; run again to resume)");
    }
    counts.added += chunk.added;
    counts.skipped += chunk.skipped;
    if (progress && !progress(counts)) break;
  }
  return counts;
}

std::vector<std::uint32_t> EntitlementStore::stb_ids(std::uint32_t first, std::uint32_t last) {
  std::vector<std::uint32_t> out;
  auto st = db_.prepare("SELECT stb_id FROM stbs WHERE stb_id >= ? AND stb_id <= ? ORDER BY stb_id");
  st.bind(1, std::int64_t{first}).bind(2, std::int64_t{last});
  while (st.step()) out.push_back(static_cast<std::uint32_t>(st.column_int(0)));
  return out;
}

Result<EntitlementStore::BulkCounts> EntitlementStore::grant_many(std::span<const std::uint32_t> stbs,
                                                                  std::span<const std::uint16_t> services, std::uint64_t not_before,
                                                                  std::uint64_t not_after, std::size_t per_transaction,
                                                                  const BulkProgress& progress) {
  per_transaction = std::max<std::size_t>(per_transaction, 1);
  if (not_after <= not_before) return make_error(Errc::invalid_argument, "a grant must end after it starts");
  if (not_after > kLatestGrantEnd) {
    return make_error(Errc::invalid_argument, "a grant cannot end after 9999-12-31 (got unix time " + std::to_string(not_after) + ")");
  }
  if (services.empty()) return make_error(Errc::invalid_argument, "no service to grant");
  std::vector<EmmGrant> grants;
  for (const auto service : services) {
    if (std::any_of(grants.begin(), grants.end(), [&](const EmmGrant& g) { return g.service_id == service; })) continue;
    USHER_TRY(auto key, service_key(service));
    grants.push_back({service, key.key_version, std::move(key.key), not_before, not_after});
  }
  std::vector<std::uint32_t> ids(stbs.begin(), stbs.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  {
    std::vector<std::string> missing;
    std::size_t more = 0;
    auto exists = db_.prepare("SELECT 1 FROM stbs WHERE stb_id = ?");
    for (const auto id : ids) {
      exists.reset();
      exists.bind(1, id);
      if (exists.step()) continue;
      if (missing.size() < kListedInMessage) {
        missing.push_back(std::to_string(id));
      } else {
        ++more;
      }
    }
    if (!missing.empty()) {
      std::string list;
      for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
      if (more > 0) list += " and " + std::to_string(more) + " more";
      return make_error(Errc::not_found, std::to_string(missing.size() + more) + " of " + std::to_string(ids.size()) +
                                             " STBs are not registered (register them first), nothing granted: " + list);
    }
  }

  BulkCounts counts;
  for (std::size_t start = 0; start < ids.size(); start += per_transaction) {
    const std::size_t end = std::min(ids.size(), start + per_transaction);
    BulkCounts chunk;
    try {
      sql::Transaction tx(db_);
      auto held = db_.prepare("SELECT not_before, not_after, revoked FROM grants WHERE stb_id = ? AND service_id = ?");
      auto upsert = db_.prepare(
          "INSERT INTO grants (stb_id, service_id, not_before, not_after, revoked) VALUES (?, ?, ?, ?, 0) "
          "ON CONFLICT (stb_id, service_id) DO UPDATE SET not_before = excluded.not_before, "
          "not_after = excluded.not_after, revoked = 0");
      // The boxes of this transaction by the services they need (all of the package's, mostly):
      // one member grant per group carries them together (a package's renewal is one EMM per
      // group, not one per group and service).
      std::map<std::vector<std::uint16_t>, std::vector<std::uint32_t>> needing;
      for (std::size_t i = start; i < end; ++i) {
        bool granted_any = false;
        std::vector<std::uint16_t> needed;
        for (std::size_t g = 0; g < grants.size(); ++g) {
          held.reset();
          held.bind(1, ids[i]).bind(2, grants[g].service_id);
          if (held.step() && static_cast<std::uint64_t>(held.column_int(0)) == not_before &&
              static_cast<std::uint64_t>(held.column_int(1)) == not_after && held.column_int(2) == 0) {
            continue;
          }
          upsert.reset();
          upsert.bind(1, ids[i]).bind(2, grants[g].service_id).bind(3, static_cast<std::int64_t>(not_before))
              .bind(4, static_cast<std::int64_t>(not_after));
          upsert.run();
          needed.push_back(grants[g].service_id);
          granted_any = true;
        }
        if (granted_any) needing[needed].push_back(ids[i]);
        ++(granted_any ? chunk.added : chunk.skipped);
      }
      for (const auto& [set, boxes] : needing) USHER_CHECK(queue_group_grants(boxes, set, not_before, not_after));
      tx.commit();
    } catch (const std::exception& e) {
      return make_error(Errc::storage, std::string("granting: ") + e.what() + " (" + std::to_string(counts.added) +
                                           " boxes granted before; run again to resume)");
    }
    counts.added += chunk.added;
    counts.skipped += chunk.skipped;
    if (progress && !progress(counts)) break;
  }
  return counts;
}


}  // namespace usher::entitlement
