#include <algorithm>

#include "usher/streams/section.h"

namespace usher::streams {

Result<SectionView> parse_section(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < 3) return make_error(Errc::malformed, "truncated");
  SectionHeader h;
  h.table_id = bytes[0];
  h.syntax_indicator = (bytes[1] & 0x80) != 0;
  h.section_length = static_cast<std::uint16_t>(((bytes[1] & 0x0F) << 8) | bytes[2]);
  if (bytes.size() < 3u + h.section_length) return make_error(Errc::malformed, "truncated");
  const auto whole = bytes.first(3u + h.section_length);
  if (!h.syntax_indicator) return SectionView{h, whole.subspan(3)};
  if (h.section_length < 9) return make_error(Errc::malformed, "invalid syntax");
  if (crc32_mpeg2(whole) != 0) return make_error(Errc::malformed, "CRC-32 mismatch");
  h.table_id_extension = static_cast<std::uint16_t>((whole[3] << 8) | whole[4]);
  h.version = static_cast<std::uint8_t>((whole[5] >> 1) & 0x1F);
  h.current_next = (whole[5] & 0x01) != 0;
  h.section_number = whole[6];
  h.last_section_number = whole[7];
  return SectionView{h, whole.subspan(8, whole.size() - 8 - 4)};
}

std::vector<std::uint8_t> build_long_section(const SectionHeader& h, std::span<const std::uint8_t> body) {
  const std::size_t length = 5 + body.size() + 4;
  std::vector<std::uint8_t> s;
  s.reserve(3 + length);
  s.push_back(h.table_id);
  s.push_back(static_cast<std::uint8_t>(0xB0 | ((length >> 8) & 0x0F)));
  s.push_back(static_cast<std::uint8_t>(length & 0xFF));
  s.push_back(static_cast<std::uint8_t>(h.table_id_extension >> 8));
  s.push_back(static_cast<std::uint8_t>(h.table_id_extension & 0xFF));
  s.push_back(static_cast<std::uint8_t>(0xC0 | ((h.version & 0x1F) << 1) | (h.current_next ? 1 : 0)));
  s.push_back(h.section_number);
  s.push_back(h.last_section_number);
  s.insert(s.end(), body.begin(), body.end());
  const std::uint32_t crc = crc32_mpeg2(s);
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<std::uint8_t>(crc >> shift));
  return s;
}

std::vector<std::uint8_t> build_short_section(std::uint8_t table_id, std::span<const std::uint8_t> body) {
  std::vector<std::uint8_t> s;
  s.reserve(3 + body.size());
  s.push_back(table_id);
  // section_syntax_indicator 0, private_indicator 1, reserved 11.
  s.push_back(static_cast<std::uint8_t>(0x70 | ((body.size() >> 8) & 0x0F)));
  s.push_back(static_cast<std::uint8_t>(body.size() & 0xFF));
  s.insert(s.end(), body.begin(), body.end());
  return s;
}

void SectionAssembler::feed(const TsPacket& packet) {
  if (!packet.has_payload() || packet.transport_error()) return;
  const int cc = packet.cc();
  if (last_cc_ >= 0 && cc == last_cc_) return;  // duplicate packet
  const bool continuous = last_cc_ < 0 || cc == ((last_cc_ + 1) & 0x0F) || packet.discontinuity();
  last_cc_ = cc;
  if (!continuous && in_section_) {
    ++dropped_;
    in_section_ = false;
    buffer_.clear();
  }
  auto payload = packet.payload();
  if (payload.empty()) return;
  if (packet.pusi()) {
    const std::size_t pointer = payload[0];
    if (1 + pointer > payload.size()) {  // pointer field beyond the packet: drop everything
      if (in_section_) ++dropped_;
      in_section_ = false;
      buffer_.clear();
      return;
    }
    if (in_section_) take(payload.subspan(1, pointer));
    if (in_section_) {  // the previous section never completed
      ++dropped_;
    }
    in_section_ = true;
    buffer_.clear();
    take(payload.subspan(1 + pointer));
  } else if (in_section_) {
    take(payload);
  }
}

void SectionAssembler::take(std::span<const std::uint8_t> data) {
  buffer_.insert(buffer_.end(), data.begin(), data.end());
  deliver_complete();
}

void SectionAssembler::deliver_complete() {
  std::size_t pos = 0;
  while (in_section_) {
    if (pos < buffer_.size() && buffer_[pos] == 0xFF) {  // stuffing: nothing more in this packet
      in_section_ = false;
      break;
    }
    if (buffer_.size() - pos < 3) break;
    const std::size_t length = 3u + (((buffer_[pos + 1] & 0x0F) << 8) | buffer_[pos + 2]);
    if (buffer_.size() - pos < length) break;
    const auto section = std::span<const std::uint8_t>(buffer_).subspan(pos, length);
    const auto parsed = parse_section(section);
    if (parsed.ok()) {
      ++sections_;
      handler_(section);
    } else {
      ++dropped_;
    }
    pos += length;
    if (pos == buffer_.size()) {
      in_section_ = false;
      break;
    }
  }
  if (!in_section_) {
    buffer_.clear();
  } else if (pos > 0) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(pos));
  }
  if (buffer_.size() > kMaxSectionSize + 188) {  // garbage length: give up on this section
    ++dropped_;
    in_section_ = false;
    buffer_.clear();
  }
}

void SectionPacketizer::packetize(std::span<const std::uint8_t> section, std::vector<TsPacket>& out) {
  std::size_t pos = 0;
  bool first = true;
  while (pos < section.size() || first) {
    TsPacket& p = out.emplace_back(TsPacket::null_packet());
    p.set_pid(pid_);
    p.set_pusi(first);
    p.set_adaptation_payload(false, true);
    p.set_cc(cc_);
    cc_ = static_cast<std::uint8_t>((cc_ + 1) & 0x0F);
    std::size_t at = kHeaderSize;
    if (first) p.bytes[at++] = 0;  // pointer_field
    const std::size_t n = std::min(kPacketSize - at, section.size() - pos);
    std::copy_n(section.begin() + static_cast<std::ptrdiff_t>(pos), n, p.bytes.begin() + static_cast<std::ptrdiff_t>(at));
    pos += n;
    first = false;
  }
}

}  // namespace usher::streams
