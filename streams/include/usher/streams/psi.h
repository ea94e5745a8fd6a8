// PSI tables as values: PAT, PMT, CAT (ISO/IEC 13818-1, 2.4.4) and SDT (EN 300 468, 5.2.3), with
// parse (checking CRC and lengths) and serialise. Descriptor loops are kept as raw bytes so that
// descriptors we do not interpret pass through untouched; CA_descriptor helpers read and add ours.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "usher/streams/section.h"

namespace usher::streams {

inline constexpr std::uint8_t kTablePat = 0x00;
inline constexpr std::uint8_t kTableCat = 0x01;
inline constexpr std::uint8_t kTablePmt = 0x02;
inline constexpr std::uint8_t kTableSdtActual = 0x42;
inline constexpr std::uint8_t kTagCaDescriptor = 0x09;
inline constexpr std::uint8_t kTagServiceDescriptor = 0x48;
inline constexpr std::uint8_t kTagScramblingDescriptor = 0x65;
inline constexpr std::uint16_t kSdtPid = 0x0011;
inline constexpr std::uint16_t kEitPid = 0x0012;
inline constexpr std::uint8_t kTableEitPfActual = 0x4E;
inline constexpr std::uint8_t kTagShortEventDescriptor = 0x4D;
inline constexpr std::uint8_t kTagParentalRatingDescriptor = 0x55;

struct Pat {
  struct Program {
    std::uint16_t program_number = 0;  // 0 = network PID
    std::uint16_t pid = 0;
  };
  std::uint16_t transport_stream_id = 0;
  std::uint8_t version = 0;
  std::vector<Program> programs;

  static Result<Pat> parse(std::span<const std::uint8_t> section);
  [[nodiscard]] std::vector<std::uint8_t> serialize() const;
};

struct Pmt {
  struct Stream {
    std::uint8_t stream_type = 0;
    std::uint16_t pid = 0;
    std::vector<std::uint8_t> descriptors;
  };
  std::uint16_t program_number = 0;
  std::uint8_t version = 0;
  std::uint16_t pcr_pid = kNullPid;
  std::vector<std::uint8_t> descriptors;  // program_info
  std::vector<Stream> streams;

  static Result<Pmt> parse(std::span<const std::uint8_t> section);
  [[nodiscard]] std::vector<std::uint8_t> serialize() const;
};

struct Cat {
  std::uint8_t version = 0;
  std::vector<std::uint8_t> descriptors;

  static Result<Cat> parse(std::span<const std::uint8_t> section);
  [[nodiscard]] std::vector<std::uint8_t> serialize() const;
};

struct Sdt {
  struct Service {
    std::uint16_t service_id = 0;
    bool free_ca_mode = false;
    std::uint8_t running_status = 4;
    std::vector<std::uint8_t> descriptors;
  };
  std::uint16_t transport_stream_id = 0;
  std::uint16_t original_network_id = 0;
  std::uint8_t version = 0;
  std::vector<Service> services;

  static Result<Sdt> parse(std::span<const std::uint8_t> section);
  [[nodiscard]] std::vector<std::uint8_t> serialize() const;
};

// EIT present/following, actual transport stream (EN 300 468, 5.2.4): section 0 carries the present
// event, section 1 the following one. Times are UTC unix seconds here, MJD + BCD on the wire.
struct Eit {
  struct Event {
    std::uint16_t event_id = 0;
    std::uint64_t start = 0;
    std::uint32_t duration = 0;      // seconds (at most 99:59:59)
    std::uint8_t running_status = 0; // 1 not running, 2 starts in a few seconds, 4 running
    bool free_ca_mode = false;       // true: scrambled
    std::vector<std::uint8_t> descriptors;
  };
  std::uint16_t service_id = 0;
  std::uint16_t transport_stream_id = 0;
  std::uint16_t original_network_id = 0;
  std::uint8_t version = 0;
  std::uint8_t section_number = 0;  // 0 present, 1 following
  std::vector<Event> events;        // at most one per section in p/f

  static Result<Eit> parse(std::span<const std::uint8_t> section);
  [[nodiscard]] std::vector<std::uint8_t> serialize() const;
};
// short_event_descriptor (0x4D): language, event name, text.
void append_short_event_descriptor(std::vector<std::uint8_t>& loop, const std::string& language, const std::string& name,
                                   const std::string& text);
// The event name of the first short_event_descriptor, if any.
std::string short_event_name(std::span<const std::uint8_t> loop);
// service_descriptor (0x48): service type (0x01 digital television), provider and service names
// (each cut to 80 bytes).
void append_service_descriptor(std::vector<std::uint8_t>& loop, std::uint8_t service_type, const std::string& provider,
                               const std::string& name);
// The service name of the first well-formed service_descriptor, if any.
std::optional<std::string> service_descriptor_name(std::span<const std::uint8_t> loop);
// parental_rating_descriptor (0x55): minimum age (4..18) for one country ("FRA", ...).
void append_parental_rating_descriptor(std::vector<std::uint8_t>& loop, const std::string& country, std::uint8_t min_age);

// CA_descriptor (tag 0x09): CA_system_ID, CA_PID, private data.
struct CaDescriptor {
  std::uint16_t ca_system_id = 0;
  std::uint16_t ca_pid = 0;
  std::vector<std::uint8_t> private_data;
};
// Every well-formed CA_descriptor in a descriptor loop; malformed trailing bytes are ignored.
std::vector<CaDescriptor> find_ca_descriptors(std::span<const std::uint8_t> loop);
void append_ca_descriptor(std::vector<std::uint8_t>& loop, const CaDescriptor& ca);
// Removes every CA_descriptor of `ca_system_id` (so re-scrambling does not stack them).
void remove_ca_descriptors(std::vector<std::uint8_t>& loop, std::uint16_t ca_system_id);
// True when the loop's length fields are consistent.
bool descriptor_loop_ok(std::span<const std::uint8_t> loop);

// Stream types that carry audio/video/data elementary streams (as opposed to none).
bool is_elementary_stream_type(std::uint8_t stream_type);

}  // namespace usher::streams
