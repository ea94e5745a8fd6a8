#include "usher/stb/player.h"

#include <gst/app/gstappsrc.h>
#include <gst/gst.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

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
  GstPlayerSink() {
    gst_init(nullptr, nullptr);
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
    GError* error = nullptr;
    pipeline_ = gst_parse_launch(description.c_str(), &error);
    if (error != nullptr) {
      std::string msg = error->message;
      g_error_free(error);
      throw std::runtime_error("GStreamer playback pipeline: " + msg);
    }
    src_ = gst_bin_get_by_name(GST_BIN(pipeline_), "src");
    gst_element_set_state(pipeline_, GST_STATE_PLAYING);
  }
  ~GstPlayerSink() override {
    try {
      close();
    } catch (...) {  // reported by an explicit close(); nothing to do in a destructor
    }
    gst_object_unref(src_);
    gst_object_unref(pipeline_);
  }
  void write(std::span<const streams::TsPacket> packets) override {
    if (packets.empty()) return;
    GstBuffer* buf = gst_buffer_new_memdup(packets.data(), packets.size_bytes());
    gst_app_src_push_buffer(GST_APP_SRC(src_), buf);  // takes ownership
  }
  void close() override {
    if (closed_) return;
    closed_ = true;
    gst_app_src_end_of_stream(GST_APP_SRC(src_));
    GstBus* bus = gst_element_get_bus(pipeline_);
    GstMessage* msg = gst_bus_timed_pop_filtered(bus, GST_CLOCK_TIME_NONE,
                                                 static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    if (msg != nullptr && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
      GError* err = nullptr;
      gst_message_parse_error(msg, &err, nullptr);
      failure_ = err != nullptr ? err->message : "unknown error";
      if (err != nullptr) g_error_free(err);
    }
    if (msg != nullptr) gst_message_unref(msg);
    gst_object_unref(bus);
    gst_element_set_state(pipeline_, GST_STATE_NULL);
    if (!failure_.empty()) throw std::runtime_error("playback failed: " + failure_);
  }

 private:
  GstElement* pipeline_ = nullptr;
  GstElement* src_ = nullptr;
  bool closed_ = false;
  std::string failure_;
};

}  // namespace

std::unique_ptr<streams::PacketSink> open_player() { return std::make_unique<GstPlayerSink>(); }

}  // namespace usher::stb
