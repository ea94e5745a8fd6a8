// Test-stream generator: a real H.264 + AAC MPEG-TS made with GStreamer (videotestsrc, x264enc,
// audiotestsrc, avenc_aac, mpegtsmux), so tests and the demo never need a committed capture.
#pragma once

#include <string>

namespace usher::streams {

struct GeneratorOptions {
  int seconds = 10;
  int width = 640;
  int height = 360;
  int fps = 25;
  int video_kbps = 1500;
  int program_number = 1;
  // videotestsrc's pattern: "smpte" (bars: x264 needs few bits, ~4 Mbit/s at most at 640x360) or
  // "snow" (noise: the stream takes the whole video_kbps, for high-rate benchmarks).
  std::string pattern = "smpte";
};

// Writes the stream to `path`. Throws std::runtime_error with GStreamer's message on failure.
void generate_test_stream(const std::string& path, const GeneratorOptions& options = {});

}  // namespace usher::streams
