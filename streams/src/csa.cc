#include "usher/streams/csa.h"

extern "C" {
#include <dvbcsa/dvbcsa.h>
}

#include <algorithm>
#include <optional>
#include <stdexcept>

namespace usher {

std::size_t csa_batch_size() { return dvbcsa_bs_batch_size(); }

CsaBitsliceKey::CsaBitsliceKey() : key_(dvbcsa_bs_key_alloc()) {
  if (key_ == nullptr) throw std::bad_alloc();
}
CsaBitsliceKey::CsaBitsliceKey(CsaBitsliceKey&& o) noexcept : key_(o.key_) { o.key_ = nullptr; }
CsaBitsliceKey& CsaBitsliceKey::operator=(CsaBitsliceKey&& o) noexcept {
  std::swap(key_, o.key_);
  return *this;
}
CsaBitsliceKey::~CsaBitsliceKey() {
  if (key_ != nullptr) dvbcsa_bs_key_free(key_);
}
void CsaBitsliceKey::set(const ControlWord& cw) { dvbcsa_bs_key_set(cw.bytes().data(), key_); }
void CsaBitsliceKey::encrypt(const dvbcsa_bs_batch_s* batch) const { dvbcsa_bs_encrypt(key_, batch, 184); }
void CsaBitsliceKey::decrypt(const dvbcsa_bs_batch_s* batch) const { dvbcsa_bs_decrypt(key_, batch, 184); }

CsaSingleKey::CsaSingleKey(const ControlWord& cw) : key_(dvbcsa_key_alloc()) {
  if (key_ == nullptr) throw std::bad_alloc();
  dvbcsa_key_set(cw.bytes().data(), key_);
}
CsaSingleKey::~CsaSingleKey() { dvbcsa_key_free(key_); }
void CsaSingleKey::encrypt(std::span<std::uint8_t> p) const {
  dvbcsa_encrypt(key_, p.data(), static_cast<unsigned>(p.size()));
}
void CsaSingleKey::decrypt(std::span<std::uint8_t> p) const {
  dvbcsa_decrypt(key_, p.data(), static_cast<unsigned>(p.size()));
}

struct CsaPipeline::KeySlot {
  CsaBitsliceKey key;
  std::unique_ptr<CsaSingleKey> single;  // the same key, for batches too small to pay for bitslicing
  std::optional<ControlWord> cw;
  std::vector<dvbcsa_bs_batch_s> batch;  // batch_size entries + terminator
  std::size_t count = 0;
  std::uint64_t first_seq = 0;   // sequence number of the first queued packet
  std::uint64_t first_time = 0;  // its stream time
};

CsaPipeline::CsaPipeline(CsaDirection direction, std::uint64_t max_hold, std::size_t max_held)
    : direction_(direction),
      batch_size_(csa_batch_size()),
      few_packets_(batch_size_ / 10),
      max_held_(max_held != 0 ? max_held : 16 * csa_batch_size()),
      max_hold_(max_hold) {
  own_.reserve(std::min<std::size_t>(2 * max_held_, std::size_t{1} << 14));
}

CsaPipeline::~CsaPipeline() = default;

CsaPipeline::Slot CsaPipeline::add_slot() {
  auto s = std::make_unique<KeySlot>();
  s->batch.resize(batch_size_ + 1, dvbcsa_bs_batch_s{nullptr, 0});
  slots_.push_back(std::move(s));
  return slots_.size() - 1;
}

void CsaPipeline::set_key(Slot slot, const ControlWord& cw) {
  KeySlot& s = *slots_.at(slot);
  if (s.cw && *s.cw == cw) return;
  run(s);
  s.key.set(cw);
  s.single = std::make_unique<CsaSingleKey>(cw);
  s.cw = cw.clone();
}

void CsaPipeline::clear_key(Slot slot) {
  KeySlot& s = *slots_.at(slot);
  if (!s.cw) return;
  run(s);
  s.cw.reset();
}

bool CsaPipeline::has_key(Slot slot) const { return slots_.at(slot)->cw.has_value(); }
bool CsaPipeline::key_equals(Slot slot, const ControlWord& cw) const {
  const auto& s = *slots_.at(slot);
  return s.cw && *s.cw == cw;
}

void CsaPipeline::run(KeySlot& s) {
  if (s.count == 0) return;
  if (s.count <= few_packets_ && s.single) {
    // A bitslice batch costs the same however few packets it carries (every lane is computed), and
    // one packet alone costs about as much as eight in a full batch (measured with libdvbcsa 1.1 on
    // x86-64: 11.5 us against 1.4 us a packet, 157 us for a batch of one). A low-rate service's
    // batches, cut short by the hold, are a few packets each: they go one by one, same bytes out.
    for (std::size_t i = 0; i < s.count; ++i) {
      const std::span payload(s.batch[i].data, s.batch[i].len);
      if (direction_ == CsaDirection::encrypt) {
        s.single->encrypt(payload);
      } else {
        s.single->decrypt(payload);
      }
    }
  } else {
    s.batch[s.count] = dvbcsa_bs_batch_s{nullptr, 0};
    if (direction_ == CsaDirection::encrypt) {
      s.key.encrypt(s.batch.data());
    } else {
      s.key.decrypt(s.batch.data());
    }
  }
  stats_.packets_processed += s.count;
  if (s.count == batch_size_) {
    ++stats_.full_batches;
  } else {
    ++stats_.partial_batches;
  }
  s.count = 0;
}

void CsaPipeline::advance_to(std::uint64_t stream_time) {
  if (stream_time > now_) {
    spacing_ = stream_time - now_;
    now_ = stream_time;
  }
  // Looked at once per packet, so the common case (nothing overdue) is one comparison. Deciding one
  // packet ahead (now + spacing) is what keeps the wait within max_hold rather than max_hold plus one
  // packet's time, which at 128 kbit/s alone is 12 ms.
  if (oldest_time_ != kNever && now_ + spacing_ > oldest_time_ + max_hold_) run_overdue();
}

void CsaPipeline::run_overdue() {
  std::uint64_t oldest = kNever;
  for (auto& s : slots_) {
    if (s->count == 0) continue;
    if (now_ + spacing_ > s->first_time + max_hold_) {
      run(*s);
    } else {
      oldest = std::min(oldest, s->first_time);
    }
  }
  oldest_time_ = oldest;
}

void CsaPipeline::rebase(const streams::TsPacket* from, streams::TsPacket* to) {
  // The held packets moved as one block, in order: each queued payload is as far from the block's
  // start as before.
  const auto* old_start = reinterpret_cast<const std::uint8_t*>(from);
  auto* new_start = reinterpret_cast<std::uint8_t*>(to);
  for (auto& s : slots_) {
    for (std::size_t i = 0; i < s->count; ++i) s->batch[i].data = new_start + (s->batch[i].data - old_start);
  }
}

void CsaPipeline::output_to(std::vector<streams::TsPacket>& out) {
  if (dest_ == &out) return;
  // The held packets (the tail of the present destination) go to the end of `out`.
  const std::size_t base = out.size();
  out.insert(out.end(), dest_->begin() + static_cast<std::ptrdiff_t>(dest_base_), dest_->end());
  if (held_ > 0) rebase(dest_->data() + dest_base_, out.data() + base);
  dest_->resize(dest_base_);
  dest_ = &out;
  dest_base_ = base;
}

streams::TsPacket& CsaPipeline::append(const streams::TsPacket& packet) {
  if (dest_->size() == dest_->capacity()) {
    // Grown by hand rather than by push_back, so that the queued payloads can be pointed at again.
    const streams::TsPacket* before = dest_->data() + dest_base_;
    dest_->reserve(std::max<std::size_t>(64, dest_->capacity() * 2));
    if (held_ > 0) rebase(before, dest_->data() + dest_base_);
  }
  dest_->push_back(packet);
  ++held_;
  return dest_->back();
}

void CsaPipeline::push(const streams::TsPacket& packet, Slot slot) { queue(append(packet), slot); }

void CsaPipeline::push(const streams::TsPacket& packet, Slot slot, streams::Scrambling mark) {
  streams::TsPacket& held = append(packet);
  held.set_scrambling(mark);
  queue(held, slot);
}

void CsaPipeline::queue(streams::TsPacket& held, Slot slot) {
  const std::uint64_t seq = front_seq_ + held_ - 1;
  if (slot != kNoSlot) {
    KeySlot& s = *slots_[slot];
    auto payload = held.payload();
    if (!payload.empty() && s.cw) {
      if (s.count == 0) {
        s.first_seq = seq;
        s.first_time = now_;
        oldest_time_ = std::min(oldest_time_, now_);
      }
      s.batch[s.count++] = dvbcsa_bs_batch_s{payload.data(), static_cast<unsigned>(payload.size())};
      if (s.count == batch_size_) run(s);
    }
  }
  if (held_ > max_held_) {
    // The safety net, for when stream time does not move (a caller that gives none): once a slow
    // slot's oldest packet has waited for max_held_ packets, run it even if not full.
    KeySlot* oldest = nullptr;
    for (auto& s : slots_) {
      if (s->count > 0 && (oldest == nullptr || s->first_seq < oldest->first_seq)) oldest = s.get();
    }
    if (oldest != nullptr && front_seq_ + held_ - oldest->first_seq > max_held_) run(*oldest);
  }
}

void CsaPipeline::take_ready(std::vector<streams::TsPacket>& out) {
  output_to(out);
  std::uint64_t limit = front_seq_ + held_;
  for (const auto& s : slots_) {
    if (s->count > 0) limit = std::min(limit, s->first_seq);
  }
  const auto n = static_cast<std::size_t>(limit - front_seq_);
  front_seq_ += n;
  held_ -= n;
  dest_base_ += n;
  // What is still waiting for its batch leaves `out` (whose caller will send it) and is held here;
  // either way `out` is the caller's again.
  own_.assign(out.begin() + static_cast<std::ptrdiff_t>(dest_base_), out.end());
  if (held_ > 0) rebase(out.data() + dest_base_, own_.data());
  out.resize(dest_base_);
  dest_ = &own_;
  dest_base_ = 0;
}

void CsaPipeline::flush(std::vector<streams::TsPacket>& out) {
  for (auto& s : slots_) run(*s);
  oldest_time_ = kNever;
  take_ready(out);
}

}  // namespace usher
