// The PMS link's framer and record parser on arbitrary bytes (what a PMS, or anything that answers
// on its port, could send). A parsed record frames back to a record that parses the same.
#include <cstddef>
#include <cstdint>

#include "usher/billing/fias.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  usher::billing::FiasFramer framer;
  // Fed in two pieces, as TCP may cut it.
  framer.feed({data, size / 2});
  int records = 0;
  while (auto r = framer.next()) ++records;
  framer.feed({data + size / 2, size - size / 2});
  while (auto r = framer.next()) {
    if (!*r) continue;
    const auto frame = (*r)->frame();
    auto again = usher::billing::FiasRecord::parse(std::string(frame.begin() + 1, frame.end() - 1));
    if (!again || again->type != (*r)->type || again->fields != (*r)->fields) __builtin_trap();
  }
  return records < 0;
}
