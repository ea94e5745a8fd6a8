// Statement::pdf(): the statement typeset with Pango on a cairo PDF surface, so UTF-8 names come out
// as written (the hand-written PDF 1.4 before it printed "Köhler" as "K??hler" and let lines run off
// the bottom of a page). Each page repeats the title, the header fields and the column titles, and
// says which page of how many it is; amounts are right-aligned in one column with the totals.
#include <cairo-pdf.h>
#include <pango/pangocairo.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "usher/billing/billing_store.h"
#include "usher/core/clock.h"

namespace usher::billing {
namespace {

// A4 portrait, in points.
constexpr double kPageWidth = 595.0;
constexpr double kPageHeight = 842.0;
constexpr double kMargin = 42.0;
constexpr double kContentWidth = kPageWidth - 2 * kMargin;
constexpr double kLineHeight = 13.0;
constexpr double kFooterHeight = 2 * kLineHeight;

struct Column {
  const char* title;
  double x;      // from the left margin
  double width;
  bool right;    // right-aligned (amounts)
};
constexpr Column kColumns[] = {
    {"Date (UTC)", 0, 88, false}, {"STB", 92, 44, false}, {"Kind", 140, 62, false},
    {"Description", 206, 200, false}, {"Amount", 410, kContentWidth - 410, true},
};
constexpr std::size_t kColumnCount = std::size(kColumns);

struct Row {
  std::array<std::string, kColumnCount> cells;
  bool emphasised = false;  // totals
  bool rule_above = false;
};

struct CairoFree {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
  void operator()(cairo_t* c) const { cairo_destroy(c); }
  void operator()(PangoLayout* l) const { g_object_unref(l); }
  void operator()(PangoFontDescription* f) const { pango_font_description_free(f); }
};

cairo_status_t append_bytes(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

class Typesetter {
 public:
  explicit Typesetter(cairo_t* cr)
      : cr_(cr), layout_(pango_cairo_create_layout(cr)), regular_(pango_font_description_from_string("DejaVu Sans 8.5")),
        bold_(pango_font_description_from_string("DejaVu Sans Bold 8.5")),
        title_font_(pango_font_description_from_string("DejaVu Sans Bold 12")) {}

  // Draws `text` at (x, y) from the page's left margin; cut with an ellipsis beyond `width`, or
  // wrapped when `wrap`. Returns the height used.
  double draw(const std::string& text, double x, double y, double width, bool right, const PangoFontDescription* font,
              bool wrap = false) {
    set(text, width, right, font, wrap);
    cairo_move_to(cr_, kMargin + x, y);
    pango_cairo_show_layout(cr_, layout_.get());
    return height();
  }
  double measure(const std::string& text, double width, const PangoFontDescription* font, bool wrap) {
    set(text, width, false, font, wrap);
    return height();
  }
  const PangoFontDescription* regular() const { return regular_.get(); }
  const PangoFontDescription* bold() const { return bold_.get(); }
  const PangoFontDescription* title() const { return title_font_.get(); }

 private:
  void set(const std::string& text, double width, bool right, const PangoFontDescription* font, bool wrap) {
    pango_layout_set_font_description(layout_.get(), font);
    pango_layout_set_width(layout_.get(), static_cast<int>(width * PANGO_SCALE));
    pango_layout_set_alignment(layout_.get(), right ? PANGO_ALIGN_RIGHT : PANGO_ALIGN_LEFT);
    pango_layout_set_ellipsize(layout_.get(), wrap ? PANGO_ELLIPSIZE_NONE : PANGO_ELLIPSIZE_END);
    pango_layout_set_wrap(layout_.get(), PANGO_WRAP_WORD_CHAR);
    pango_layout_set_text(layout_.get(), text.c_str(), static_cast<int>(text.size()));
  }
  double height() {
    int w = 0, h = 0;
    pango_layout_get_size(layout_.get(), &w, &h);
    return static_cast<double>(h) / PANGO_SCALE;
  }

  cairo_t* cr_;
  std::unique_ptr<PangoLayout, CairoFree> layout_;
  std::unique_ptr<PangoFontDescription, CairoFree> regular_, bold_, title_font_;
};

std::vector<Row> rows_of(const Statement& s) {
  std::vector<Row> rows;
  for (const auto& l : s.lines) {
    rows.push_back({{format_utc(l.time, "%Y-%m-%d %H:%M"), std::to_string(l.stb_id), to_string(l.kind), l.description,
                     entitlement::format_money(l.amount)}});
  }
  if (s.lines.empty()) rows.push_back({{"", "", "", "(nothing)", ""}});
  bool first = true;
  for (const auto& t : s.totals) {
    rows.push_back({{"", "", "", "Total", entitlement::format_money(t)}, true, first});
    first = false;
  }
  return rows;
}

}  // namespace

std::string Statement::pdf() const {
  std::string bytes;
  std::unique_ptr<cairo_surface_t, CairoFree> surface(
      cairo_pdf_surface_create_for_stream(append_bytes, &bytes, kPageWidth, kPageHeight));
  cairo_pdf_surface_set_metadata(surface.get(), CAIRO_PDF_METADATA_TITLE, title.c_str());
  cairo_pdf_surface_set_metadata(surface.get(), CAIRO_PDF_METADATA_CREATOR, "Usher billing");
  {
    std::unique_ptr<cairo_t, CairoFree> cr(cairo_create(surface.get()));
    Typesetter ts(cr.get());
    // The top of every page is the same, so each page holds the same number of rows.
    double top = kMargin + ts.measure(title, kContentWidth, ts.title(), true) + 6;
    for (const auto& [label, value] : header) top += ts.measure(label + ": " + value, kContentWidth, ts.regular(), true);
    top += 8 + kLineHeight + 4;  // the column titles and their rule
    const auto rows = rows_of(*this);
    const auto per_page = static_cast<std::size_t>(std::max(1.0, (kPageHeight - kMargin - kFooterHeight - top) / kLineHeight));
    const std::size_t pages = std::max<std::size_t>(1, (rows.size() + per_page - 1) / per_page);
    for (std::size_t page = 0; page < pages; ++page) {
      cairo_set_source_rgb(cr.get(), 0, 0, 0);
      double y = kMargin;
      y += ts.draw(title, 0, y, kContentWidth, false, ts.title(), true) + 6;
      for (const auto& [label, value] : header) y += ts.draw(label + ": " + value, 0, y, kContentWidth, false, ts.regular(), true);
      y += 8;
      for (const auto& c : kColumns) ts.draw(c.title, c.x, y, c.width, c.right, ts.bold());
      y += kLineHeight;
      cairo_set_line_width(cr.get(), 0.6);
      cairo_move_to(cr.get(), kMargin, y + 1);
      cairo_line_to(cr.get(), kMargin + kContentWidth, y + 1);
      cairo_stroke(cr.get());
      y = top;
      for (std::size_t i = page * per_page; i < std::min(rows.size(), (page + 1) * per_page); ++i) {
        const auto& row = rows[i];
        if (row.rule_above) {
          cairo_move_to(cr.get(), kMargin + kColumns[3].x, y);
          cairo_line_to(cr.get(), kMargin + kContentWidth, y);
          cairo_stroke(cr.get());
        }
        for (std::size_t c = 0; c < kColumnCount; ++c) {
          if (row.cells[c].empty()) continue;
          ts.draw(row.cells[c], kColumns[c].x, y + 1, kColumns[c].width, kColumns[c].right, row.emphasised ? ts.bold() : ts.regular());
        }
        y += kLineHeight;
      }
      const auto footer = "Page " + std::to_string(page + 1) + " of " + std::to_string(pages);
      ts.draw(footer, 0, kPageHeight - kMargin - kLineHeight, kContentWidth, true, ts.regular());
      cairo_show_page(cr.get());
    }
  }
  cairo_surface_finish(surface.get());
  if (cairo_surface_status(surface.get()) != CAIRO_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("statement PDF: ") + cairo_status_to_string(cairo_surface_status(surface.get())));
  }
  surface.reset();
  return bytes;
}

}  // namespace usher::billing
