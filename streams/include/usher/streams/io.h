// Packet inputs and outputs: files, stdin/stdout ("-"), UDP and RTP, unicast and multicast (any
// source or source-specific), IPv4 and IPv6. The forms of a locator are in locator.h.
//
//   auto in = open_source("rtp://@239.1.1.1:1234");   // or "file.ts", "-", "udp://10.0.0.1@232.1.1.1:1234"
//   auto out = open_sink("udp://[ff15::1]:5000?ttl=4"); // each datagram leaves at its PCR time
//
// Sources resynchronise on 0x47 (PacketSync) and strip RTP headers (also on udp://, when the
// datagrams are RTP); network sinks send 7 packets per datagram, paced by pacing.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "usher/streams/packet_sync.h"
#include "usher/streams/rtp.h"
#include "usher/streams/ts_packet.h"

namespace usher::streams {

class PacketSource {
 public:
  virtual ~PacketSource() = default;
  // Appends up to about `max_packets` packets. Returns false at end of input (or after an idle
  // timeout on a network source); `out` may still have received the last packets.
  virtual bool read(std::vector<TsPacket>& out, std::size_t max_packets) = 0;
  [[nodiscard]] virtual std::uint64_t discarded_bytes() const = 0;
  // A regular file's size in bytes (what progress is a percentage of); 0 for a stream.
  [[nodiscard]] virtual std::uint64_t size_bytes() const { return 0; }
  // Sequence-number counters of an RTP input (rtp://, or udp:// once RTP datagrams arrived);
  // nullopt for anything else.
  [[nodiscard]] virtual std::optional<RtpInputStats> rtp_stats() const { return std::nullopt; }
};

// Counters of a udp:// or rtp:// output.
struct NetworkOutputStats {
  std::uint64_t datagrams = 0;        // sent
  std::uint64_t unpaced = 0;          // of which sent as they came (before the rate was known, no PCRs, pacing off)
  std::uint64_t discontinuities = 0;  // PCR jumps bridged at the last rate
  std::uint64_t pcr_gaps = 0;         // stretches without a PCR bridged at the last rate
  std::uint64_t restarts = 0;         // pacing started again from now after the input stalled
};

class PacketSink {
 public:
  virtual ~PacketSink() = default;
  virtual void write(std::span<const TsPacket> packets) = 0;
  virtual void close() {}
  // A network output's counters; nullopt for a file or stdout.
  [[nodiscard]] virtual std::optional<NetworkOutputStats> network_stats() const { return std::nullopt; }
};

struct SourceOptions {
  // A network source ends when nothing arrives for this long (0 = wait for ever).
  std::chrono::milliseconds idle_timeout{0};
  // A descriptor that becomes readable when the reader should stop waiting (a stop signal's pipe):
  // read() then returns true at once with nothing, and the caller looks at why. -1: none.
  int interrupt_fd = -1;
  // A network or pipe source that has had nothing for this long returns true with nothing, so that
  // its caller can report on a silent input (status lines). 0: it waits for data (or the above).
  std::chrono::milliseconds wake_every{0};
};
struct SinkOptions {
  // udp:// and rtp:// only: each datagram leaves at its time from the stream's PCRs (pacing.h);
  // false sends them as they come.
  bool pace_by_pcr = true;
  // Files only: created (or truncated) when the first packets are written, so that a run refused
  // before it writes anything leaves the output as it was.
  bool open_on_first_write = false;
};

// Opens a source or sink from a locator (locator.h): a path, "-" for stdin/stdout, udp:// or
// rtp://. Throws std::runtime_error with a message saying what failed, naming the part of a bad
// locator that is wrong.
std::unique_ptr<PacketSource> open_source(const std::string& locator, const SourceOptions& options = {});
std::unique_ptr<PacketSink> open_sink(const std::string& locator, const SinkOptions& options = {});

// Throws std::runtime_error if writing to `output` would overwrite `input`: the same regular file (by
// device and inode), named by a path or reached through stdin/stdout ("-"). Opening it for writing
// would truncate the input before a packet of it is read. Network locators never clash.
void check_output_is_not_input(const std::string& input, const std::string& output);

// Memory sink, for tests and benchmarks.
class MemorySink final : public PacketSink {
 public:
  void write(std::span<const TsPacket> packets) override {
    packets_.insert(packets_.end(), packets.begin(), packets.end());
  }
  std::vector<TsPacket>& packets() { return packets_; }

 private:
  std::vector<TsPacket> packets_;
};

// Reads a whole TS file into memory (tests, benchmarks). Throws on I/O errors.
std::vector<TsPacket> read_ts_file(const std::string& path);
void write_ts_file(const std::string& path, std::span<const TsPacket> packets);

}  // namespace usher::streams
