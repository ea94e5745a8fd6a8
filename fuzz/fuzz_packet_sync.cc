// PacketSync on arbitrary bytes, fed in pieces whose sizes come from the input.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "usher/streams/packet_sync.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  usher::streams::PacketSync sync;
  std::vector<usher::streams::TsPacket> out;
  const std::size_t step = 1 + data[0] % 251;
  for (std::size_t i = 1; i < size; i += step) {
    sync.feed({data + i, std::min(step, size - i)}, out);
  }
  sync.finish(out);
  for (const auto& p : out) {
    if (!p.sync_ok()) __builtin_trap();
    (void)p.payload();
    (void)p.pcr();
  }
  return 0;
}
