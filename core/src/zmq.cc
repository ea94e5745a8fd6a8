#include "usher/core/zmq.h"

#include <zmq.hpp>

#include <stdexcept>

namespace usher::net {

struct ReplyServer::Impl {
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::router};
};

ReplyServer::ReplyServer(const std::string& endpoint, Handler handler, ServerLimits limits)
    : ReplyServer(endpoint, BatchHandler([h = std::move(handler)](const auto& requests) {
        std::vector<Bytes> replies;
        replies.reserve(requests.size());
        for (const auto& r : requests) replies.push_back(h(r));
        return replies;
      }), limits) {}

ReplyServer::ReplyServer(const std::string& endpoint, BatchHandler handler, ServerLimits limits)
    : impl_(std::make_unique<Impl>()), handler_(std::move(handler)) {
  impl_->socket.set(zmq::sockopt::linger, 0);
  // Set before bind: they apply to the connections accepted from then on.
  impl_->socket.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(limits.max_message_bytes));
  impl_->socket.set(zmq::sockopt::rcvhwm, limits.queue_per_caller);
  try {
    impl_->socket.bind(endpoint);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot bind " + endpoint + ": " + e.what());
  }
}

ReplyServer::~ReplyServer() = default;

std::string ReplyServer::endpoint() const { return impl_->socket.get(zmq::sockopt::last_endpoint); }

void ReplyServer::run(const std::atomic<bool>& stop) {
  auto& socket = impl_->socket;
  while (!stop) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if ((item.revents & ZMQ_POLLIN) == 0) continue;
    // Take every request already waiting. A REQ client's request arrives as
    // [identity][empty][payload]; anything else is dropped, and frames past the third are read and
    // let go at once rather than kept (each is within the size cap, but their number is not).
    std::vector<std::vector<zmq::message_t>> pending;
    while (pending.size() < kMaxBatch) {
      std::vector<zmq::message_t> frames;
      std::size_t parts = 0;
      do {
        zmq::message_t frame;
        if (!socket.recv(frame, zmq::recv_flags::dontwait)) break;
        if (++parts <= 3) frames.push_back(std::move(frame));
      } while (socket.get(zmq::sockopt::rcvmore));
      if (parts == 0) break;
      if (parts == 3 && frames[1].size() == 0) pending.push_back(std::move(frames));
    }
    if (pending.empty()) continue;
    std::vector<std::span<const std::uint8_t>> requests;
    for (auto& f : pending) requests.emplace_back(static_cast<const std::uint8_t*>(f[2].data()), f[2].size());
    const auto replies = handler_(requests);
    for (std::size_t i = 0; i < pending.size() && i < replies.size(); ++i) {
      socket.send(pending[i][0], zmq::send_flags::sndmore);
      socket.send(zmq::message_t(), zmq::send_flags::sndmore);
      socket.send(zmq::buffer(replies[i]), zmq::send_flags::none);
      ++served_;
    }
  }
}

struct RequestClient::Impl {
  zmq::context_t context{1};
  std::unique_ptr<zmq::socket_t> socket;
};

RequestClient::RequestClient(std::string endpoint, ClientOptions options)
    : impl_(std::make_unique<Impl>()), endpoint_(std::move(endpoint)), options_(options) {
  connect();
}

RequestClient::~RequestClient() = default;

void RequestClient::connect() {
  impl_->socket = std::make_unique<zmq::socket_t>(impl_->context, zmq::socket_type::req);
  impl_->socket->set(zmq::sockopt::linger, 0);
  try {
    impl_->socket->connect(endpoint_);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot connect to " + endpoint_ + ": " + e.what());
  }
}

Result<Bytes> RequestClient::call(std::span<const std::uint8_t> request) {
  auto timeout = options_.timeout;
  for (int attempt = 0; attempt < options_.attempts; ++attempt, timeout *= options_.growth) {
    impl_->socket->send(zmq::buffer(request.data(), request.size()), zmq::send_flags::none);
    zmq::pollitem_t item{impl_->socket->handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, timeout);
    if ((item.revents & ZMQ_POLLIN) != 0) {
      zmq::message_t reply;
      if (impl_->socket->recv(reply, zmq::recv_flags::none)) {
        const auto* d = static_cast<const std::uint8_t*>(reply.data());
        return Bytes(d, d + reply.size());
      }
    }
    connect();  // a REQ socket that lost its reply cannot send again: start a fresh one
  }
  return make_error(Errc::io, "no reply from " + endpoint_ + " after " + std::to_string(options_.attempts) +
                                  " attempts (is the service running?)");
}

}  // namespace usher::net
