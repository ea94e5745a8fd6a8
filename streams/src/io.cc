#include "usher/streams/io.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace usher::streams {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  ~Fd() {
    if (fd_ > 2) ::close(fd_);
  }
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

struct UdpAddress {
  sockaddr_in addr{};
  bool multicast = false;
};

// udp://HOST:PORT and nothing else: HOST an IPv4 address or a name (0.0.0.0 to listen on every
// interface), PORT decimal from 1 to 65535. No parameters are defined, so "?ttl=4" or a path is a
// mistake to report, not something to ignore.
std::optional<UdpAddress> parse_udp(const std::string& locator) {
  const std::string prefix = "udp://";
  if (locator.rfind(prefix, 0) != 0) return std::nullopt;
  const std::string rest = locator.substr(prefix.size());
  auto refuse = [&](const std::string& why) -> std::runtime_error {
    return std::runtime_error("bad UDP locator '" + locator + "': " + why + " (use udp://HOST:PORT, e.g. udp://239.1.1.1:1234)");
  };
  if (const auto extra = rest.find_first_of("?/#@"); extra != std::string::npos) {
    throw refuse("unexpected '" + rest.substr(extra) + "' (no parameters are supported)");
  }
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos) throw refuse("no port");
  const std::string host = rest.substr(0, colon);
  const std::string port = rest.substr(colon + 1);
  if (host.empty()) throw refuse("no host");
  if (host.find(':') != std::string::npos) throw refuse("IPv6 is not supported");
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) {
    throw refuse("the port must be a decimal number");
  }
  const long port_number = std::stol(port);
  if (port_number < 1 || port_number > 65535) throw refuse("port " + port + " is out of range (1 to 65535)");
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    throw std::runtime_error("cannot resolve UDP address " + locator);
  }
  UdpAddress a;
  std::memcpy(&a.addr, res->ai_addr, sizeof(a.addr));
  freeaddrinfo(res);
  const std::uint32_t ip = ntohl(a.addr.sin_addr.s_addr);
  a.multicast = (ip >> 28) == 0xE;
  return a;
}

// Waits until `fd` is readable, `interrupt_fd` is, or `timeout_ms` passes (-1: no limit).
// Returns 1 when `fd` is readable, 0 otherwise (interrupted, timed out, EINTR).
int wait_readable(int fd, int interrupt_fd, int timeout_ms, const std::string& what) {
  pollfd p[2] = {{fd, POLLIN, 0}, {interrupt_fd, POLLIN, 0}};
  const int r = ::poll(p, interrupt_fd >= 0 ? 2 : 1, timeout_ms);
  if (r < 0) {
    if (errno == EINTR) return 0;
    fail("poll " + what);
  }
  if (interrupt_fd >= 0 && (p[1].revents & POLLIN) != 0) return 0;
  return r > 0 && p[0].revents != 0 ? 1 : 0;
}

class FdSource final : public PacketSource {
 public:
  FdSource(Fd fd, std::string name, const SourceOptions& o = {})
      : fd_(std::move(fd)), name_(std::move(name)), options_(o), buffer_(188 * 1024) {
    struct stat st {};
    if (::fstat(fd_.get(), &st) == 0 && S_ISREG(st.st_mode)) size_ = static_cast<std::uint64_t>(st.st_size);
    else waits_ = options_.interrupt_fd >= 0 || options_.wake_every.count() > 0;
  }
  bool read(std::vector<TsPacket>& out, std::size_t max_packets) override {
    if (eof_) return false;
    if (waits_) {  // a pipe or terminal: wait here, where a stop or a status tick can cut in
      const int timeout = options_.wake_every.count() > 0 ? static_cast<int>(options_.wake_every.count()) : -1;
      if (wait_readable(fd_.get(), options_.interrupt_fd, timeout, name_) == 0) return true;
    }
    const std::size_t want = std::min(buffer_.size(), std::max<std::size_t>(1, max_packets) * kPacketSize);
    const ssize_t n = ::read(fd_.get(), buffer_.data(), want);
    if (n < 0) {
      if (errno == EINTR) return true;
      fail("read " + name_);
    }
    if (n == 0) {
      sync_.finish(out);
      eof_ = true;
      return false;
    }
    sync_.feed(std::span(buffer_.data(), static_cast<std::size_t>(n)), out);
    return true;
  }
  [[nodiscard]] std::uint64_t discarded_bytes() const override { return sync_.discarded_bytes(); }
  [[nodiscard]] std::uint64_t size_bytes() const override { return size_; }

 private:
  Fd fd_;
  std::string name_;
  SourceOptions options_;
  std::vector<std::uint8_t> buffer_;
  PacketSync sync_;
  bool eof_ = false;
  bool waits_ = false;
  std::uint64_t size_ = 0;
};

class UdpSource final : public PacketSource {
 public:
  UdpSource(const UdpAddress& a, const std::string& locator, const SourceOptions& o)
      : fd_(::socket(AF_INET, SOCK_DGRAM, 0)), locator_(locator), options_(o), buffer_(65536) {
    if (fd_.get() < 0) fail("socket");
    const int one = 1;
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const int rcvbuf = 8 << 20;
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_in bind_addr = a.addr;
    if (a.multicast) bind_addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&bind_addr), sizeof(bind_addr)) != 0) {
      fail("bind " + locator);
    }
    if (a.multicast) {
      ip_mreq mreq{};
      mreq.imr_multiaddr = a.addr.sin_addr;
      mreq.imr_interface.s_addr = htonl(INADDR_ANY);
      if (::setsockopt(fd_.get(), IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) != 0) {
        fail("join multicast group " + locator);
      }
    }
  }
  bool read(std::vector<TsPacket>& out, std::size_t) override {
    using namespace std::chrono;
    const auto now = steady_clock::now();
    if (last_data_ == steady_clock::time_point{}) last_data_ = now;
    // The wait ends at the first of: the idle timeout (the sender has stopped), the next wake.
    milliseconds wait{-1};
    if (options_.idle_timeout.count() > 0) {
      wait = std::max(milliseconds(0), duration_cast<milliseconds>(last_data_ + options_.idle_timeout - now));
    }
    if (options_.wake_every.count() > 0 && (wait.count() < 0 || options_.wake_every < wait)) wait = options_.wake_every;
    if (wait_readable(fd_.get(), options_.interrupt_fd, static_cast<int>(wait.count()), locator_) == 0) {
      return !(options_.idle_timeout.count() > 0 && steady_clock::now() - last_data_ >= options_.idle_timeout);
    }
    last_data_ = steady_clock::now();
    const ssize_t n = ::recv(fd_.get(), buffer_.data(), buffer_.size(), 0);
    if (n < 0) {
      if (errno == EINTR) return true;
      fail("recv " + locator_);
    }
    sync_.feed(std::span(buffer_.data(), static_cast<std::size_t>(n)), out);
    return true;
  }
  [[nodiscard]] std::uint64_t discarded_bytes() const override { return sync_.discarded_bytes(); }

 private:
  Fd fd_;
  std::string locator_;
  SourceOptions options_;
  std::vector<std::uint8_t> buffer_;
  PacketSync sync_;
  std::chrono::steady_clock::time_point last_data_{};
};

class FdSink final : public PacketSink {
 public:
  FdSink(Fd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  void write(std::span<const TsPacket> packets) override {
    const auto* data = reinterpret_cast<const std::uint8_t*>(packets.data());
    std::size_t left = packets.size_bytes();
    while (left > 0) {
      const ssize_t n = ::write(fd_.get(), data, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("write " + name_);
      }
      data += n;
      left -= static_cast<std::size_t>(n);
    }
  }

 private:
  Fd fd_;
  std::string name_;
};

// A file sink that creates (truncates) its file at the first write.
class DeferredFileSink final : public PacketSink {
 public:
  explicit DeferredFileSink(std::string path) : path_(std::move(path)) {}
  void write(std::span<const TsPacket> packets) override {
    if (packets.empty()) return;
    if (!sink_) {
      Fd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (fd.get() < 0) fail("cannot open output " + path_);
      sink_ = std::make_unique<FdSink>(std::move(fd), path_);
    }
    sink_->write(packets);
  }

 private:
  std::string path_;
  std::unique_ptr<FdSink> sink_;
};

class UdpSink final : public PacketSink {
 public:
  static constexpr std::size_t kPacketsPerDatagram = 7;
  UdpSink(const UdpAddress& a, const std::string& locator, const SinkOptions& o)
      : fd_(::socket(AF_INET, SOCK_DGRAM, 0)), addr_(a.addr), locator_(locator), options_(o) {
    if (fd_.get() < 0) fail("socket");
    if (a.multicast) {
      const unsigned char ttl = 1;
      ::setsockopt(fd_.get(), IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
    }
  }
  ~UdpSink() override { flush(); }
  void write(std::span<const TsPacket> packets) override {
    for (const auto& p : packets) {
      if (options_.pace_by_pcr) pacer_.before_send(p);
      pending_.push_back(p);
      if (pending_.size() == kPacketsPerDatagram) flush();
    }
  }
  void close() override { flush(); }

 private:
  void flush() {
    if (pending_.empty()) return;
    const ssize_t n = ::sendto(fd_.get(), pending_.data(), pending_.size() * kPacketSize, 0,
                               reinterpret_cast<const sockaddr*>(&addr_), sizeof(addr_));
    pending_.clear();
    if (n < 0 && errno != ECONNREFUSED) fail("send to " + locator_);
  }
  Fd fd_;
  sockaddr_in addr_;
  std::string locator_;
  SinkOptions options_;
  PcrPacer pacer_;
  std::vector<TsPacket> pending_;
};

}  // namespace

void PcrPacer::before_send(const TsPacket& packet) {
  const auto pcr = packet.pcr();
  if (!pcr) return;
  if (!pcr_pid_) pcr_pid_ = packet.pid();
  if (packet.pid() != *pcr_pid_) return;
  const auto now = std::chrono::steady_clock::now();
  if (anchor_time_ == std::chrono::steady_clock::time_point{} || *pcr < anchor_pcr_ ||
      *pcr - anchor_pcr_ > 3600 * kPcrHz) {
    anchor_pcr_ = *pcr;
    anchor_time_ = now;
    return;
  }
  const auto due = anchor_time_ + std::chrono::microseconds((*pcr - anchor_pcr_) / 27);
  if (due > now + std::chrono::seconds(1)) {  // discontinuity: re-anchor rather than stall
    anchor_pcr_ = *pcr;
    anchor_time_ = now;
    return;
  }
  if (due > now) std::this_thread::sleep_until(due);
}

std::unique_ptr<PacketSource> open_source(const std::string& locator, const SourceOptions& options) {
  if (auto udp = parse_udp(locator)) return std::make_unique<UdpSource>(*udp, locator, options);
  if (locator == "-") return std::make_unique<FdSource>(Fd(0), "stdin", options);
  Fd fd(::open(locator.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail("cannot open input " + locator);
  return std::make_unique<FdSource>(std::move(fd), locator, options);
}

std::unique_ptr<PacketSink> open_sink(const std::string& locator, const SinkOptions& options) {
  if (auto udp = parse_udp(locator)) return std::make_unique<UdpSink>(*udp, locator, options);
  if (locator == "-") return std::make_unique<FdSink>(Fd(1), "stdout");
  if (options.open_on_first_write) return std::make_unique<DeferredFileSink>(locator);
  Fd fd(::open(locator.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) fail("cannot open output " + locator);
  return std::make_unique<FdSink>(std::move(fd), locator);
}

void check_output_is_not_input(const std::string& input, const std::string& output) {
  // stdin/stdout are looked at through their descriptors; a path that does not exist yet is new.
  auto identity = [](const std::string& locator, int std_fd, struct stat& st) {
    if (locator.rfind("udp://", 0) == 0) return false;
    if (locator == "-") return ::fstat(std_fd, &st) == 0;
    return ::stat(locator.c_str(), &st) == 0;
  };
  struct stat in_st {};
  struct stat out_st {};
  if (!identity(input, 0, in_st) || !identity(output, 1, out_st)) return;
  if (S_ISREG(in_st.st_mode) && in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino) {
    throw std::runtime_error("the output " + output + " is the input " + input +
                             " (the same file): writing it would destroy the input before it is read");
  }
}

std::vector<TsPacket> read_ts_file(const std::string& path) {
  auto src = open_source(path);
  std::vector<TsPacket> packets;
  while (src->read(packets, 4096)) {
  }
  return packets;
}

void write_ts_file(const std::string& path, std::span<const TsPacket> packets) {
  auto sink = open_sink(path);
  sink->write(packets);
  sink->close();
}

}  // namespace usher::streams
