// StopSignals: the one way a long-running command learns it was asked to stop (SIGINT: Ctrl-C,
// SIGTERM: a service manager). While one exists, the first of these signals sets a flag and makes a
// descriptor readable; the loops poll the flag and wait on the descriptor next to their input, so a
// blocking read (a silent UDP socket, an idle pipe) ends at once rather than at its next packet. The
// command then finishes as at the end of its input: flushes, prints its counters, exits 0. A second
// signal while it stops exits at once (status 128 + the signal), for an operator who will not wait.
//
//   StopSignals stop;                  // handlers installed; restored when it goes
//   while (!stop.requested()) { poll({input, stop.fd()}); ... }
//
// One at a time per process: the handlers are process-wide. The handler only stores to a lock-free
// atomic and writes to a pipe, so it is safe whichever thread the kernel delivers the signal to.
#pragma once

#include <atomic>

namespace usher {

class StopSignals {
 public:
  // Installs the handlers; throws std::runtime_error if another StopSignals exists or the pipe
  // cannot be made.
  StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  ~StopSignals();

  [[nodiscard]] bool requested() const { return flag().load(std::memory_order_relaxed); }
  // For loops that take a flag (net::ReplyServer::run).
  [[nodiscard]] const std::atomic<bool>& flag() const;
  // Readable once a stop is requested (never read from it: it stays readable).
  [[nodiscard]] int fd() const;
  // The signal that asked for the stop (0: none yet, or request() from inside).
  [[nodiscard]] int signal_number() const;
  // Asks for a stop from inside the program, as the signal would (tests; a fatal error elsewhere).
  void request();
};

}  // namespace usher
