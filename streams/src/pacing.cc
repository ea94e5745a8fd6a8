#include "usher/streams/pacing.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace usher::streams {
namespace {

constexpr std::uint64_t kPcrWrap = (std::uint64_t{1} << 33) * 300;

std::chrono::nanoseconds to_duration(std::uint64_t ticks) {
  return std::chrono::nanoseconds(static_cast<std::int64_t>(ticks * 1000 / 27));
}

// Sleeps until `at` on the monotonic clock that steady_clock reads, resuming after signals.
void sleep_until(std::chrono::steady_clock::time_point at) {
  const auto since_epoch = std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(since_epoch / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(since_epoch % 1'000'000'000);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

}  // namespace

void DatagramScheduler::push(std::span<const TsPacket> packets, const Emit& emit) {
  for (const auto& p : packets) {
    add(p);
    emit_ready(emit, false);
  }
}

void DatagramScheduler::finish(const Emit& emit) {
  if (rate_known_ && untimed_queued() > 0) extrapolate_untimed();
  emit_ready(emit, true);
}

void DatagramScheduler::add(const TsPacket& packet) {
  queue_.push_back(packet);
  ++since_pcr_;
  const auto pcr = packet.pcr();
  if (pcr && (!pcr_pid_ || packet.pid() == *pcr_pid_)) {
    pcr_pid_ = packet.pid();
    on_pcr(*pcr, packet.discontinuity());
    return;
  }
  if (rate_known_ && (since_pcr_ * rate_ticks_ / rate_packets_ > kMaxHold || untimed_queued() > kMaxHeld)) {
    extrapolate_untimed();
  }
}

void DatagramScheduler::on_pcr(std::uint64_t pcr, bool discontinuity) {
  const std::uint64_t delta = (pcr + kPcrWrap - last_pcr_) % kPcrWrap;
  const bool jump = discontinuity || delta == 0 || delta > kMaxPcrInterval;
  if (!rate_known_) {
    const std::size_t index = queue_.size() - 1;
    if (!first_pcr_seen_ || jump || index == first_pcr_index_) {
      first_pcr_seen_ = true;
      first_pcr_index_ = index;
      last_pcr_ = pcr;
      since_pcr_ = 0;
      return;
    }
    // Two PCRs give the rate: every packet held so far is timed by it, those before the first PCR
    // included (as if the rate had held before it too).
    const std::uint64_t between = index - first_pcr_index_;
    for (std::size_t j = 0; j < queue_.size(); ++j) times_.push_back(j * delta / between);
    rate_known_ = true;
    rate_ticks_ = delta;
    rate_packets_ = between;
    last_pcr_ = pcr;
    last_pcr_time_ = times_.back();
    since_pcr_ = 0;
    return;
  }
  if (jump) {
    ++stats_.discontinuities;
    time_untimed(since_pcr_ * rate_ticks_ / rate_packets_, since_pcr_);
  } else {
    time_untimed(delta, since_pcr_);
    rate_ticks_ = delta;
    rate_packets_ = since_pcr_;
  }
  last_pcr_ = pcr;
  since_pcr_ = 0;
}

void DatagramScheduler::time_untimed(std::uint64_t delta, std::uint64_t count) {
  if (count == 0) return;
  const std::uint64_t queued = std::min<std::uint64_t>(untimed_queued(), count);
  for (std::uint64_t k = count - queued + 1; k <= count; ++k) times_.push_back(last_pcr_time_ + delta * k / count);
  last_pcr_time_ += delta;
}

void DatagramScheduler::extrapolate_untimed() {
  const std::uint64_t delta = since_pcr_ * rate_ticks_ / rate_packets_;
  time_untimed(delta, since_pcr_);
  last_pcr_ = (last_pcr_ + delta) % kPcrWrap;  // where the PCR would be had it come
  since_pcr_ = 0;
  ++stats_.pcr_gaps;
}

void DatagramScheduler::emit_ready(const Emit& emit, bool all) {
  std::array<TsPacket, kPacketsPerDatagram> buffer{};
  while (!queue_.empty()) {
    const bool timed = !times_.empty();
    if (!timed && !all && !(queue_.size() > kMaxHeld && !rate_known_)) break;
    if (timed && !all && queue_.size() < kPacketsPerDatagram) break;
    const std::size_t n = std::min(kPacketsPerDatagram, queue_.size());
    std::copy_n(queue_.begin(), n, buffer.begin());
    ScheduledDatagram d;
    d.packets = std::span(buffer.data(), n);
    if (timed) {
      d.due = times_.front();
      d.duration = n * rate_ticks_ / rate_packets_;
      times_.erase(times_.begin(), times_.begin() + static_cast<std::ptrdiff_t>(std::min(n, times_.size())));
    } else {
      ++stats_.unpaced_datagrams;
      if (first_pcr_seen_) {
        if (first_pcr_index_ < n)
          first_pcr_seen_ = false;
        else
          first_pcr_index_ -= n;
      }
    }
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    ++stats_.datagrams;
    emit(d);
  }
}

void DepartureClock::wait(const ScheduledDatagram& d) {
  if (!d.due) return;
  const auto now = std::chrono::steady_clock::now();
  if (!anchor_wall_) {
    anchor_wall_ = now;
    anchor_time_ = *d.due;
  }
  auto due = *anchor_wall_ + to_duration(*d.due > anchor_time_ ? *d.due - anchor_time_ : 0);
  if (now - due > kMaxLateness) {  // far behind (the input stalled): start again from now
    anchor_wall_ = now;
    anchor_time_ = *d.due;
    due = now;
    ++reanchors_;
  }
  // No more in any window than the stream's rate allows, plus one: after a stall the sender catches
  // up without a burst. The departure that many back must be a window ago: departures are noted
  // after the send returns, so the datagram that many back certainly left a window before this one.
  if (d.duration > 0) {
    const auto spacing = to_duration(d.duration);
    const auto allowed = std::min<std::size_t>(
        static_cast<std::size_t>((kWindow + spacing - std::chrono::nanoseconds(1)) / spacing) + 1, recent_.size());
    if (recent_count_ >= allowed) {
      const auto back = recent_[(recent_next_ + recent_.size() - allowed) % recent_.size()];
      due = std::max(due, back + kWindow + kWindowMargin);
    }
  }
  if (due > now) sleep_until(due);
}

void DepartureClock::departed() {
  recent_[recent_next_] = std::chrono::steady_clock::now();
  recent_next_ = (recent_next_ + 1) % recent_.size();
  recent_count_ = std::min(recent_count_ + 1, recent_.size());
}

}  // namespace usher::streams
