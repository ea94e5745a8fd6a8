// Secret<N>: key material (control words, service keys, private keys) that zeroes itself on
// destruction and has no way to be printed or logged. Copy explicitly with clone().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace usher {

void secure_zero(void* p, std::size_t n);
bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

template <std::size_t N>
class Secret {
 public:
  Secret() { bytes_.fill(0); }
  explicit Secret(std::span<const std::uint8_t, N> bytes) { std::copy(bytes.begin(), bytes.end(), bytes_.begin()); }
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  Secret(Secret&& other) noexcept : bytes_(other.bytes_) { secure_zero(other.bytes_.data(), N); }
  Secret& operator=(Secret&& other) noexcept {
    bytes_ = other.bytes_;
    secure_zero(other.bytes_.data(), N);
    return *this;
  }
  ~Secret() { secure_zero(bytes_.data(), N); }

  [[nodiscard]] Secret clone() const { return Secret(std::span<const std::uint8_t, N>(bytes_)); }
  [[nodiscard]] std::span<const std::uint8_t, N> bytes() const { return bytes_; }
  [[nodiscard]] std::span<std::uint8_t, N> mutable_bytes() { return bytes_; }
  [[nodiscard]] bool operator==(const Secret& o) const { return constant_time_equal(bytes_, o.bytes_); }
  static constexpr std::size_t size() { return N; }

 private:
  std::array<std::uint8_t, N> bytes_;
};

using Key256 = Secret<32>;

}  // namespace usher
