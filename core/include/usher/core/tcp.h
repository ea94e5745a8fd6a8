// The one place Usher uses raw TCP sockets (POSIX), for line protocols that are not ZeroMQ: the
// hotel property-management-system link (FIAS-style records). TcpStream is a connected socket;
// TcpListener accepts them. Both close their descriptor when destroyed.
//
//   auto s = TcpStream::connect("127.0.0.1", 5010, 2s).value();
//   s.send_all(bytes);
//   auto got = s.receive(buffer, 500ms);   // 0 bytes: timed out; Errc::io: closed or failed
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>

#include "usher/core/result.h"

namespace usher::net {

class TcpStream {
 public:
  TcpStream() = default;
  explicit TcpStream(int fd) : fd_(fd) {}
  TcpStream(TcpStream&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  TcpStream& operator=(TcpStream&& o) noexcept;
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;
  ~TcpStream();

  static Result<TcpStream> connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout);
  Status send_all(std::span<const std::uint8_t> bytes);
  // Waits up to `timeout` for bytes: how many were read (0 when none came in time), or Errc::io
  // when the peer closed the connection or it failed.
  Result<std::size_t> receive(std::span<std::uint8_t> buffer, std::chrono::milliseconds timeout);
  [[nodiscard]] bool is_open() const { return fd_ >= 0; }
  void close();
  // Ends the conversation politely after a last answer: no more sending (the peer reads to its end),
  // then what the peer is still sending is read and dropped, up to `max_bytes` or `timeout`, before
  // the socket closes. Closing with unread bytes would reset the connection, and the peer could
  // lose the answer (an HTTP server refusing a request it did not read to the end).
  void close_after_answer(std::chrono::milliseconds timeout, std::size_t max_bytes);

 private:
  int fd_ = -1;
};

class TcpListener {
 public:
  // Binds 127.0.0.1 (or `host`) on `port` (0: any free port).
  static Result<TcpListener> bind(const std::string& host, std::uint16_t port);
  TcpListener(TcpListener&& o) noexcept : fd_(o.fd_), port_(o.port_) { o.fd_ = -1; }
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;
  TcpListener& operator=(TcpListener&&) = delete;
  ~TcpListener();
  [[nodiscard]] std::uint16_t port() const { return port_; }
  // Waits up to `timeout` for a connection; Errc::io when none came.
  Result<TcpStream> accept(std::chrono::milliseconds timeout);

 private:
  TcpListener(int fd, std::uint16_t port) : fd_(fd), port_(port) {}
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace usher::net
