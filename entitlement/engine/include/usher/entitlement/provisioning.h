// Bulk provisioning: the files a subscriber-management system exports to register many set-top
// boxes at once (docs/provisioning.md), and the lists of box ids a bulk grant names.
//
// A box file is read and checked whole before anything is imported: parse_stb_file() returns every
// row and every problem, each with its line number, and EntitlementStore::register_stbs() refuses
// rows that clash with the store. Two formats:
//   CSV          stb_id,x25519_hex,ed25519_hex[,account]    (an optional header line names the columns)
//   JSON lines   {"stb_id":1001,"x25519":"hex","ed25519":"hex","account":"name"}
//
//   auto file = parse_stb_file(text, StbFileFormat::csv);
//   if (file.problems.empty()) auto counts = store.register_stbs(file.rows).value();
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "usher/core/result.h"
#include "usher/entitlement/store.h"

namespace usher::entitlement {

enum class StbFileFormat { csv, jsonl };

// The format a file's name says: .csv is CSV; .jsonl, .ndjson and .json are JSON lines; nullopt for
// anything else (stdin included): the caller must be told.
std::optional<StbFileFormat> stb_file_format_for(std::string_view path);
// "csv" or "jsonl" (as the --format option spells them); nullopt for anything else.
std::optional<StbFileFormat> parse_stb_file_format(std::string_view name);

// A line of a box file that could not be used.
struct StbFileProblem {
  std::size_t line = 0;  // 1-based
  std::string message;
};

// What a whole box file holds. `problems` is empty when every line is usable; it lists every bad
// line otherwise (up to kMaxProblems, then one more line saying how many were left out).
struct StbFile {
  static constexpr std::size_t kMaxProblems = 100;
  std::vector<StbRow> rows;
  std::vector<StbFileProblem> problems;
};

// Parses and checks every line: the id (decimal, 1 to 4294967295), both keys (64 hex digits each),
// the columns a CSV header names (stb_id, x25519, ed25519 and account, in any order; a row may leave
// out an account named last), the fields of
// a JSON line, and ids given twice. Blank lines and lines starting with '#' are ignored; CRLF line
// ends are accepted. Checks nothing against a store.
StbFile parse_stb_file(std::string_view text, StbFileFormat format);

// A list of box ids, as `usher entitlement grant --stbs-file` reads it: one id per line, or the
// first field of each line of a box file (so the file that was imported can name the boxes to
// grant); a header line, blank lines and '#' comments are skipped. Errc::invalid_argument naming the
// first bad line. Ids given twice are kept once.
Result<std::vector<std::uint32_t>> parse_stb_id_list(std::string_view text);

// "1000-1999" (inclusive, first <= last, both 1 to 4294967295).
Result<std::pair<std::uint32_t, std::uint32_t>> parse_stb_range(std::string_view text);

}  // namespace usher::entitlement
