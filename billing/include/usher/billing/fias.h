// The hotel property-management-system (PMS) link, after the FIAS line protocol: records framed by
// STX (0x02) and ETX (0x03), a two-letter record type, then fields as a two-character id and a
// value, each ended by '|':
//
//   LS|DA261124|TI101500|            link start (either side); answered LA (link alive); LE ends it
//   GI|RN102|G#12345|GNKoehler, Andreas|     guest in (from the PMS)
//   GO|RN102|G#12345|                        guest out (from the PMS)
//   PS|RN102|G#12345|TA1250|P#17|DA..|TI..|CTPPV Title|   posting simple: a charge, TA in minor units
//   PA|ASOK|RN102|P#17|DA..|TI..|            posting answer: ASOK, or ASNG (refused) with CT reason
//
// PmsLink is billing's side: it connects to the PMS, turns GI/GO into check-in/check-out, and sends
// each folio charge from billing's outbox as a PS numbered with its posting id (P#), until the PMS
// answers it. Unanswered postings are sent again with the same P#, so a PMS that saw the first one
// does not post it twice; refused ones are retried a few times, then kept as "refused" for the
// front desk. Nothing leaves the outbox without an answer.
//
// While the PMS is away the link logs the first failed connect, retries every `retry_after`
// (each retry at debug level), says "still down, N postings waiting" every `remind_every`, and
// "up again" when it is back; it records its state in billing's store for `billing hotel status`.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "usher/billing/hotel_desk.h"
#include "usher/core/log.h"
#include "usher/core/result.h"
#include "usher/core/tcp.h"

namespace usher::billing {

struct FiasRecord {
  std::string type;
  std::vector<std::pair<std::string, std::string>> fields;

  // The value of field `id` ("" when absent).
  [[nodiscard]] std::string field(std::string_view id) const;
  // Adds a field; characters that would break the framing ('|', STX, ETX, control codes) become ' '.
  FiasRecord& set(std::string id, std::string_view value);
  // STX, the record, ETX.
  [[nodiscard]] std::vector<std::uint8_t> frame() const;
  // Parses the text between STX and ETX. Errc::malformed for a bad type or field.
  static Result<FiasRecord> parse(std::string_view text);
};

// Cuts a TCP byte stream into records. Bytes outside STX..ETX are dropped; a record longer than
// kMaxRecord is dropped as malformed.
class FiasFramer {
 public:
  static constexpr std::size_t kMaxRecord = 2048;
  void feed(std::span<const std::uint8_t> bytes);
  // The next complete record, if any (an error for a malformed one).
  std::optional<Result<FiasRecord>> next();

 private:
  std::vector<std::uint8_t> buffer_;
};

class PmsLink {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 5010;
    std::chrono::milliseconds answer_timeout{2000};  // then the posting is sent again
    std::chrono::milliseconds retry_after{1000};     // after a refusal or a lost connection
    int max_attempts = 5;                            // refusals before a posting is left to the front desk
    std::chrono::milliseconds remind_every{60000};   // "still down" in the log this often (and the up state recorded)
  };
  struct Counters {
    std::uint64_t postings_accepted = 0;
    std::uint64_t postings_refused = 0;
    std::uint64_t postings_sent = 0;  // including resends
    std::uint64_t guests_in = 0;
    std::uint64_t guests_out = 0;
    std::uint64_t connects = 0;
    std::uint64_t connect_failures = 0;
  };
  PmsLink(BillingStore& store, HotelDesk& desk, Options options) : store_(store), desk_(desk), options_(std::move(options)) {}
  // Runs until `stop`, reconnecting whenever the link drops.
  void run(const std::atomic<bool>& stop);
  [[nodiscard]] const Counters& counters() const { return counters_; }

 private:
  void on_record(const FiasRecord& r, net::TcpStream& s);
  // The link's state changes: logged (the repeats of a long outage only every remind_every) and
  // recorded in the store.
  void came_up();
  void went_down(const std::string& error, bool connect_failed);
  void record(std::uint64_t now);
  [[nodiscard]] std::string where() const;
  [[nodiscard]] std::string postings_waiting();
  BillingStore& store_;
  HotelDesk& desk_;
  Options options_;
  Counters counters_;
  Logger log_{"pms"};
  struct InFlight {
    std::uint64_t posting_id = 0;
    int attempt = 0;  // counting this one
    std::chrono::steady_clock::time_point sent;
  };
  std::optional<InFlight> in_flight_;
  std::chrono::steady_clock::time_point next_try_{};
  bool linked_ = false;
  PmsLinkState state_;  // condition starts as down with since 0: not connected yet
  std::chrono::steady_clock::time_point last_said_{};  // the last "still down" (or up-state record)
};

// "261124" and "101500" for a unix time (UTC), as FIAS dates and times are written.
std::string fias_date(std::uint64_t unix_time);
std::string fias_time(std::uint64_t unix_time);

}  // namespace usher::billing
