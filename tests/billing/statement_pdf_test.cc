// Folio PDFs read back with poppler's pdftotext: every line of a 150-line folio, the UTF-8 name, the
// header, the column titles, the page numbers and the total. The hand-written PDF before printed
// "Köhler, André" as "K??hler, Andr??" and lost the lines that ran off the bottom of each page.
#include <gtest/gtest.h>

#include <cstdio>
#include <sstream>

#include "cli_process.h"
#include "temp_dir.h"
#include "usher/billing/billing_store.h"
#include "usher/core/text.h"

namespace usher::billing {
namespace {

using testing::run;
using testing::TempDir;
using testing::write_file;

constexpr entitlement::Currency kEur{'E', 'U', 'R'};

Statement folio_of(std::size_t n) {
  Statement s;
  s.title = "Folio 42: Köhler, André (guest G-7), room 102";
  s.header = {{"Hotel", "Hôtel Zürich Süd"}, {"Guest", "Köhler, André (guest G-7)"}, {"Room", "102"}, {"Stay", "42, in 2026-11-20 14:00 UTC, checked in"}};
  Money total{0, kEur};
  for (std::size_t i = 1; i <= n; ++i) {
    StatementLine l;
    l.time = 1'795'000'000 + i * 60;
    l.stb_id = 1001;
    l.kind = StatementLineKind::folio;
    char title[64];
    std::snprintf(title, sizeof(title), "Film %03zu Ça commence", i);
    l.description = title;
    l.amount = {static_cast<std::int64_t>(100 + i), kEur};
    total.minor += l.amount.minor;
    s.lines.push_back(l);
  }
  s.totals.push_back(total);
  return s;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(StatementPdfTest, EveryLineNameHeaderPageNumberAndTotalReadBack) {
  TempDir dir;
  const auto folio = folio_of(150);
  const auto pdf = folio.pdf();
  ASSERT_EQ(pdf.rfind("%PDF-", 0), 0u);
  ASSERT_TRUE(write_file(dir.file("folio.pdf"), pdf));
  auto info = run("pdfinfo " + dir.file("folio.pdf"));
  ASSERT_EQ(info.status, 0) << info.output;
  const auto pages_at = info.output.find("Pages:");
  ASSERT_NE(pages_at, std::string::npos) << info.output;
  const int pages = std::stoi(info.output.substr(pages_at + 6));
  EXPECT_GE(pages, 3);

  auto text = run("pdftotext -layout -enc UTF-8 " + dir.file("folio.pdf") + " -");
  ASSERT_EQ(text.status, 0) << text.output;
  const auto lines = lines_of(text.output);
  // Every item once, with its amount on the same line, in order.
  std::size_t last_at = 0;
  for (std::size_t i = 1; i <= 150; ++i) {
    char film[32];
    std::snprintf(film, sizeof(film), "Film %03zu Ça commence", i);
    const auto amount = entitlement::format_money({static_cast<std::int64_t>(100 + i), kEur});
    std::size_t found = 0, at = 0;
    for (std::size_t k = 0; k < lines.size(); ++k) {
      if (lines[k].find(film) == std::string::npos) continue;
      ++found, at = k;
      EXPECT_NE(lines[k].find(amount), std::string::npos) << lines[k];
      EXPECT_NE(lines[k].find("folio"), std::string::npos) << lines[k];
    }
    EXPECT_EQ(found, 1u) << film;
    EXPECT_GT(at, last_at) << film;
    last_at = at;
  }
  // The header and column titles on every page, the name intact, the pages numbered.
  auto count = [&](const std::string& needle) {
    std::size_t n = 0;
    for (auto at = text.output.find(needle); at != std::string::npos; at = text.output.find(needle, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("Hotel: Hôtel Zürich Süd"), static_cast<std::size_t>(pages));
  EXPECT_EQ(count("Guest: Köhler, André (guest G-7)"), static_cast<std::size_t>(pages));
  EXPECT_EQ(count("Room: 102"), static_cast<std::size_t>(pages));
  EXPECT_EQ(count("Stay: 42, in 2026-11-20 14:00 UTC"), static_cast<std::size_t>(pages));
  EXPECT_EQ(count("Description"), static_cast<std::size_t>(pages));
  EXPECT_EQ(count("Amount"), static_cast<std::size_t>(pages));
  EXPECT_EQ(text.output.find("K??hler"), std::string::npos);
  for (int p = 1; p <= pages; ++p) {
    EXPECT_EQ(count("Page " + std::to_string(p) + " of " + std::to_string(pages)), 1u) << p;
  }
  // The total right-aligned with the amounts: every "EUR" ends at the same x (pdftotext -bbox gives
  // each word's box), and the total is there.
  EXPECT_EQ(count("Total"), 1u);
  EXPECT_NE(text.output.find(entitlement::format_money(folio.totals[0])), std::string::npos);
  auto boxes = run("pdftotext -bbox " + dir.file("folio.pdf") + " -");
  ASSERT_EQ(boxes.status, 0);
  std::vector<double> ends;
  for (const auto& l : lines_of(boxes.output)) {
    if (l.find(">EUR</word>") == std::string::npos) continue;
    const auto at = l.find("xMax=\"");
    ASSERT_NE(at, std::string::npos) << l;
    ends.push_back(std::stod(l.substr(at + 6)));
  }
  ASSERT_EQ(ends.size(), 151u);  // 150 items and the total
  for (double e : ends) EXPECT_NEAR(e, ends.front(), 0.5);
}

// The text statement counts columns, not bytes: every item and the total end in the same column
// though the titles hold "Ç" (two bytes); a long UTF-8 title is cut between characters.
TEST(StatementPdfTest, TextStatementLinesUpUtf8Titles) {
  auto folio = folio_of(3);
  folio.lines[1].description = "Über ein Mädchen, das Köhler hieß und mehr";
  std::vector<std::size_t> widths;
  for (const auto& l : lines_of(folio.text())) {
    if (l.find(" EUR") != std::string::npos) widths.push_back(display_width(l));
  }
  ASSERT_EQ(widths.size(), 4u) << folio.text();
  for (auto w : widths) EXPECT_EQ(w, widths.front()) << folio.text();
  EXPECT_TRUE(valid_utf8(folio.text()));
}

TEST(StatementPdfTest, AnEmptyStatementSaysNothingOnOnePage) {
  TempDir dir;
  Statement s;
  s.title = "STB 1001";
  ASSERT_TRUE(write_file(dir.file("empty.pdf"), s.pdf()));
  auto text = run("pdftotext -layout -enc UTF-8 " + dir.file("empty.pdf") + " -");
  ASSERT_EQ(text.status, 0) << text.output;
  EXPECT_NE(text.output.find("(nothing)"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("Page 1 of 1"), std::string::npos) << text.output;
}

}  // namespace
}  // namespace usher::billing
