// QR codes the STB puts on screen (flow F3): the viewer's handset scans the request code instead of
// typing it. The code carries exactly the text `usher wallet approve` takes (the request code as the
// STB prints it), drawn with the standard quiet zone of 4 light modules on every side (ISO/IEC 18004).
//
//   auto qr = stb::make_qr(stb::purchase_qr_text(code));
//   if (qr) std::fputs(stb::render_qr_terminal(*qr).c_str(), stdout);
#pragma once

#include <string>
#include <vector>

#include "usher/core/result.h"

namespace usher::stb {

// Light modules around the symbol on every side: what scanners need to find its edges.
inline constexpr int kQrQuietZone = 4;

// A QR symbol as a square of modules, the quiet zone included.
struct QrCode {
  int size = 0;             // modules per side, quiet zone included
  std::vector<bool> dark;   // size * size, row by row
  [[nodiscard]] bool is_dark(int x, int y) const {
    return x >= 0 && y >= 0 && x < size && y < size && dark[static_cast<std::size_t>(y * size + x)];
  }
};

// What the F3 QR code carries for a request code: the code exactly as `usher wallet approve CODE`
// accepts it, so what a handset scans can be passed on unchanged.
std::string purchase_qr_text(const std::string& request_code);

// Encodes `text` (byte mode, error correction level M) with libqrencode.
Result<QrCode> make_qr(const std::string& text);

// For a terminal: Unicode half blocks, two module rows per line. The light modules are printed
// (full block), the dark ones left blank, so the symbol reads right on a dark terminal.
std::string render_qr_terminal(const QrCode& qr);

// A binary PGM (P5) image, `pixels_per_module` pixels per module, dark modules black: what a
// screen shows and a camera sees.
std::string render_qr_pgm(const QrCode& qr, int pixels_per_module);

// make_qr then render_qr_terminal; a line saying so when the text cannot be encoded.
std::string render_qr(const std::string& text);

}  // namespace usher::stb
