// The F3 QR code: what a real reader (zbar) decodes from the drawn symbol is exactly what
// `usher wallet approve` accepts, and the symbol has its 4-module quiet zone.
#include "usher/stb/qr.h"

#include <gtest/gtest.h>

#include <array>

#include "qr_reader.h"
#include "temp_dir.h"
#include "usher/entitlement/request_code.h"

namespace usher::stb {
namespace {

using testing::read_qr_image;
using testing::TempDir;
using testing::terminal_qr_to_pgm;
using testing::write_file;

std::string sample_code() {
  std::array<std::uint8_t, 32> raw{};
  raw.fill(0x5A);
  const Key256 key{std::span<const std::uint8_t, 32>(raw)};
  return entitlement::make_request_code({1001, 8, 1'800'000'000, 0xBEEF}, entitlement::request_code_key(key));
}

TEST(QrTest, CarriesExactlyTheRequestCodeThatApproveReads) {
  const auto code = sample_code();
  const auto text = purchase_qr_text(code);
  EXPECT_EQ(text, code);
  auto read = entitlement::read_request_code(text);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(read->stb_id, 1001u);
  EXPECT_EQ(read->event_id, 8u);
  // What the STB used to put in the QR code: the handset's approve refuses it.
  EXPECT_FALSE(entitlement::read_request_code("usher:buy:" + code));
}

TEST(QrTest, HasAFourModuleQuietZoneOnEverySide) {
  auto qr = make_qr(purchase_qr_text(sample_code()));
  ASSERT_TRUE(qr) << qr.error().message;
  ASSERT_GT(qr->size, 2 * kQrQuietZone + 20);
  for (int i = 0; i < qr->size; ++i) {
    for (int q = 0; q < kQrQuietZone; ++q) {
      EXPECT_FALSE(qr->is_dark(i, q)) << "top, x " << i;
      EXPECT_FALSE(qr->is_dark(i, qr->size - 1 - q)) << "bottom, x " << i;
      EXPECT_FALSE(qr->is_dark(q, i)) << "left, y " << i;
      EXPECT_FALSE(qr->is_dark(qr->size - 1 - q, i)) << "right, y " << i;
    }
  }
  // The symbol starts right after it: the finder patterns' dark corners.
  const int last = qr->size - 1 - kQrQuietZone;
  EXPECT_TRUE(qr->is_dark(kQrQuietZone, kQrQuietZone));
  EXPECT_TRUE(qr->is_dark(last, kQrQuietZone));
  EXPECT_TRUE(qr->is_dark(kQrQuietZone, last));
}

TEST(QrTest, ZbarReadsTheImageBackAsTheCode) {
  TempDir dir;
  const auto code = sample_code();
  auto qr = make_qr(purchase_qr_text(code));
  ASSERT_TRUE(qr) << qr.error().message;
  for (int scale : {3, 8}) {
    SCOPED_TRACE(scale);
    const auto path = dir.file("qr-" + std::to_string(scale) + ".pgm");
    ASSERT_TRUE(write_file(path, render_qr_pgm(*qr, scale)));
    std::string why;
    const auto read = read_qr_image(path, &why);
    EXPECT_EQ(read, code) << why;
  }
}

TEST(QrTest, ZbarReadsTheTerminalDrawingBackAsTheCode) {
  TempDir dir;
  const auto code = sample_code();
  const auto drawn = render_qr(purchase_qr_text(code));
  const auto pgm = terminal_qr_to_pgm(drawn);
  ASSERT_FALSE(pgm.empty()) << drawn;
  const auto path = dir.file("terminal.pgm");
  ASSERT_TRUE(write_file(path, pgm));
  std::string why;
  EXPECT_EQ(read_qr_image(path, &why), code) << why;
  // The first two lines are quiet zone (4 module rows): nothing but full blocks.
  const std::string full_line = drawn.substr(0, drawn.find('\n'));
  EXPECT_EQ(full_line.find(' '), std::string::npos);
  EXPECT_EQ(full_line.find("\u2580"), std::string::npos);
  EXPECT_EQ(full_line.find("\u2584"), std::string::npos);
}

}  // namespace
}  // namespace usher::stb
