// ByteReader / ByteWriter: big-endian wire encoding with bounds checks. A reader never reads past
// its span: every get returns false (and latches failed()) instead.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

namespace usher {

class ByteWriter {
 public:
  void u8(std::uint8_t v) { buf_.push_back(v); }
  void u16(std::uint16_t v) { put(v, 2); }
  void u32(std::uint32_t v) { put(v, 4); }
  void u64(std::uint64_t v) { put(v, 8); }
  void bytes(std::span<const std::uint8_t> b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
  [[nodiscard]] const std::vector<std::uint8_t>& data() const { return buf_; }
  std::vector<std::uint8_t> take() { return std::move(buf_); }

 private:
  void put(std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) buf_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  std::vector<std::uint8_t> buf_;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::uint8_t> data) : data_(data) {}
  bool u8(std::uint8_t& v) { return get(v, 1); }
  bool u16(std::uint16_t& v) { return get(v, 2); }
  bool u32(std::uint32_t& v) { return get(v, 4); }
  bool u64(std::uint64_t& v) { return get(v, 8); }
  bool bytes(std::span<std::uint8_t> out) {
    if (failed_ || remaining() < out.size()) return fail();
    std::copy_n(data_.begin() + static_cast<std::ptrdiff_t>(pos_), out.size(), out.begin());
    pos_ += out.size();
    return true;
  }
  bool view(std::size_t n, std::span<const std::uint8_t>& out) {
    if (failed_ || remaining() < n) return fail();
    out = data_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  [[nodiscard]] std::size_t remaining() const { return data_.size() - pos_; }
  [[nodiscard]] std::size_t position() const { return pos_; }
  [[nodiscard]] bool failed() const { return failed_; }
  [[nodiscard]] std::span<const std::uint8_t> consumed() const { return data_.first(pos_); }
  [[nodiscard]] std::span<const std::uint8_t> rest() const { return data_.subspan(pos_); }

 private:
  bool fail() {
    failed_ = true;
    return false;
  }
  template <typename T>
  bool get(T& v, int n) {
    if (failed_ || remaining() < static_cast<std::size_t>(n)) return fail();
    std::uint64_t x = 0;
    for (int i = 0; i < n; ++i) x = (x << 8) | data_[pos_ + static_cast<std::size_t>(i)];
    v = static_cast<T>(x);
    pos_ += static_cast<std::size_t>(n);
    return true;
  }
  std::span<const std::uint8_t> data_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

}  // namespace usher
