#include "usher/core/tcp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace usher::net {
namespace {
Error sys_error(const std::string& what) { return make_error(Errc::io, what + ": " + std::strerror(errno)); }
int wait_for(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{fd, events, 0};
  int r = 0;
  do {
    r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (r < 0 && errno == EINTR);
  return r;
}
}  // namespace

TcpStream& TcpStream::operator=(TcpStream&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

TcpStream::~TcpStream() { close(); }

void TcpStream::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void TcpStream::close_after_answer(std::chrono::milliseconds timeout, std::size_t max_bytes) {
  if (fd_ < 0) return;
  ::shutdown(fd_, SHUT_WR);
  const auto until = std::chrono::steady_clock::now() + timeout;
  std::uint8_t sink[4096];
  std::size_t dropped = 0;
  while (dropped < max_bytes) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0 || wait_for(fd_, POLLIN, left) <= 0) break;
    const auto n = ::recv(fd_, sink, sizeof(sink), 0);
    if (n <= 0) break;  // the peer has closed too (or failed)
    dropped += static_cast<std::size_t>(n);
  }
  close();
}

Result<TcpStream> TcpStream::connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || res == nullptr) {
    return make_error(Errc::io, "cannot resolve " + host);
  }
  TcpStream s(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s.is_open()) {
    ::freeaddrinfo(res);
    return sys_error("socket");
  }
  const int rc = ::connect(s.fd_, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  const std::string where = host + ":" + std::to_string(port);
  if (rc != 0 && errno != EINPROGRESS) return sys_error("connect to " + where);
  if (rc != 0) {
    if (wait_for(s.fd_, POLLOUT, timeout) <= 0) return make_error(Errc::io, "connect to " + where + ": timed out");
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(s.fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return make_error(Errc::io, "connect to " + where + ": " + std::strerror(err));
  }
  int one = 1;
  ::setsockopt(s.fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return s;
}

Status TcpStream::send_all(std::span<const std::uint8_t> bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (wait_for(fd_, POLLOUT, std::chrono::milliseconds(5000)) <= 0) return make_error(Errc::io, "send: timed out");
        continue;
      }
      return sys_error("send");
    }
    sent += static_cast<std::size_t>(n);
  }
  return ok_status();
}

Result<std::size_t> TcpStream::receive(std::span<std::uint8_t> buffer, std::chrono::milliseconds timeout) {
  if (fd_ < 0) return make_error(Errc::io, "not connected");
  const int ready = wait_for(fd_, POLLIN, timeout);
  if (ready < 0) return sys_error("poll");
  if (ready == 0) return std::size_t{0};
  const auto n = ::recv(fd_, buffer.data(), buffer.size(), 0);
  if (n == 0) return make_error(Errc::io, "connection closed by the peer");
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return std::size_t{0};
    return sys_error("recv");
  }
  return static_cast<std::size_t>(n);
}

Result<TcpListener> TcpListener::bind(const std::string& host, std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return sys_error("socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    return make_error(Errc::invalid_argument, "not an IPv4 address: " + host);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 8) != 0) {
    auto e = sys_error("bind " + host + ":" + std::to_string(port));
    ::close(fd);
    return e;
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return TcpListener(fd, ntohs(addr.sin_port));
}

TcpListener::~TcpListener() {
  if (fd_ >= 0) ::close(fd_);
}

Result<TcpStream> TcpListener::accept(std::chrono::milliseconds timeout) {
  if (wait_for(fd_, POLLIN, timeout) <= 0) return make_error(Errc::io, "no connection");
  const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return sys_error("accept");
  return TcpStream(fd);
}

}  // namespace usher::net
