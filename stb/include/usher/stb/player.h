// What the STB shows a person: the clear transport stream through GStreamer (tsdemux, decodebin,
// autovideosink/autoaudiosink; `--out play`, CI writes files instead). QR codes: qr.h.
#pragma once

#include <memory>

#include "usher/streams/io.h"

namespace usher::stb {

// Opens a GStreamer playback sink. Throws std::runtime_error when GStreamer cannot build it.
std::unique_ptr<streams::PacketSink> open_player();

}  // namespace usher::stb
