#include "usher/billing/fias.h"

#include <algorithm>
#include <ctime>
#include <exception>
#include <thread>

#include "usher/core/clock.h"
#include "usher/core/tcp.h"

namespace usher::billing {
namespace {
constexpr std::uint8_t kStx = 0x02;
constexpr std::uint8_t kEtx = 0x03;
bool upper_or_digit(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
}  // namespace

std::string fias_date(std::uint64_t t) { return format_utc(t, "%y%m%d"); }
std::string fias_time(std::uint64_t t) { return format_utc(t, "%H%M%S"); }

std::string FiasRecord::field(std::string_view id) const {
  for (const auto& [k, v] : fields) {
    if (k == id) return v;
  }
  return {};
}

FiasRecord& FiasRecord::set(std::string id, std::string_view value) {
  std::string v(value);
  for (auto& c : v) {
    if (c == '|' || static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  fields.emplace_back(std::move(id), std::move(v));
  return *this;
}

std::vector<std::uint8_t> FiasRecord::frame() const {
  std::vector<std::uint8_t> out;
  out.push_back(kStx);
  out.insert(out.end(), type.begin(), type.end());
  out.push_back('|');
  for (const auto& [k, v] : fields) {
    out.insert(out.end(), k.begin(), k.end());
    out.insert(out.end(), v.begin(), v.end());
    out.push_back('|');
  }
  out.push_back(kEtx);
  return out;
}

Result<FiasRecord> FiasRecord::parse(std::string_view text) {
  if (text.size() < 3 || !upper_or_digit(text[0]) || !upper_or_digit(text[1]) || text[2] != '|') {
    return make_error(Errc::malformed, "PMS record: no record type");
  }
  FiasRecord r;
  r.type = std::string(text.substr(0, 2));
  std::size_t pos = 3;
  while (pos < text.size()) {
    const auto end = text.find('|', pos);
    if (end == std::string_view::npos) return make_error(Errc::malformed, "PMS record " + r.type + ": a field without its '|'");
    const auto f = text.substr(pos, end - pos);
    if (f.size() < 2) return make_error(Errc::malformed, "PMS record " + r.type + ": a field without an id");
    for (char c : f) {
      if (static_cast<unsigned char>(c) < 0x20) return make_error(Errc::malformed, "PMS record " + r.type + ": a control character in a field");
    }
    r.fields.emplace_back(std::string(f.substr(0, 2)), std::string(f.substr(2)));
    pos = end + 1;
  }
  return r;
}

void FiasFramer::feed(std::span<const std::uint8_t> bytes) { buffer_.insert(buffer_.end(), bytes.begin(), bytes.end()); }

std::optional<Result<FiasRecord>> FiasFramer::next() {
  // Anything before the first STX is noise.
  auto stx = std::find(buffer_.begin(), buffer_.end(), kStx);
  buffer_.erase(buffer_.begin(), stx);
  if (buffer_.empty()) return std::nullopt;
  auto etx = std::find(buffer_.begin() + 1, buffer_.end(), kEtx);
  auto next_stx = std::find(buffer_.begin() + 1, etx, kStx);
  if (next_stx != etx) {
    // A record cut short by a new one: drop the fragment.
    buffer_.erase(buffer_.begin(), next_stx);
    return Result<FiasRecord>(make_error(Errc::malformed, "PMS record cut short"));
  }
  if (etx == buffer_.end()) {
    if (buffer_.size() > kMaxRecord) {
      buffer_.clear();
      return Result<FiasRecord>(make_error(Errc::malformed, "PMS record too long"));
    }
    return std::nullopt;
  }
  std::string text(buffer_.begin() + 1, etx);
  buffer_.erase(buffer_.begin(), etx + 1);
  if (text.size() > kMaxRecord) return Result<FiasRecord>(make_error(Errc::malformed, "PMS record too long"));
  return FiasRecord::parse(text);
}

void PmsLink::on_record(const FiasRecord& r, net::TcpStream& s) {
  const auto now = unix_now();
  if (r.type == "LS") {
    FiasRecord la{"LA", {}};
    la.set("DA", fias_date(now)).set("TI", fias_time(now));
    (void)s.send_all(la.frame());
    linked_ = true;
    came_up();
  } else if (r.type == "LA") {
    linked_ = true;
    came_up();
  } else if (r.type == "LE") {
    linked_ = false;
    s.close();
  } else if (r.type == "GI") {
    auto in = desk_.check_in(r.field("RN"), r.field("G#"), r.field("GN"), now);
    if (!in) {
      log_.warn("guest in, room ", r.field("RN"), ": ", in.error().message);
    } else {
      ++counters_.guests_in;
      log_.info("guest in: ", in->stay.guest_name, ", room ", in->stay.room, ", stay ", in->stay.stay_id);
    }
  } else if (r.type == "GO") {
    // The PMS has checked the guest out already: close the folio even if the room STB is away.
    auto out = desk_.check_out(r.field("RN"), now, true);
    if (!out) {
      log_.warn("guest out, room ", r.field("RN"), ": ", out.error().message);
    } else {
      ++counters_.guests_out;
      log_.info("guest out: room ", out->stay.room, ", folio ", out->stay.stay_id, out->stb_cleared ? "" : " (STB not cleared yet)");
    }
  } else if (r.type == "PA") {
    const auto id = r.field("P#");
    if (!in_flight_ || id != std::to_string(in_flight_->posting_id)) return;  // an answer to a resend already answered
    const auto status = r.field("AS");
    if (status == "OK") {
      store_.pms_answered(in_flight_->posting_id, true, "OK", true);
      ++counters_.postings_accepted;
      next_try_ = {};
    } else {
      const bool final = in_flight_->attempt >= options_.max_attempts;
      store_.pms_answered(in_flight_->posting_id, false, status + " " + r.field("CT"), final);
      if (final) ++counters_.postings_refused;
      log_.warn("PMS refused posting ", in_flight_->posting_id, " (", status, " ", r.field("CT"), ")", final ? ": left to the front desk" : ": will retry");
      next_try_ = std::chrono::steady_clock::now() + options_.retry_after;
    }
    in_flight_.reset();
  }
}

std::string PmsLink::where() const { return "PMS " + options_.host + ":" + std::to_string(options_.port); }

std::string PmsLink::postings_waiting() {
  const auto n = store_.pms_postings(true).size();
  return std::to_string(n) + (n == 1 ? " posting" : " postings") + " waiting";
}

void PmsLink::record(std::uint64_t now) {
  state_.pms = options_.host + ":" + std::to_string(options_.port);
  state_.recorded = now;
  last_said_ = std::chrono::steady_clock::now();
  // What the status shows is not worth stopping the postings for (a full disk, a store locked too
  // long): say so and go on.
  try {
    store_.record_pms_link(state_);
  } catch (const std::exception& e) {
    log_.warn(where(), ": link state not recorded for billing hotel status: ", e.what());
  }
}

void PmsLink::came_up() {
  if (state_.condition == PmsLinkCondition::up) return;
  const auto now = unix_now();
  if (state_.since != 0) {
    log_.info(where(), ": link up again after ", now - state_.since, " s down (", state_.failed_attempts, " failed connects); ",
              postings_waiting());
  } else {
    log_.info(where(), ": link up; ", postings_waiting());
  }
  state_.condition = PmsLinkCondition::up;
  state_.since = now;
  state_.failed_attempts = 0;
  record(now);
}

void PmsLink::went_down(const std::string& error, bool connect_failed) {
  const auto now = unix_now();
  if (connect_failed) {
    ++counters_.connect_failures;
    ++state_.failed_attempts;
  }
  state_.last_error = error;
  state_.last_error_at = now;
  const auto retry = std::to_string(options_.retry_after.count()) + " ms";
  if (state_.condition != PmsLinkCondition::down || state_.since == 0) {
    // The first failure of an outage is always said, with what waits.
    log_.warn(where(), state_.condition == PmsLinkCondition::up ? ": link lost: " : ": cannot connect: ", error, "; ", postings_waiting(),
              "; retrying every ", retry);
    state_.condition = PmsLinkCondition::down;
    state_.since = now;
    record(now);
  } else if (std::chrono::steady_clock::now() - last_said_ >= options_.remind_every) {
    log_.warn(where(), ": still down since ", format_utc(state_.since), " (", state_.failed_attempts, " failed connects, the last: ", error,
              "); ", postings_waiting());
    record(now);
  } else {
    log_.debug(where(), ": connect ", state_.failed_attempts, " failed (", error, "); retrying in ", retry);
    // Not logged, but recorded (one row, at most once per retry_after): the status stays current.
    record(now);
  }
}

void PmsLink::run(const std::atomic<bool>& stop) {
  // Waits retry_after, or less when asked to stop.
  auto pause = [&] {
    const auto until = std::chrono::steady_clock::now() + options_.retry_after;
    while (!stop && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  };
  while (!stop) {
    auto s = net::TcpStream::connect(options_.host, options_.port, std::chrono::milliseconds(1000));
    if (!s) {
      went_down(s.error().message, true);
      pause();
      continue;
    }
    ++counters_.connects;
    linked_ = false;
    in_flight_.reset();
    std::string lost;  // why the connection ended, when it did
    {
      const auto now = unix_now();
      FiasRecord ls{"LS", {}};
      ls.set("DA", fias_date(now)).set("TI", fias_time(now));
      if (auto sent = s->send_all(ls.frame()); !sent) {
        went_down("link start not sent: " + sent.error().message, true);
        pause();
        continue;
      }
    }
    FiasFramer framer;
    std::vector<std::uint8_t> buf(4096);
    while (!stop && s->is_open()) {
      const auto now = std::chrono::steady_clock::now();
      if (state_.condition == PmsLinkCondition::up && now - last_said_ >= options_.remind_every) record(unix_now());
      if (in_flight_ && now - in_flight_->sent > options_.answer_timeout) {
        log_.warn("no answer to posting ", in_flight_->posting_id, ": sending it again");
        in_flight_.reset();
      }
      if (linked_ && !in_flight_ && now >= next_try_) {
        auto open = store_.pms_postings(true);
        if (!open.empty()) {
          const auto& p = open.front();
          FiasRecord ps{"PS", {}};
          ps.set("RN", p.room).set("G#", p.guest_id).set("TA", std::to_string(p.amount.minor)).set("P#", std::to_string(p.posting_id))
              .set("DA", fias_date(p.time)).set("TI", fias_time(p.time)).set("CT", p.description);
          store_.pms_attempted(p.posting_id);
          if (auto sent = s->send_all(ps.frame()); !sent) {
            lost = "posting not sent: " + sent.error().message;
            break;
          }
          ++counters_.postings_sent;
          in_flight_ = InFlight{p.posting_id, p.attempts + 1, now};
        }
      }
      auto n = s->receive(buf, std::chrono::milliseconds(50));
      if (!n) {
        lost = n.error().message;
        break;
      }
      framer.feed(std::span<const std::uint8_t>(buf.data(), *n));
      while (auto rec = framer.next()) {
        if (!*rec) {
          log_.warn("PMS: ", rec->error().message);
          continue;
        }
        on_record(rec->value(), *s);
      }
    }
    if (stop) break;
    if (lost.empty()) lost = "the PMS ended the link (LE)";
    // A connection the PMS closed before answering link start counts as a failed connect.
    went_down(lost, state_.condition != PmsLinkCondition::up);
    pause();
  }
  state_.condition = PmsLinkCondition::stopped;
  state_.since = unix_now();
  record(state_.since);
}

}  // namespace usher::billing
