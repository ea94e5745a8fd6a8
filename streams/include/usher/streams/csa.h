// DVB-CSA2 scrambling of TS packets through libdvbcsa, the one wrapper of that library: bitslice and
// single-packet key contexts, and CsaPipeline, which keeps libdvbcsa's bitslice batches as full as
// the latency bound allows. The control words themselves are core's (usher/core/control_word.h), so
// that what only carries them (ECMs, the secure element) needs neither libdvbcsa nor packets. The
// names stay in namespace usher, next to ControlWord, as the scrambler and descrambler use them.
//
// libdvbcsa's bitslice functions cost the same for a half-empty batch as for a full one, so
// CsaPipeline queues the packets of each key slot (one per service and parity) and runs a batch when
// it is full, when the slot's key is about to change, or when its oldest packet has waited max_hold
// of stream time (20 ms by default): a low-rate service (radio) runs partial batches rather than
// waiting seconds for its own 128 packets, a high-rate one still fills its batches. Packets leave
// in their input order: a packet waits until every earlier one is done.
//
//   CsaPipeline pipe(CsaDirection::decrypt);
//   auto even = pipe.add_slot();
//   pipe.set_key(even, cw);
//   for (auto& p : packets) {
//     clock.observe(p);
//     pipe.advance_to(clock.now());
//     pipe.push(p, p.scrambling() == Scrambling::even ? even : kNoSlot);
//   }
//   pipe.flush(out);
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <vector>

#include "usher/core/control_word.h"
#include "usher/streams/ts_packet.h"

struct dvbcsa_bs_key_s;
struct dvbcsa_bs_batch_s;
struct dvbcsa_key_s;

namespace usher {

std::size_t csa_batch_size();

// A libdvbcsa bitslice key context.
class CsaBitsliceKey {
 public:
  CsaBitsliceKey();
  CsaBitsliceKey(const CsaBitsliceKey&) = delete;
  CsaBitsliceKey& operator=(const CsaBitsliceKey&) = delete;
  CsaBitsliceKey(CsaBitsliceKey&&) noexcept;
  CsaBitsliceKey& operator=(CsaBitsliceKey&&) noexcept;
  ~CsaBitsliceKey();
  void set(const ControlWord& cw);
  // `batch` is terminated by an entry with data == nullptr, as libdvbcsa requires.
  void encrypt(const dvbcsa_bs_batch_s* batch) const;
  void decrypt(const dvbcsa_bs_batch_s* batch) const;

 private:
  dvbcsa_bs_key_s* key_;
};

// libdvbcsa's one-packet-at-a-time implementation: a second, independent path used by the tests to
// check the bitslice one.
class CsaSingleKey {
 public:
  explicit CsaSingleKey(const ControlWord& cw);
  CsaSingleKey(const CsaSingleKey&) = delete;
  CsaSingleKey& operator=(const CsaSingleKey&) = delete;
  ~CsaSingleKey();
  void encrypt(std::span<std::uint8_t> payload) const;
  void decrypt(std::span<std::uint8_t> payload) const;

 private:
  dvbcsa_key_s* key_;
};

enum class CsaDirection { encrypt, decrypt };

class CsaPipeline {
 public:
  using Slot = std::size_t;
  static constexpr Slot kNoSlot = std::numeric_limits<Slot>::max();

  struct Stats {
    std::uint64_t packets_processed = 0;
    std::uint64_t full_batches = 0;
    std::uint64_t partial_batches = 0;
  };

  // 20 ms of stream time (27 MHz units): a packet's wait for its batch to fill, at most.
  static constexpr std::uint64_t kDefaultMaxHold = 20 * 27'000;

  // `max_hold`: how long (stream time, 27 MHz units) a packet may wait for its batch to fill.
  // `max_held`: the packets held back, at most (0: 16 batches); a safety net for when stream time
  // does not move (a caller that never calls advance_to; without PCRs StreamClock still counts
  // packets at an assumed rate, so the time bound holds there too).
  explicit CsaPipeline(CsaDirection direction, std::uint64_t max_hold = kDefaultMaxHold, std::size_t max_held = 0);
  CsaPipeline(const CsaPipeline&) = delete;
  CsaPipeline& operator=(const CsaPipeline&) = delete;
  ~CsaPipeline();

  Slot add_slot();
  // Runs the slot's queued packets with the old key, then installs the new one.
  void set_key(Slot slot, const ControlWord& cw);
  // Runs the slot's queued packets with the old key, then leaves the slot without a key.
  void clear_key(Slot slot);
  [[nodiscard]] bool has_key(Slot slot) const;
  [[nodiscard]] bool key_equals(Slot slot, const ControlWord& cw) const;

  // The stream time (27 MHz units) of the packets pushed from now on; it never goes back (an earlier
  // time counts as the last one). Runs each partial batch whose oldest packet would have waited more
  // than max_hold by the next packet (the spacing of the last two times), so that, with the stream's
  // packets evenly spaced, no packet waits more than max_hold past its own time.
  void advance_to(std::uint64_t stream_time);
  void set_max_hold(std::uint64_t ticks) { max_hold_ = ticks; }
  [[nodiscard]] std::uint64_t max_hold() const { return max_hold_; }

  // Packets pushed from now on are written straight into `out` (after what it holds), and are
  // encrypted or decrypted there: the packets' one copy. Until the next take_ready or flush, `out`
  // is the pipeline's: its tail is held packets, not to be sent, read or changed by the caller.
  // Optional: without it packets are held in the pipeline's own buffer and copied out when ready.
  void output_to(std::vector<streams::TsPacket>& out);
  // Queues a packet. With a slot, its payload (if any) is encrypted or decrypted with the slot's key;
  // the caller sets the scrambling bits. Without a slot it passes unchanged.
  void push(const streams::TsPacket& packet, Slot slot);
  // The same, the queued copy's transport_scrambling_control set to `mark` (the headend marks the
  // parity it scrambles with, the STB clears it): no copy of the packet of the caller's own for that.
  void push(const streams::TsPacket& packet, Slot slot, streams::Scrambling mark);
  // Leaves in `out` every packet whose processing (and that of all earlier packets) is done, in
  // order after what `out` held; what is not done is taken back and held.
  void take_ready(std::vector<streams::TsPacket>& out);
  // Runs every queued batch, full or not, and moves everything to `out`.
  void flush(std::vector<streams::TsPacket>& out);
  [[nodiscard]] const Stats& stats() const { return stats_; }
  [[nodiscard]] std::size_t held() const { return held_; }

 private:
  static constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();
  struct KeySlot;
  void run(KeySlot& slot);
  void run_overdue();
  void rebase(const streams::TsPacket* from, streams::TsPacket* to);
  streams::TsPacket& append(const streams::TsPacket& packet);
  void queue(streams::TsPacket& held, Slot slot);

  CsaDirection direction_;
  std::size_t batch_size_;
  std::size_t few_packets_;  // a batch of this many or fewer runs packet by packet (cheaper)
  std::size_t max_held_;
  std::uint64_t max_hold_;
  std::uint64_t now_ = 0;         // stream time of the packets being pushed
  std::uint64_t spacing_ = 0;     // between the last two distinct times given
  std::uint64_t oldest_time_ = kNever;  // earliest first_time of the slots with packets queued; may be
                                        // stale (too early, never too late), then looked at again
  // The packets held back are the tail of *dest_, from dest_base_ on, in order: either the caller's
  // output (output_to) or own_, between calls. Queued payloads point into them; whenever the block
  // moves (the vector grows, or it changes hands) they are pointed at its new place.
  std::vector<streams::TsPacket> own_;
  std::vector<streams::TsPacket>* dest_ = &own_;
  std::size_t dest_base_ = 0;
  std::uint64_t front_seq_ = 0;  // sequence number of the oldest packet held
  std::size_t held_ = 0;
  std::vector<std::unique_ptr<KeySlot>> slots_;
  Stats stats_;
};

}  // namespace usher
