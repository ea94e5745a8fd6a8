#include "usher/streams/psi.h"

#include <algorithm>
#include <string>

#include "usher/core/hex.h"

namespace usher::streams {
namespace {

Error truncated() { return make_error(Errc::malformed, "truncated"); }
Error bad_syntax() { return make_error(Errc::malformed, "invalid syntax"); }

Result<SectionView> long_section(std::span<const std::uint8_t> bytes, std::uint8_t table_id) {
  USHER_TRY(const auto view, parse_section(bytes));
  if (view.header.table_id != table_id) {
    const std::uint8_t ids[2] = {view.header.table_id, table_id};
    return make_error(Errc::malformed, "unexpected table_id 0x" + to_hex(std::span(ids).first(1)) + " (expected 0x" +
                                           to_hex(std::span(ids).last(1)) + ")");
  }
  if (!view.header.syntax_indicator) return bad_syntax();
  return view;
}

void put16(std::vector<std::uint8_t>& v, std::uint16_t x) {
  v.push_back(static_cast<std::uint8_t>(x >> 8));
  v.push_back(static_cast<std::uint8_t>(x & 0xFF));
}
std::uint16_t get16(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]);
}

}  // namespace

bool descriptor_loop_ok(std::span<const std::uint8_t> loop) {
  std::size_t pos = 0;
  while (pos < loop.size()) {
    if (loop.size() - pos < 2 || loop.size() - pos - 2 < loop[pos + 1]) return false;
    pos += 2u + loop[pos + 1];
  }
  return true;
}

Result<Pat> Pat::parse(std::span<const std::uint8_t> section) {
  USHER_TRY(const auto v, long_section(section, kTablePat));
  if (v.body.size() % 4 != 0) return bad_syntax();
  Pat pat;
  pat.transport_stream_id = v.header.table_id_extension;
  pat.version = v.header.version;
  for (std::size_t i = 0; i < v.body.size(); i += 4) {
    pat.programs.push_back({get16(v.body, i), static_cast<std::uint16_t>(get16(v.body, i + 2) & 0x1FFF)});
  }
  return pat;
}

std::vector<std::uint8_t> Pat::serialize() const {
  std::vector<std::uint8_t> body;
  for (const auto& p : programs) {
    put16(body, p.program_number);
    put16(body, static_cast<std::uint16_t>(0xE000 | p.pid));
  }
  SectionHeader h;
  h.table_id = kTablePat;
  h.table_id_extension = transport_stream_id;
  h.version = version;
  return build_long_section(h, body);
}

Result<Pmt> Pmt::parse(std::span<const std::uint8_t> section) {
  USHER_TRY(const auto v, long_section(section, kTablePmt));
  const auto b = v.body;
  if (b.size() < 4) return truncated();
  Pmt pmt;
  pmt.program_number = v.header.table_id_extension;
  pmt.version = v.header.version;
  pmt.pcr_pid = get16(b, 0) & 0x1FFF;
  const std::size_t info_len = get16(b, 2) & 0x0FFF;
  if (4 + info_len > b.size()) return truncated();
  const auto info = b.subspan(4, info_len);
  if (!descriptor_loop_ok(info)) return bad_syntax();
  pmt.descriptors.assign(info.begin(), info.end());
  std::size_t pos = 4 + info_len;
  while (pos < b.size()) {
    if (b.size() - pos < 5) return truncated();
    Stream st;
    st.stream_type = b[pos];
    st.pid = get16(b, pos + 1) & 0x1FFF;
    const std::size_t es_len = get16(b, pos + 3) & 0x0FFF;
    if (pos + 5 + es_len > b.size()) return truncated();
    const auto es = b.subspan(pos + 5, es_len);
    if (!descriptor_loop_ok(es)) return bad_syntax();
    st.descriptors.assign(es.begin(), es.end());
    pmt.streams.push_back(std::move(st));
    pos += 5 + es_len;
  }
  return pmt;
}

std::vector<std::uint8_t> Pmt::serialize() const {
  std::vector<std::uint8_t> body;
  put16(body, static_cast<std::uint16_t>(0xE000 | pcr_pid));
  put16(body, static_cast<std::uint16_t>(0xF000 | descriptors.size()));
  body.insert(body.end(), descriptors.begin(), descriptors.end());
  for (const auto& st : streams) {
    body.push_back(st.stream_type);
    put16(body, static_cast<std::uint16_t>(0xE000 | st.pid));
    put16(body, static_cast<std::uint16_t>(0xF000 | st.descriptors.size()));
    body.insert(body.end(), st.descriptors.begin(), st.descriptors.end());
  }
  SectionHeader h;
  h.table_id = kTablePmt;
  h.table_id_extension = program_number;
  h.version = version;
  return build_long_section(h, body);
}

Result<Cat> Cat::parse(std::span<const std::uint8_t> section) {
  USHER_TRY(const auto v, long_section(section, kTableCat));
  if (!descriptor_loop_ok(v.body)) return bad_syntax();
  Cat cat;
  cat.version = v.header.version;
  cat.descriptors.assign(v.body.begin(), v.body.end());
  return cat;
}

std::vector<std::uint8_t> Cat::serialize() const {
  SectionHeader h;
  h.table_id = kTableCat;
  h.table_id_extension = 0xFFFF;
  h.version = version;
  return build_long_section(h, descriptors);
}

Result<Sdt> Sdt::parse(std::span<const std::uint8_t> section) {
  USHER_TRY(const auto v, long_section(section, kTableSdtActual));
  const auto b = v.body;
  if (b.size() < 3) return truncated();
  Sdt sdt;
  sdt.transport_stream_id = v.header.table_id_extension;
  sdt.version = v.header.version;
  sdt.original_network_id = get16(b, 0);
  std::size_t pos = 3;
  while (pos < b.size()) {
    if (b.size() - pos < 5) return truncated();
    Service svc;
    svc.service_id = get16(b, pos);
    svc.running_status = static_cast<std::uint8_t>(b[pos + 3] >> 5);
    svc.free_ca_mode = (b[pos + 3] & 0x10) != 0;
    const std::size_t len = get16(b, pos + 3) & 0x0FFF;
    if (pos + 5 + len > b.size()) return truncated();
    const auto d = b.subspan(pos + 5, len);
    if (!descriptor_loop_ok(d)) return bad_syntax();
    svc.descriptors.assign(d.begin(), d.end());
    sdt.services.push_back(std::move(svc));
    pos += 5 + len;
  }
  return sdt;
}

std::vector<std::uint8_t> Sdt::serialize() const {
  std::vector<std::uint8_t> body;
  put16(body, original_network_id);
  body.push_back(0xFF);
  for (const auto& svc : services) {
    put16(body, svc.service_id);
    body.push_back(0xFC);  // no EIT flags
    put16(body, static_cast<std::uint16_t>((svc.running_status & 0x07) << 13 | (svc.free_ca_mode ? 0x1000 : 0) |
                                           (svc.descriptors.size() & 0x0FFF)));
    body.insert(body.end(), svc.descriptors.begin(), svc.descriptors.end());
  }
  SectionHeader h;
  h.table_id = kTableSdtActual;
  h.table_id_extension = transport_stream_id;
  h.version = version;
  return build_long_section(h, body);
}

namespace {

// Modified Julian Date and BCD time, as EN 300 468 Annex C encodes start_time.
void put_mjd_utc(std::vector<std::uint8_t>& v, std::uint64_t unix_seconds) {
  const std::uint64_t days = unix_seconds / 86400;
  const std::uint64_t secs = unix_seconds % 86400;
  put16(v, static_cast<std::uint16_t>(days + 40587));  // MJD of 1970-01-01
  auto bcd = [](std::uint64_t x) { return static_cast<std::uint8_t>(((x / 10) << 4) | (x % 10)); };
  v.push_back(bcd(secs / 3600));
  v.push_back(bcd(secs / 60 % 60));
  v.push_back(bcd(secs % 60));
}
bool bcd_ok(std::uint8_t b) { return (b >> 4) <= 9 && (b & 0x0F) <= 9; }
std::uint32_t from_bcd(std::uint8_t b) { return static_cast<std::uint32_t>((b >> 4) * 10 + (b & 0x0F)); }
void put_bcd_duration(std::vector<std::uint8_t>& v, std::uint32_t seconds) {
  seconds = std::min<std::uint32_t>(seconds, 99 * 3600 + 59 * 60 + 59);
  auto bcd = [](std::uint32_t x) { return static_cast<std::uint8_t>(((x / 10) << 4) | (x % 10)); };
  v.push_back(bcd(seconds / 3600));
  v.push_back(bcd(seconds / 60 % 60));
  v.push_back(bcd(seconds % 60));
}

}  // namespace

Result<Eit> Eit::parse(std::span<const std::uint8_t> section) {
  USHER_TRY(const auto v, long_section(section, kTableEitPfActual));
  const auto b = v.body;
  if (b.size() < 6) return truncated();
  Eit eit;
  eit.service_id = v.header.table_id_extension;
  eit.version = v.header.version;
  eit.section_number = v.header.section_number;
  eit.transport_stream_id = get16(b, 0);
  eit.original_network_id = get16(b, 2);
  std::size_t pos = 6;
  while (pos < b.size()) {
    if (b.size() - pos < 12) return truncated();
    Event e;
    e.event_id = get16(b, pos);
    const std::uint64_t mjd = get16(b, pos + 2);
    for (std::size_t i = 4; i < 10; ++i) {
      if (!bcd_ok(b[pos + i])) return bad_syntax();
    }
    if (mjd < 40587) return bad_syntax();
    e.start = (mjd - 40587) * 86400 + from_bcd(b[pos + 4]) * 3600 + from_bcd(b[pos + 5]) * 60 + from_bcd(b[pos + 6]);
    e.duration = from_bcd(b[pos + 7]) * 3600 + from_bcd(b[pos + 8]) * 60 + from_bcd(b[pos + 9]);
    e.running_status = static_cast<std::uint8_t>(b[pos + 10] >> 5);
    e.free_ca_mode = (b[pos + 10] & 0x10) != 0;
    const std::size_t len = get16(b, pos + 10) & 0x0FFF;
    if (pos + 12 + len > b.size()) return truncated();
    const auto d = b.subspan(pos + 12, len);
    if (!descriptor_loop_ok(d)) return bad_syntax();
    e.descriptors.assign(d.begin(), d.end());
    eit.events.push_back(std::move(e));
    pos += 12 + len;
  }
  return eit;
}

std::vector<std::uint8_t> Eit::serialize() const {
  std::vector<std::uint8_t> body;
  put16(body, transport_stream_id);
  put16(body, original_network_id);
  body.push_back(1);                  // segment_last_section_number
  body.push_back(kTableEitPfActual);  // last_table_id
  for (const auto& e : events) {
    put16(body, e.event_id);
    put_mjd_utc(body, e.start);
    put_bcd_duration(body, e.duration);
    put16(body, static_cast<std::uint16_t>((e.running_status & 0x07) << 13 | (e.free_ca_mode ? 0x1000 : 0) |
                                           (e.descriptors.size() & 0x0FFF)));
    body.insert(body.end(), e.descriptors.begin(), e.descriptors.end());
  }
  SectionHeader h;
  h.table_id = kTableEitPfActual;
  h.table_id_extension = service_id;
  h.version = version;
  h.section_number = section_number;
  h.last_section_number = 1;
  return build_long_section(h, body);
}

void append_short_event_descriptor(std::vector<std::uint8_t>& loop, const std::string& language, const std::string& name,
                                   const std::string& text) {
  const std::size_t n = std::min<std::size_t>(name.size(), 120);
  const std::size_t t = std::min<std::size_t>(text.size(), 250 - 5 - n);
  loop.push_back(kTagShortEventDescriptor);
  loop.push_back(static_cast<std::uint8_t>(3 + 1 + n + 1 + t));
  for (int i = 0; i < 3; ++i) loop.push_back(static_cast<std::uint8_t>(i < static_cast<int>(language.size()) ? language[static_cast<std::size_t>(i)] : ' '));
  loop.push_back(static_cast<std::uint8_t>(n));
  loop.insert(loop.end(), name.begin(), name.begin() + static_cast<std::ptrdiff_t>(n));
  loop.push_back(static_cast<std::uint8_t>(t));
  loop.insert(loop.end(), text.begin(), text.begin() + static_cast<std::ptrdiff_t>(t));
}

std::string short_event_name(std::span<const std::uint8_t> loop) {
  std::size_t pos = 0;
  while (pos + 2 <= loop.size()) {
    const std::size_t len = loop[pos + 1];
    if (pos + 2 + len > loop.size()) break;
    if (loop[pos] == kTagShortEventDescriptor && len >= 5) {
      const std::size_t n = loop[pos + 5];
      if (6 + n <= 2 + len) return std::string(loop.begin() + static_cast<std::ptrdiff_t>(pos + 6),
                                               loop.begin() + static_cast<std::ptrdiff_t>(pos + 6 + n));
    }
    pos += 2 + len;
  }
  return {};
}

void append_service_descriptor(std::vector<std::uint8_t>& loop, std::uint8_t service_type, const std::string& provider,
                               const std::string& name) {
  const std::size_t p = std::min<std::size_t>(provider.size(), 80);
  const std::size_t n = std::min<std::size_t>(name.size(), 80);
  loop.push_back(kTagServiceDescriptor);
  loop.push_back(static_cast<std::uint8_t>(3 + p + n));
  loop.push_back(service_type);
  loop.push_back(static_cast<std::uint8_t>(p));
  loop.insert(loop.end(), provider.begin(), provider.begin() + static_cast<std::ptrdiff_t>(p));
  loop.push_back(static_cast<std::uint8_t>(n));
  loop.insert(loop.end(), name.begin(), name.begin() + static_cast<std::ptrdiff_t>(n));
}

std::optional<std::string> service_descriptor_name(std::span<const std::uint8_t> loop) {
  std::size_t pos = 0;
  while (pos + 2 <= loop.size()) {
    const std::size_t len = loop[pos + 1];
    if (pos + 2 + len > loop.size()) break;
    if (loop[pos] == kTagServiceDescriptor && len >= 3) {
      const std::size_t p = loop[pos + 3];
      if (4 + p < 2 + len) {
        const std::size_t n = loop[pos + 4 + p];
        const std::size_t at = pos + 5 + p;
        if (at + n <= pos + 2 + len) {
          return std::string(loop.begin() + static_cast<std::ptrdiff_t>(at), loop.begin() + static_cast<std::ptrdiff_t>(at + n));
        }
      }
    }
    pos += 2 + len;
  }
  return std::nullopt;
}

void append_parental_rating_descriptor(std::vector<std::uint8_t>& loop, const std::string& country, std::uint8_t min_age) {
  loop.push_back(kTagParentalRatingDescriptor);
  loop.push_back(4);
  for (int i = 0; i < 3; ++i) loop.push_back(static_cast<std::uint8_t>(i < static_cast<int>(country.size()) ? country[static_cast<std::size_t>(i)] : ' '));
  loop.push_back(static_cast<std::uint8_t>(min_age >= 4 && min_age <= 18 ? min_age - 3 : 0));
}

std::vector<CaDescriptor> find_ca_descriptors(std::span<const std::uint8_t> loop) {
  std::vector<CaDescriptor> out;
  std::size_t pos = 0;
  while (pos + 2 <= loop.size()) {
    const std::size_t len = loop[pos + 1];
    if (pos + 2 + len > loop.size()) break;
    if (loop[pos] == kTagCaDescriptor && len >= 4) {
      CaDescriptor ca;
      ca.ca_system_id = get16(loop, pos + 2);
      ca.ca_pid = get16(loop, pos + 4) & 0x1FFF;
      ca.private_data.assign(loop.begin() + static_cast<std::ptrdiff_t>(pos + 6),
                             loop.begin() + static_cast<std::ptrdiff_t>(pos + 2 + len));
      out.push_back(std::move(ca));
    }
    pos += 2 + len;
  }
  return out;
}

void append_ca_descriptor(std::vector<std::uint8_t>& loop, const CaDescriptor& ca) {
  loop.push_back(kTagCaDescriptor);
  loop.push_back(static_cast<std::uint8_t>(4 + ca.private_data.size()));
  put16(loop, ca.ca_system_id);
  put16(loop, static_cast<std::uint16_t>(0xE000 | ca.ca_pid));
  loop.insert(loop.end(), ca.private_data.begin(), ca.private_data.end());
}

void remove_ca_descriptors(std::vector<std::uint8_t>& loop, std::uint16_t ca_system_id) {
  std::vector<std::uint8_t> kept;
  std::size_t pos = 0;
  while (pos + 2 <= loop.size()) {
    const std::size_t len = loop[pos + 1];
    if (pos + 2 + len > loop.size()) break;
    const bool ours = loop[pos] == kTagCaDescriptor && len >= 4 && get16(loop, pos + 2) == ca_system_id;
    if (!ours) kept.insert(kept.end(), loop.begin() + static_cast<std::ptrdiff_t>(pos),
                           loop.begin() + static_cast<std::ptrdiff_t>(pos + 2 + len));
    pos += 2 + len;
  }
  loop = std::move(kept);
}

bool is_elementary_stream_type(std::uint8_t t) {
  switch (t) {
    case 0x05:  // private sections: not scrambled at TS level here
      return false;
    default:
      return t != 0x00;
  }
}

}  // namespace usher::streams
