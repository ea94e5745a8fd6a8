#include "usher/streams/psi.h"

namespace usher::streams {
namespace {

Parsed<SectionView> long_section(std::span<const std::uint8_t> bytes, std::uint8_t table_id) {
  auto r = parse_section(bytes);
  if (!r.ok()) return r.error;
  if (r.section->header.table_id != table_id) return ParseError::wrong_table;
  if (!r.section->header.syntax_indicator) return ParseError::bad_syntax;
  return *r.section;
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

Parsed<Pat> Pat::parse(std::span<const std::uint8_t> section) {
  auto s = long_section(section, kTablePat);
  if (auto* e = std::get_if<ParseError>(&s)) return *e;
  const auto& v = std::get<SectionView>(s);
  if (v.body.size() % 4 != 0) return ParseError::bad_syntax;
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

Parsed<Pmt> Pmt::parse(std::span<const std::uint8_t> section) {
  auto s = long_section(section, kTablePmt);
  if (auto* e = std::get_if<ParseError>(&s)) return *e;
  const auto& v = std::get<SectionView>(s);
  const auto b = v.body;
  if (b.size() < 4) return ParseError::truncated;
  Pmt pmt;
  pmt.program_number = v.header.table_id_extension;
  pmt.version = v.header.version;
  pmt.pcr_pid = get16(b, 0) & 0x1FFF;
  const std::size_t info_len = get16(b, 2) & 0x0FFF;
  if (4 + info_len > b.size()) return ParseError::truncated;
  const auto info = b.subspan(4, info_len);
  if (!descriptor_loop_ok(info)) return ParseError::bad_syntax;
  pmt.descriptors.assign(info.begin(), info.end());
  std::size_t pos = 4 + info_len;
  while (pos < b.size()) {
    if (b.size() - pos < 5) return ParseError::truncated;
    Stream st;
    st.stream_type = b[pos];
    st.pid = get16(b, pos + 1) & 0x1FFF;
    const std::size_t es_len = get16(b, pos + 3) & 0x0FFF;
    if (pos + 5 + es_len > b.size()) return ParseError::truncated;
    const auto es = b.subspan(pos + 5, es_len);
    if (!descriptor_loop_ok(es)) return ParseError::bad_syntax;
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

Parsed<Cat> Cat::parse(std::span<const std::uint8_t> section) {
  auto s = long_section(section, kTableCat);
  if (auto* e = std::get_if<ParseError>(&s)) return *e;
  const auto& v = std::get<SectionView>(s);
  if (!descriptor_loop_ok(v.body)) return ParseError::bad_syntax;
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

Parsed<Sdt> Sdt::parse(std::span<const std::uint8_t> section) {
  auto s = long_section(section, kTableSdtActual);
  if (auto* e = std::get_if<ParseError>(&s)) return *e;
  const auto& v = std::get<SectionView>(s);
  const auto b = v.body;
  if (b.size() < 3) return ParseError::truncated;
  Sdt sdt;
  sdt.transport_stream_id = v.header.table_id_extension;
  sdt.version = v.header.version;
  sdt.original_network_id = get16(b, 0);
  std::size_t pos = 3;
  while (pos < b.size()) {
    if (b.size() - pos < 5) return ParseError::truncated;
    Service svc;
    svc.service_id = get16(b, pos);
    svc.running_status = static_cast<std::uint8_t>(b[pos + 3] >> 5);
    svc.free_ca_mode = (b[pos + 3] & 0x10) != 0;
    const std::size_t len = get16(b, pos + 3) & 0x0FFF;
    if (pos + 5 + len > b.size()) return ParseError::truncated;
    const auto d = b.subspan(pos + 5, len);
    if (!descriptor_loop_ok(d)) return ParseError::bad_syntax;
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
