#include "usher/stb/qr.h"

#include <qrencode.h>

#include <memory>

namespace usher::stb {

std::string purchase_qr_text(const std::string& request_code) { return request_code; }

Result<QrCode> make_qr(const std::string& text) {
  struct Free {
    void operator()(QRcode* q) const { QRcode_free(q); }
  };
  std::unique_ptr<QRcode, Free> symbol(QRcode_encodeString(text.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1));
  if (!symbol) return make_error(Errc::invalid_argument, "QR code: libqrencode cannot encode this text");
  const int w = symbol->width;
  QrCode qr;
  qr.size = w + 2 * kQrQuietZone;
  qr.dark.assign(static_cast<std::size_t>(qr.size) * static_cast<std::size_t>(qr.size), false);
  for (int y = 0; y < w; ++y) {
    for (int x = 0; x < w; ++x) {
      // libqrencode's bit 0 of each module byte is its colour (1 = dark); the rest says what it is.
      const bool dark = (symbol->data[y * w + x] & 1) != 0;
      qr.dark[static_cast<std::size_t>((y + kQrQuietZone) * qr.size + x + kQrQuietZone)] = dark;
    }
  }
  return qr;
}

std::string render_qr_terminal(const QrCode& qr) {
  std::string out;
  for (int y = 0; y < qr.size; y += 2) {
    for (int x = 0; x < qr.size; ++x) {
      const bool top = qr.is_dark(x, y);
      const bool bottom = qr.is_dark(x, y + 1);  // past the last row: light, more quiet zone
      out += !top && !bottom ? "\u2588" : !top ? "\u2580" : !bottom ? "\u2584" : " ";
    }
    out += "\n";
  }
  return out;
}

std::string render_qr_pgm(const QrCode& qr, int pixels_per_module) {
  const int side = qr.size * pixels_per_module;
  std::string out = "P5\n" + std::to_string(side) + " " + std::to_string(side) + "\n255\n";
  out.reserve(out.size() + static_cast<std::size_t>(side) * static_cast<std::size_t>(side));
  for (int py = 0; py < side; ++py) {
    for (int px = 0; px < side; ++px) {
      out += static_cast<char>(qr.is_dark(px / pixels_per_module, py / pixels_per_module) ? 0 : 255);
    }
  }
  return out;
}

std::string render_qr(const std::string& text) {
  auto qr = make_qr(text);
  if (!qr) return "(QR code unavailable: " + qr.error().message + ")\n";
  return render_qr_terminal(*qr);
}

}  // namespace usher::stb
