// Reading QR codes back the way a handset would: the image goes through zbar's `zbarimg` (Debian
// zbar-tools), a real QR reader that knows nothing of how we drew the code.
#pragma once

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cli_process.h"

namespace usher::testing {

// Turns the half-block QR code `usher stb buy --pay-by-handset` prints into a PGM image, as the
// terminal shows it: a full block is two light modules, a space two dark ones, an upper half block
// light over dark, a lower half block dark over light. Lines without block characters are not part
// of the code. Each module becomes `scale` x `scale` pixels. Empty when no code is found.
inline std::string terminal_qr_to_pgm(const std::string& output, int scale = 8) {
  static const std::string kFull = "\u2588", kUpper = "\u2580", kLower = "\u2584";
  std::vector<std::vector<bool>> light_rows;  // module rows, true = light
  std::size_t line_start = 0;
  while (line_start < output.size()) {
    auto line_end = output.find('\n', line_start);
    if (line_end == std::string::npos) line_end = output.size();
    const std::string line = output.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    if (line.find(kFull) == std::string::npos) continue;
    std::vector<bool> top, bottom;
    for (std::size_t i = 0; i < line.size();) {
      if (line.compare(i, kFull.size(), kFull) == 0) {
        top.push_back(true), bottom.push_back(true), i += kFull.size();
      } else if (line.compare(i, kUpper.size(), kUpper) == 0) {
        top.push_back(true), bottom.push_back(false), i += kUpper.size();
      } else if (line.compare(i, kLower.size(), kLower) == 0) {
        top.push_back(false), bottom.push_back(true), i += kLower.size();
      } else if (line[i] == ' ') {
        top.push_back(false), bottom.push_back(false), i += 1;
      } else {
        return "";  // something else inside the code: not what a terminal would show as one
      }
    }
    light_rows.push_back(top);
    light_rows.push_back(bottom);
  }
  if (light_rows.empty()) return "";
  const std::size_t width = light_rows.front().size();
  for (const auto& row : light_rows) {
    if (row.size() != width) return "";
  }
  const std::size_t w = width * static_cast<std::size_t>(scale), h = light_rows.size() * static_cast<std::size_t>(scale);
  std::string pgm = "P5\n" + std::to_string(w) + " " + std::to_string(h) + "\n255\n";
  for (std::size_t py = 0; py < h; ++py) {
    for (std::size_t px = 0; px < w; ++px) pgm += light_rows[py / scale][px / scale] ? '\xff' : '\0';
  }
  return pgm;
}

// Decodes the one QR code in image file `path` with zbarimg; what it carries, or "" with `why` set.
inline std::string read_qr_image(const std::string& path, std::string* why = nullptr) {
  // zbarimg's stderr (its own complaints, and ImageMagick's about a missing D-Bus) is kept apart
  // from what it read, and shown only when it read nothing.
  const std::string errors = path + ".zbarimg-errors";
  auto r = run("(zbarimg --quiet --raw -Sdisable -Sqrcode.enable " + path + " 2>" + errors + ")");
  if (r.status != 0) {
    if (why != nullptr) {
      std::ifstream e(errors);
      *why = "zbarimg exit " + std::to_string(r.status) + ": " + r.output +
             std::string(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
    }
    return "";
  }
  std::string text = r.output;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

}  // namespace usher::testing
