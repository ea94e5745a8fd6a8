// Section reassembly and every PSI parser: the input is cut into TS packets on one PID and
// reassembled; each section (and the raw input itself) goes through PAT, PMT, CAT, SDT parsers.
// Every refusal is Errc::malformed and says why.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "usher/streams/psi.h"

namespace {
template <typename T>
const usher::Result<T>& refused_well(const usher::Result<T>& r) {
  if (!r && (r.error().code != usher::Errc::malformed || r.error().message.empty())) __builtin_trap();
  return r;
}

void parse_all(std::span<const std::uint8_t> s) {
  using namespace usher::streams;
  (void)refused_well(parse_section(s));
  if (auto p = Pmt::parse(s); refused_well(p)) {
    (void)find_ca_descriptors(p->descriptors);
    auto copy = p->descriptors;
    remove_ca_descriptors(copy, 0x4AFF);
    (void)p->serialize();
  }
  if (auto p = Pat::parse(s); refused_well(p)) (void)p->serialize();
  if (auto c = Cat::parse(s); refused_well(c)) (void)find_ca_descriptors(c->descriptors);
  if (auto d = Sdt::parse(s); refused_well(d)) {
    for (auto& svc : d->services) {
      // The headend names a service only where the input's SDT has no service_descriptor.
      if (!service_descriptor_name(svc.descriptors)) append_service_descriptor(svc.descriptors, 0x01, "Usher", "Service");
      if (!service_descriptor_name(svc.descriptors)) __builtin_trap();
    }
    (void)d->serialize();
  }
  (void)service_descriptor_name(s);
  if (auto e = Eit::parse(s); refused_well(e)) {
    for (const auto& ev : e->events) (void)short_event_name(ev.descriptors);
    (void)e->serialize();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace usher::streams;
  parse_all({data, size});
  SectionAssembler assembler([](std::span<const std::uint8_t> s) { parse_all(s); });
  for (std::size_t i = 0; i + kPacketSize <= size; i += kPacketSize) {
    TsPacket p;
    std::memcpy(p.bytes.data(), data + i, kPacketSize);
    assembler.feed(p);
  }
  return 0;
}
