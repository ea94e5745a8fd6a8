#include "pms_simulator.h"

#include "usher/billing/fias.h"

namespace usher::testing {
using billing::FiasRecord;

PmsSimulator::PmsSimulator(std::uint16_t port) {
  auto l = net::TcpListener::bind("127.0.0.1", port);
  if (!l) throw std::runtime_error(l.error().message);
  port_ = l->port();
  listener_ = std::make_unique<net::TcpListener>(std::move(l.value()));
  thread_ = std::thread([this] { serve(); });
}

PmsSimulator::~PmsSimulator() {
  stop_ = true;
  thread_.join();
}

void PmsSimulator::send(const std::vector<std::uint8_t>& frame) {
  std::lock_guard lock(mu_);
  outbox_.push_back(frame);
}

void PmsSimulator::guest_in(const std::string& room, const std::string& guest_id, const std::string& name) {
  {
    std::lock_guard lock(mu_);
    guests_.insert(room + "/" + guest_id);
  }
  FiasRecord r{"GI", {}};
  r.set("RN", room).set("G#", guest_id).set("GN", name);
  send(r.frame());
}

void PmsSimulator::guest_out(const std::string& room, const std::string& guest_id) {
  FiasRecord r{"GO", {}};
  r.set("RN", room).set("G#", guest_id);
  send(r.frame());
}

std::map<std::uint64_t, PmsSimulator::Charge> PmsSimulator::charges() {
  std::lock_guard lock(mu_);
  return charges_;
}

void PmsSimulator::serve() {
  while (!stop_) {
    auto conn = listener_->accept(std::chrono::milliseconds(100));
    if (!conn) continue;
    billing::FiasFramer framer;
    std::vector<std::uint8_t> buf(4096);
    drop_ = false;
    while (!stop_ && conn->is_open()) {
      if (drop_) {
        linked_ = false;
        conn->close();
        break;
      }
      {
        std::lock_guard lock(mu_);
        if (linked_) {
          for (const auto& f : outbox_) (void)conn->send_all(f);
          outbox_.clear();
        }
      }
      auto n = conn->receive(buf, std::chrono::milliseconds(20));
      if (!n) break;
      framer.feed(std::span<const std::uint8_t>(buf.data(), *n));
      while (auto rec = framer.next()) {
        if (!*rec) continue;
        const auto& r = rec->value();
        if (r.type == "LS") {
          FiasRecord la{"LA", {}};
          (void)conn->send_all(la.frame());
          linked_ = true;
        } else if (r.type == "PS") {
          ++received_;
          if (ignore_ > 0) {
            --ignore_;
            continue;
          }
          FiasRecord pa{"PA", {}};
          const auto pnum = r.field("P#");
          bool ok = false;
          {
            std::lock_guard lock(mu_);
            const auto id = std::stoull(pnum.empty() ? "0" : pnum);
            const bool known = charges_.contains(id);
            // A guest's charges are taken while they stay and after (late charges); others refused.
            ok = known || (refuse_ == 0 && guests_.contains(r.field("RN") + "/" + r.field("G#")));
            if (refuse_ > 0 && !known) --refuse_;
            if (ok && !known) charges_[id] = {r.field("RN"), r.field("G#"), std::stoll(r.field("TA")), r.field("CT")};
          }
          pa.set("AS", ok ? "OK" : "NG").set("RN", r.field("RN")).set("P#", pnum);
          if (!ok) pa.set("CT", "posting refused");
          (void)conn->send_all(pa.frame());
        }
      }
    }
  }
}

}  // namespace usher::testing
