// Section reassembly and every PSI parser: the input is cut into TS packets on one PID and
// reassembled; each section (and the raw input itself) goes through PAT, PMT, CAT, SDT parsers.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "usher/streams/psi.h"

namespace {
void parse_all(std::span<const std::uint8_t> s) {
  using namespace usher::streams;
  (void)parse_section(s);
  if (auto pmt = Pmt::parse(s); auto* p = std::get_if<Pmt>(&pmt)) {
    (void)find_ca_descriptors(p->descriptors);
    auto copy = p->descriptors;
    remove_ca_descriptors(copy, 0x4AFF);
    (void)p->serialize();
  }
  if (auto pat = Pat::parse(s); auto* p = std::get_if<Pat>(&pat)) (void)p->serialize();
  if (auto cat = Cat::parse(s); auto* c = std::get_if<Cat>(&cat)) (void)find_ca_descriptors(c->descriptors);
  if (auto sdt = Sdt::parse(s); auto* d = std::get_if<Sdt>(&sdt)) {
    for (auto& svc : d->services) {
      // The headend names a service only where the input's SDT has no service_descriptor.
      if (!service_descriptor_name(svc.descriptors)) append_service_descriptor(svc.descriptors, 0x01, "Usher", "Service");
      if (!service_descriptor_name(svc.descriptors)) __builtin_trap();
    }
    (void)d->serialize();
  }
  (void)service_descriptor_name(s);
  if (auto eit = Eit::parse(s); auto* e = std::get_if<Eit>(&eit)) {
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
