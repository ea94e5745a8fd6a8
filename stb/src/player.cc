#include "usher/stb/player.h"

#include <cstddef>
#include <cstdlib>
#include <span>
#include <stdexcept>
#include <string>

#include "usher/streams/gst.h"

namespace usher::stb {
namespace {

bool has_display() {
  for (const char* name : {"DISPLAY", "WAYLAND_DISPLAY"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') return true;
  }
  return false;
}

class GstPlayerSink final : public streams::PacketSink {
 public:
  GstPlayerSink() : pipeline_(build()), src_(source(pipeline_)) {
    if (auto started = pipeline_.play(); !started) throw std::runtime_error("GStreamer playback pipeline: " + started.error().message);
  }
  ~GstPlayerSink() override {
    try {
      close();
    } catch (...) {  // reported by an explicit close(); nothing to do in a destructor
    }
  }
  void write(std::span<const streams::TsPacket> packets) override { src_.push(std::as_bytes(packets)); }
  void close() override {
    if (closed_) return;
    closed_ = true;
    src_.end_of_stream();
    if (auto ended = pipeline_.wait_for_end(); !ended) throw std::runtime_error("playback failed: " + ended.error().message);
  }

 private:
  static streams::gst::Pipeline build() {
    // The sinks can be replaced (USHER_PLAY_VIDEO_SINK, USHER_PLAY_AUDIO_SINK), e.g. by fakesink
    // on a machine without a display or sound card.
    const char* video = std::getenv("USHER_PLAY_VIDEO_SINK");
    const char* audio = std::getenv("USHER_PLAY_AUDIO_SINK");
    // Without a display, autovideosink falls back to DirectFB, whose thread crashes the whole
    // process (SIGSEGV) on a server or container: say what to do instead.
    if (video == nullptr && !has_display()) {
      throw std::runtime_error(
          "--out play needs a display (neither DISPLAY nor WAYLAND_DISPLAY is set): write to a file "
          "or udp://HOST:PORT instead, or choose a GStreamer sink with USHER_PLAY_VIDEO_SINK (e.g. fakesink)");
    }
    const std::string description =
        std::string("appsrc name=src is-live=false format=bytes block=true max-bytes=4000000 "
                    "caps=video/mpegts,systemstream=true,packetsize=188 ! tsdemux name=demux ") +
        "demux. ! queue ! decodebin ! videoconvert ! " + (video != nullptr ? video : "autovideosink") + " " +
        "demux. ! queue ! decodebin ! audioconvert ! " + (audio != nullptr ? audio : "autoaudiosink");
    auto pipeline = streams::gst::Pipeline::parse(description);
    if (!pipeline) throw std::runtime_error("GStreamer playback pipeline: " + pipeline.error().message);
    return std::move(*pipeline);
  }
  static streams::gst::AppSource source(streams::gst::Pipeline& pipeline) {
    auto src = pipeline.app_source("src");
    if (!src) throw std::runtime_error("GStreamer playback pipeline: " + src.error().message);
    return std::move(*src);
  }

  streams::gst::Pipeline pipeline_;
  streams::gst::AppSource src_;
  bool closed_ = false;
};

}  // namespace

std::unique_ptr<streams::PacketSink> open_player() { return std::make_unique<GstPlayerSink>(); }

}  // namespace usher::stb
