// PidMap: a map from PID to T held as a flat table of all 8192 PIDs. The headend and the STB look
// up every packet's PID (which service, which section assembler); a table makes that one index
// rather than a tree walk per packet. Entries are few and change rarely (when the PSI does).
#pragma once

#include <bitset>
#include <cstdint>
#include <vector>

namespace usher::streams {

template <class T>
class PidMap {
 public:
  static constexpr std::size_t kPids = 8192;

  // The entry for `pid`, or nullptr when there is none.
  [[nodiscard]] T* find(std::uint16_t pid) { return present_.test(pid & 0x1FFF) ? &values_[pid & 0x1FFF] : nullptr; }
  [[nodiscard]] const T* find(std::uint16_t pid) const {
    return present_.test(pid & 0x1FFF) ? &values_[pid & 0x1FFF] : nullptr;
  }
  [[nodiscard]] bool contains(std::uint16_t pid) const { return present_.test(pid & 0x1FFF); }
  // The entry for `pid`, made (value-initialised) when there is none.
  T& operator[](std::uint16_t pid) {
    present_.set(pid & 0x1FFF);
    return values_[pid & 0x1FFF];
  }
  void erase(std::uint16_t pid) {
    present_.reset(pid & 0x1FFF);
    values_[pid & 0x1FFF] = T{};
  }
  // Calls f(pid, value) for each entry, in PID order.
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t pid = 0; pid < kPids; ++pid) {
      if (present_.test(pid)) f(static_cast<std::uint16_t>(pid), values_[pid]);
    }
  }

 private:
  std::vector<T> values_ = std::vector<T>(kPids);  // on the heap: 64 KB of pointers
  std::bitset<kPids> present_;
};

}  // namespace usher::streams
