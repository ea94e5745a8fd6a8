#include "usher/core/stop_signals.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace usher {
namespace {

// Process-wide, as the handlers are. Set from a signal handler: lock-free atomics and a pipe only.
std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};
std::atomic<bool> g_installed{false};
int g_pipe[2] = {-1, -1};
struct sigaction g_previous_int {};
struct sigaction g_previous_term {};

static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the signal handler may only touch lock-free atomics");

void wake() {
  const char byte = 1;
  const int saved = errno;
  // Non-blocking: once the pipe holds a byte it is readable, and more changes nothing.
  [[maybe_unused]] const auto n = ::write(g_pipe[1], &byte, 1);
  errno = saved;
}

extern "C" void on_stop_signal(int sig) {
  if (g_stop.exchange(true)) ::_exit(128 + sig);  // the second one: the operator will not wait
  g_signal.store(sig);
  wake();
}

}  // namespace

StopSignals::StopSignals() {
  if (g_installed.exchange(true)) throw std::runtime_error("stop signals are already handled by another StopSignals");
  if (::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    g_installed = false;
    throw std::runtime_error(std::string("cannot make the stop pipe: ") + std::strerror(errno));
  }
  g_stop = false;
  g_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  // No SA_RESTART: a blocking call in the thread that takes the signal returns EINTR, which the
  // loops treat as "look at the flag".
  action.sa_flags = 0;
  ::sigaction(SIGINT, &action, &g_previous_int);
  ::sigaction(SIGTERM, &action, &g_previous_term);
}

StopSignals::~StopSignals() {
  ::sigaction(SIGINT, &g_previous_int, nullptr);
  ::sigaction(SIGTERM, &g_previous_term, nullptr);
  ::close(g_pipe[0]);
  ::close(g_pipe[1]);
  g_pipe[0] = g_pipe[1] = -1;
  g_installed = false;
}

const std::atomic<bool>& StopSignals::flag() const { return g_stop; }
int StopSignals::fd() const { return g_pipe[0]; }
int StopSignals::signal_number() const { return g_signal.load(); }

void StopSignals::request() {
  if (!g_stop.exchange(true)) wake();
}

}  // namespace usher
