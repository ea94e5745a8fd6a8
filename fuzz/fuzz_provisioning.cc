// Box files of bulk provisioning (`usher entitlement device import`), as a subscriber-management
// system exports them: byte 0 picks CSV or JSON lines, the rest is the file. Also the id lists and
// ranges of `grant --stbs-file / --stb-range`. Beyond not crashing, what the import relies on must
// hold for any input: every row has its line, a real id, and no id twice.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <unordered_set>

#include "usher/entitlement/provisioning.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace usher::entitlement;
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto file = parse_stb_file(text, (data[0] & 1) != 0 ? StbFileFormat::jsonl : StbFileFormat::csv);
  std::unordered_set<std::uint32_t> ids;
  std::size_t last_line = 0;
  for (const auto& row : file.rows) {
    if (row.stb.stb_id == 0 || row.line <= last_line || !ids.insert(row.stb.stb_id).second) __builtin_trap();
    last_line = row.line;
  }
  if (file.problems.size() > StbFile::kMaxProblems + 1) __builtin_trap();
  if (const auto list = parse_stb_id_list(text)) {
    for (std::size_t i = 0; i < list->size(); ++i) {
      if ((*list)[i] == 0 || (i > 0 && (*list)[i] <= (*list)[i - 1])) __builtin_trap();
    }
  }
  if (const auto range = parse_stb_range(text)) {
    if (range->first == 0 || range->second < range->first) __builtin_trap();
  }
  return 0;
}
