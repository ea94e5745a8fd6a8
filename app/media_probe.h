// Asks ffprobe/ffmpeg what a person's player would see: how many video frames decode from a file,
// and whether decoding reported errors. Used by the demo and the end-to-end tests.
#pragma once

#include <string>

namespace usher::cli {

struct DecodeReport {
  long frames = 0;          // video frames ffprobe reports (nb_read_frames), 0 if none
  long decode_errors = 0;   // lines ffmpeg printed at level "error" while decoding the file
};

DecodeReport probe_decode(const std::string& path);

}  // namespace usher::cli
