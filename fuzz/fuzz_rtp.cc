// RTP datagrams from the network, cut from the input (2-byte length prefixes): the receiver never
// crashes, delivers whole TS packets only, and its counters add up; the parser's payload lies inside
// the datagram, and each refusal is Errc::malformed and says why.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "usher/streams/rtp.h"
#include "usher/streams/ts_packet.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  usher::streams::RtpReceiver receiver(1 + data[0] % 40);
  std::vector<std::uint8_t> out;
  std::size_t offered = 0;
  std::size_t i = 1;
  while (i + 2 <= size) {
    const std::size_t length = static_cast<std::size_t>(data[i]) << 8 | data[i + 1];
    i += 2;
    const std::size_t take = length < size - i ? length : size - i;
    const auto parsed = usher::streams::parse_rtp({data + i, take});
    if (parsed) {
      if (parsed->payload.data() < data + i || parsed->payload.data() + parsed->payload.size() > data + i + take) {
        __builtin_trap();
      }
    } else if (parsed.error().code != usher::Errc::malformed || parsed.error().message.empty()) {
      __builtin_trap();
    }
    receiver.receive({data + i, take}, out);
    ++offered;
    i += take;
  }
  receiver.release_held(out);
  if (out.size() % usher::streams::kPacketSize != 0) __builtin_trap();
  const auto& s = receiver.stats();
  if (s.datagrams + s.refused != offered) __builtin_trap();
  if (s.delivered + s.duplicates + s.late > s.datagrams) __builtin_trap();
  return 0;
}
