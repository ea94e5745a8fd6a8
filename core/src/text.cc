#include "usher/core/text.h"

#include <cstdint>

namespace usher {
namespace {

// Decodes the code point at text[i]; its length in bytes, 0 when the bytes there are not UTF-8.
std::size_t decode(std::string_view text, std::size_t i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  std::size_t len = 0;
  char32_t min = 0;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool combining(char32_t cp) {
  return (cp >= 0x0300 && cp <= 0x036F) || (cp >= 0x1AB0 && cp <= 0x1AFF) || (cp >= 0x1DC0 && cp <= 0x1DFF) ||
         (cp >= 0x20D0 && cp <= 0x20FF) || (cp >= 0xFE20 && cp <= 0xFE2F) || cp == 0x200B || cp == 0x200D ||
         (cp >= 0xFE00 && cp <= 0xFE0F);
}

// East Asian Wide (W) and Fullwidth (F) ranges, simplified to the blocks that matter for titles and names.
bool wide(char32_t cp) {
  return (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0x303E) || (cp >= 0x3041 && cp <= 0x33FF) ||
         (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xA000 && cp <= 0xA4CF) ||
         (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFE30 && cp <= 0xFE4F) ||
         (cp >= 0xFF00 && cp <= 0xFF60) || (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F) ||
         (cp >= 0x1F900 && cp <= 0x1F9FF) || (cp >= 0x20000 && cp <= 0x3FFFD);
}

std::size_t width_of(char32_t cp) { return combining(cp) ? 0 : wide(cp) ? 2 : 1; }

// The prefix of `text` that fits in `columns`, and its width.
std::pair<std::string_view, std::size_t> fit(std::string_view text, std::size_t columns) {
  std::size_t i = 0, width = 0;
  while (i < text.size()) {
    char32_t cp = 0;
    auto len = decode(text, i, cp);
    const std::size_t w = len == 0 ? 1 : width_of(cp);
    if (len == 0) len = 1;
    if (width + w > columns) break;
    width += w;
    i += len;
  }
  return {text.substr(0, i), width};
}

}  // namespace

bool valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    const auto len = decode(text, i, cp);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::size_t display_width(std::string_view text) {
  std::size_t width = 0;
  for (std::size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    const auto len = decode(text, i, cp);
    width += len == 0 ? 1 : width_of(cp);
    i += len == 0 ? 1 : len;
  }
  return width;
}

std::string pad_right(std::string_view text, std::size_t columns) {
  const auto width = display_width(text);
  return std::string(text) + std::string(width < columns ? columns - width : 0, ' ');
}

std::string pad_left(std::string_view text, std::size_t columns) {
  const auto width = display_width(text);
  return std::string(width < columns ? columns - width : 0, ' ') + std::string(text);
}

std::string cut_to_width(std::string_view text, std::size_t columns) { return std::string(fit(text, columns).first); }

}  // namespace usher
