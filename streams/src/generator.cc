#include "usher/streams/generator.h"

#include <gst/gst.h>

#include <memory>
#include <sstream>
#include <stdexcept>

namespace usher::streams {
namespace {

struct GstObjectDeleter {
  void operator()(gpointer p) const {
    if (p != nullptr) gst_object_unref(p);
  }
};
using GstPtr = std::unique_ptr<GstElement, GstObjectDeleter>;
using GstBusPtr = std::unique_ptr<GstBus, GstObjectDeleter>;
struct GstMessageDeleter {
  void operator()(GstMessage* m) const { gst_message_unref(m); }
};
using GstMessagePtr = std::unique_ptr<GstMessage, GstMessageDeleter>;

}  // namespace

void generate_test_stream(const std::string& path, const GeneratorOptions& o) {
  gst_init(nullptr, nullptr);
  const int frames = o.seconds * o.fps;
  const int samples_per_buffer = 48000 / o.fps;
  std::ostringstream desc;
  desc << "videotestsrc num-buffers=" << frames << " pattern=" << o.pattern << " ! video/x-raw,format=I420,width=" << o.width
       << ",height=" << o.height << ",framerate=" << o.fps << "/1 ! x264enc key-int-max=" << o.fps
       << " bitrate=" << o.video_kbps << " speed-preset=veryfast ! video/x-h264,profile=main ! h264parse ! "
       << "mpegtsmux name=mux alignment=7 prog-map=program_map,sink_0=" << o.program_number
       << ",sink_1=" << o.program_number << " ! filesink name=out "
       << "audiotestsrc num-buffers=" << frames << " samplesperbuffer=" << samples_per_buffer
       << " ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! aacparse ! mux.";
  GError* error = nullptr;
  GstPtr pipeline(gst_parse_launch(desc.str().c_str(), &error));
  if (error != nullptr) {
    std::string msg = error->message;
    g_error_free(error);
    throw std::runtime_error("GStreamer cannot build the test stream pipeline: " + msg +
                             " (are gstreamer1.0-plugins-{good,bad,ugly} and gstreamer1.0-libav installed?)");
  }
  GstPtr sink(gst_bin_get_by_name(GST_BIN(pipeline.get()), "out"));
  g_object_set(sink.get(), "location", path.c_str(), nullptr);
  gst_element_set_state(pipeline.get(), GST_STATE_PLAYING);
  GstBusPtr bus(gst_element_get_bus(pipeline.get()));
  GstMessagePtr msg(gst_bus_timed_pop_filtered(bus.get(), GST_CLOCK_TIME_NONE,
                                               static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR)));
  std::string failure;
  if (msg && GST_MESSAGE_TYPE(msg.get()) == GST_MESSAGE_ERROR) {
    GError* err = nullptr;
    gst_message_parse_error(msg.get(), &err, nullptr);
    failure = err != nullptr ? err->message : "unknown error";
    if (err != nullptr) g_error_free(err);
  }
  gst_element_set_state(pipeline.get(), GST_STATE_NULL);
  if (!failure.empty()) throw std::runtime_error("generating " + path + " failed: " + failure);
}

}  // namespace usher::streams
