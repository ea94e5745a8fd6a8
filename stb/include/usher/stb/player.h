// Player: shows a clear transport stream to a person through GStreamer (tsdemux, decodebin,
// autovideosink/autoaudiosink). The STB's `--out play` feeds it; CI writes files instead.
#pragma once

#include <memory>

#include "usher/streams/io.h"

namespace usher::stb {

// Opens a GStreamer playback sink. Throws std::runtime_error when GStreamer cannot build it.
std::unique_ptr<streams::PacketSink> open_player();

}  // namespace usher::stb
