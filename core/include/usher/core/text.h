// Text as people read it: UTF-8 checked, and its width on a terminal counted in columns rather
// than bytes, so tables with names like "Köhler, André" or Japanese titles line up.
//
//   std::printf("%s|\n", usher::pad_right("Köhler", 10).c_str());  // 6 columns and 4 spaces
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace usher {

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view text);

// Columns `text` takes on a terminal: one per code point, two for East Asian wide and fullwidth
// ones (CJK, Hangul, fullwidth forms, most emoji), none for combining marks. Bytes that are not
// UTF-8 count one column each.
std::size_t display_width(std::string_view text);

// `text` followed by spaces up to `columns` columns (as printf's "%-*s" would, counting columns
// instead of bytes); text already wider is left whole. pad_left puts the spaces first (amounts).
std::string pad_right(std::string_view text, std::size_t columns);
std::string pad_left(std::string_view text, std::size_t columns);

// The longest prefix of `text` of whole code points that fits in `columns` columns.
std::string cut_to_width(std::string_view text, std::size_t columns);

}  // namespace usher
