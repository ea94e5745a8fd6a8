#include "usher/streams/generator.h"

#include <sstream>
#include <stdexcept>

#include "usher/streams/gst.h"

namespace usher::streams {

void generate_test_stream(const std::string& path, const GeneratorOptions& o) {
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
  auto pipeline = gst::Pipeline::parse(desc.str());
  if (!pipeline) {
    throw std::runtime_error(pipeline.error().message +
                             " (are gstreamer1.0-plugins-{good,bad,ugly} and gstreamer1.0-libav installed?)");
  }
  auto sink = pipeline->element("out");
  if (!sink) throw std::runtime_error(sink.error().message);
  sink->set("location", path);
  if (auto done = pipeline->run_to_end(); !done) throw std::runtime_error("generating " + path + " failed: " + done.error().message);
}

}  // namespace usher::streams
