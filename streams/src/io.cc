#include "usher/streams/io.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>

#include "usher/streams/locator.h"
#include "usher/streams/pacing.h"

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
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  ~Fd() { reset(); }
  [[nodiscard]] int get() const { return fd_; }

 private:
  void reset() {
    if (fd_ > 2) ::close(fd_);
    fd_ = -1;
  }
  int fd_;
};

// A socket address of either family, with the text it came from for messages.
struct Endpoint {
  sockaddr_storage storage{};
  socklen_t length = 0;
  [[nodiscard]] int family() const { return storage.ss_family; }
  [[nodiscard]] const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  [[nodiscard]] const sockaddr_in& v4() const { return *reinterpret_cast<const sockaddr_in*>(&storage); }
  [[nodiscard]] const sockaddr_in6& v6() const { return *reinterpret_cast<const sockaddr_in6*>(&storage); }
  [[nodiscard]] bool multicast() const {
    if (family() == AF_INET) return (ntohl(v4().sin_addr.s_addr) >> 28) == 0xE;
    return family() == AF_INET6 && IN6_IS_ADDR_MULTICAST(&v6().sin6_addr);
  }
};

// Looks up a host of a locator (a name, or a numeric address checked by the parser). `family` 0
// takes what the name has, IPv4 first (as udp:// always did), then IPv6.
Endpoint resolve(const std::string& host, HostForm form, std::uint16_t port, int family, const std::string& locator,
                 const std::string& what) {
  Endpoint e;
  if (form == HostForm::any) {
    if (family == AF_INET6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_any;
      a.sin6_port = htons(port);
      std::memcpy(&e.storage, &a, sizeof(a));
      e.length = sizeof(a);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_ANY);
      a.sin_port = htons(port);
      std::memcpy(&e.storage, &a, sizeof(a));
      e.length = sizeof(a);
    }
    return e;
  }
  if (form == HostForm::name && family == 0) {
    try {
      return resolve(host, form, port, AF_INET, locator, what);
    } catch (const std::runtime_error&) {
      return resolve(host, form, port, AF_INET6, locator, what);
    }
  }
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV | (form == HostForm::name ? 0 : AI_NUMERICHOST);
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    throw std::runtime_error("cannot resolve the " + what + " '" + host + "' of " + locator + ": " + gai_strerror(rc));
  }
  std::memcpy(&e.storage, res->ai_addr, res->ai_addrlen);
  e.length = res->ai_addrlen;
  freeaddrinfo(res);
  return e;
}

// The index of the interface that holds `local` (a localaddr= address), or a clear refusal when no
// interface of this machine has it.
unsigned interface_of(const Endpoint& local, const std::string& locator, const std::string& text) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) fail("list the network interfaces");
  unsigned index = 0;
  for (const ifaddrs* i = list; i != nullptr && index == 0; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != local.family()) continue;
    const bool same =
        local.family() == AF_INET
            ? reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr == local.v4().sin_addr.s_addr
            : std::memcmp(&reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr, &local.v6().sin6_addr,
                          sizeof(in6_addr)) == 0;
    if (same) index = if_nametoindex(i->ifa_name);
  }
  freeifaddrs(list);
  if (index == 0) {
    throw std::runtime_error("bad locator '" + locator + "': localaddr " + text +
                             " is not an address of this machine's network interfaces");
  }
  return index;
}

template <typename T>
void set_option(int fd, int level, int name, const T& value, const std::string& what) {
  if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) fail(what);
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

// A udp:// or rtp:// input: binds, joins a group (any source, or one source), strips RTP headers
// (also on udp://, where a datagram that is RTP carrying MP2T is recognised) and resynchronises
// whatever else on 0x47.
class NetworkSource final : public PacketSource {
 public:
  // A gap in RTP sequence numbers waits this long for its datagram before it is given up.
  static constexpr std::chrono::milliseconds kReorderWait{50};

  NetworkSource(const IpLocator& ip, const std::string& locator, const SourceOptions& o)
      : locator_(locator), options_(o), rtp_only_(ip.transport == IpTransport::rtp), buffer_(65536) {
    std::optional<Endpoint> local;
    if (!ip.local_address.empty()) local = resolve(ip.local_address, ip.local_form, 0, 0, locator, "localaddr");
    const int family = local ? local->family() : (ip.host_form == HostForm::ipv6 ? AF_INET6 : 0);
    const Endpoint group = resolve(ip.host, ip.host_form, ip.port, family, locator, ip.receive_form ? "group" : "host");
    fd_ = Fd(::socket(group.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (fd_.get() < 0) fail("socket for " + locator);
    set_option(fd_.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &kReceiveBuffer, sizeof(kReceiveBuffer));  // best effort
    const unsigned interface = local ? interface_of(*local, locator, ip.local_address) : 0;
    if (!ip.source.empty() && !group.multicast()) {
      throw std::runtime_error("bad locator '" + locator + "': " + ip.host + " is not a multicast group (SOURCE@GROUP)");
    }
    if (!group.multicast()) {
      if (local && ip.host_form != HostForm::any) {
        throw std::runtime_error("bad locator '" + locator + "': localaddr chooses the interface of a multicast input; " +
                                 ip.host + " is not a group (udp://@:PORT?localaddr=IP listens on one address)");
      }
      Endpoint bind_to = group;
      if (local && ip.host_form == HostForm::any) {
        bind_to = *local;
        if (bind_to.family() == AF_INET) reinterpret_cast<sockaddr_in*>(&bind_to.storage)->sin_port = htons(ip.port);
        else reinterpret_cast<sockaddr_in6*>(&bind_to.storage)->sin6_port = htons(ip.port);
      }
      if (bind_to.family() == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&bind_to.v6().sin6_addr)) {
        set_option(fd_.get(), IPPROTO_IPV6, IPV6_V6ONLY, 0, "IPV6_V6ONLY");  // [::] takes IPv4 too
      }
      if (::bind(fd_.get(), bind_to.get(), bind_to.length) != 0) fail("bind " + locator);
      return;
    }
    // Bound to the group itself, the socket gets that group's datagrams and not another's sent to
    // the same port.
    if (::bind(fd_.get(), group.get(), group.length) != 0) fail("bind " + locator);
    if (group.family() == AF_INET) {
      set_option(fd_.get(), IPPROTO_IP, IP_MULTICAST_ALL, 0, "IP_MULTICAST_ALL");
      const in_addr on = local ? local->v4().sin_addr : in_addr{htonl(INADDR_ANY)};
      if (ip.source.empty()) {
        ip_mreq m{};
        m.imr_multiaddr = group.v4().sin_addr;
        m.imr_interface = on;
        set_option(fd_.get(), IPPROTO_IP, IP_ADD_MEMBERSHIP, m, "join multicast group " + locator);
      } else {
        const Endpoint source = resolve(ip.source, ip.source_form, 0, AF_INET, locator, "source");
        ip_mreq_source m{};
        m.imr_multiaddr = group.v4().sin_addr;
        m.imr_interface = on;
        m.imr_sourceaddr = source.v4().sin_addr;
        set_option(fd_.get(), IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, m, "join source-specific group " + locator);
      }
      return;
    }
    const unsigned on = interface != 0 ? interface : group.v6().sin6_scope_id;
    if (ip.source.empty()) {
      ipv6_mreq m{};
      m.ipv6mr_multiaddr = group.v6().sin6_addr;
      m.ipv6mr_interface = on;
      set_option(fd_.get(), IPPROTO_IPV6, IPV6_JOIN_GROUP, m, "join multicast group " + locator);
    } else {
      const Endpoint source = resolve(ip.source, ip.source_form, 0, AF_INET6, locator, "source");
      group_source_req m{};
      m.gsr_interface = on;
      std::memcpy(&m.gsr_group, &group.storage, group.length);
      std::memcpy(&m.gsr_source, &source.storage, source.length);
      set_option(fd_.get(), IPPROTO_IPV6, MCAST_JOIN_SOURCE_GROUP, m, "join source-specific group " + locator);
    }
  }
  bool read(std::vector<TsPacket>& out, std::size_t max_packets) override {
    using Clock = std::chrono::steady_clock;
    const std::size_t start = out.size();
    const auto began = Clock::now();
    if (last_arrival_ == Clock::time_point{}) last_arrival_ = began;  // the idle timeout counts from the first read
    while (true) {
      const auto now = Clock::now();
      if (rtp_.holding() && now >= hold_since_ + kReorderWait) {  // the gap's datagram is not coming
        release(out);
        return true;
      }
      const bool idle_limit = options_.idle_timeout.count() > 0;
      if (idle_limit && now >= last_arrival_ + options_.idle_timeout) {  // the sender has stopped
        release(out);
        return false;
      }
      auto wait = idle_limit ? last_arrival_ + options_.idle_timeout - now : Clock::duration::max();
      if (rtp_.holding()) wait = std::min(wait, hold_since_ + kReorderWait - now);
      if (options_.wake_every.count() > 0) {  // a silent input: the caller gets to report on it
        if (now >= began + options_.wake_every) return true;
        wait = std::min<Clock::duration>(wait, began + options_.wake_every - now);
      }
      const int timeout =
          wait == Clock::duration::max() ? -1 : static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(wait).count());
      pollfd p[2] = {{fd_.get(), POLLIN, 0}, {options_.interrupt_fd, POLLIN, 0}};
      const int r = ::poll(p, options_.interrupt_fd >= 0 ? 2 : 1, timeout);
      if (r < 0) {
        if (errno == EINTR) return true;
        fail("poll " + locator_);
      }
      if (options_.interrupt_fd >= 0 && (p[1].revents & POLLIN) != 0) {  // a stop: what is held goes out now
        release(out);
        return true;
      }
      if (r == 0 || p[0].revents == 0) continue;
      last_arrival_ = Clock::now();
      while (out.size() - start < std::max<std::size_t>(1, max_packets)) {
        const ssize_t n = ::recv(fd_.get(), buffer_.data(), buffer_.size(), MSG_DONTWAIT);
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          if (errno == EINTR) continue;
          fail("recv " + locator_);
        }
        take(std::span(buffer_.data(), static_cast<std::size_t>(n)), out);
      }
      return true;
    }
  }
  [[nodiscard]] std::uint64_t discarded_bytes() const override { return sync_.discarded_bytes(); }
  [[nodiscard]] std::optional<RtpInputStats> rtp_stats() const override {
    if (!rtp_only_ && !rtp_seen_) return std::nullopt;
    return rtp_.stats();
  }

 private:
  static constexpr int kReceiveBuffer = 8 << 20;

  void take(std::span<const std::uint8_t> datagram, std::vector<TsPacket>& out) {
    if (datagram.empty()) return;
    const bool rtp = rtp_only_ || (datagram[0] != kSyncByte && looks_like_rtp_mp2t(datagram));
    if (!rtp) {
      sync_.feed(datagram, out);
      return;
    }
    rtp_seen_ = true;
    const bool was_holding = rtp_.holding();
    bytes_.clear();
    rtp_.receive(datagram, bytes_);
    sync_.feed(bytes_, out);
    if (!was_holding && rtp_.holding()) hold_since_ = std::chrono::steady_clock::now();
  }
  void release(std::vector<TsPacket>& out) {
    bytes_.clear();
    rtp_.release_held(bytes_);
    sync_.feed(bytes_, out);
  }

  Fd fd_;
  std::string locator_;
  SourceOptions options_;
  bool rtp_only_;
  bool rtp_seen_ = false;
  std::vector<std::uint8_t> buffer_;
  std::vector<std::uint8_t> bytes_;
  PacketSync sync_;
  RtpReceiver rtp_;
  std::chrono::steady_clock::time_point last_arrival_{};
  std::chrono::steady_clock::time_point hold_since_{};
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

// A udp:// or rtp:// output: datagrams of 7 packets, each sent at its own time from the stream's
// PCRs (pacing.h), behind a 12-byte RTP header on rtp://.
class NetworkSink final : public PacketSink {
 public:
  NetworkSink(const IpLocator& ip, const std::string& locator, const SinkOptions& o)
      : locator_(locator), options_(o), rtp_(ip.transport == IpTransport::rtp) {
    std::optional<Endpoint> local;
    if (!ip.local_address.empty()) local = resolve(ip.local_address, ip.local_form, 0, 0, locator, "localaddr");
    destination_ = resolve(ip.host, ip.host_form, ip.port, local ? local->family() : 0, locator, "host");
    fd_ = Fd(::socket(destination_.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (fd_.get() < 0) fail("socket for " + locator);
    unsigned interface = 0;
    if (local) {
      interface = interface_of(*local, locator, ip.local_address);
      if (::bind(fd_.get(), local->get(), local->length) != 0) fail("bind " + locator + " to localaddr " + ip.local_address);
    }
    const bool multicast = destination_.multicast();
    if (destination_.family() == AF_INET) {
      if (multicast) {
        set_option(fd_.get(), IPPROTO_IP, IP_MULTICAST_TTL, static_cast<int>(ip.ttl.value_or(1)), "IP_MULTICAST_TTL");
        if (local) set_option(fd_.get(), IPPROTO_IP, IP_MULTICAST_IF, local->v4().sin_addr, "IP_MULTICAST_IF " + locator);
      } else if (ip.ttl) {
        set_option(fd_.get(), IPPROTO_IP, IP_TTL, static_cast<int>(*ip.ttl), "IP_TTL");
      }
    } else if (multicast) {
      set_option(fd_.get(), IPPROTO_IPV6, IPV6_MULTICAST_HOPS, static_cast<int>(ip.ttl.value_or(1)), "IPV6_MULTICAST_HOPS");
      const unsigned on = interface != 0 ? interface : destination_.v6().sin6_scope_id;
      if (on != 0) set_option(fd_.get(), IPPROTO_IPV6, IPV6_MULTICAST_IF, static_cast<int>(on), "IPV6_MULTICAST_IF " + locator);
    } else if (ip.ttl) {
      set_option(fd_.get(), IPPROTO_IPV6, IPV6_UNICAST_HOPS, static_cast<int>(*ip.ttl), "IPV6_UNICAST_HOPS");
    }
    if (rtp_) {
      std::random_device random;
      ssrc_ = random();
      sequence_ = static_cast<std::uint16_t>(random());
      timestamp_offset_ = random();
    }
  }
  ~NetworkSink() override {
    try {
      close();
    } catch (const std::exception&) {  // a destructor does not throw; close() reports the failure
    }
  }
  void write(std::span<const TsPacket> packets) override {
    if (!options_.pace_by_pcr) {
      for (const auto& p : packets) {
        unpaced_.push_back(p);
        if (unpaced_.size() == kPacketsPerDatagram) flush_unpaced();
      }
      return;
    }
    scheduler_.push(packets, [this](const ScheduledDatagram& d) {
      clock_.wait(d);
      send(d.packets, d.due);
      clock_.departed();
    });
  }
  void close() override {
    if (closed_) return;
    closed_ = true;
    flush_unpaced();
    scheduler_.finish([this](const ScheduledDatagram& d) {
      clock_.wait(d);
      send(d.packets, d.due);
      clock_.departed();
    });
  }
  [[nodiscard]] std::optional<NetworkOutputStats> network_stats() const override {
    NetworkOutputStats s;
    s.datagrams = sent_;
    s.unpaced = sent_unpaced_;
    s.discontinuities = scheduler_.stats().discontinuities;
    s.pcr_gaps = scheduler_.stats().pcr_gaps;
    s.restarts = clock_.reanchors();
    return s;
  }

 private:
  void flush_unpaced() {
    if (unpaced_.empty()) return;
    send(unpaced_, std::nullopt);
    unpaced_.clear();
  }
  void send(std::span<const TsPacket> packets, std::optional<std::uint64_t> due) {
    ++sent_;
    if (!due) ++sent_unpaced_;
    std::array<std::uint8_t, kRtpHeaderSize> header{};
    iovec parts[2];
    std::size_t count = 0;
    if (rtp_) {
      // RFC 2250: the 90 kHz time the datagram's first byte is due; without one, the time now.
      const std::uint64_t stream_time =
          due ? *due
              : static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                               std::chrono::steady_clock::now().time_since_epoch())
                                               .count()) *
                    27;
      RtpHeader h;
      h.sequence = sequence_++;
      h.timestamp = static_cast<std::uint32_t>(timestamp_offset_ + stream_time / 300);
      h.ssrc = ssrc_;
      header = write_rtp_header(h);
      parts[count++] = {header.data(), header.size()};
    }
    parts[count++] = {const_cast<TsPacket*>(packets.data()), packets.size_bytes()};
    msghdr m{};
    m.msg_name = const_cast<sockaddr*>(destination_.get());
    m.msg_namelen = destination_.length;
    m.msg_iov = parts;
    m.msg_iovlen = count;
    while (::sendmsg(fd_.get(), &m, 0) < 0) {
      if (errno == EINTR) continue;
      if (errno == ECONNREFUSED) break;  // nobody listening on a unicast port yet: the stream goes on
      fail("send to " + locator_);
    }
  }

  Fd fd_;
  Endpoint destination_;
  std::string locator_;
  SinkOptions options_;
  bool rtp_;
  bool closed_ = false;
  std::uint32_t ssrc_ = 0;
  std::uint16_t sequence_ = 0;
  std::uint32_t timestamp_offset_ = 0;
  DatagramScheduler scheduler_;
  DepartureClock clock_;
  std::vector<TsPacket> unpaced_;
  std::uint64_t sent_ = 0;
  std::uint64_t sent_unpaced_ = 0;
};

}  // namespace

namespace {
Locator parse_or_throw(const std::string& text, Direction direction) {
  auto parsed = parse_locator(text, direction);
  if (!parsed) throw std::runtime_error(parsed.error().message);
  return std::move(parsed).value();
}
}  // namespace

std::unique_ptr<PacketSource> open_source(const std::string& text, const SourceOptions& options) {
  const Locator locator = parse_or_throw(text, Direction::input);
  switch (locator.kind) {
    case Locator::Kind::ip:
      return std::make_unique<NetworkSource>(locator.ip, text, options);
    case Locator::Kind::standard_stream:
      return std::make_unique<FdSource>(Fd(0), "stdin", options);
    case Locator::Kind::file:
      break;
  }
  Fd fd(::open(locator.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail("cannot open input " + locator.path);
  return std::make_unique<FdSource>(std::move(fd), locator.path, options);
}

std::unique_ptr<PacketSink> open_sink(const std::string& text, const SinkOptions& options) {
  const Locator locator = parse_or_throw(text, Direction::output);
  switch (locator.kind) {
    case Locator::Kind::ip:
      return std::make_unique<NetworkSink>(locator.ip, text, options);
    case Locator::Kind::standard_stream:
      return std::make_unique<FdSink>(Fd(1), "stdout");
    case Locator::Kind::file:
      break;
  }
  if (options.open_on_first_write) return std::make_unique<DeferredFileSink>(locator.path);
  Fd fd(::open(locator.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) fail("cannot open output " + locator.path);
  return std::make_unique<FdSink>(std::move(fd), locator.path);
}

void check_output_is_not_input(const std::string& input, const std::string& output) {
  // stdin/stdout are looked at through their descriptors; a path that does not exist yet is new.
  auto identity = [](const std::string& locator, int std_fd, struct stat& st) {
    if (is_network_locator(locator)) return false;
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
