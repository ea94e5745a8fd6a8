#include "usher/streams/io.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <thread>

#include "synthetic_stream.h"
#include "temp_dir.h"

namespace usher::streams {
namespace {

TEST(Io, FileRoundTrip) {
  testing::TempDir dir;
  testing::SyntheticMuxOptions o;
  o.seconds = 0.5;
  const auto packets = testing::make_synthetic_mux(o);
  write_ts_file(dir.file("a.ts"), packets);
  const auto back = read_ts_file(dir.file("a.ts"));
  ASSERT_EQ(back.size(), packets.size());
  EXPECT_EQ(std::memcmp(back.data(), packets.data(), packets.size() * sizeof(TsPacket)), 0);
}

// Issue 8: `--out` naming the input truncated it to 0 bytes before a packet was read.
TEST(Io, OutputThatIsTheInputIsRefusedByInodeNotByName) {
  testing::TempDir dir;
  testing::SyntheticMuxOptions o;
  o.seconds = 0.2;
  write_ts_file(dir.file("in.ts"), testing::make_synthetic_mux(o));
  ASSERT_EQ(::link(dir.file("in.ts").c_str(), dir.file("same.ts").c_str()), 0);
  for (const auto& out : {dir.file("in.ts"), dir.file("same.ts"), dir.file("./in.ts")}) {
    EXPECT_THROW(check_output_is_not_input(dir.file("in.ts"), out), std::runtime_error) << out;
  }
  write_ts_file(dir.file("other.ts"), testing::make_synthetic_mux(o));
  EXPECT_NO_THROW(check_output_is_not_input(dir.file("in.ts"), dir.file("other.ts")));
  EXPECT_NO_THROW(check_output_is_not_input(dir.file("in.ts"), dir.file("new.ts")));
  EXPECT_NO_THROW(check_output_is_not_input(dir.file("in.ts"), "udp://127.0.0.1:5000"));
  EXPECT_NO_THROW(check_output_is_not_input("-", "-"));  // a terminal or pipes, not one regular file
}

TEST(Io, DeferredFileSinkCreatesItsFileAtTheFirstPacket) {
  testing::TempDir dir;
  SinkOptions options;
  options.open_on_first_write = true;
  {
    auto sink = open_sink(dir.file("never.ts"), options);
    sink->write({});
    sink->close();
  }
  EXPECT_NE(::access(dir.file("never.ts").c_str(), F_OK), 0);
  auto sink = open_sink(dir.file("written.ts"), options);
  const TsPacket packet = TsPacket::null_packet();
  sink->write(std::span(&packet, 1));
  sink->close();
  EXPECT_EQ(read_ts_file(dir.file("written.ts")).size(), 1u);
}

TEST(Io, MissingFileSaysWhich) {
  try {
    open_source("/nonexistent/usher.ts");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/usher.ts"), std::string::npos);
  }
}

TEST(Io, UdpLoopbackUnicast) {
  testing::SyntheticMuxOptions o;
  o.seconds = 0.2;
  const auto packets = testing::make_synthetic_mux(o);
  auto source = open_source("udp://127.0.0.1:47391", {std::chrono::milliseconds(500)});
  std::thread sender([&] {
    auto sink = open_sink("udp://127.0.0.1:47391", {false});
    for (std::size_t i = 0; i < packets.size(); i += 7) {
      sink->write(std::span(packets).subspan(i, std::min<std::size_t>(7, packets.size() - i)));
      if (i % 700 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    sink->close();
  });
  std::vector<TsPacket> got;
  while (source->read(got, 64)) {
  }
  sender.join();
  ASSERT_EQ(got.size(), packets.size());
  EXPECT_EQ(std::memcmp(got.data(), packets.data(), packets.size() * sizeof(TsPacket)), 0);
}

TEST(Io, BadUdpLocatorIsExplained) {
  EXPECT_THROW(open_sink("udp://127.0.0.1"), std::runtime_error);
}

// Issue 8: udp://...:99999 was accepted (the port went to getaddrinfo, which wrapped it). Each of
// these is refused before any socket is opened, and the message says what is wrong.
TEST(Io, UdpLocatorsAreStrict) {
  struct Row {
    const char* locator;
    const char* says;
  };
  for (const Row& row : {Row{"udp://127.0.0.1:99999", "out of range"}, Row{"udp://127.0.0.1:65536", "out of range"},
                         Row{"udp://127.0.0.1:0", "out of range"}, Row{"udp://127.0.0.1:", "decimal"},
                         Row{"udp://127.0.0.1:12a4", "decimal"}, Row{"udp://127.0.0.1:0x10", "decimal"},
                         Row{"udp://127.0.0.1:-5", "decimal"}, Row{"udp://:5000", "no host"},
                         Row{"udp://239.1.1.1:5000?ttl=4", "no parameters"}, Row{"udp://239.1.1.1:5000/x", "no parameters"},
                         Row{"udp://127.0.0.1", "no port"}}) {
    for (const bool as_source : {true, false}) {
      try {
        if (as_source) (void)open_source(row.locator, {std::chrono::milliseconds(10)});
        else (void)open_sink(row.locator, {false});
        ADD_FAILURE() << row.locator << " was accepted";
      } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(row.says), std::string::npos) << row.locator << ": " << e.what();
      }
    }
  }
  // The edges of the range are fine.
  EXPECT_NO_THROW((void)open_sink("udp://127.0.0.1:65535", {false}));
  EXPECT_NO_THROW((void)open_sink("udp://127.0.0.1:1", {false}));
}

}  // namespace
}  // namespace usher::streams

namespace usher::streams {
namespace {

// A pipe whose read end is the interrupt: written to, it makes the source give up waiting.
struct InterruptPipe {
  InterruptPipe() { EXPECT_EQ(::pipe(fds), 0); }
  ~InterruptPipe() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
  void fire() const { EXPECT_EQ(::write(fds[1], "x", 1), 1); }
  int fds[2] = {-1, -1};
};

TEST(Io, ASilentUdpSourceReturnsAtOnceWhenInterrupted) {
  InterruptPipe stop;
  SourceOptions o;
  o.interrupt_fd = stop.fds[0];
  auto source = open_source("udp://127.0.0.1:47393", o);  // nobody sends; no idle timeout: it would wait for ever
  std::thread stopper([&] { stop.fire(); });
  std::vector<TsPacket> got;
  EXPECT_TRUE(source->read(got, 64));  // returns, with nothing: the caller looks at why
  stopper.join();
  EXPECT_TRUE(got.empty());
}

TEST(Io, APipeSourceIsInterruptedAndWakesButStillEndsAtItsEnd) {
  InterruptPipe stop;
  int data[2];
  ASSERT_EQ(::pipe(data), 0);
  const int saved_stdin = ::dup(0);
  ASSERT_EQ(::dup2(data[0], 0), 0);
  ::close(data[0]);
  SourceOptions o;
  o.interrupt_fd = stop.fds[0];
  o.wake_every = std::chrono::milliseconds(20);
  auto source = open_source("-", o);
  std::vector<TsPacket> got;
  EXPECT_TRUE(source->read(got, 64));  // nothing written yet: woken, not blocked
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(source->size_bytes(), 0u);
  TsPacket p{};
  p.bytes[0] = 0x47;
  ASSERT_EQ(::write(data[1], p.bytes.data(), p.bytes.size()), 188);
  ::close(data[1]);
  while (source->read(got, 64)) {
  }
  EXPECT_EQ(got.size(), 1u);
  ::dup2(saved_stdin, 0);
  ::close(saved_stdin);
}

TEST(Io, AUdpSourceWakesOnSilenceAndStillEndsAtItsIdleTimeout) {
  SourceOptions o;
  o.idle_timeout = std::chrono::milliseconds(300);
  o.wake_every = std::chrono::milliseconds(20);
  auto source = open_source("udp://127.0.0.1:47394", o);
  std::vector<TsPacket> got;
  int wakes = 0;
  while (source->read(got, 64)) ++wakes;
  EXPECT_GE(wakes, 2);  // woken on the way, then ended by the idle timeout
  EXPECT_TRUE(got.empty());
}

TEST(Io, AFileSourceKnowsItsSize) {
  testing::TempDir dir;
  std::vector<TsPacket> packets(10);
  for (auto& p : packets) p.bytes[0] = 0x47;
  write_ts_file(dir.file("ten.ts"), packets);
  EXPECT_EQ(open_source(dir.file("ten.ts"))->size_bytes(), 10u * 188u);
}

}  // namespace
}  // namespace usher::streams
